"""Resizing helpers for the adapters (Pillow, bilinear, like the models' reference decoders)."""

from __future__ import annotations

import numpy as np
from PIL import Image


def resize_rgb(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (height, width, 3), stretched, bilinear."""
    if image.shape[1] == width and image.shape[0] == height:
        return image
    return np.asarray(Image.fromarray(image).resize((int(width), int(height)), Image.BILINEAR))


def resize_map(values: np.ndarray, width: int, height: int) -> np.ndarray:
    """float (h, w) map -> float32 (height, width), bilinear."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    if values.shape == (height, width):
        return values
    return np.asarray(Image.fromarray(values).resize((int(width), int(height)), Image.BILINEAR),
                      dtype=np.float32)


def resize_labels(labels: np.ndarray, width: int, height: int) -> np.ndarray:
    """int (h, w) label map -> int64 (height, width), nearest neighbour."""
    if labels.shape == (height, width):
        return labels.astype(np.int64)
    img = Image.fromarray(labels.astype(np.int32))
    return np.asarray(img.resize((int(width), int(height)), Image.NEAREST)).astype(np.int64)


def long_side_size(height: int, width: int, long_side: int, multiple: int = 1) -> tuple[int, int]:
    """(h, w) scaled so the long side is ``long_side``, each rounded to a multiple (>= multiple)."""
    scale = long_side / max(height, width)
    h = max(multiple, int(round(height * scale / multiple)) * multiple)
    w = max(multiple, int(round(width * scale / multiple)) * multiple)
    return h, w
