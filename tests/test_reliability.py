"""Label reliability (mlclipsim.eval.reliability): Spearman-Brown, voter splits, paired draws."""

import numpy as np
import pytest

from mlclipsim.eval.reliability import (
    paired_draws,
    spearman_brown,
    split_reliability,
    voter_split_reliability,
)


def test_spearman_brown():
    assert spearman_brown(0.5) == pytest.approx(2 / 3)
    assert spearman_brown(0.28) == pytest.approx(0.4375)
    assert spearman_brown(1.0) == 1.0 and spearman_brown(0.0) == 0.0
    assert spearman_brown(0.5, factor=3) == pytest.approx(0.75)
    assert spearman_brown(0.6, factor=0.5) == pytest.approx(0.3 / 0.7)       # half as long a test
    assert np.isnan(spearman_brown(float("nan")))
    with pytest.raises(ValueError, match="factor"):
        spearman_brown(0.5, factor=0)


def _two_measurements(noise, n_groups=40, per_group=10, seed=0):
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=n_groups * per_group)
    groups = np.repeat(np.arange(n_groups), per_group)
    return truth + noise * rng.normal(size=truth.size), truth + noise * rng.normal(size=truth.size), groups


def test_split_reliability_recovers_the_noise_level():
    # two measurements truth + e, var(e) = 1: Pearson r = 0.5; Spearman of normals ~ (6/pi) asin(r/2) = 0.483
    a, b, groups = _two_measurements(noise=1.0, n_groups=200, per_group=20)
    result = split_reliability(a, b, groups, n_resamples=200)
    assert result.srcc.estimate == pytest.approx(0.483, abs=0.03)
    assert result.srcc.low < result.srcc.estimate < result.srcc.high
    assert result.corrected.estimate == pytest.approx(spearman_brown(result.srcc.estimate))
    assert result.corrected.low == pytest.approx(spearman_brown(result.srcc.low))
    assert result.n == a.size and result.srcc.n_groups == 200 and result.factor == 2.0
    noisier = split_reliability(*_two_measurements(noise=3.0, n_groups=200, per_group=20)[:2], n_resamples=10)
    assert noisier.srcc.estimate < result.srcc.estimate
    assert set(result.to_dict()) == {"srcc", "corrected", "factor", "n"}


def test_group_bootstrap_is_wider_than_item_bootstrap_for_clustered_labels():
    rng = np.random.default_rng(3)
    shared = np.repeat(rng.normal(size=20), 30)                      # 20 photos, labels share the photo
    a = shared + 0.5 * rng.normal(size=shared.size)
    b = shared + 0.5 * rng.normal(size=shared.size)
    groups = np.repeat(np.arange(20), 30)
    by_photo = split_reliability(a, b, groups, n_resamples=300).srcc
    by_item = split_reliability(a, b, None, n_resamples=300).srcc
    assert by_photo.high - by_photo.low > by_item.high - by_item.low


def test_voter_split_reliability_averages_each_set():
    rng = np.random.default_rng(4)
    truth = rng.normal(size=300)
    per_model = {name: truth + rng.normal(size=300) for name in ("lite0", "lite1", "lite2", "mnv2")}
    one = voter_split_reliability(per_model, ["lite0"], ["lite1"], n_resamples=50)
    two = voter_split_reliability(per_model, ["lite0", "mnv2"], ["lite1", "lite2"], n_resamples=50)
    assert two.srcc.estimate > one.srcc.estimate                     # more voters per set: more reliable
    expected = np.corrcoef(np.argsort(np.argsort(per_model["lite0"])), np.argsort(np.argsort(per_model["lite1"])))
    assert one.srcc.estimate == pytest.approx(expected[0, 1])
    with pytest.raises(ValueError, match="disjoint"):
        voter_split_reliability(per_model, ["lite0"], ["lite0", "lite1"])
    with pytest.raises(ValueError, match="No scores"):
        voter_split_reliability(per_model, ["lite0"], ["nanodet"])
    with pytest.raises(ValueError, match="at least one"):
        voter_split_reliability(per_model, [], ["lite1"])


def test_paired_draws_lines_up_the_same_items():
    keys = [("r1", "snow", 1), ("r1", "snow", 2), ("r1", "snow", 1), ("r2", "fog", 3), ("r1", "snow", 2),
            ("r3", "fog", 1)]
    draws = [0, 0, 1, 0, 1, 0]
    values = [0.9, 0.7, 0.8, 0.5, 0.6, 0.4]
    a, b, paired = paired_draws(keys, draws, values)
    assert paired == [("r1", "snow", 1), ("r1", "snow", 2)]
    np.testing.assert_allclose(a, [0.9, 0.7])
    np.testing.assert_allclose(b, [0.8, 0.6])
    with pytest.raises(ValueError, match="twice"):
        paired_draws(keys + [("r1", "snow", 1)], draws + [1], values + [0.1])
    with pytest.raises(ValueError, match="one entry per row"):
        paired_draws(keys, draws[:-1], values)


def test_split_reliability_checks_inputs():
    with pytest.raises(ValueError):
        split_reliability([0.1, 0.2, 0.3], [0.1, 0.2])
    with pytest.raises(ValueError):
        split_reliability([0.1, 0.2, np.nan], [0.1, 0.2, 0.3])


def test_mean_voter_reliability_uses_all_pairs():
    from mlclipsim.eval.correlation import srcc
    from mlclipsim.eval.reliability import mean_voter_reliability

    rng = np.random.default_rng(5)
    truth = rng.normal(size=200)
    per_model = {name: truth + rng.normal(size=200) for name in ("a", "b", "c")}
    result = mean_voter_reliability(per_model, n_resamples=50)
    r = np.mean([srcc(per_model["a"], per_model["b"]), srcc(per_model["a"], per_model["c"]),
                 srcc(per_model["b"], per_model["c"])])
    assert result.srcc.estimate == pytest.approx(r) and result.factor == 3.0
    assert result.corrected.estimate == pytest.approx(3 * r / (1 + 2 * r))
    with pytest.raises(ValueError, match="two voters"):
        mean_voter_reliability({"a": truth})
