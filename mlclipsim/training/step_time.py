"""Time the training steps of recipes, in one process, one after the other (same machine state).

    B=codecs/base/small.yaml,codecs/architecture/bmshj2018-factorized.yaml
    MLCLIPSIM_OFFLINE=1 python -m mlclipsim.training.step_time $B,codecs/term/mse.yaml \
        $B,codecs/term/mix.yaml,codecs/term/small/mix.yaml [--steps 30] [--warmup 5]

A recipe is its config files joined by commas, merged in order as ``mlclipsim train-codec`` merges
them. Each recipe's model and data are built through LightningCLI as the recipe says (``--set
section.key=value`` overrides apply to all; photos are decoded into the cache first when the recipe
caches them), then
``warmup + steps`` training steps run without validation, logging or checkpoints. With ``--rounds R``
the recipes take turns R times (A, B, A, B, ...), so that a change in the machine's load hits all of
them alike. The report is the median and mean wall time of the timed steps (data loading included),
the implied steps in 30 minutes, and memory: every turn runs in a fresh child process (this same
module with ``--single``), so its peak resident set size (``ru_maxrss``) belongs to that recipe alone;
``peak_rss_mb`` is that peak and ``train_rss_mb`` its growth from the moment the model and data were
built to the end of training (what the training steps themselves add). On CUDA the peak allocated
device memory is reported too.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

import lightning as L
import torch

from mlclipsim.training.train_codec import build


class StepTimer(L.Callback):
    """Wall time of every training step, from the start of one batch to the end of the next (data loading included)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._last = None

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if self._last is None:
            self._last = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        self.times.append(now - self._last)
        self._last = now


def _rss_mb() -> float:
    """Current resident set size of this process in MB (Linux ``/proc``; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
    except OSError:
        return 0.0
    return pages * resource.getpagesize() / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KB


def time_recipe(recipe: str, steps: int, warmup: int, overrides: Sequence[tuple[str, str]] = (),
                memory: dict | None = None) -> list[float]:
    """Wall times (s) of ``steps`` training steps of a recipe (config files joined by commas) after ``warmup`` steps.

    ``memory``, when given, receives ``built_rss_mb`` (after building model and data), ``peak_rss_mb``
    and, on CUDA, ``cuda_peak_mb``.
    """
    timer = StepTimer()
    arguments = [item for path in recipe.split(",") for item in ("--config", path)]
    arguments += [item for key, value in overrides for item in (f"--{key}", value)]
    # The recipe's model and data; a trainer that runs warmup + steps without validation, logs or checkpoints.
    arguments += ["--trainer.devices", "1", "--trainer.max_steps", str(warmup + steps), "--trainer.max_epochs",
                  "null", "--trainer.limit_val_batches", "0", "--trainer.logger", "false",
                  "--trainer.enable_checkpointing", "false", "--trainer.callbacks", "[]",
                  "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    cli = build(arguments, save_config_callback=None, trainer_defaults={"callbacks": [timer]})
    model, data, trainer = cli.model, cli.datamodule, cli.trainer
    data.setup("fit")
    if data.cache_images:
        for index in range(len(data.train_dataset.paths)):
            data.train_dataset.photo(index)
    built = _rss_mb()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer.fit(model, data)
    if memory is not None:
        memory.update(built_rss_mb=built, peak_rss_mb=_peak_rss_mb())
        if torch.cuda.is_available():
            memory["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return timer.times[warmup:]


def _time_in_child(path: str, steps: int, warmup: int, overrides: Sequence[str]) -> dict:
    command = [sys.executable, "-m", "mlclipsim.training.step_time", "--single", path, "--steps", str(steps),
               "--warmup", str(warmup), *(f"--set={item}" for item in overrides)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"Timing {path} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(lines[-1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlclipsim.training.step_time",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("recipes", nargs="+", metavar="RECIPE", help="a recipe: its config files joined by commas")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--single", action="store_true", help="time one recipe in this process (used per turn)")
    parser.add_argument("--out", default=None, help="also write the results as a JSON list")
    args = parser.parse_args(argv)
    if args.single:
        memory: dict = {}
        overrides = [tuple(item.split("=", 1)) for item in args.set]
        timed = time_recipe(args.recipes[0], args.steps, args.warmup, overrides, memory)
        print(json.dumps({"times": timed, **memory}), flush=True)
        return 0
    runs: dict[str, list[dict]] = {path: [] for path in args.recipes}
    for _ in range(args.rounds):
        for path in args.recipes:
            runs[path].append(_time_in_child(path, args.steps, args.warmup, args.set))
    results = []
    for path, turns in runs.items():
        timed = [t for turn in turns for t in turn["times"]]
        median = statistics.median(timed)
        entry = {"recipe": path, "steps": len(timed), "median_s": round(median, 3),
                 "mean_s": round(statistics.fmean(timed), 3), "steps_in_30_min": int(1800 / median),
                 "peak_rss_mb": round(max(t["peak_rss_mb"] for t in turns), 1),
                 "train_rss_mb": round(max(t["peak_rss_mb"] - t["built_rss_mb"] for t in turns), 1),
                 "threads": torch.get_num_threads()}
        if any("cuda_peak_mb" in t for t in turns):
            entry["cuda_peak_mb"] = round(max(t.get("cuda_peak_mb", 0.0) for t in turns), 1)
        base = runs[args.recipes[0]]
        entry["ratio_to_first"] = round(median / statistics.median([t for turn in base for t in turn["times"]]), 2)
        results.append(entry)
        print(json.dumps(entry), flush=True)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"command": " ".join(sys.argv), "results": results}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
