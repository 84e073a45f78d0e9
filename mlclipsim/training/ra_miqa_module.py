"""RA-MIQA training: a LightningModule over cached frozen features (or images).

The paper's recipe is the default: MSE between the predictions and the labels, AdamW (lr 1e-4,
weight decay 1e-4), a linear warm-up over the first epoch, then a cosine decay to 0 per step.
Validation logs ``val/loss`` and ``val/srcc`` (Spearman correlation per head on the validation photos,
mean over heads; torchmetrics syncs it across DDP processes). :meth:`RAMIQAModule.export` writes the
trained network as an RA-MIQA file that :class:`~mlclipsim.models.ra_miqa.RAMIQAModel.from_file`
and the metric load.

Robustness (:mod:`mlclipsim.training.ra_miqa_negatives`): heads are bounded to (0, 1) by default
(``bounded``); ``adversarial`` (e.g. ``{eps: 0.0157, steps: 3, every: 1, count: 32}``) adds, from epoch
``start_epoch`` on, PGD examples of the current network on training images, labelled by the task
models, as extra rows of every training batch (logged as ``adversarial/*``). Hard negatives are an
option of the DataModule (``data.negatives``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.regression import SpearmanCorrCoef

from mlclipsim.models.ra_miqa import (
    TIMM_PREFIX,
    FrozenFeatures,
    RAMIQAModel,
    build_net,
    model_config,
    probe_dims,
    save_trained,
)
from mlclipsim.training.ra_miqa_negatives import AdversarialConfig, AdversarialExamples


class RAMIQAModule(L.LightningModule):
    """Trains an RA-MIQA network.

    Args:
        heads: ``task/target`` names; the DataModule's labels come in the same order.
        architecture: ``"ra-miqa"``, ``"no-region"`` or ``"cnn"``.
        encoder: frozen-feature settings (``patch_encoder``, ``patch_layers``, ``region_encoder``,
            ``region_layer``, ``view``, ``view_size``, ...; see :class:`RAMIQAModel`).
        region_pool, dim, depth, num_heads, mlp_ratio, dropout: the trainable network.
        lr, weight_decay, warmup_epochs: AdamW and the warm-up + cosine schedule.
        from_images: train from image batches (``{"images", "target"}``) through the frozen encoders
            (required for a timm ViT patch encoder); else from cached features (``{"patch", "region", "target"}``).
        bounded: a sigmoid on every head (predictions in (0, 1)); default True.
        adversarial: adversarial training (:class:`~mlclipsim.training.ra_miqa_negatives.AdversarialConfig`:
            ``eps``, ``steps``, ``every``, ``count``, ``fraction``, ...); None (default) trains without. Needs a
            :class:`~mlclipsim.training.ra_miqa_data.RAMIQADataModule` (the images come from its training split).
    """

    def __init__(self, heads: Sequence[str] = ("detection/consistency",), architecture: str = "ra-miqa",
                 encoder: dict | None = None, region_pool: str = "attention", dim: int = 32, depth: int = 1,
                 num_heads: int = 4, mlp_ratio: float = 4.0, dropout: float = 0.1, lr: float = 1e-4,
                 weight_decay: float = 1e-4, warmup_epochs: float = 1.0, from_images: bool = False,
                 bounded: bool = True, adversarial: dict | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.config = model_config(heads=list(heads), architecture=architecture, region_pool=region_pool, dim=dim,
                                   depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, dropout=dropout,
                                   bounded=bounded, **dict(encoder or {}))
        timm = str(self.config["patch_encoder"]).startswith(TIMM_PREFIX)
        if timm and not from_images:
            raise ValueError("A timm ViT patch encoder is trained end to end and cannot use cached features: set "
                             "model.from_images: true.")
        self.frozen: nn.Module | None = None
        if from_images:
            model = RAMIQAModel(**self.config)
            self.frozen, self.net = model.frozen, model.net
        else:
            self.net = build_net(self.config, probe_dims(self.config))
        self.heads = tuple(self.config["heads"])
        parsed = AdversarialConfig.parse(adversarial)
        self.adversarial = None if parsed is None else AdversarialExamples(parsed)
        self.val_srcc = nn.ModuleList([SpearmanCorrCoef() for _ in self.heads])

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """(B, len(heads)) predictions of a batch of cached features or of images (scored views)."""
        if "images" in batch:
            if self.frozen is None:
                raise ValueError("This module trains from cached features; build it with from_images=True "
                                 "to feed images.")
            features = self.frozen(batch["images"])
        else:
            features = FrozenFeatures(batch["patch"].float(), batch["region"].float())
        return self.net(features)

    def on_train_epoch_start(self) -> None:
        if self.adversarial is None or not self.adversarial.due(self.current_epoch):
            return
        stats = self.adversarial.refresh(self.net, self.config, self.trainer.datamodule, self.current_epoch,
                                         frozen=self.frozen, from_images=self.frozen is not None)
        for name, value in stats.items():
            self.log(f"adversarial/{name}", value, batch_size=1)

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.adversarial is not None:
            batch = self.adversarial.mix(batch)
        loss = F.mse_loss(self(batch), batch["target"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["target"]))
        return loss

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        prediction = self(batch)
        target = batch["target"]
        self.log("val/loss", F.mse_loss(prediction, target), sync_dist=True, batch_size=len(target))
        for i, metric in enumerate(self.val_srcc):
            metric.update(prediction[:, i].float(), target[:, i].float())

    def on_validation_epoch_end(self) -> None:
        values = []
        for head, metric in zip(self.heads, self.val_srcc):
            value = metric.compute()
            metric.reset()
            values.append(value)
            if len(self.heads) > 1:
                self.log(f"val/srcc/{head}", value, sync_dist=True)
        # already synchronised by torchmetrics (equal on every rank): sync_dist only silences Lightning
        self.log("val/srcc", torch.stack(values).mean(), prog_bar=True, sync_dist=True)

    def configure_optimizers(self) -> dict[str, Any]:
        parameters = [p for p in self.net.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(parameters, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else 1
        warmup = max(1, round(self.hparams.warmup_epochs * total / epochs)) if self.hparams.warmup_epochs > 0 else 0

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return 0.5 * (1.0 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def export(self, path: str | os.PathLike, meta: Mapping[str, Any] | None = None, half: bool = True) -> None:
        """Write the trained network as an RA-MIQA file (config + trainable weights + ``meta``)."""
        save_trained(path, self.config, self.net.state_dict(), meta, half)
