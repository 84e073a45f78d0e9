"""Classic full-reference baselines behind one interface, keyed by name.

A baseline scorer maps ``(preds, target)`` (N,3,H,W) in [0,1] to per-image scores (N,), higher is
better. PSNR, SSIM and MS-SSIM come from torchmetrics. LPIPS and DISTS need pretrained VGG/AlexNet
weights that cannot be installed offline: their factories raise :class:`BaselineUnavailable` with the
reason, so a benchmark can print it and go on.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio

from mlclipsim.core.registry import ENTRY_POINT_GROUPS, Registry
from mlclipsim.core.weights import downloads_allowed

Scorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class BaselineUnavailable(RuntimeError):
    """A baseline cannot run here (missing weights or package); the message says why."""


def psnr(preds: torch.Tensor, target: torch.Tensor, max_db: float = 100.0) -> torch.Tensor:
    """Per-image PSNR in dB, (N, ...) images with data range 1 -> (N,), by torchmetrics, capped at ``max_db``.

    The library's one PSNR (codec validation, the rate-task study, PSNR matching of distortions). The
    cap, 100 dB by default (an MSE of 1e-10), keeps identical images finite; ``max_db=inf`` lets them be inf.

    >>> x = torch.zeros(2, 3, 4, 4)
    >>> psnr(x + torch.tensor([0.1, 0.0]).view(2, 1, 1, 1), x)
    tensor([ 20., 100.])
    """
    values = peak_signal_noise_ratio(preds, target, data_range=1.0, reduction="none",
                                     dim=tuple(range(1, preds.dim())))
    return values.clamp(max=max_db)


def _psnr() -> Scorer:
    return psnr


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


BASELINES: Registry[Callable[[], Scorer]] = Registry(
    "baseline", ENTRY_POINT_GROUPS["baseline"],
    unknown_message="Unknown baseline {name!r}; choose one of {names}.")
"""Name -> factory of a scorer (plugins: entry-point group ``mlclipsim.baselines``)."""
BASELINES.register("psnr", _psnr, "PSNR in dB (data range 1), torchmetrics")
BASELINES.register("ssim", _ssim, "SSIM, torchmetrics (Gaussian window 11, data range 1)")
BASELINES.register("ms-ssim", _ms_ssim, "MS-SSIM, torchmetrics (5 scales; images larger than 160 px)")
BASELINES.register("lpips", _lpips, "negative LPIPS (AlexNet), torchmetrics; needs downloadable weights")
BASELINES.register("dists", _dists, "DISTS; unavailable offline (needs pretrained VGG16 weights)")


def create_baseline(name: str) -> Scorer:
    """Build a baseline scorer by name; raises BaselineUnavailable when it cannot run here."""
    return BASELINES[name]()
