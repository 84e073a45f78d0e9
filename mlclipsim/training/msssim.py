"""MS-SSIM as CompressAI computes it (``pytorch_msssim.ms_ssim``), extended to crops too small for 5 scales.

CompressAI's MS-SSIM lambda ladder (2.40 ... 60.50 for ``D = 1 - MS-SSIM``) was trained with
``pytorch_msssim.ms_ssim(x_hat, x, data_range=1)``: an 11-tap Gaussian window (sigma 1.5), valid
convolutions, K = (0.01, 0.03), 2x2 average pooling between scales, the contrast terms of the first
four scales and the SSIM of the fifth raised to the weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333).
That needs the smaller image side to exceed 10 * 2**4 = 160 px.

:func:`ms_ssim` is the same computation (equal to ``pytorch_msssim.ms_ssim`` to float precision at
5 scales, checked in the tests) with two changes:

- ``levels``: on a crop whose smaller side is at most 160 px it uses the most scales that fit
  (side > 10 * 2**(levels-1): 4 scales for 81-160 px, 3 for 41-80, 2 for 21-40, 1 for 11-20), with the
  standard weights of the kept scales renormalised to sum 1. :func:`ms_ssim_levels` says how many.
- the per-scale terms are clamped at 1e-6 instead of at 0 (pytorch_msssim's ``relu``): ``0 ** 0.0448``
  has an infinite derivative, which turns a single non-positive contrast term into NaN gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WINDOW_SIZE = 11
WINDOW_SIGMA = 1.5
_FLOOR = 1e-6


def ms_ssim_levels(height: int, width: int, max_levels: int = len(MS_SSIM_WEIGHTS)) -> int:
    """How many scales fit: the largest k <= max_levels with min(height, width) > 10 * 2**(k-1); 0 if none."""
    side = min(height, width)
    levels = 0
    for k in range(1, max_levels + 1):
        if side > (WINDOW_SIZE - 1) * 2 ** (k - 1):
            levels = k
    return levels


def _gaussian_window(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    coords = torch.arange(WINDOW_SIZE, dtype=torch.float64) - WINDOW_SIZE // 2
    g = torch.exp(-(coords**2) / (2 * WINDOW_SIGMA**2))
    return (g / g.sum()).to(dtype=dtype, device=device)


def _blur(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    channels = x.shape[1]
    x = F.conv2d(x, window.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(x, window.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def _ssim_and_cs(x: torch.Tensor, y: torch.Tensor, window: torch.Tensor, data_range: float
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = _blur(x, window), _blur(y, window)
    var_x = _blur(x * x, window) - mu_x**2
    var_y = _blur(y * y, window) - mu_y**2
    cov = _blur(x * y, window) - mu_x * mu_y
    cs_map = (2 * cov + c2) / (var_x + var_y + c2)
    ssim_map = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * cs_map
    return ssim_map.flatten(2).mean(-1), cs_map.flatten(2).mean(-1)  # (N, C) each


def ms_ssim(preds: torch.Tensor, target: torch.Tensor, data_range: float = 1.0, levels: int | None = None,
            reduction: str = "mean") -> torch.Tensor:
    """Multi-scale SSIM of ``preds`` against ``target`` (N,C,H,W); 1 for identical images, higher is better.

    Args:
        preds, target: image batches of one shape; gradients flow to both.
        data_range: the value range (1.0 for images in [0,1]).
        levels: number of scales; None for the most that fit (at most 5, see :func:`ms_ssim_levels`).
        reduction: ``"mean"`` (scalar) or ``"none"`` (per image, (N,)).
    """
    if preds.shape != target.shape or preds.ndim != 4:
        raise ValueError(f"ms_ssim takes two (N,C,H,W) batches of one shape, got {tuple(preds.shape)} and "
                         f"{tuple(target.shape)}.")
    fit = ms_ssim_levels(*preds.shape[-2:])
    levels = fit if levels is None else levels
    if not 1 <= levels <= fit:
        raise ValueError(f"MS-SSIM with {levels} scale(s) needs the smaller image side to exceed "
                         f"{(WINDOW_SIZE - 1) * 2 ** (max(levels, 1) - 1)} px; these images are "
                         f"{preds.shape[-2]}x{preds.shape[-1]} (at most {fit} scale(s) fit). Use larger crops.")
    weights = torch.tensor(MS_SSIM_WEIGHTS[:levels], dtype=preds.dtype, device=preds.device)
    weights = weights / weights.sum()
    window = _gaussian_window(preds.dtype, preds.device)
    x, y = preds, target
    factors = []
    for level in range(levels):
        ssim, cs = _ssim_and_cs(x, y, window, data_range)
        if level < levels - 1:
            factors.append(cs)
            padding = [s % 2 for s in x.shape[-2:]]
            x = F.avg_pool2d(x, kernel_size=2, padding=padding)
            y = F.avg_pool2d(y, kernel_size=2, padding=padding)
    factors.append(ssim)
    stacked = torch.stack(factors).clamp_min(_FLOOR)  # (levels, N, C)
    per_image = torch.prod(stacked ** weights.view(-1, 1, 1), dim=0).mean(-1)
    if reduction == "mean":
        return per_image.mean()
    if reduction == "none":
        return per_image
    raise ValueError(f"Unknown reduction {reduction!r}; choose 'mean' or 'none'.")
