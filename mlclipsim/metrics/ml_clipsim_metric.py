"""ML-CLIPSim as a torchmetrics Metric and as an nn.Module loss (thin shells over the functional core)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn
from torchmetrics import Metric
from torchmetrics.utilities.plot import _AX_TYPE, _PLOT_OUT_TYPE

from mlclipsim.backbones import FrozenEncoder
from mlclipsim.metrics.functional.ml_clipsim import (
    MLCLIPSimScorer,
    Reduction,
    ReferenceFeatures,
    reduce,
)

LOSS_RANGE_TOLERANCE = 0.5
"""The loss accepts predictions this far outside [0,1]: an untrained codec's reconstructions stray."""


class MLCLIPSim(Metric):
    """ML-CLIPSim: how much of what a frozen CLIP-like encoder sees in the reference survives.

    ``update(preds, target)`` with ``preds`` the distorted images and ``target`` the references
    (N,3,H,W), float in [0,1] (or ``target`` as :class:`ReferenceFeatures` from
    :meth:`reference_features`). ``forward`` returns the batch mean with its autograd graph;
    ``compute`` returns the mean over every image of every update (synchronised across processes; NaN,
    with torchmetrics' warning, before any update). 1 for identical images, higher is better.

    The frozen encoder and the layer weights stay out of ``state_dict()`` (they come from their weight
    source and the arguments), so a checkpoint of a module holding this metric carries only the metric's
    states, and only when they are made persistent. ``torch.jit.script`` compiles the metric as
    torchmetrics compiles its own (``forward`` unused) and leaves the scorer out, as torchmetrics' LPIPS
    leaves out its network.

    Args:
        backbone: open_clip model name, registered backbone name (``mlclipsim.backbones.list_backbones()``)
            or a built FrozenEncoder; None (default): ViT-B-32 where its weights can be had, else the best
            installed encoder, with a warning (``metric.scorer.encoder.name`` says which).
        pretrained: open_clip tag (default ``"openai"`` where available), weights path, or ``"random"``.
        layers, weights, resize, cosine_map, allow_download, magnitude, scale, backbone_options: see
            :class:`~mlclipsim.metrics.functional.ml_clipsim.MLCLIPSimScorer` (``weights``: a preset
            ``"calibrated"``, ``"uniform"``, ``"embedding"``, or a mapping; ``scale="agreement"``: predicted
            machine agreement instead of the raw score).
        region_weights, region_alpha: region weighting, off by default: ``"mask"`` (then
            ``update(preds, target, mask=...)`` with (N,1,H,W) or (N,H,W) masks in [0,1]) or
            ``"saliency"`` (from the references' own features); see the scorer.
        kwargs: torchmetrics Metric options (``dist_sync_on_step``, ``sync_on_compute``, ...).

    Example (MobileNetV2's ImageNet weights work offline; with a network ``backbone="ViT-B-32"``):
        >>> import torch
        >>> reference = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        >>> noise = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
        >>> distorted = (reference + 0.1 * noise).clamp(0, 1)
        >>> metric = MLCLIPSim(backbone="torchvision/mobilenet_v2")
        >>> metric.update(distorted, reference)
        >>> bool(0.0 < metric.compute() < 1.0)
        True
        >>> round(float(metric(reference, reference)), 4)  # forward: this batch's score (and an update)
        1.0
    """

    is_differentiable = True
    higher_is_better = True
    full_state_update = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0
    __jit_ignored_attributes__: ClassVar[list[str]] = ["device", "scorer"]

    def __init__(
        self,
        backbone: str | FrozenEncoder | None = None,
        pretrained: str | os.PathLike | None = None,
        layers: Sequence[str] | None = None,
        weights: Mapping[str, float] | str | None = None,
        resize: str = "resize",
        cosine_map: str = "clamp",
        allow_download: bool | None = None,
        backbone_options: Mapping[str, Any] | None = None,
        region_weights: str | None = None,
        region_alpha: float | None = None,
        magnitude: bool | None = None,
        scale: str = "raw",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.scorer = MLCLIPSimScorer(backbone, pretrained=pretrained, layers=layers, weights=weights,
                                      resize=resize, cosine_map=cosine_map, allow_download=allow_download,
                                      region_weights=region_weights, region_alpha=region_alpha,
                                      magnitude=magnitude, scale=scale, **dict(backbone_options or {}))
        self.add_state("score_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        # annotated here, not in the class body: torch.jit cannot read postponed (string) class annotations
        self.score_sum: torch.Tensor
        self.total: torch.Tensor

    def reference_features(self, target: torch.Tensor, mask: torch.Tensor | None = None) -> ReferenceFeatures:
        """Encode references once (no gradients) to pass again as ``target`` (with their region mask, if any)."""
        return self.scorer.reference_features(target, mask=mask)

    def update(self, preds: torch.Tensor, target: torch.Tensor | ReferenceFeatures,
               mask: torch.Tensor | None = None) -> None:
        """Score a batch and add it to the running mean (``mask``: for ``region_weights="mask"``)."""
        scores = self.scorer(preds, target, mask=mask)
        self.score_sum = self.score_sum + scores.sum().to(self.score_sum.dtype)
        self.total = self.total + scores.numel()

    def compute(self) -> torch.Tensor:
        """Mean ML-CLIPSim over all images seen since the last reset (float32 scalar; NaN before any update)."""
        return (self.score_sum / self.total).float()

    def plot(self, val: torch.Tensor | Sequence[torch.Tensor] | None = None,
             ax: _AX_TYPE | None = None) -> _PLOT_OUT_TYPE:
        """Plot one value or a sequence of values (from ``forward`` or ``compute``; None: ``compute()``).

        Returns matplotlib's figure and axes (``ax``: draw into these axes instead), the axis bounded to
        [0,1]. Needs matplotlib.
        """
        return self._plot(val, ax)


class MLCLIPSimLoss(nn.Module):
    """``1 - ML-CLIPSim`` as a loss for training (e.g. a codec's distortion term).

    ``loss(preds, target)`` with preds (N,3,H,W) the reconstructions (gradients flow to them; values
    up to 0.5 outside [0,1] are accepted, since an untrained codec's output strays) and target the
    references or their :class:`ReferenceFeatures` (compute those once with
    :meth:`reference_features` when the same references are scored many times).

    Args:
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (per-image (N,) losses).
        other arguments: as for :class:`MLCLIPSim` (``region_weights="mask"``: pass ``mask=`` with the
            call or to :meth:`reference_features`). For codecs trained from scratch consider
            ``cosine_map="rescale"`` so that early, unrelated reconstructions still get gradients.
    """

    def __init__(
        self,
        backbone: str | FrozenEncoder | None = None,
        pretrained: str | os.PathLike | None = None,
        layers: Sequence[str] | None = None,
        weights: Mapping[str, float] | str | None = None,
        resize: str = "resize",
        cosine_map: str = "clamp",
        reduction: Reduction = "mean",
        allow_download: bool | None = None,
        region_weights: str | None = None,
        region_alpha: float | None = None,
        magnitude: bool | None = None,
        **backbone_options: Any,
    ) -> None:
        super().__init__()
        reduce(torch.zeros(1), reduction)  # validates the name early
        self.reduction = reduction
        self.scorer = MLCLIPSimScorer(backbone, pretrained=pretrained, layers=layers, weights=weights,
                                      resize=resize, cosine_map=cosine_map, allow_download=allow_download,
                                      region_weights=region_weights, region_alpha=region_alpha,
                                      magnitude=magnitude, **backbone_options)

    def reference_features(self, target: torch.Tensor, mask: torch.Tensor | None = None) -> ReferenceFeatures:
        """Encode references once (no gradients) to pass again as ``target`` (with their region mask, if any)."""
        return self.scorer.reference_features(target, mask=mask)

    def forward(self, preds: torch.Tensor, target: torch.Tensor | ReferenceFeatures,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """``1 - ML-CLIPSim`` of preds against target, reduced (``mask``: for ``region_weights="mask"``)."""
        similarity = self.scorer(preds, target, range_tolerance=LOSS_RANGE_TOLERANCE, mask=mask)
        return reduce(1.0 - similarity, self.reduction)
