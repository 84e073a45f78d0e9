"""RA-MIQA as a torchmetrics Metric and as an nn.Module loss (thin shells over the functional core)."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn
from torchmetrics import Metric

from mlclipsim.metrics.functional.ml_clipsim import Reduction, reduce
from mlclipsim.metrics.functional.ra_miqa import load_ra_miqa, score_images
from mlclipsim.models.ra_miqa import RAMIQAModel, head_name

LOSS_RANGE_TOLERANCE = 0.5
"""The loss accepts images this far outside [0,1]: an untrained codec's reconstructions stray."""


def _model_of(task: str, target: str, weights: str | os.PathLike | None, model: RAMIQAModel | None,
              allow_download: bool | None) -> tuple[RAMIQAModel, str]:
    head = head_name(task, target)
    if model is None:
        model = load_ra_miqa(task, target, weights, allow_download=allow_download)
    elif not isinstance(model, RAMIQAModel):
        raise TypeError(f"model must be an RAMIQAModel, got {type(model).__name__}.")
    model.head_index(head)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model, head


class RAMIQA(Metric):
    """RA-MIQA: predicted machine quality of images, without a reference; higher is better.

    ``update(images)`` with images (N,3,H,W) float in [0,1]; ``compute()`` returns the mean predicted
    quality over every image of every update (synchronised across processes); ``forward`` returns the
    batch mean with its autograd graph (gradients reach the images).

    Args:
        task: ``"classification"``, ``"detection"`` (default) or ``"segmentation"``.
        target: ``"consistency"`` (default; the heads that ship), ``"accuracy"`` or ``"composite"``.
        weights: an RA-MIQA weights file; None finds the shipped one (see
            :mod:`mlclipsim.metrics.functional.ra_miqa`).
        model: an already built :class:`~mlclipsim.models.ra_miqa.RAMIQAModel` instead.
        allow_download: for the frozen encoders' weights (default: unless MLCLIPSIM_OFFLINE=1).
        kwargs: torchmetrics Metric options.

    Example:
        >>> metric = RAMIQA(task="detection")        # doctest: +SKIP
        >>> metric.update(images); metric.compute()  # doctest: +SKIP
    """

    is_differentiable = True
    higher_is_better = True
    full_state_update = False

    score_sum: torch.Tensor
    total: torch.Tensor

    def __init__(self, task: str = "detection", target: str = "consistency", weights: str | os.PathLike | None = None,
                 model: RAMIQAModel | None = None, allow_download: bool | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model, self.head = _model_of(task, target, weights, model, allow_download)
        self.add_state("score_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def train(self, mode: bool = True) -> RAMIQA:
        """The scoring model stays in eval mode (no dropout) whatever a parent module does."""
        super().train(mode)
        self.model.eval()
        return self

    def update(self, images: torch.Tensor) -> None:
        """Score a batch and add it to the running mean."""
        scores = score_images(self.model, images, self.head)
        self.score_sum = self.score_sum + scores.sum().to(self.score_sum.dtype)
        self.total = self.total + scores.numel()

    def compute(self) -> torch.Tensor:
        """Mean predicted quality over all images since the last reset (float32 scalar)."""
        if int(self.total) == 0:
            raise RuntimeError("RAMIQA.compute() was called before any update(); nothing to average.")
        return (self.score_sum / self.total).float()


class RAMIQALoss(nn.Module):
    """``1 - RA-MIQA`` (1 - predicted machine quality) as a loss, e.g. a codec's no-reference term.

    ``loss(images)`` with images (N,3,H,W) (values up to 0.5 outside [0,1] are accepted); gradients
    flow to them. A no-reference term alone can be gamed by a codec: combine it with a fidelity term.

    Args:
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (per-image (N,) losses).
        task, target, weights, model, allow_download: as for :class:`RAMIQA`.
    """

    def __init__(self, task: str = "detection", target: str = "consistency", weights: str | os.PathLike | None = None,
                 model: RAMIQAModel | None = None, reduction: Reduction = "mean",
                 allow_download: bool | None = None) -> None:
        super().__init__()
        reduce(torch.zeros(1), reduction)  # validates the name early
        self.reduction = reduction
        self.model, self.head = _model_of(task, target, weights, model, allow_download)

    def train(self, mode: bool = True) -> RAMIQALoss:
        """The scoring model stays in eval mode (no dropout) inside a training codec."""
        super().train(mode)
        self.model.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        quality = score_images(self.model, images, self.head, range_tolerance=LOSS_RANGE_TOLERANCE)
        return reduce(1.0 - quality, self.reduction)
