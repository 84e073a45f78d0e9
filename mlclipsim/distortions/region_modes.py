"""Region modes: distort a region of interest (ROI) and the background at different severities.

A level is a pair ``(roi_severity, bg_severity)``. The three modes of the data engine are:

- ``"uniform"``: both regions at the same severity, ``(s, s)`` for s in 1..5 (5 levels);
- ``"roi"``: ROI-dominated, the ROI more distorted than the background (10 levels);
- ``"background"``: background-dominated, the background more distorted (10 levels).

``distort_regions`` distorts the whole image once per severity (same seed, so random patterns
agree) and blends the two with a feathered ROI mask ``m``: ``out = m * roi + (1 - m) * bg``.
Images are float32 ``(H, W, 3)`` arrays in ``[0, 1]``; masks are ``(H, W)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from mlclipsim.distortions.registry import (
    NUM_SEVERITIES,
    check_image,
    check_severity,
    distort,
    get_distortion,
)

Level = tuple[int, int]
_SEVERITIES = range(1, NUM_SEVERITIES + 1)
_SNAP = 1e-6

UNIFORM_LEVELS: tuple[Level, ...] = tuple((s, s) for s in _SEVERITIES)
ROI_DOMINATED_LEVELS: tuple[Level, ...] = tuple((r, b) for r in _SEVERITIES for b in _SEVERITIES if r > b)
BACKGROUND_DOMINATED_LEVELS: tuple[Level, ...] = tuple((r, b) for r in _SEVERITIES for b in _SEVERITIES if b > r)
REGION_MODES: dict[str, tuple[Level, ...]] = {
    "uniform": UNIFORM_LEVELS,
    "roi": ROI_DOMINATED_LEVELS,
    "background": BACKGROUND_DOMINATED_LEVELS,
}


def _check_mask(mask: np.ndarray, shape: tuple[int, int] | None = None) -> np.ndarray:
    if not isinstance(mask, np.ndarray):
        raise TypeError(f"mask must be a numpy array (H, W), got {type(mask).__name__}")
    if mask.ndim != 2:
        raise ValueError(f"mask must have shape (H, W), got {mask.shape}")
    if shape is not None and mask.shape != shape:
        raise ValueError(f"mask shape {mask.shape} does not match the image's (H, W) = {shape}")
    m = mask.astype(np.float32)
    if not np.all(np.isfinite(m)):
        raise ValueError("mask contains NaN or inf")
    if m.size and (m.min() < 0 or m.max() > 1):
        raise ValueError(f"mask values must lie in [0, 1] (binary or soft), got [{m.min():.4g}, {m.max():.4g}]")
    return m


def feathered_mask(mask: np.ndarray, sigma_frac: float = 0.02) -> np.ndarray:
    """Feather a binary or soft ``(H, W)`` mask in ``[0, 1]`` with a Gaussian.

    Args:
        mask: ``(H, W)`` bool or float array in ``[0, 1]``; 1 marks the ROI.
        sigma_frac: Gaussian sigma as a fraction of the image diagonal; 0 disables feathering.
            The filter is truncated at 4 sigma and values within 1e-6 of 0 or 1 are snapped,
            so pixels farther than 4 sigma from the mask edge keep their value exactly.

    Returns:
        float32 ``(H, W)`` array in ``[0, 1]``.
    """
    m = _check_mask(mask)
    if sigma_frac < 0 or not np.isfinite(sigma_frac):
        raise ValueError(f"sigma_frac must be a finite number >= 0, got {sigma_frac!r}")
    sigma = float(sigma_frac) * float(np.hypot(*m.shape))
    if sigma > 0:
        m = ndimage.gaussian_filter(m, sigma=sigma, mode="nearest", truncate=4.0)
        m[m < _SNAP] = 0.0
        m[m > 1.0 - _SNAP] = 1.0
    return np.clip(m, 0.0, 1.0).astype(np.float32, copy=False)


def mask_from_boxes(boxes: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """Binary ``(height, width)`` float32 mask: the union of ``(x1, y1, x2, y2)`` pixel boxes.

    Coordinates are in pixels, ``x2``/``y2`` exclusive, rounded to the nearest integer and clipped
    to the image; an empty list gives an all-zero mask.
    """
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be >= 1, got {height}x{width}")
    mask = np.zeros((height, width), dtype=np.float32)
    for box in boxes:
        if len(box) != 4:
            raise ValueError(f"each box must be (x1, y1, x2, y2), got {box!r}")
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        if x2 < x1 or y2 < y1:
            raise ValueError(f"box {box!r} has x2 < x1 or y2 < y1; expected (x1, y1, x2, y2)")
        mask[max(y1, 0) : min(y2, height), max(x1, 0) : min(x2, width)] = 1.0
    return mask


def distort_regions(
    image: np.ndarray,
    name: str,
    roi_severity: int,
    bg_severity: int,
    mask: np.ndarray,
    seed: int = 0,
    sigma_frac: float = 0.02,
) -> np.ndarray:
    """Distort the ROI and the background of ``image`` at different severities.

    Args:
        image: float ``(H, W, 3)`` array in ``[0, 1]``.
        name: a registered distortion name.
        roi_severity, bg_severity: ints in 0..5; 0 leaves that region clean.
        mask: ``(H, W)`` ROI mask in ``[0, 1]`` (e.g. from ``mask_from_boxes``). An all-zero mask
            is allowed: the whole image then gets ``bg_severity``.
        seed: one seed for both versions, so random patterns (noise, snow) line up at the seam.
        sigma_frac: feathering sigma as a fraction of the image diagonal (see ``feathered_mask``).

    Returns:
        float32 ``(H, W, 3)`` array in ``[0, 1]``.
    """
    get_distortion(name)  # unknown names fail before any work
    roi_severity = check_severity(roi_severity, allow_zero=True)
    bg_severity = check_severity(bg_severity, allow_zero=True)
    image = check_image(image)
    m = feathered_mask(_check_mask(mask, image.shape[:2]), sigma_frac)

    def version(severity: int) -> np.ndarray:
        return image.copy() if severity == 0 else distort(image, name, severity, seed=seed)

    roi = version(roi_severity)
    if roi_severity == bg_severity:
        return roi
    bg = version(bg_severity)
    m3 = m[:, :, None]
    out = m3 * roi + (1.0 - m3) * bg
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)
