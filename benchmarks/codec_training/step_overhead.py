"""The library's Lightning training step against a bare PyTorch loop of CompressAI's own example training.

Both sides train the same architecture, channels, batch, crop size and thread count, on the same
in-memory training crops (:class:`~mlclipsim.training.codec_data.RandomCropDataset` with cached photos):

- ``bare``: CompressAI's ``examples/train.py`` step written out: ``compressai.losses.RateDistortionLoss``,
  ``loss.backward()``, gradient clipping, Adam step, then ``aux_loss.backward()`` and the aux Adam step;
  a plain ``DataLoader``;
- ``library``: :class:`~mlclipsim.training.codec_module.CompressionModule` +
  :class:`~mlclipsim.training.codec_data.CodecDataModule` under ``lightning.Trainer`` as a recipe runs
  it (CSV logger, ``log_every_n_steps`` 20), without validation or checkpoints;
- optionally further distortion terms of the library (``--terms mse mix``) for the mix-vs-MSE ratio.

The sides take turns (``--rounds``), each turn in a fresh child process, so that load changes hit all of
them alike; the report is the median wall time per step of each side and its ratio to ``bare``.

    OMP_NUM_THREADS=1 python benchmarks/codec_training/step_overhead.py --steps 30 --rounds 3 \
        --out benchmarks/results/codecs/step_overhead.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

TERMS = {
    "mse": [{"name": "mse", "weight": 1.0}],
    "mix": [{"name": "mse", "weight": 0.5},
            {"name": "ml-clipsim", "weight": 0.5, "backbone": "torchvision/mobilenet_v2", "resize": "native"}],
}
HELDOUT = Path(__file__).resolve().parents[1] / "results" / "heldout_photos.txt"


def _dataset(args: argparse.Namespace):
    from mlclipsim.training.codec_data import CodecDataModule

    data = CodecDataModule(images=args.images, crop_size=args.crop, batch_size=args.batch, cache_images=True,
                           crops_per_photo=64, exclude=str(HELDOUT), seed=0)
    data.setup("fit")
    for index in range(len(data.train_dataset.paths)):  # decode every photo before timing
        data.train_dataset.photo(index)
    return data


def run_bare(args: argparse.Namespace) -> list[float]:
    from compressai.losses import RateDistortionLoss
    from torch.utils.data import DataLoader

    from mlclipsim.coding.architectures import build_codec

    torch.manual_seed(0)
    data = _dataset(args)
    model = build_codec(args.architecture, channels=args.channels)
    main = torch.optim.Adam([p for n, p in model.named_parameters() if not n.endswith(".quantiles")], lr=1e-4)
    aux = torch.optim.Adam([p for n, p in model.named_parameters() if n.endswith(".quantiles")], lr=1e-3)
    criterion = RateDistortionLoss(lmbda=args.lmbda)
    loader = DataLoader(data.train_dataset, batch_size=args.batch, shuffle=True, drop_last=True)
    times: list[float] = []
    last = time.perf_counter()
    batches = iter(loader)
    for _ in range(args.warmup + args.steps):
        batch = next(batches)
        main.zero_grad()
        aux.zero_grad()
        output = model(batch)
        loss = criterion(output, batch)
        loss["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        main.step()
        aux_loss = model.aux_loss()
        aux_loss.backward()
        aux.step()
        now = time.perf_counter()
        times.append(now - last)
        last = now
    return times[args.warmup:]


def run_library(args: argparse.Namespace, term: str) -> list[float]:
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    from mlclipsim.training.codec_module import CompressionModule
    from mlclipsim.training.step_time import StepTimer

    L.seed_everything(0, verbose=False)
    data = _dataset(args)
    module = CompressionModule(args.architecture, channels=args.channels, lmbda=args.lmbda, terms=TERMS[term],
                               lr=1e-4, aux_lr=1e-3, clip_max_norm=1.0, lr_scheduler="none", val_ml_clipsim=None,
                               val_coding_images=0)
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as logs:
        trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=args.warmup + args.steps, limit_val_batches=0,
                            logger=CSVLogger(logs, name="step_overhead"), log_every_n_steps=20,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            callbacks=[timer])
        trainer.fit(module, datamodule=data)
    return timer.times[args.warmup:]


def _child(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    times = run_bare(args) if args.side == "bare" else run_library(args, args.side.split(":", 1)[1])
    print(json.dumps(times))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default="bmshj2018-factorized")
    parser.add_argument("--channels", type=int, nargs="+", default=[64, 96])
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lmbda", type=float, default=0.0130)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--terms", nargs="+", default=["mse"], choices=sorted(TERMS))
    parser.add_argument("--images", default=None, help="photo folder (default: the shared photos)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--side", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side:
        _child(args)
        return 0
    sides = ["bare"] + [f"library:{term}" for term in args.terms]
    times: dict[str, list[float]] = {side: [] for side in sides}
    passthrough = [a for a in (argv if argv is not None else sys.argv[1:]) if not a.startswith("--out")]
    if args.out is not None and str(args.out) in passthrough:
        passthrough.remove(str(args.out))
    for round_index in range(args.rounds):
        for side in sides:
            result = subprocess.run([sys.executable, __file__, *passthrough, "--side", side], check=True,
                                    capture_output=True, text=True)
            times[side].extend(json.loads(result.stdout.strip().splitlines()[-1]))
            print(f"round {round_index + 1}/{args.rounds} {side}: median "
                  f"{statistics.median(times[side]):.3f} s/step", file=sys.stderr)
    bare = statistics.median(times["bare"])
    report = {
        "command": "python benchmarks/codec_training/step_overhead.py " + " ".join(passthrough)
                   + (f" --out {args.out}" if args.out else ""),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads available, "
                   f"{args.threads} used; torch {torch.__version__}",
        "setup": {"architecture": args.architecture, "channels": args.channels, "crop": args.crop,
                  "batch": args.batch, "threads": args.threads, "steps_per_turn": args.steps,
                  "warmup": args.warmup, "rounds": args.rounds},
        "median_step_s": {side: statistics.median(values) for side, values in times.items()},
        "ratio_to_bare": {side: statistics.median(values) / bare for side, values in times.items()},
    }
    if "library:mse" in times and "library:mix" in times:
        report["mix_over_mse"] = statistics.median(times["library:mix"]) / statistics.median(times["library:mse"])
    text = json.dumps(report, indent=1)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
