"""Classic full-reference baselines behind one interface, keyed by name.

A baseline scorer maps ``(preds, target)`` (N,3,H,W) in [0,1] to per-image scores (N,), higher is
better. PSNR, SSIM and MS-SSIM come from torchmetrics. LPIPS and DISTS need pretrained VGG/AlexNet
weights that cannot be installed offline: their factories raise :class:`BaselineUnavailable` with the
reason, so a benchmark can print it and go on.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mlclipsim.core.weights import downloads_allowed

Scorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class BaselineUnavailable(RuntimeError):
    """A baseline cannot run here (missing weights or package); the message says why."""


def _psnr() -> Scorer:
    def score(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        mse = (preds - target).pow(2).flatten(1).mean(1)
        return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))

    return score


def _ssim() -> Scorer:
    from torchmetrics.functional.image import structural_similarity_index_measure

    return lambda preds, target: structural_similarity_index_measure(preds, target, data_range=1.0,
                                                                     reduction="none")


def _ms_ssim() -> Scorer:
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

    def score(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if min(preds.shape[-2:]) <= 160:
            raise ValueError(f"MS-SSIM with 5 scales and an 11-px window needs images larger than 160 px, got "
                             f"{tuple(preds.shape[-2:])}.")
        return multiscale_structural_similarity_index_measure(preds, target, data_range=1.0, reduction="none")

    return score


def _lpips() -> Scorer:
    if not downloads_allowed():
        raise BaselineUnavailable("LPIPS needs torchvision's ImageNet AlexNet weights, which no offline package "
                                  "carries and downloads are off (MLCLIPSIM_OFFLINE=1)")
    try:
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        metric = LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True, reduction="none")
    except Exception as err:  # download or import failure
        raise BaselineUnavailable(f"LPIPS could not load its AlexNet weights: {type(err).__name__}: {err}") from err
    return lambda preds, target: -metric.to(preds.device)(preds, target).flatten()


def _dists() -> Scorer:
    raise BaselineUnavailable("DISTS needs pretrained VGG16 weights and its learned alpha/beta (e.g. from the "
                              "piq package), none of which can be installed offline here")


BASELINES: dict[str, Callable[[], Scorer]] = {
    "psnr": _psnr,
    "ssim": _ssim,
    "ms-ssim": _ms_ssim,
    "lpips": _lpips,
    "dists": _dists,
}


def create_baseline(name: str) -> Scorer:
    """Build a baseline scorer by name; raises BaselineUnavailable when it cannot run here."""
    try:
        factory = BASELINES[name]
    except KeyError:
        raise ValueError(f"Unknown baseline {name!r}; choose one of {sorted(BASELINES)}.") from None
    return factory()
