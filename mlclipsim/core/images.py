"""Reading and writing images as float tensors (3,H,W) in [0,1], with errors that say what to do.

This is the one image loader of the library. Every mode Pillow opens is read into RGB with its full
range:

===================================  ======================================================
Pillow mode                          read as
===================================  ======================================================
``RGB``, ``L``, ``P``, ``1``,        Pillow's conversion to 8-bit RGB (``1``: 0 or 255; ``CMYK``
``CMYK``, ``YCbCr``, ``LAB``, ...    and ``YCbCr`` by Pillow's colour conversion)
``I;16``, ``I;16L``, ``I;16B``,      16-bit grey: value / 65535, repeated over R, G, B
``I;16N``
``I`` (32-bit integer)               value / 65535 when every value is in 0..65535 (16-bit data,
                                     as TIFF and PNG readers give it); otherwise an error
``F`` (32-bit float)                 the values as they are when they are in [0, 1]; otherwise an
                                     error (the range of float images is not defined)
``RGBA``, ``LA``, ``PA``, ``La``,    composited on a background by the alpha policy (below)
``RGBa``, ``P``/``L``/``RGB`` with
a transparency key
===================================  ======================================================

**Alpha policy** (``alpha=``): ``"white"`` or ``"black"`` composite the colour on that background,
``"drop"`` keeps the colour under transparent pixels, ``"error"`` refuses images with transparent
pixels. The default (``None``) composites on white and warns (:class:`ImageReadWarning`) naming the
file, so it never happens silently; an alpha channel that is opaque everywhere is no transparency
and gives no warning.

**Animations** (GIF, APNG, WebP, multi-page TIFF): ``frame=None`` reads frame 0 and warns how many
frames there are; ``frame=k`` reads frame k without a warning.

**Decompression bombs**: images with more pixels than Pillow's limit (``PIL.Image.MAX_IMAGE_PIXELS``,
about 89 Mpx; twice that is refused by Pillow) raise :class:`ImageReadError` saying so, never a
traceback. Raise the limit only for files you trust.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".avif", ".gif")
ALPHA_POLICIES = ("white", "black", "drop", "error")
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
_WITH_ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")


class ImageReadError(ValueError):
    """An image file could not be read (missing, not an image, truncated, too large, unknown range)."""


class ImageReadWarning(UserWarning):
    """Something was decided while reading an image (alpha composited, one frame of several taken)."""


def read_image_array(path: str | os.PathLike, alpha: str | None = None, frame: int | None = None,
                     dtype: type = np.uint8) -> np.ndarray:
    """Read an image file as RGB (H,W,3): uint8 (``dtype=np.uint8``, rounded) or float32 in [0,1]
    (``dtype=np.float32``, the full precision of 16-bit and float images). See the module docstring
    for modes, the alpha policy and animated files.

    Raises:
        ImageReadError: missing file, not an image, truncated, decompression bomb, unknown range,
            transparency under ``alpha="error"``, a frame that does not exist.
    """
    if alpha is not None and alpha not in ALPHA_POLICIES:
        raise ValueError(f"Unknown alpha policy {alpha!r}; choose one of {list(ALPHA_POLICIES)}.")
    if dtype not in (np.uint8, np.float32):
        raise ValueError(f"dtype must be np.uint8 or np.float32, got {dtype!r}.")
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                _select_frame(image, path, frame)
                image.load()
                rgb = _to_rgb(image, str(path), alpha)
    except FileNotFoundError:
        raise ImageReadError(f"Image {str(path)!r} does not exist.") from None
    except IsADirectoryError:
        raise ImageReadError(f"{str(path)!r} is a folder, not an image file.") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageReadError(f"Refusing {str(path)!r}: {err} Pillow refuses images this large as possible "
                             "decompression bombs; if you trust the file, raise PIL.Image.MAX_IMAGE_PIXELS "
                             "before reading it.") from None
    except ImageReadError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageReadError(f"Cannot read {str(path)!r} as an image ({type(err).__name__}: {err}); "
                             "is the file complete and in a format Pillow reads?") from err
    return _as_dtype(rgb, dtype)


def image_to_array(image: Image.Image, alpha: str | None = None, dtype: type = np.uint8,
                   name: str = "image") -> np.ndarray:
    """An opened Pillow image (any mode, the current frame) as RGB (H,W,3), by the rules of
    :func:`read_image_array`; ``name`` is used in warnings and errors."""
    if alpha is not None and alpha not in ALPHA_POLICIES:
        raise ValueError(f"Unknown alpha policy {alpha!r}; choose one of {list(ALPHA_POLICIES)}.")
    return _as_dtype(_to_rgb(image, name, alpha), dtype)


def _as_dtype(rgb: np.ndarray, dtype: type) -> np.ndarray:
    if dtype is np.uint8:
        return rgb if rgb.dtype == np.uint8 else _float_to_uint8(rgb)
    if dtype is not np.float32:
        raise ValueError(f"dtype must be np.uint8 or np.float32, got {dtype!r}.")
    return rgb.astype(np.float32) / 255.0 if rgb.dtype == np.uint8 else rgb


def read_image(path: str | os.PathLike, alpha: str | None = None, frame: int | None = None) -> torch.Tensor:
    """Read an image file as a float32 tensor (3,H,W) in [0,1] (16-bit and float images at full
    precision); ``alpha`` and ``frame`` as in :func:`read_image_array`."""
    array = read_image_array(path, alpha=alpha, frame=frame, dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def _select_frame(image: Image.Image, path: Path, frame: int | None) -> None:
    frames = int(getattr(image, "n_frames", 1) or 1)
    if frame is None:
        if frames > 1:
            warnings.warn(f"{path} has {frames} frames; read frame 0 (pass frame=k to choose another).",
                          ImageReadWarning, stacklevel=4)
        return
    if not 0 <= frame < frames:
        raise ImageReadError(f"{str(path)!r} has {frames} frame(s); frame {frame} does not exist.")
    image.seek(frame)


def _to_rgb(image: Image.Image, name: str, alpha: str | None) -> np.ndarray:
    """uint8 (H,W,3) for 8-bit modes, float32 (H,W,3) in [0,1] for 16-bit, integer and float modes."""
    mode = image.mode
    if mode in _SIXTEEN_BIT:
        grey = np.asarray(image).astype(np.float32) / 65535.0
        return np.repeat(grey[..., None], 3, axis=2)
    if mode == "I":
        values = np.asarray(image)
        low, high = int(values.min()), int(values.max())
        if low < 0 or high > 65535:
            raise ImageReadError(f"{name!r} is a 32-bit integer image with values {low}..{high}, outside the "
                                 "16-bit range 0..65535 this loader reads; rescale it to 16 or 8 bits first.")
        grey = values.astype(np.float32) / 65535.0
        return np.repeat(grey[..., None], 3, axis=2)
    if mode == "F":
        values = np.asarray(image, dtype=np.float32)
        if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
            finite = values[np.isfinite(values)]
            span = f"{finite.min():g}..{finite.max():g}" if finite.size else "no finite values"
            raise ImageReadError(f"{name!r} is a float image with values {span}"
                                 f"{' and NaN/inf' if finite.size < values.size else ''}; only float images "
                                 "in [0, 1] are read. Rescale it to [0, 1] (or save it as 8/16-bit) first.")
        return np.repeat(values[..., None], 3, axis=2)
    if mode in _WITH_ALPHA or (mode in ("P", "L", "RGB", "1") and "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA"))
        opacity = rgba[..., 3]
        if opacity.min() == 255:
            return np.ascontiguousarray(rgba[..., :3])
        return _composite(rgba, name, alpha)
    if mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8)


def _composite(rgba: np.ndarray, name: str, alpha: str | None) -> np.ndarray:
    share = float((rgba[..., 3] < 255).mean())
    if alpha == "error":
        raise ImageReadError(f"{name!r} has transparent pixels ({share:.1%} of the image) and alpha='error'; "
                             "flatten it, or choose alpha='white', 'black' or 'drop'.")
    if alpha is None:
        warnings.warn(f"{name} has transparent pixels ({share:.1%} of the image); composited on white "
                      "(pass alpha='white', 'black', 'drop' or 'error' to choose).", ImageReadWarning, stacklevel=5)
        alpha = "white"
    if alpha == "drop":
        return np.ascontiguousarray(rgba[..., :3])
    background = 255.0 if alpha == "white" else 0.0
    weight = rgba[..., 3:4].astype(np.float32) / 255.0
    out = rgba[..., :3].astype(np.float32) * weight + background * (1.0 - weight)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _float_to_uint8(array: np.ndarray) -> np.ndarray:
    return np.clip(np.round(array * 255.0), 0, 255).astype(np.uint8)


def array_to_tensor(array: np.ndarray) -> torch.Tensor:
    """uint8 (H,W,3) or float (H,W,3) in [0,1] -> float32 tensor (3,H,W) in [0,1].

    A read-only array (e.g. a cached or memory-mapped image) is copied: torch cannot wrap it safely.
    """
    contiguous = np.ascontiguousarray(array)
    if not contiguous.flags.writeable:
        contiguous = contiguous.copy()
    tensor = torch.from_numpy(contiguous).permute(2, 0, 1)
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


def stem_clashes(paths: list[Path]) -> dict[str, list[str]]:
    """Stems shared by several of ``paths`` -> their file names (empty when every stem is unique).

    Files named after the stem (``a.jpg`` and ``a.png`` -> ``a.webp``) would overwrite each other."""
    by_stem: dict[str, list[str]] = {}
    for path in paths:
        by_stem.setdefault(Path(path).stem, []).append(Path(path).name)
    return {stem: names for stem, names in by_stem.items() if len(names) > 1}


def refuse_stem_clashes(paths: list[Path], what: str) -> None:
    """ValueError listing every stem clash among ``paths``; ``what`` says what is named after the stem."""
    clashes = stem_clashes(paths)
    if clashes:
        listed = "; ".join(", ".join(names) for names in clashes.values())
        raise ValueError(f"{len(clashes)} group(s) of input files share a stem and would give one {what}: {listed}. "
                         "Rename or move one file of each group.")
