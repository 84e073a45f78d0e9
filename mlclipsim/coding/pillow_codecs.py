"""JPEG, WebP, AVIF and JPEG XL through Pillow, behind the codec interface.

The encoders run at their best-compression settings (``PillowFormat.best`` in
:data:`mlclipsim.distortions.compression_artifacts.PILLOW_CODECS`), so that no codec compared against
them is flattered: JPEG 4:2:0 with optimised Huffman tables, baseline or progressive, whichever file
is smaller; WebP method 6; AVIF libavif speed 2, 4:2:0, one thread; JPEG XL libjxl effort 7 via
``pillow-jxl-plugin``. (The distortion types keep their own fixed settings.) An operating point is the
integer quality 1..100; the ladder
is every quality, the default points a 10-step subset. Images are quantised to 8 bits (what any
file holds) and each is written as a whole file in memory: its size in bits, container header
included, is the rate.
"""

from __future__ import annotations

import numpy as np
import torch

from mlclipsim.coding.interface import Codec, CodedImages, Point, register_codec
from mlclipsim.distortions.compression_artifacts import PILLOW_CODECS, check_pillow_codec, decode_image, encode_image

QUALITY_LADDER: tuple[int, ...] = tuple(range(1, 101))
DEFAULT_QUALITIES: tuple[int, ...] = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90)


class PillowCodec(Codec):
    """A Pillow image codec at integer qualities 1..100 (higher: more bytes, better quality).

    Args:
        codec: ``"jpeg"``, ``"webp"``, ``"avif"`` or ``"jxl"``.
        qualities: the default operating points (default :data:`DEFAULT_QUALITIES`).

    Raises:
        RuntimeError: this Pillow cannot write the format (e.g. ``pillow-jxl-plugin`` missing); says what to install.
    """

    def __init__(self, codec: str, qualities: tuple[int, ...] = DEFAULT_QUALITIES) -> None:
        self.spec = check_pillow_codec(codec)
        self.name = codec
        self.suffix = self.spec.suffix
        for q in qualities:
            self.check_point(q)
        self._points = tuple(sorted(int(q) for q in qualities))

    @property
    def points(self) -> tuple[Point, ...]:
        return self._points

    @property
    def ladder(self) -> tuple[Point, ...]:
        return QUALITY_LADDER

    def parse_point(self, text: str) -> Point:
        try:
            quality = int(text.strip())
        except ValueError:
            raise ValueError(f"{self.name} operating points are integer qualities 1..100, got {text!r}.") from None
        return self.check_point(quality)

    def check_point(self, point: Point) -> Point:
        if isinstance(point, bool) or not isinstance(point, (int, np.integer)) or not 1 <= int(point) <= 100:
            raise ValueError(f"{self.name} operating points are integer qualities 1..100, got {point!r}.")
        return int(point)

    def rate_order(self, point: Point) -> float:
        return float(point)

    def _code(self, images: torch.Tensor, point: Point) -> CodedImages:
        arrays = images.detach().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        files = [encode_image(np.ascontiguousarray(a), self.name, int(point), best=True) for a in arrays]
        decoded = np.stack([decode_image(f) for f in files])
        reconstructions = torch.from_numpy(decoded).permute(0, 3, 1, 2).float().div_(255.0).to(images.device)
        return CodedImages(reconstructions, [8 * len(f) for f in files], files)


def _factory(codec: str):
    def make(qualities: tuple[int, ...] = DEFAULT_QUALITIES) -> PillowCodec:
        return PillowCodec(codec, tuple(qualities))

    make.__name__ = f"{codec}_codec"
    return make


_DESCRIPTIONS = {
    "jpeg": "Pillow JPEG (libjpeg, 4:2:0, optimised Huffman tables, baseline or progressive: the smaller), "
            "quality 1..100",
    "webp": "Pillow WebP (libwebp, lossy, method 6), quality 1..100",
    "avif": "Pillow AVIF (libavif, speed 2, 4:2:0, 1 thread), quality 1..100",
    "jxl": "JPEG XL (libjxl effort 7 via pillow-jxl-plugin), quality 1..100",
}

for _name in PILLOW_CODECS:
    register_codec(_name, _factory(_name), _DESCRIPTIONS.get(_name, f"Pillow {_name}"), overwrite=True)
