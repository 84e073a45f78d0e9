"""RA-MIQA as a torchmetrics Metric and as an nn.Module loss (thin shells over the functional core)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn
from torchmetrics import Metric
from torchmetrics.utilities.plot import _AX_TYPE, _PLOT_OUT_TYPE

from mlclipsim.metrics.frozen import exclude_from_state_dict, freeze
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
    return freeze(model), head


class RAMIQA(Metric):
    """RA-MIQA: predicted machine quality of images, without a reference; higher is better.

    ``update(images)`` with images (N,3,H,W) float in [0,1] (any float dtype; they are cast to the model's,
    which ``set_dtype`` or a parent's ``.half()`` / ``.double()`` sets); ``compute()`` returns the mean
    predicted quality over every image of every update (synchronised across processes; NaN, with
    torchmetrics' warning, before any update); ``forward`` returns the batch mean with its autograd graph
    (gradients reach the images).

    The trained model is frozen and stays out of ``state_dict()`` (it comes from its weights file), so a
    checkpoint of a module holding this metric carries only the metric's states, and only when they are
    made persistent. ``torch.jit.script`` compiles the metric as torchmetrics compiles its own (``forward``
    unused) and leaves the model out, as torchmetrics' LPIPS leaves out its network.

    Args:
        task: ``"classification"``, ``"detection"`` (default) or ``"segmentation"`` (heads ship for detection
            and classification; a segmentation head needs ``weights`` from ``mlclipsim train-ramiqa``).
        target: ``"consistency"`` (default; the heads that ship), ``"accuracy"`` or ``"composite"``.
        weights: an RA-MIQA weights file; None finds the shipped one (see
            :mod:`mlclipsim.metrics.functional.ra_miqa`).
        model: an already built :class:`~mlclipsim.models.ra_miqa.RAMIQAModel` instead.
        allow_download: for the frozen encoders' weights (default: unless MLCLIPSIM_OFFLINE=1).
        kwargs: torchmetrics Metric options.

    Example (the shipped detection-consistency head):
        >>> import torch
        >>> images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        >>> metric = RAMIQA(task="detection")
        >>> metric.update(images)
        >>> bool(0.0 <= metric.compute() <= 1.0)
        True
    """

    is_differentiable = True
    higher_is_better = True
    full_state_update = False
    __jit_ignored_attributes__: ClassVar[list[str]] = ["device", "model"]

    def __init__(self, task: str = "detection", target: str = "consistency", weights: str | os.PathLike | None = None,
                 model: RAMIQAModel | None = None, allow_download: bool | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model, self.head = _model_of(task, target, weights, model, allow_download)
        exclude_from_state_dict(self, "model")
        self.add_state("score_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        # annotated here, not in the class body: torch.jit cannot read postponed (string) class annotations
        self.score_sum: torch.Tensor
        self.total: torch.Tensor

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
        """Mean predicted quality over all images since the last reset (float32 scalar; NaN before any update)."""
        return (self.score_sum / self.total).float()

    def plot(self, val: torch.Tensor | Sequence[torch.Tensor] | None = None,
             ax: _AX_TYPE | None = None) -> _PLOT_OUT_TYPE:
        """Plot one value or a sequence of values (from ``forward`` or ``compute``; None: ``compute()``).

        Returns matplotlib's figure and axes (``ax``: draw into these axes instead). Needs matplotlib.
        The axis is not fixed: predictions are on the training labels' scale, in (0, 1) for a bounded
        model and unclipped for heads trained before that option.
        """
        return self._plot(val, ax)


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
        exclude_from_state_dict(self, "model")

    def train(self, mode: bool = True) -> RAMIQALoss:
        """The scoring model stays in eval mode (no dropout) inside a training codec."""
        super().train(mode)
        self.model.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        quality = score_images(self.model, images, self.head, range_tolerance=LOSS_RANGE_TOLERANCE)
        return reduce(1.0 - quality, self.reduction)
