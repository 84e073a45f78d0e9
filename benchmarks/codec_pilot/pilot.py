"""Short pilot of issue 16: codec configurations trained for the SAME CPU time on one thread, then evaluated.

Each configuration trains bpp + lambda * 255^2 * MSE from scratch for ``--budget`` seconds of CPU time
(``time.process_time`` of this process, one torch thread; evaluation is not counted), on random crops of the
training photos (the shared photos minus the held-out list minus 8 validation photos, seed 0). The 8
validation photos (384-px centre crops) are what the choice is made on; the 26 held-out photos (384-px centre
crops) are evaluated and reported but not used to choose. Rates are real range-coded bytes (evaluate.py).

Learning-rate schedules are functions of the spent fraction of the CPU budget ("sched": 20-step linear
warm-up, constant until 70 %, then cosine down to 10 % of the peak; "const": constant).

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/codec_pilot/pilot.py --budget 390          # all configs
    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/codec_pilot/pilot.py --only mean128 --budget 390
    python benchmarks/codec_pilot/pilot.py --report                                          # pilot.md
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from data import CropSampler, split
from evaluate import RESULTS, codec_point, jpeg_anchor, load_set, point_vs_jpeg, prepare, bd_rate_range, pkg_bd_rate
import models
from models import build, param_groups, rd_loss

LADDER = [0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.0483]
LMBDA = 0.013
RUNS = Path(__file__).resolve().parents[2] / "runs" / "codec_pilot"  # git-ignored: pilot weights stay local

# name: (arch, N, M, crop, batch, lr, schedule). Stages run in order; later stages vary the best config so far
# (lowest RD cost on the validation crops), one factor at a time.
CONFIGS: dict[str, tuple] = {}
STAGES = ["arch", "variable-rate", "crop", "lr", "size"]


def plan_stage(stage: str, best: tuple | None) -> dict[str, tuple]:
    if stage == "arch":
        return {"mean64": ("mean", 64, 96, 128, 8, 1e-3, "sched"),
                "hyper64": ("hyperprior", 64, 96, 128, 8, 1e-3, "sched"),
                "factorized64": ("factorized", 64, 96, 128, 8, 1e-3, "sched")}
    arch, N, M, crop, batch, lr, sch = best
    short = {"mean": "mean", "hyperprior": "hyper", "factorized": "factorized"}[arch]
    if stage == "size":
        return {f"{short}128": (arch, 128, 192, crop, batch, lr, sch)}
    if stage == "lr":
        return {f"{short}{N}-lr1e-4": (arch, N, M, crop, batch, 1e-4, "const")}
    if stage == "crop":
        return {f"{short}{N}-crop256": (arch, N, M, 256, batch // 4, lr, sch)}
    if stage == "variable-rate":  # gain units are implemented on mbt2018-mean
        return {f"meangain{N}": ("mean-gain", N, M, crop, batch, lr, sch)}
    raise ValueError(stage)


def lr_at(frac: float, step: int, peak: float, schedule: str) -> float:
    if schedule == "const":
        return peak
    w = min(1.0, (step + 1) / 20)
    if frac < 0.7:
        return peak * w
    t = min(1.0, (frac - 0.7) / 0.3)
    return peak * w * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def train_one(name: str, cfg: tuple, budget: float, seed: int = 0) -> dict:
    arch, N, M, crop, batch, lr, schedule = cfg
    torch.manual_seed(seed)
    train_names, val_names, held = split(n_val=8)
    sampler = CropSampler(train_names, crop, seed=seed)
    model = build(arch, N, M, LADDER if arch == "mean-gain" else None)
    n_params = sum(p.numel() for p in model.parameters())
    main, aux = param_groups(model)
    opt = torch.optim.Adam(main, lr=lr)
    aopt = torch.optim.Adam(aux, lr=1e-3)
    lam_t = torch.tensor(LADDER)
    gen = torch.Generator().manual_seed(seed)
    t_start = time.process_time()
    wall0 = time.perf_counter()
    step, log, ema = 0, [], None
    while True:
        spent = time.process_time() - t_start
        if spent >= budget:
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(spent / budget, step, lr, schedule)
        x = sampler.batch(batch)
        if arch == "mean-gain":
            level = torch.randint(len(LADDER), (batch,), generator=gen)
            out = model(x, level)
            loss, bpp, mse = rd_loss(out, x, lam_t[level])
        else:
            out = model(x)
            loss, bpp, mse = rd_loss(out, x, LMBDA)
        models.optimizer_step(model, loss, opt, aopt, clip_params=main)
        step += 1
        v = loss.item()
        ema = v if ema is None else 0.95 * ema + 0.05 * v
        if step % 10 == 0:
            log.append({"step": step, "cpu_s": round(time.process_time() - t_start, 2), "loss_ema": ema,
                        "bpp": bpp.mean().item(), "psnr": float(10 * torch.log10(1 / mse.mean()).item())})
            if step % 50 == 0:
                print(f"[{name}] step {step} cpu {log[-1]['cpu_s']:.0f}s loss {ema:.4f} bpp {log[-1]['bpp']:.3f} "
                      f"psnr {log[-1]['psnr']:.2f}", flush=True)
    cpu = time.process_time() - t_start
    wall = time.perf_counter() - wall0
    RUNS.mkdir(parents=True, exist_ok=True)
    torch.save({"config": {"arch": arch, "N": N, "M": M, "lmbda": LMBDA, "lmbdas": LADDER if arch == "mean-gain" else None},
                "model": model.state_dict()}, RUNS / f"{name}.pth")
    # ---------------------------------------------------------------- evaluation (not counted in the budget)
    prepare(model)
    res = {"name": name, "config": list(cfg), "arch": arch, "N": N, "M": M, "crop": crop, "batch": batch, "lr": lr,
           "schedule": schedule, "budget_cpu_s": budget, "cpu_s": cpu, "wall_s": wall, "steps": step,
           "step_s": cpu / max(step, 1), "params": n_params, "train_log": log,
           "command": f"OMP_NUM_THREADS=1 nice -n 5 python benchmarks/codec_pilot/pilot.py --only {name} "
                      f"--config {','.join(map(str, cfg))} --budget {budget:g}"}
    for split_name, names in (("val", val_names), ("heldout", held)):
        imgs = load_set(names, "crop384")
        jp = jpeg_anchor(names, "crop384", RESULTS / f"jpeg_{split_name}_crop384.json")["jpeg420"]
        if arch == "mean-gain":
            pts = [{"lmbda": lm, **codec_point(model, imgs, level=i)} for i, lm in enumerate(LADDER)]
            li = LADDER.index(LMBDA)
            r = pts[li]
            res[split_name] = {**r, "points": pts,
                               "bd_rate_0.2-1.0": bd_rate_range(jp["bpp"], jp["psnr"], [p["bpp"] for p in pts],
                                                                [p["psnr"] for p in pts]),
                               "bd_rate_pkg_overlap": pkg_bd_rate(jp["bpp"], jp["psnr"], [p["bpp"] for p in pts],
                                                                  [p["psnr"] for p in pts])}
        else:
            r = codec_point(model, imgs)
            res[split_name] = dict(r)
        mse = 10 ** (-r["psnr"] / 10)  # per-image-mean PSNR -> a comparable RD cost at lambda 0.013
        res[split_name]["rd_cost"] = r["bpp"] + LMBDA * 255 ** 2 * mse
        res[split_name].update(point_vs_jpeg(r["bpp"], r["psnr"], jp["bpp"], jp["psnr"]))
        print(f"[{name}] {split_name}: {json.dumps({k: v for k, v in res[split_name].items() if k != 'points'})}",
              flush=True)
    (RESULTS / "runs").mkdir(parents=True, exist_ok=True)
    (RESULTS / "runs" / f"{name}.json").write_text(json.dumps(res, indent=1))
    return res


def fmt(v, f="{:.3f}"):
    return "n/a" if v is None else f.format(v)


def report():
    rows = [json.loads(p.read_text()) for p in sorted((RESULTS / "runs").glob("*.json"), key=lambda q: q.stat().st_mtime)]
    speed = RESULTS / "speed.md"
    L = [f"# Codec pilot (issue 16): equal CPU time per configuration",
         "",
         f"Report written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `python benchmarks/codec_pilot/pilot.py --report`. "
         f"Machine: {platform.machine()} AMD EPYC VM, 2 CPU cores shared with other jobs, this pilot on ONE torch thread "
         f"(`OMP_NUM_THREADS=1`, `torch.set_num_threads(1)`, `nice -n 5`), no GPU, torch {torch.__version__}, "
         f"CPython {platform.python_version()}.",
         "",
         "Every configuration is trained from scratch for the same CPU time (process time, evaluation not counted), "
         f"lambda = {LMBDA} (loss bpp + lambda * 255^2 * MSE), Adam, gradient clip 1.0, aux Adam lr 1e-3. "
         "Data: random crops + flips of the 52 training photos (shared photos minus the 26 held-out minus 8 "
         "validation photos), native size and half size, decoded once in memory. `sched` = 20-step warm-up, "
         "constant to 70 % of the budget, cosine to 10 % of the peak at the end; `const` = constant.",
         "",
         "Evaluation: 384-px centre crops, real range-coded bytes (+ header) and PSNR of the decoded 8-bit image, "
         "per-image means (n/a in the vs-JPEG columns: PSNR below the lowest JPEG point, q=3). **val** = 8 validation photos (not held out; the choice is made on them), **held-out** = "
         "the 26 held-out photos (reported, not used to choose). RD cost = bpp + 0.013 * 255^2 * MSE(mean PSNR); "
         "lower is better. vs JPEG: rate saving at equal PSNR (negative = fewer bits than JPEG 4:2:0, optimised "
         "Huffman, progressive if smaller) and PSNR gain at equal rate, from the JPEG curve of the same crops.",
         "",
         "| config | arch | N/M | crop x batch | lr, schedule | params | steps | CPU s/step | wall s | val bpp | val PSNR | val RD cost | "
         "held-out bpp | held-out PSNR | held-out RD cost | held-out rate vs JPEG | held-out dPSNR vs JPEG | command |",
         "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        v, h = r["val"], r["heldout"]
        L.append(f"| {r['name']} | {r['arch']} | {r['N']}/{r['M']} | {r['crop']} x {r['batch']} | {r['lr']:g}, {r['schedule']} | "
                 f"{r['params'] / 1e6:.2f} M | {r['steps']} | {r['step_s']:.2f} | {r['wall_s']:.0f} | {v['bpp']:.3f} | {v['psnr']:.2f} | "
                 f"{v['rd_cost']:.3f} | {h['bpp']:.3f} | {h['psnr']:.2f} | {h['rd_cost']:.3f} | "
                 f"{fmt(h['rate_saving_pct'], '{:+.1f} %')} | {fmt(h['psnr_gain_db'], '{:+.2f} dB')} | `{r['command']}` |")
    vr = [r for r in rows if r["arch"] == "mean-gain"]
    for r in vr:
        L += ["", f"## Variable-rate variant `{r['name']}` (gain units, lambda ladder {LADDER}, one level drawn per crop)",
              "", "The row above is its level lambda = 0.013. All levels (real bitstreams):", "",
              "| lambda | val bpp | val PSNR | held-out bpp | held-out PSNR |", "| --- | --- | --- | --- | --- |"]
        for pv, ph in zip(r["val"]["points"], r["heldout"]["points"]):
            L.append(f"| {pv['lmbda']} | {pv['bpp']:.3f} | {pv['psnr']:.2f} | {ph['bpp']:.3f} | {ph['psnr']:.2f} |")
        for sp in ("val", "heldout"):
            b = r[sp]["bd_rate_0.2-1.0"]
            L.append(f"\nBD-rate vs JPEG 4:2:0 ({sp}, PSNR range of JPEG's 0.2-1.0 bpp): {fmt(b.get('value'), '{:+.1f} %')}"
                     f" (coverage of the range {fmt(b.get('coverage'), '{:.2f}')}); mlclipsim.eval.bd_rate over the "
                     f"whole overlap: {fmt(r[sp]['bd_rate_pkg_overlap'], '{:+.1f} %')}.")
    if speed.exists():
        L += ["", "## Step speed (benchmarks/codec_pilot/speed.py)", "", speed.read_text().split("\n", 2)[2]]
    extra = RESULTS / "pilot_notes.md"
    if extra.exists():
        L += ["", extra.read_text()]
    (RESULTS / "pilot.md").write_text("\n".join(L) + "\n")
    print("\n".join(L))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=390.0, help="CPU seconds of training per configuration")
    ap.add_argument("--only", default=None, help="run one named config (with --config) instead of the staged plan")
    ap.add_argument("--config", default=None, help="arch,N,M,crop,batch,lr,schedule for --only")
    ap.add_argument("--report", action="store_true")
    a = ap.parse_args()
    if a.report:
        report()
        return
    torch.set_num_threads(1)
    if a.only:
        f = a.config.split(",")
        cfg = (f[0], int(f[1]), int(f[2]), int(f[3]), int(f[4]), float(f[5]), f[6])
        train_one(a.only, cfg, a.budget)
        report()
        return
    done: dict[str, dict] = {}
    best = None
    for stage in STAGES:
        for name, cfg in plan_stage(stage, best).items():
            j = RESULTS / "runs" / f"{name}.json"
            done[name] = json.loads(j.read_text()) if j.exists() else train_one(name, cfg, a.budget)
        single = [r for r in done.values() if r["arch"] != "mean-gain"]
        b = min(single, key=lambda r: r["val"]["rd_cost"])
        best = tuple(b["config"])
        print(f"after stage {stage}: best = {b['name']} (val RD cost {b['val']['rd_cost']:.4f})", flush=True)
        report()


if __name__ == "__main__":
    main()
