"""Time the training steps of recipes, in one process, one after the other (same machine state).

    MLCLIPSIM_OFFLINE=1 python -m mlclipsim.compression.step_time codecs/A.yaml codecs/B.yaml [--steps 30] [--warmup 5]

Each recipe's model and data are built as the recipe says (``--set section.key=value`` overrides
apply to all; photos are decoded into the cache first when the recipe caches them), then
``warmup + steps`` training steps run without validation, logging or checkpoints. With ``--rounds R``
the recipes take turns R times (A, B, A, B, ...), so that a change in the machine's load hits all of
them alike. The report is the median and mean wall time of the timed steps (data loading included)
and the implied steps in 30 minutes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence

import lightning as L
import torch


class _StepTimer(L.Callback):
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


def time_recipe(path: str, steps: int, warmup: int, overrides: Sequence[tuple[str, str]] = ()) -> list[float]:
    """Wall times (s) of ``steps`` training steps of a recipe after ``warmup`` steps."""
    from mlclipsim.compression.datamodule import CodecDataModule
    from mlclipsim.compression.lightning_module import CompressionModule
    from mlclipsim.compression.train import load_config

    config = load_config([path], overrides)
    L.seed_everything(int(config.get("seed_everything") or 0), verbose=False)
    model = CompressionModule(**config["model"])
    data = CodecDataModule(**config["data"])
    data.setup("fit")
    if data.cache_images:
        for index in range(len(data.train_dataset.paths)):
            data.train_dataset.photo(index)
    timer = _StepTimer()
    trainer = L.Trainer(accelerator=config["trainer"].get("accelerator", "cpu"), devices=1,
                        max_steps=warmup + steps, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[timer])
    trainer.fit(model, data)
    return timer.times[warmup:]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlclipsim.compression.step_time",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("recipes", nargs="+")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args(argv)
    overrides = [tuple(item.split("=", 1)) for item in args.set]
    times: dict[str, list[float]] = {path: [] for path in args.recipes}
    for _ in range(args.rounds):
        for path in args.recipes:
            times[path] += time_recipe(path, args.steps, args.warmup, overrides)
    for path, timed in times.items():
        median = statistics.median(timed)
        print(json.dumps({"recipe": path, "steps": len(timed), "median_s": round(median, 3),
                          "mean_s": round(statistics.fmean(timed), 3), "steps_in_30_min": int(1800 / median),
                          "threads": torch.get_num_threads()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
