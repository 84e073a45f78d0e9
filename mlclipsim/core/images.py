"""Reading and writing images as float tensors (3,H,W) in [0,1], with errors that say what to do."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".avif")


class ImageReadError(ValueError):
    """An image file could not be read (missing, not an image, truncated)."""


def read_image_array(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as uint8 RGB (H,W,3); grayscale and palette images are converted to RGB,
    an alpha channel is dropped."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            return np.array(image.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise ImageReadError(f"Image {str(path)!r} does not exist.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(f"Cannot read {str(path)!r} as an image ({type(err).__name__}: {err}); "
                             "is the file complete and in a format Pillow reads?") from err


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """Read an image file as a float32 tensor (3,H,W) in [0,1]."""
    array = read_image_array(path)
    return torch.from_numpy(array).permute(2, 0, 1).float().div_(255.0)


def array_to_tensor(array: np.ndarray) -> torch.Tensor:
    """uint8 (H,W,3) or float (H,W,3) in [0,1] -> float32 tensor (3,H,W) in [0,1]."""
    tensor = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
    return tensor.float().div_(255.0) if array.dtype == np.uint8 else tensor.float()


def tensor_to_array(image: torch.Tensor) -> np.ndarray:
    """float tensor (3,H,W) in [0,1] -> uint8 (H,W,3), rounded."""
    return (image.detach().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy())


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files (by suffix) directly inside ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageReadError(f"{str(folder)!r} is not a folder.")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
