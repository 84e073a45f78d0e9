"""Long MSE training of a base codec on CPU, resumable exactly.

    OMP_NUM_THREADS=1 nohup nice -n 5 python benchmarks/codec_pilot/train_base.py \
        --lmbda 0.0018 --out benchmarks/results/codec_pilot/base_mean64_l0.0018 --max-minutes 600 > LOG 2>&1 &

Loss: bpp + lambda * 255^2 * MSE. ``--lmbda`` with several values trains ONE variable-rate model (gain units,
``mean-gain``) on that ladder instead. Training data: all shared photos minus the held-out list (random crops
+ flips, native and half size, decoded once in memory; data.py).

Resuming: if ``OUT/checkpoint.pth`` exists it is loaded and training continues exactly where it stopped
(model, Adam, aux Adam, LR scheduler, torch RNG, crop-sampler RNG, level RNG, step, time counters are all in
it; rows of ``train_log.csv``/``eval_curve.csv`` written after that checkpoint are dropped). Command-line
options other than ``--max-minutes``/``--ckpt-minutes``/``--eval-minutes`` are taken from the checkpoint,
except ``--set-lr``, which replaces the schedule's peak learning rate from the resumed step on (a plateau or
loss spikes at the peak rate) and is recorded in the checkpoint's options.
The checkpoint is written every ``--ckpt-minutes`` (default 5), at the end, and on SIGTERM/SIGINT, through
a temporary file + fsync + rename, so a kill never leaves a broken checkpoint. It holds fp32 state dicts only.

Logs in OUT: ``train_log.csv`` (every 50 steps: step, wall time, CPU time, lr, train loss, bpp, mse, psnr,
means over the last 50 steps), ``eval_curve.csv`` + ``eval_curve.png`` (every ``--eval-minutes``, default 15:
real-bitstream bpp and PSNR on 6 held-out 384-px centre crops, per rate level), ``config.json``.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data import CropSampler, split  # noqa: E402
from evaluate import codec_point, load_set, prepare  # noqa: E402
import models  # noqa: E402
from models import build, param_groups, rd_loss  # noqa: E402

TRAIN_FIELDS = ["step", "wall_s", "cpu_s", "lr", "loss", "bpp", "mse", "psnr"]
EVAL_FIELDS = ["step", "wall_s", "cpu_s", "lmbda", "bpp", "psnr"]
EVAL_PHOTOS = 6


def lr_lambda_factory(warmup: int, total: int, decay_start: float):
    def f(step: int) -> float:
        w = min(1.0, (step + 1) / warmup)
        s0 = decay_start * total
        if step < s0:
            return w
        t = min(1.0, (step - s0) / max(1.0, total - s0))
        return w * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))
    return f


def atomic_save(obj, path: Path):
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def truncate_csv(path: Path, max_step: int):
    if not path.exists():
        return
    with open(path) as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return
    keep = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= max_step]
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(keep)


def append_csv(path: Path, fields: list[str], row: dict):
    new = not path.exists()
    with open(path, "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        if new:
            w.writeheader()
        w.writerow(row)


def plot_curve(csv_path: Path, png_path: Path):
    """PSNR-vs-step and bpp-vs-step (one line per lambda) drawn with PIL (no matplotlib needed)."""
    from PIL import Image, ImageDraw

    with open(csv_path) as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return
    lams = sorted({r["lmbda"] for r in rows}, key=float)
    W, H, pad = 900, 380, 60
    img = Image.new("RGB", (W, 2 * H), "white")
    d = ImageDraw.Draw(img)
    colors = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]
    steps = [int(r["step"]) for r in rows]
    smax = max(max(steps), 1)
    for panel, key in enumerate(("psnr", "bpp")):
        y0 = panel * H
        vals = [float(r[key]) for r in rows]
        lo, hi = min(vals), max(vals)
        if hi - lo < 1e-9:
            lo, hi = lo - 1, hi + 1
        d.rectangle([pad, y0 + 20, W - 20, y0 + H - pad], outline="black")
        d.text((pad, y0 + 4), f"{key} (held-out 384-px crops, real bitstream) vs step", fill="black")
        for k in range(5):
            v = lo + (hi - lo) * k / 4
            yy = y0 + H - pad - (H - pad - 20) * k / 4
            d.text((4, yy - 6), f"{v:.3f}" if key == "bpp" else f"{v:.2f}", fill="black")
        d.text((pad, y0 + H - pad + 6), "0", fill="black")
        d.text((W - 80, y0 + H - pad + 6), f"{smax}", fill="black")
        for ci, lam in enumerate(lams):
            pts = [(int(r["step"]), float(r[key])) for r in rows if r["lmbda"] == lam]
            xy = [(pad + (W - 20 - pad) * s / smax, y0 + H - pad - (H - pad - 20) * (v - lo) / (hi - lo)) for s, v in pts]
            c = colors[ci % len(colors)]
            if len(xy) > 1:
                d.line(xy, fill=c, width=2)
            for x, y in xy:
                d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=c)
            d.text((W - 160, y0 + 24 + 12 * ci), f"lambda {lam}", fill=c)
    tmp = png_path.with_suffix(".tmp.png")
    img.save(tmp)
    os.replace(tmp, png_path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lmbda", type=float, nargs="+", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--max-minutes", type=float, required=True, help="wall minutes for this invocation")
    ap.add_argument("--arch", default="mean", choices=["factorized", "hyperprior", "mean"])
    ap.add_argument("--N", type=int, default=64)
    ap.add_argument("--M", type=int, default=96)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--total-steps", type=int, default=200_000, help="length of the LR schedule")
    ap.add_argument("--decay-start", type=float, default=0.8, help="fraction of total steps where cosine decay starts")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ckpt-minutes", type=float, default=5.0)
    ap.add_argument("--eval-minutes", type=float, default=15.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-steps", type=int, default=None, help="also stop at this step (tests)")
    ap.add_argument("--set-lr", type=float, default=None,
                    help="on resume: replace the schedule's peak learning rate (--lr) from this step on; recorded in "
                         "the checkpoint's options (the one option a resume may change)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    out: Path = a.out
    out.mkdir(parents=True, exist_ok=True)
    ck_path = out / "checkpoint.pth"
    ck = torch.load(ck_path, map_location="cpu", weights_only=False) if ck_path.exists() else None
    if ck is not None:  # training options come from the checkpoint, so a resume cannot silently change them
        for k, v in ck["args"].items():
            if k not in ("max_minutes", "ckpt_minutes", "eval_minutes", "out", "threads", "max_steps", "set_lr"):
                setattr(a, k, v)
        if a.set_lr is not None:
            print(f"peak learning rate {a.lr:g} -> {a.set_lr:g} from step {ck['step']}", flush=True)
            a.lr = a.set_lr
    lmbdas = list(a.lmbda)
    vr = len(lmbdas) > 1
    arch = "mean-gain" if vr else a.arch
    cfg = {"arch": arch, "N": a.N, "M": a.M, "lmbda": lmbdas[0] if not vr else None, "lmbdas": lmbdas if vr else None}

    torch.manual_seed(a.seed)
    train_names, _, held = split(n_val=0)
    sampler = CropSampler(train_names, a.crop, seed=a.seed)
    model = build(arch, a.N, a.M, lmbdas if vr else None)
    main_p, aux_p = param_groups(model)
    opt = torch.optim.Adam(main_p, lr=a.lr)
    aopt = torch.optim.Adam(aux_p, lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda_factory(a.warmup, a.total_steps, a.decay_start))
    level_gen = torch.Generator().manual_seed(a.seed + 1)
    step, wall_done, cpu_done = 0, 0.0, 0.0
    if ck is not None:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        aopt.load_state_dict(ck["aux_optimizer"])
        sched.load_state_dict(ck["scheduler"])
        if a.set_lr is not None:  # the schedule's shape is kept, its peak is the new one
            sched.base_lrs = [a.lr for _ in opt.param_groups]
            for group in opt.param_groups:
                group["initial_lr"] = a.lr
                group["lr"] = a.lr * sched.lr_lambdas[0](sched.last_epoch)
        torch.set_rng_state(ck["torch_rng"])
        sampler.load_state_dict(ck["sampler_rng"])
        level_gen.set_state(ck["level_rng"])
        step, wall_done, cpu_done = ck["step"], ck["wall_s"], ck["cpu_s"]
        truncate_csv(out / "train_log.csv", step)
        truncate_csv(out / "eval_curve.csv", step)
        print(f"resumed from {ck_path} at step {step} (wall {wall_done / 60:.1f} min, cpu {cpu_done / 60:.1f} min)",
              flush=True)
    else:
        (out / "config.json").write_text(json.dumps({**cfg, "args": {k: (str(v) if isinstance(v, Path) else v)
                                                                     for k, v in vars(a).items()},
                                                     "train_photos": train_names}, indent=1))
    eval_imgs = load_set(held[:EVAL_PHOTOS], "crop384")
    lam_t = torch.tensor(lmbdas)

    stop = {"flag": False}

    def on_signal(signum, frame):
        stop["flag"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def state():
        return {"config": cfg, "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
                "model": model.state_dict(), "optimizer": opt.state_dict(), "aux_optimizer": aopt.state_dict(),
                "scheduler": sched.state_dict(), "torch_rng": torch.get_rng_state(),
                "sampler_rng": sampler.state_dict(), "level_rng": level_gen.get_state(), "step": step, "log_acc": acc.tolist(), "log_n": n_acc,
                "wall_s": wall_done + (time.perf_counter() - w0), "cpu_s": cpu_done + (time.process_time() - c0)}

    def evaluate_now():
        m = copy.deepcopy(model)
        prepare(m)
        levels = list(enumerate(lmbdas)) if vr else [(None, lmbdas[0])]
        for lv, lm in levels:
            r = codec_point(m, eval_imgs, level=lv)
            append_csv(out / "eval_curve.csv", EVAL_FIELDS,
                       {"step": step, "wall_s": round(wall_done + time.perf_counter() - w0, 1),
                        "cpu_s": round(cpu_done + time.process_time() - c0, 1), "lmbda": lm,
                        "bpp": round(r["bpp"], 5), "psnr": round(r["psnr"], 4)})
            print(f"eval step {step} lambda {lm}: bpp {r['bpp']:.4f} psnr {r['psnr']:.3f}", flush=True)
        plot_curve(out / "eval_curve.csv", out / "eval_curve.png")

    w0, c0 = time.perf_counter(), time.process_time()
    last_ck = last_eval = time.perf_counter()
    acc = np.zeros(3) if ck is None else np.array(ck.get("log_acc", [0.0, 0.0, 0.0]))
    n_acc = 0 if ck is None else ck.get("log_n", 0)
    if step == 0:
        evaluate_now()
    while not stop["flag"] and (time.perf_counter() - w0) < a.max_minutes * 60 and \
            (a.max_steps is None or step < a.max_steps):
        x = sampler.batch(a.batch)
        if vr:
            level = torch.randint(len(lmbdas), (a.batch,), generator=level_gen)
            outp = model(x, level)
            loss, bpp, mse = rd_loss(outp, x, lam_t[level])
        else:
            outp = model(x)
            loss, bpp, mse = rd_loss(outp, x, lmbdas[0])
        models.optimizer_step(model, loss, opt, aopt, clip_params=main_p)
        sched.step()  # after the aux step: the schedule touches only the main optimiser's learning rate
        step += 1
        acc += (loss.item(), bpp.mean().item(), mse.mean().item())
        n_acc += 1
        if step % 50 == 0:
            l_, b_, m_ = acc / n_acc
            append_csv(out / "train_log.csv", TRAIN_FIELDS,
                       {"step": step, "wall_s": round(wall_done + time.perf_counter() - w0, 1),
                        "cpu_s": round(cpu_done + time.process_time() - c0, 1), "lr": f"{opt.param_groups[0]['lr']:.3e}",
                        "loss": f"{l_:.5f}", "bpp": f"{b_:.5f}", "mse": f"{m_:.6e}",
                        "psnr": f"{10 * math.log10(1 / m_):.3f}"})
            acc[:] = 0
            n_acc = 0
            if step % 500 == 0:
                print(f"step {step} loss {l_:.4f} bpp {b_:.4f} psnr {10 * math.log10(1 / m_):.2f}", flush=True)
        now = time.perf_counter()
        if now - last_eval >= a.eval_minutes * 60:
            evaluate_now()
            last_eval = time.perf_counter()
        if now - last_ck >= a.ckpt_minutes * 60:
            atomic_save(state(), ck_path)
            last_ck = time.perf_counter()
    atomic_save(state(), ck_path)
    print(f"stopped at step {step} ({'signal' if stop['flag'] else 'max-minutes'}); checkpoint {ck_path} "
          f"({ck_path.stat().st_size / 1e6:.1f} MB)", flush=True)


if __name__ == "__main__":
    main()
