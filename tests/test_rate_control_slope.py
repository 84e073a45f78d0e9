"""Equal-slope rate control: per image the probe maximising quality - slope * bpp, probes shared by all slopes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mlclipsim.coding.interface import Codec, CodedImages, create_codec
from mlclipsim.coding.rate_control import SlopeControlledCodec, allocate_slope, check_slope

pytestmark = pytest.mark.usefixtures("one_torch_thread")
IMAGE = torch.full((1, 3, 8, 8), 0.5)
PIXELS = 64


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


def saturating(q: int) -> float:
    return 1.0 - 0.4 * math.exp(-q / 25.0)


def objective(score: float, size_bytes: int, slope: float) -> float:
    return score - slope * 8 * size_bytes / PIXELS


@pytest.mark.parametrize("slope", [0.0, 0.001, 0.003, 0.01, 0.05])
def test_the_choice_is_the_largest_quality_minus_slope_times_bpp_on_a_known_ladder(slope):
    ladder = [3, 12, 30, 55, 90]  # five points: every one is probed
    codec = CurveCodec(saturating)
    result = allocate_slope(codec, IMAGE, slope, ratio, ladder=ladder)
    best = max(ladder, key=lambda q: objective(saturating(q), 10 * q, slope))
    assert result.point == best and {e.point for e in result.evaluations} == set(ladder)
    assert result.objective == pytest.approx(objective(saturating(best), 10 * best, slope), abs=1e-6)
    assert result.bpp == pytest.approx(80 * best / PIXELS) and result.slope == slope


def test_on_a_long_ladder_the_choice_is_the_best_probe_and_probes_are_at_most_five():
    codec = CurveCodec(saturating)
    result = allocate_slope(codec, IMAGE, 0.004, ratio)
    assert codec.calls == result.codings == len(result.evaluations) <= 5
    best = max(result.evaluations, key=lambda e: e.score - 0.004 * e.bits / PIXELS)
    assert result.point == best.point
    assert {5, 90} <= {e.point for e in result.evaluations}  # the span's ends, qualities 5 and 90


def test_probes_are_shared_by_every_slope_and_the_choice_ignores_the_memo():
    slopes = [0.0, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.02, 0.1]
    base = CurveCodec(saturating)
    codec = SlopeControlledCodec(base, scorer=ratio, slopes=slopes)
    chosen = [codec.code(IMAGE, s).details[0] for s in slopes]
    assert base.calls <= 5  # five codings per image for all eight slopes together
    assert all(d["codings"] <= 5 for d in chosen) and sum(d["reused"] for d in chosen) >= 5 * (len(slopes) - 1)
    fresh = [allocate_slope(CurveCodec(saturating), IMAGE, s, ratio).point for s in slopes]
    assert [d["point"] for d in chosen] == fresh


def test_bits_never_rise_with_the_slope_on_a_non_monotone_ladder():
    rng = np.random.default_rng(0)
    bumps = rng.normal(0.0, 0.01, 101)
    sizes = {q: int(10 * q + rng.integers(-40, 40)) + 50 for q in range(1, 101)}  # sizes not monotone in q
    codec = SlopeControlledCodec(CurveCodec(lambda q: min(saturating(q) + bumps[q], 1.0), size=lambda q: sizes[q]),
                                 scorer=ratio)
    slopes = sorted(np.geomspace(1e-5, 1.0, 40).tolist())
    bits = [codec.code(IMAGE, s).bits[0] for s in slopes]
    assert all(a >= b for a, b in zip(bits, bits[1:]))
    assert bits[0] > bits[-1]


def test_non_monotone_ladders_never_choose_a_point_another_probe_beats_in_bits_and_quality():
    # quality 90 makes a smaller file than quality 5..89 would suggest and scores best: no slope picks a
    # probe with more bits and a lower score
    sizes = {q: 10 * q for q in range(1, 101)}
    sizes[90] = 200
    dips = {q: saturating(q) - (0.2 if q in range(40, 60) else 0.0) for q in range(1, 101)}  # a score dip
    codec = CurveCodec(lambda q: dips[q], size=lambda q: sizes[q])
    for slope in (0.0, 0.001, 0.01, 0.1):
        result = allocate_slope(codec, IMAGE, slope, ratio, memo={})
        probes = result.evaluations
        assert not result.monotone or all(a.score <= b.score for a, b in zip(probes, probes[1:]))
        chosen = (result.bits, result.score)
        assert not any(e.bits <= result.bits and e.score >= result.score and (e.bits, e.score) != chosen
                       for e in probes)
    assert allocate_slope(codec, IMAGE, 0.0, ratio).point == 90


def test_identical_files_at_neighbouring_points_pick_the_lowest():
    # AVIF maps several qualities to one quantiser: a plateau of identical files; ties go to the lowest point
    codec = CurveCodec(lambda q: 0.9, size=lambda q: 100)
    result = allocate_slope(codec, IMAGE, 0.01, ratio)
    assert result.point == min(e.point for e in result.evaluations) and not math.isnan(result.objective)


def test_the_quality_map_is_what_is_maximised():
    ladder = [10, 40, 80]
    step = lambda s: (s >= saturating(40) - 1e-9).to(torch.float64)  # noqa: E731  quality 1 from point 40 on
    raw = allocate_slope(CurveCodec(saturating), IMAGE, 0.0, ratio, ladder=ladder)
    mapped = allocate_slope(CurveCodec(saturating), IMAGE, 1e-4, ratio, ladder=ladder, quality=step)
    assert raw.point == 80 and mapped.point == 40 and mapped.quality == 1.0


def test_slopes_are_checked_and_ordered_by_rate():
    with pytest.raises(ValueError, match=">= 0"):
        check_slope(-0.1)
    with pytest.raises(ValueError, match="number"):
        check_slope("x")
    codec = create_codec("webp@mlclipsim-slope", scorer=ratio, slopes=(0.1, 1.0, 0.01))
    assert codec.name == "webp@mlclipsim-slope" and codec.points == (1.0, 0.1, 0.01)  # fewest bits first
    assert codec.parse_point("0.5") == 0.5


def test_details_name_the_probes_so_a_study_can_count_distinct_codings():
    from mlclipsim.coding.rate_control import RateControlledCodec

    slope = SlopeControlledCodec(CurveCodec(saturating), scorer=ratio).code(IMAGE, 0.002).details[0]
    target = RateControlledCodec(CurveCodec(saturating), scorer=ratio).code(IMAGE, 0.9).details[0]
    assert len(slope["probes"]) == slope["codings"] <= 5 and slope["point"] in slope["probes"]
    assert slope["reached"] is None  # no target to reach
    assert len(target["probes"]) == target["codings"] and target["point"] in target["probes"]
