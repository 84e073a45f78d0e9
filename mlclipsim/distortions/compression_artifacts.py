"""Codec distortions for compression studies: JPEG/WebP via Pillow and any CompressAI model.

Registered distortions (parameter = codec quality, an integer 1..100, higher is better):

==============  ====  ====  ====  ====  ====
name            s1    s2    s3    s4    s5
==============  ====  ====  ====  ====  ====
jpeg_quality    90    70    50    30    10
webp_quality    90    70    50    30    10
avif_quality    76    52    43    34    10
jxl_quality     90    74    62    45    10
==============  ====  ====  ====  ====  ====

Qualities are rounded to integers, so PSNR matching on these types works on an integer grid.
AVIF's and JPEG XL's qualities are chosen so that each severity has about the PSNR of
``jpeg_quality`` at the same severity (mean over three 512 px photos: 38, 34, 32, 30, 27 dB), so
severities are comparable across codecs; their quality scales differ from JPEG's (AVIF q 50 is
~33 dB, JPEG q 50 ~32 dB, JPEG XL q 50 ~30 dB). ``avif_quality`` is registered when this Pillow
writes AVIF, ``jxl_quality`` when ``pillow-jxl-plugin`` is installed (``mlclipsim[jxl]``).
Images are float32 ``(H, W, 3)`` arrays in ``[0, 1]``; they are quantised to 8 bits before
encoding, which is what any real image file holds.

:data:`PILLOW_CODECS` holds every still-image codec Pillow can write here with its fixed encoder
settings (JPEG, WebP, AVIF, and JPEG XL through the ``pillow-jxl-plugin`` package);
:func:`encode_image` / :func:`decode_image` turn uint8 arrays into whole files (container headers
included) and back. The rate-task study (:mod:`mlclipsim.coding.pillow_codecs`) uses them;
the distortion types and :func:`encode_decode` use JPEG and WebP (:data:`PIL_FORMATS`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

import numpy as np
from PIL import Image

from mlclipsim.distortions.registry import Distortion, Param, check_image, register_distortion

PIL_FORMATS: dict[str, str] = {"jpeg": "JPEG", "webp": "WEBP"}
_PAD_MULTIPLE = 64


@dataclass(frozen=True)
class PillowFormat:
    """A Pillow image format with fixed encoder settings; ``quality`` 1..100 is added per call.

    ``plugin``: a module that must be imported to register the format with Pillow (None: built in);
    ``feature``: the :func:`PIL.features.check` name that says whether this Pillow was built with it.
    ``options`` are the fixed settings of the distortion types (kept, so datasets stay comparable);
    ``best`` the encoder at its best compression, used by the codec interface and the rate-task study
    (``encode_image(..., best=True)``): each option set in ``best`` is tried and the smallest file kept.
    """

    name: str
    format: str
    suffix: str
    options: dict[str, Any] = field(default_factory=dict)
    plugin: str | None = None
    feature: str | None = None
    install: str = ""
    best: tuple[dict[str, Any], ...] = ()


PILLOW_CODECS: dict[str, PillowFormat] = {
    # Distortions: Pillow's default JPEG, baseline, 4:2:0 chroma subsampling, standard tables. Best: optimised
    # Huffman tables, baseline or progressive, whichever file is smaller (same pixels: the same coefficients).
    "jpeg": PillowFormat("jpeg", "JPEG", ".jpg",
                         best=({"optimize": True}, {"optimize": True, "progressive": True})),
    # Distortions: method 4. Best: method 6 (4-7 % fewer bytes than method 4 on shared photos at 512 px).
    "webp": PillowFormat("webp", "WEBP", ".webp", {"method": 4, "lossless": False}, feature="webp",
                         install="a Pillow built with libwebp (the PyPI wheels are)",
                         best=({"method": 6, "lossless": False},)),
    # libavif/aom at speed 6, 4:2:0; one thread, because the bytes depend on the thread count. Best: speed 2
    # (3 shared photos at 512 px, q50: speed 0 / 2 / 4 / 6 = 0.955 / 0.957 / 0.980 / 1 of speed 6's bytes,
    # at 19 / 6.4 / 2.8 / 0.6 s per image on a loaded 2-core machine: speed 0 buys 0.2 % for 3x the time).
    "avif": PillowFormat("avif", "AVIF", ".avif", {"speed": 6, "subsampling": "4:2:0", "max_threads": 1},
                         feature="avif", install="Pillow >= 11.3 built with libavif (the PyPI wheels are)",
                         best=({"speed": 2, "subsampling": "4:2:0", "max_threads": 1},)),
    # libjxl through pillow-jxl-plugin: effort 7, bare codestream (no ISO BMFF container).
    "jxl": PillowFormat("jxl", "JXL", ".jxl", {"effort": 7, "lossless": False, "use_container": False},
                       plugin="pillow_jxl", install="pip install \"mlclipsim[jxl]\" (pillow-jxl-plugin)"),
}


def check_pillow_codec(codec: str) -> PillowFormat:
    """The :class:`PillowFormat` of a name, with its plugin registered; clear errors otherwise.

    Raises:
        ValueError: unknown name (lists the valid ones).
        RuntimeError: this Pillow cannot write the format (says what to install).
    """
    if codec not in PILLOW_CODECS:
        raise ValueError(f"unknown image codec {codec!r}; valid codecs: {', '.join(sorted(PILLOW_CODECS))}")
    spec = PILLOW_CODECS[codec]
    if spec.plugin is not None:
        try:
            import_module(spec.plugin)
        except ImportError as err:
            raise RuntimeError(f"The {codec!r} codec needs the {spec.plugin!r} module ({spec.install}); "
                               f"importing it failed: {err}") from err
    if spec.feature is not None:
        from PIL import features

        if not features.check(spec.feature):
            raise RuntimeError(f"This Pillow ({Image.__version__}) cannot write {spec.format}: it was built "
                               f"without {spec.feature}. Install {spec.install}.")
    return spec


def encode_image(image: np.ndarray, codec: str, quality: float, best: bool = False) -> bytes:
    """Encode a uint8 ``(H, W, 3)`` RGB array with a Pillow codec; returns the whole file's bytes.

    ``quality`` is 1..100 (rounded to an integer), higher means better quality and more bytes.
    ``best``: the encoder's best-compression settings (:attr:`PillowFormat.best`) instead of the
    distortions' fixed ones.
    """
    spec = check_pillow_codec(codec)
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("encode_image takes a uint8 (H, W, 3) RGB array, got "
                         f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}")
    quality = _check_quality(quality)
    picture = Image.fromarray(np.ascontiguousarray(image), mode="RGB")
    files = []
    for options in (spec.best or (spec.options,)) if best else (spec.options,):
        buffer = io.BytesIO()
        picture.save(buffer, format=spec.format, quality=quality, **options)
        files.append(buffer.getvalue())
    return min(files, key=len)


def decode_image(data: bytes) -> np.ndarray:
    """Decode the bytes of an image file (any format Pillow reads, plugins included) to uint8 ``(H, W, 3)``."""
    with Image.open(io.BytesIO(data)) as decoded:
        return np.array(decoded.convert("RGB"), dtype=np.uint8)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """float ``[0, 1]`` -> uint8 ``[0, 255]`` with rounding, same shape."""
    return np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def _check_quality(quality: float) -> int:
    q = int(round(float(quality)))
    if not 1 <= q <= 100:
        raise ValueError(f"codec quality must be in 1..100, got {quality!r}")
    return q


def encode_decode(image: np.ndarray, codec: str, quality: float) -> tuple[np.ndarray, int]:
    """Encode ``image`` in memory with a Pillow codec and decode it again.

    Args:
        image: float ``(H, W, 3)`` array in ``[0, 1]``.
        codec: ``"jpeg"`` (baseline, 4:2:0 chroma subsampling) or ``"webp"`` (lossy).
        quality: 1..100, rounded to an integer; higher means better quality and more bytes.

    Returns:
        ``(decoded, n_bytes)``: float32 ``(H, W, 3)`` array in ``[0, 1]`` and the size of the
        encoded bitstream in bytes (including the container headers).
    """
    if codec not in PIL_FORMATS:
        raise ValueError(f"unknown codec {codec!r}; valid codecs: {', '.join(sorted(PIL_FORMATS))}")
    image = check_image(image)
    data = encode_image(to_uint8(image), codec, quality)
    return decode_image(data).astype(np.float32) / 255.0, len(data)


def jpeg_roundtrip(image: np.ndarray, quality: float) -> np.ndarray:
    """JPEG encode/decode at ``quality`` (1..100); float32 ``(H, W, 3)`` in ``[0, 1]``."""
    return encode_decode(image, "jpeg", quality)[0]


def compressai_distortion(image: np.ndarray, model: Any) -> np.ndarray:
    """Reconstruct ``image`` with a CompressAI model (any ``nn.Module`` whose forward returns
    a dict with ``"x_hat"``, as all ``compressai.models`` do).

    The image is padded (edge replication) to a multiple of 64 pixels, run through the model in
    eval mode without gradients on the model's device, cropped back and clipped. The model's
    train/eval mode is restored afterwards. Rates are not returned: use the model's
    ``compress`` for real bitstreams.

    Args:
        image: float ``(H, W, 3)`` array in ``[0, 1]``.
        model: a CompressAI model with weights loaded by the caller.

    Returns:
        float32 ``(H, W, 3)`` array in ``[0, 1]``.
    """
    import torch  # deferred: the rest of this package runs without torch
    import torch.nn.functional as F

    image = check_image(image)
    height, width = image.shape[:2]
    try:
        param = next(model.parameters())
        device = param.device
    except (StopIteration, AttributeError):
        device = torch.device("cpu")
    x = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).to(device)
    pad_h = (-height) % _PAD_MULTIPLE
    pad_w = (-width) % _PAD_MULTIPLE
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    was_training = bool(getattr(model, "training", False))
    model.eval()
    try:
        with torch.no_grad():
            result = model(x)
    finally:
        model.train(was_training)
    if not isinstance(result, dict) or "x_hat" not in result:
        raise TypeError(
            "model(x) must return a dict with an 'x_hat' reconstruction, as compressai.models do; "
            f"got {type(result).__name__}"
        )
    x_hat = result["x_hat"][0, :, :height, :width].clamp(0.0, 1.0)
    return x_hat.permute(1, 2, 0).float().cpu().numpy().astype(np.float32, copy=False)


def _pillow_codec_fn(codec: str):
    def fn(image: np.ndarray, param: Param, rng: np.random.Generator) -> np.ndarray:
        data = encode_image(to_uint8(check_image(image)), codec, float(param))
        return decode_image(data).astype(np.float32) / 255.0

    fn.__name__ = f"{codec}_quality"
    return fn


# name -> (codec, qualities of severities 1..5, doc); AVIF's and JPEG XL's qualities match JPEG's PSNR
# at each severity, and they are registered only where this Pillow writes them.
CODEC_DISTORTIONS: dict[str, tuple[str, tuple[int, ...], str]] = {
    "jpeg_quality": ("jpeg", (90, 70, 50, 30, 10),
                     "Pillow JPEG quality 1..100 (rounded to an integer; 4:2:0 chroma); lower is worse."),
    "webp_quality": ("webp", (90, 70, 50, 30, 10),
                     "Pillow lossy WebP quality 1..100 (rounded to an integer, method 4); lower is worse."),
    "avif_quality": ("avif", (76, 52, 43, 34, 10),
                     "Pillow AVIF (libavif/aom, speed 6, 4:2:0) quality 1..100 (rounded to an integer); lower is "
                     "worse."),
    "jxl_quality": ("jxl", (90, 74, 62, 45, 10),
                    "JPEG XL (libjxl via pillow-jxl-plugin, effort 7) quality 1..100 (rounded to an integer); "
                    "lower is worse."),
}

def _pillow_codec_available(codec: str) -> bool:
    """Whether :func:`check_pillow_codec` would pass, without importing a plugin."""
    spec = PILLOW_CODECS[codec]
    if spec.plugin is not None:
        from importlib.util import find_spec

        return find_spec(spec.plugin) is not None
    if spec.feature is not None:
        from PIL import features

        return bool(features.check(spec.feature))
    return True


for _name, (_codec, _qualities, _doc) in CODEC_DISTORTIONS.items():
    if _codec in PIL_FORMATS or _pillow_codec_available(_codec):
        register_distortion(Distortion(name=_name, fn=_pillow_codec_fn(_codec), severity_params=_qualities,
                                       doc=_doc, integer_param=True))
