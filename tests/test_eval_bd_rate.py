"""Bjontegaard deltas on synthetic curves with known answers; Pareto filter, overlap, fallbacks, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

from mlclipsim.eval import bd_quality, bd_rate, pareto_filter

RATE = np.array([0.1, 0.2, 0.4, 0.8, 1.6])  # bits per pixel
PSNR = np.array([28.0, 31.0, 34.5, 37.0, 39.0])
AGREEMENT = np.array([0.42, 0.61, 0.77, 0.88, 0.94])  # a task score in [0, 1]


@pytest.mark.parametrize("method", ["pchip", "akima", "cubic"])
@pytest.mark.parametrize(("scale", "expected"), [(0.8, -20.0), (1.25, 25.0)])
def test_bd_rate_of_scaled_rates(method, scale, expected):
    res = bd_rate(RATE, PSNR, RATE * scale, PSNR, method=method)
    assert res.value == pytest.approx(expected, abs=0.5)
    assert res.kind == "bd_rate" and res.method_used == method and res.overlap == pytest.approx(1.0)
    assert res.reason is None and res.note is None


def test_bd_rate_on_task_agreement():
    res = bd_rate(RATE, AGREEMENT, RATE * 0.8, AGREEMENT)
    assert res.value == pytest.approx(-20.0, abs=0.5)


def test_bd_quality_of_shifted_curve():
    res = bd_quality(RATE, PSNR, RATE, PSNR + 1.0)
    assert res.value == pytest.approx(1.0, abs=1e-6) and res.kind == "bd_quality"
    assert bd_quality(RATE, PSNR, RATE, PSNR - 0.5).value == pytest.approx(-0.5, abs=1e-6)


def test_pareto_filter_keeps_non_dominated_points():
    rate = [0.4, 0.1, 0.2, 0.3, 0.2, 0.8]
    quality = [34.0, 28.0, 31.0, 30.0, 30.5, 37.0]
    # sorted by rate: 0.1/28, 0.2/31 (keeps; 0.2/30.5 dominated), 0.3/30 (dominated), 0.4/34, 0.8/37
    np.testing.assert_array_equal(pareto_filter(rate, quality), [1, 2, 0, 5])


def test_non_monotone_input_is_filtered_and_matches_clean_curve():
    dirty_rate = np.array([0.1, 0.2, 0.3, 0.4, 0.8, 1.0, 1.6])
    dirty_q = np.array([28.0, 31.0, 30.0, 34.5, 37.0, 36.0, 39.0])  # 0.3 and 1.0 are dominated
    clean = bd_rate(RATE, PSNR, RATE * 0.8, PSNR)
    dirty = bd_rate(dirty_rate, dirty_q, RATE * 0.8, PSNR)
    assert dirty.dropped_anchor == (2, 5) and dirty.n_anchor == 5 and dirty.dropped_test == ()
    assert dirty.value == pytest.approx(clean.value)
    swapped = bd_quality(RATE * 0.8, PSNR, dirty_rate, dirty_q)
    assert swapped.value == pytest.approx(bd_quality(RATE * 0.8, PSNR, RATE, PSNR).value)


def test_no_overlap_gives_none_instead_of_extrapolating():
    res = bd_rate(RATE, PSNR, RATE, PSNR + 20.0)
    assert res.value is None and res.reason == "no overlap" and res.overlap == 0.0
    res = bd_quality(RATE, PSNR, RATE * 100.0, PSNR)
    assert res.value is None and res.reason == "no overlap"


def test_partial_overlap_is_reported_and_can_be_required():
    res = bd_rate(RATE, PSNR, RATE * 0.8, PSNR + 2.0)
    assert 0.0 < res.overlap < 1.0 and res.value is not None
    strict = bd_rate(RATE, PSNR, RATE * 0.8, PSNR + 2.0, min_overlap=0.95)
    assert strict.value is None and "min_overlap" in strict.reason


def test_too_few_points_and_method_fallback():
    res = bd_rate(RATE, PSNR, [0.1, 0.2, 0.15], [28.0, 27.0, 29.0])  # 0.2/27 is dominated
    assert res.n_test == 2 and res.value is not None
    single = bd_rate(RATE, PSNR, [0.1, 0.2], [30.0, 29.0])  # the second point is dominated
    assert single.value is None and "too few points" in single.reason and single.n_test == 1
    fallback = bd_rate(RATE[:3], PSNR[:3], RATE[:3] * 0.8, PSNR[:3], method="cubic")
    assert fallback.method == "cubic" and fallback.method_used == "pchip" and "cubic" in fallback.note
    assert fallback.value == pytest.approx(-20.0, abs=0.5)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((RATE, PSNR[:4], RATE, PSNR), "rate_anchor has 5 points but quality_anchor has 4"),
        ((RATE, PSNR, RATE, np.r_[PSNR[:4], np.nan]), "quality_test has 1 non-finite"),
        ((np.r_[0.0, RATE[1:]], PSNR, RATE, PSNR), "must be > 0"),
        (([], [], RATE, PSNR), "no points"),
    ],
)
def test_bad_inputs_raise(args, match):
    with pytest.raises(ValueError, match=match):
        bd_rate(*args)


def test_unknown_method_lists_choices():
    with pytest.raises(ValueError, match="akima"):
        bd_rate(RATE, PSNR, RATE, PSNR, method="spline")
