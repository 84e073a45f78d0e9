"""Reference images for the data engine: photos shrunk to a working size, plus optional crops.

For a photo with stem ``P`` and ``crops_per_image = k``:

- crop 0 (id ``P``) is the whole photo, shrunk (Lanczos, aspect kept) so that its long side is at
  most ``size`` px (default 512): every object of the photo stays in the reference;
- crops 1..k-1 (ids ``P__c1`` ...) are ``size`` x ``size`` squares at random positions (seeded by
  the photo name and ``seed``) in the photo shrunk so that its long side is at most ``scale * size``,
  crop i taking scale ``crop_scales[(i - 1) % len(crop_scales)]`` (default one scale, 2: more
  samples from large photos, at twice the detail; two scales, e.g. (1.5, 3.0), give a wider and a
  closer view, each its own reference). A crop is skipped when its shrunk photo is too small for a
  square crop, or is exactly one square (it would repeat crop 0).

The split key of every crop is its photo: crops of one photo never straddle train and test.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mlclipsim.core.images import read_image_array

DEFAULT_SIZE = 512


@dataclass(frozen=True)
class ReferenceCrop:
    """One reference of the dataset: ``image`` is uint8 (H,W,3) RGB."""

    reference_id: str
    photo: str
    crop: int
    image: np.ndarray


def stable_seed(*parts: object) -> int:
    """A 32-bit seed from any printable parts (stable across runs and processes, unlike hash())."""
    return zlib.crc32("\x1f".join(str(p) for p in parts).encode())


def shrink_to_long_side(image: np.ndarray, long_side: int) -> np.ndarray:
    height, width = image.shape[:2]
    scale = long_side / max(height, width)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.LANCZOS))


def reference_crops(photo: str | Path, crops_per_image: int = 1, size: int = DEFAULT_SIZE,
                    seed: int = 0, crop_scales: tuple[float, ...] = (2.0,)) -> list[ReferenceCrop]:
    """Cut the references of one photo file (see the module docstring). Raises ImageReadError."""
    if crops_per_image < 1:
        raise ValueError(f"crops_per_image must be >= 1, got {crops_per_image}")
    if not crop_scales or any(scale < 1 for scale in crop_scales):
        raise ValueError(f"crop_scales must be one or more scales >= 1, got {crop_scales}")
    photo = Path(photo)
    array = read_image_array(photo)
    stem = photo.stem
    crops = [ReferenceCrop(stem, stem, 0, np.ascontiguousarray(shrink_to_long_side(array, size)))]
    rng = np.random.default_rng(stable_seed(stem, seed, "crops"))
    scaled: dict[float, np.ndarray] = {}
    for index in range(1, crops_per_image):
        scale = float(crop_scales[(index - 1) % len(crop_scales)])
        if scale not in scaled:
            scaled[scale] = shrink_to_long_side(array, round(scale * size))
        large = scaled[scale]
        height, width = large.shape[:2]
        if height < size or width < size or (height == size and width == size):
            continue
        top = int(rng.integers(0, height - size + 1))
        left = int(rng.integers(0, width - size + 1))
        patch = np.ascontiguousarray(large[top:top + size, left:left + size])
        crops.append(ReferenceCrop(f"{stem}__c{index}", stem, index, patch))
    return crops
