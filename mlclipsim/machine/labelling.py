"""Distributed labelling on Lightning's ``Trainer.predict``.

A labelling job is a list of work items (photos, references) and a worker class: the worker is
built once per process in ``setup`` (so task models load once per process and ONNX sessions never
need pickling) and turns one item into files on disk plus a small summary. With ``processes > 1``
the items are sharded by rank (without DistributedSampler's padding, which would label an item
twice) and run under the ``ddp_spawn`` strategy; on GPUs or several nodes the same module runs
under any Lightning strategy.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, Protocol

import lightning as L
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm
from torch.utils.data import DataLoader

from mlclipsim.core.progress import progress_disabled


class Worker(Protocol):
    def process(self, item: Any) -> dict: ...


class LabellingModule(L.LightningModule):
    """``Trainer.predict`` shell: one work item per step, items sharded by rank."""

    def __init__(self, worker_cls: type, config: Any, items: Sequence[Any], threads: int = 1) -> None:
        super().__init__()
        self.worker_cls, self.config, self.items, self.threads = worker_cls, config, list(items), threads
        self.worker: Worker | None = None

    def setup(self, stage: str) -> None:
        torch.set_num_threads(self.threads)
        self.worker = self.worker_cls(self.config)

    def predict_dataloader(self) -> DataLoader:
        rank, world = self.trainer.global_rank, self.trainer.world_size
        return DataLoader(self.items[rank::world], batch_size=1, shuffle=False, collate_fn=_first)

    def predict_step(self, item: Any, batch_idx: int) -> dict:
        assert self.worker is not None
        return self.worker.process(item)


class StderrProgressBar(TQDMProgressBar):
    """Lightning's bar on stderr (Lightning writes it to stdout, into the JSON summaries)."""

    def init_predict_tqdm(self) -> Tqdm:
        return Tqdm(desc=self.predict_description, position=2 * self.process_position,
                    disable=self.is_disabled or progress_disabled() is True, leave=True, dynamic_ncols=True,
                    file=sys.stderr, smoothing=0, bar_format=self.BAR_FORMAT)


def _first(batch: list) -> Any:
    return batch[0]


def run_labelling(worker_cls: type, config: Any, items: Sequence[Any], processes: int = 1, threads: int = 1) -> None:
    """Run ``worker_cls(config).process(item)`` for every item, in ``processes`` CPU processes."""
    if not items:
        return
    trainer = L.Trainer(
        accelerator="cpu", devices=processes, strategy="ddp_spawn" if processes > 1 else "auto",
        logger=False, enable_checkpointing=False, enable_model_summary=False, use_distributed_sampler=False,
        callbacks=[StderrProgressBar()],
    )
    trainer.predict(LabellingModule(worker_cls, config, items, threads), return_predictions=False)
