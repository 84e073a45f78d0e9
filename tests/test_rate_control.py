"""Rate control within 5 codings, reuse across targets, non-monotone ladders on purpose, codecs at their best."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from mlclipsim.coding.interface import Codec, CodedImages, create_codec
from mlclipsim.coding.rate_control import RateControlledCodec, control_rate

pytestmark = pytest.mark.usefixtures("one_torch_thread")
IMAGE = torch.full((1, 3, 8, 8), 0.5)


class CurveCodec(Codec):
    """Qualities 1..100; point q scales the image by score(q) and writes sizes(q) bytes; counts its codings."""

    name = "curve"

    def __init__(self, score, size=lambda q: 10 * q) -> None:
        self.score, self.size, self.calls = score, size, 0

    @property
    def points(self):
        return tuple(range(1, 101))

    def _code(self, images, point):
        self.calls += 1
        n = self.size(point)
        return CodedImages(images * self.score(point), [8 * n] * images.shape[0], [bytes(n)] * images.shape[0])


def ratio(decoded, reference):
    return decoded.mean(dim=(1, 2, 3)) / reference.mean(dim=(1, 2, 3))


def saturating(q: int) -> float:  # a typical score ladder: 1 - score falls about exponentially with quality
    return 1.0 - 0.4 * math.exp(-q / 25.0)


@pytest.mark.parametrize("target", [0.7, 0.8, 0.9, 0.95, 0.97, 0.985])
def test_at_most_five_codings_find_the_lowest_quality_on_a_smooth_ladder(target):
    codec = CurveCodec(saturating)
    result = control_rate(codec, IMAGE, target, ratio)
    expected = min(q for q in range(1, 101) if saturating(q) >= target - 1e-6)
    assert codec.calls <= 5 and result.codings <= 5
    assert result.reached and result.exact and result.point == expected


def test_the_memo_saves_codings_but_never_changes_the_choice():
    fresh = [control_rate(CurveCodec(saturating), IMAGE, t, ratio) for t in (0.8, 0.9, 0.95)]
    codec, memo = CurveCodec(saturating), {}
    reused = [control_rate(codec, IMAGE, t, ratio, memo=memo) for t in (0.8, 0.9, 0.95)]
    assert [r.point for r in reused] == [r.point for r in fresh]
    assert codec.calls < sum(r.codings for r in reused) and sum(r.reused for r in reused) > 0


def test_rate_controlled_codec_keeps_every_image_across_targets():
    base = CurveCodec(saturating)
    codec = RateControlledCodec(base, scorer=ratio)
    other = torch.full((1, 3, 8, 8), 0.25)
    codec.code(IMAGE, 0.9)
    codec.code(other, 0.9)
    calls = base.calls
    codec.code(IMAGE, 0.9)  # the first image's codings are still there after another image
    assert base.calls == calls


def test_non_monotone_ladders_give_the_fewest_bits_that_reach_the_target():
    # quality 60 makes a smaller file than 55..59 (as AVIF's quantiser steps do): among the points that
    # reach the target the search returns the cheapest, never one that misses
    sizes = {q: 10 * q for q in range(1, 101)}
    sizes[60] = 300
    codec = CurveCodec(lambda q: 0.5 + q / 200.0, size=lambda q: sizes[q])
    exhaustive = control_rate(codec, IMAGE, 0.77, ratio, search="exhaustive")
    assert exhaustive.point == 60 and exhaustive.bits == 8 * 300
    bumpy = CurveCodec(lambda q: 0.5 + q / 200.0 + (0.05 if q == 52 else 0.0))  # 52 scores like 62
    result = control_rate(bumpy, IMAGE, 0.8, ratio)
    assert result.reached and result.score >= 0.8 and result.codings <= 5
    assert result.monotone == all(a.score <= b.score for a, b in zip(result.evaluations, result.evaluations[1:]))


def test_out_of_reach_and_trivial_targets_are_reported():
    codec = CurveCodec(saturating)
    high = control_rate(codec, IMAGE, 0.999, ratio)
    assert not high.reached and high.point == 100 and high.codings <= 5 and high.exact
    low = control_rate(CurveCodec(saturating), IMAGE, 0.5, ratio)
    assert low.reached and low.point == 1 and low.at_lowest and low.summary()["at_lowest"]


def test_library_jpeg_is_pillows_best_jpeg_in_size_and_pixels(astronaut):
    array = (astronaut[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    picture = Image.fromarray(array)
    codec = create_codec("jpeg")
    for quality in (20, 75, 95):
        sizes = []
        for options in ({"optimize": True}, {"optimize": True, "progressive": True}):
            buffer = io.BytesIO()
            picture.save(buffer, format="JPEG", quality=quality, **options)
            sizes.append(len(buffer.getvalue()))
        plain = io.BytesIO()
        picture.save(plain, format="JPEG", quality=quality)
        coded = codec.code(astronaut, quality)
        assert coded.bits[0] == 8 * min(sizes) < 8 * len(plain.getvalue())
        with Image.open(plain) as decoded:  # optimised tables change the bytes, not the pixels
            assert np.array_equal(np.array(decoded.convert("RGB")),
                                  (coded.reconstructions[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


def test_webp_is_method_6(astronaut):
    array = (astronaut[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="WEBP", quality=50, method=6)
    assert create_codec("webp").code(astronaut, 50).bits[0] == 8 * len(buffer.getvalue())


def test_create_codec_passes_a_name_keyword_to_the_factory(tmp_path):
    from test_codec_interface import tiny_family

    paths = tiny_family(tmp_path)
    codec = create_codec("compressai", checkpoints=[str(p) for p in paths], name="mse")
    assert codec.name == "mse" and len(codec.points) == 2
