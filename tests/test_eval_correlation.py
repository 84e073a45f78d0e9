"""Evaluation protocol: logistic fit, correlations, group bootstrap, breakdowns, 2AFC (known answers)."""

from __future__ import annotations

import numpy as np
import pytest

from mlclipsim.eval import (
    LogisticFit,
    bootstrap_ci,
    breakdown,
    evaluate,
    evaluate_with_ci,
    fit_logistic,
    krcc,
    logistic5,
    plcc,
    rmse,
    srcc,
    two_afc,
)

# ----------------------------------------------------------------------------------------------- correlations


def test_rank_correlations_of_monotone_data():
    x = np.linspace(0.0, 1.0, 20)
    y = np.exp(3 * x)  # monotone, not linear
    assert srcc(x, y) == pytest.approx(1.0)
    assert krcc(x, y) == pytest.approx(1.0)
    assert srcc(x, y[::-1]) == pytest.approx(-1.0)
    assert krcc(x, y[::-1]) == pytest.approx(-1.0)
    assert plcc(x, 2 * x + 1) == pytest.approx(1.0)
    assert rmse(x, x + 0.5) == pytest.approx(0.5)


def test_krcc_is_tau_b_with_ties():
    from scipy.stats import kendalltau

    x, y = [1, 1, 2, 3, 3, 4], [1, 2, 2, 3, 4, 4]
    assert krcc(x, y) == pytest.approx(kendalltau(x, y, variant="b")[0])


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_logistic_recovers_synthetic_5pl(sign):
    q = np.linspace(0.0, 1.0, 120)
    true = (2.0, sign * 12.0, 0.4, 0.3, 1.0)
    y = logistic5(q, *true)
    fit = fit_logistic(q, y)
    assert fit.success and fit.method == "logistic5" and fit.reason is None
    np.testing.assert_allclose(fit.params, true, rtol=1e-3, atol=1e-3)
    noisy = y + np.random.default_rng(0).normal(0.0, 0.005, q.size)
    res = evaluate(q, noisy)
    assert res.fit.success and res.plcc > 0.999 and res.fit_split == "scored" and res.n == q.size
    assert res.srcc == pytest.approx(srcc(q, noisy))  # rank statistics use the raw scores
    # scale and offset of the scores do not matter (the fit runs on standardised data)
    shifted = fit_logistic(50 * q + 3, y)
    np.testing.assert_allclose(shifted(50 * q + 3), y, atol=1e-6)


def test_decreasing_relation_fits_and_plcc_is_positive():
    q = np.linspace(0.0, 2.0, 60)
    labels = 1.0 / (1.0 + np.exp(4 * (q - 1.0)))  # a distance against a quality label
    res = evaluate(q, labels)
    assert res.srcc == pytest.approx(-1.0)
    assert res.plcc > 0.999  # after the mapping, predictions and labels agree
    assert res.fit.params[1] < 0 and res.fit.params[0] >= 0


def test_logistic_handles_huge_arguments_without_overflow():
    with np.errstate(over="raise"):
        out = logistic5(np.array([-1e6, 0.0, 1e6]), 1.0, 1e4, 0.0, 0.0, 0.0)
    np.testing.assert_allclose(out, [-0.5, 0.0, 0.5])


def test_fallback_on_two_distinct_scores():
    scores = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    labels = np.array([0.1, 0.2, 0.15, 0.8, 0.9, 0.85])
    res = evaluate(scores, labels)
    assert not res.fit.success and res.fit.method == "linear" and "distinct" in res.fit.reason
    assert np.isfinite(res.plcc) and np.isfinite(res.rmse)
    assert res.rmse == pytest.approx(np.sqrt(np.mean((labels - np.repeat([0.15, 0.85], 3)) ** 2)))


def test_fallback_when_the_optimiser_fails(monkeypatch):
    import mlclipsim.eval.logistic as logistic

    def broken(*args, **kwargs):
        raise FloatingPointError("non-finite parameters or predictions")

    monkeypatch.setattr(logistic, "_fit_from", broken)
    q = np.linspace(0.0, 1.0, 30)
    fit = logistic.fit_logistic(q, q ** 2)
    assert fit.method == "linear" and not fit.success and "failed" in fit.reason
    assert np.all(np.isfinite(fit(q)))


def test_warm_start_and_tensor_inputs():
    torch = pytest.importorskip("torch")
    q = torch.linspace(0.0, 1.0, 50, requires_grad=True)
    labels = logistic5(q.detach().numpy(), 1.0, 8.0, 0.5, 0.0, 0.0)
    res = evaluate(q, torch.as_tensor(labels))
    assert res.plcc > 0.999
    warm = fit_logistic(q, labels, init=res.fit.params)
    np.testing.assert_allclose(warm.params, res.fit.params, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="init"):
        fit_logistic(q, labels, init=[1.0, 2.0])


def test_constant_scores_map_to_mean_label():
    labels = np.array([0.1, 0.4, 0.7, 1.0])
    res = evaluate(np.full(4, 0.3), labels)
    assert res.fit.method == "constant" and not res.fit.success and "equal" in res.fit.reason
    assert np.isnan(res.srcc) and np.isnan(res.plcc) and np.isnan(res.krcc)
    assert res.rmse == pytest.approx(np.std(labels))
    np.testing.assert_allclose(res.fit(np.array([5.0, -5.0])), [labels.mean()] * 2)


def test_separate_split_uses_the_other_split():
    q = np.linspace(0.0, 1.0, 40)
    fit_labels = logistic5(q, 1.0, 10.0, 0.5, 0.0, 0.0)
    test_labels = fit_labels + 3.0  # offset only visible to a mapping fitted on the test split
    own = evaluate(q, test_labels)
    other = evaluate(q, test_labels, fit_on=(q, fit_labels))
    assert other.fit_split == "separate" and own.fit_split == "scored"
    assert own.rmse < 1e-3
    assert other.rmse == pytest.approx(3.0, abs=1e-3)
    np.testing.assert_allclose(other.fit(q), fit_labels, atol=1e-4)
    # an already fitted mapping is reused as is
    reused = evaluate(q, test_labels, fit_on=other.fit)
    assert reused.fit is other.fit and reused.rmse == pytest.approx(other.rmse)


@pytest.mark.parametrize(
    ("scores", "labels", "match"),
    [
        ([0.1, 0.2, 0.3], [0.1, 0.2], "same order"),
        ([0.1, np.nan, 0.3, np.inf], [0.1, 0.2, 0.3, 0.4], r"2 non-finite .* index 1, 3"),
        ([0.1, 0.2], [0.1, 0.2], "at least 3"),
        (np.ones((3, 2)), np.ones((3, 2)), "1-D"),
    ],
)
def test_bad_inputs_say_what_to_fix(scores, labels, match):
    with pytest.raises(ValueError, match=match):
        evaluate(scores, labels)


def test_bad_fit_on_is_rejected():
    with pytest.raises(ValueError, match="fit_on"):
        evaluate([1, 2, 3], [1, 2, 3], fit_on="train")


# -------------------------------------------------------------------------------------------------- bootstrap


def _grouped_data(n_groups: int = 12, per_group: int = 6, seed: int = 1):
    rng = np.random.default_rng(seed)
    s = rng.uniform(size=n_groups * per_group)
    y = logistic5(s, 1.0, 10.0, 0.5, 0.1, 0.0) + rng.normal(0.0, 0.1, s.size)  # clearly sigmoidal: fast refits
    return s, y, np.repeat([f"photo{i}" for i in range(n_groups)], per_group)


def test_bootstrap_ci_contains_estimate_and_is_deterministic():
    s, y, groups = _grouped_data()
    ci = bootstrap_ci(lambda a, b: srcc(a, b), groups, s, y, n_resamples=200, seed=3)
    assert ci.low <= ci.estimate <= ci.high
    assert ci.estimate == pytest.approx(srcc(s, y))
    assert ci.n_groups == 12 and ci.n_valid == 200
    again = bootstrap_ci(lambda a, b: srcc(a, b), groups, s, y, n_resamples=200, seed=3)
    assert (again.low, again.high) == (ci.low, ci.high)
    other = bootstrap_ci(lambda a, b: srcc(a, b), groups, s, y, n_resamples=200, seed=4)
    assert (other.low, other.high) != (ci.low, ci.high)


def test_bootstrap_resamples_whole_groups():
    values = np.random.default_rng(0).normal(size=15)
    repeated = np.repeat(values, 8)  # every point of a group identical
    groups = np.repeat(np.arange(15), 8)
    by_group = bootstrap_ci(np.mean, groups, repeated, n_resamples=300, seed=0)
    one_per_group = bootstrap_ci(np.mean, None, values, n_resamples=300, seed=0)
    # the effective sample is the 15 groups, not the 120 points
    assert by_group.n_groups == 15
    assert by_group.low == pytest.approx(one_per_group.low) and by_group.high == pytest.approx(one_per_group.high)
    naive = bootstrap_ci(np.mean, None, repeated, n_resamples=300, seed=0)
    assert (naive.high - naive.low) < 0.6 * (by_group.high - by_group.low)


def test_bootstrap_rejects_bad_settings():
    with pytest.raises(ValueError, match="groups has 2 entries"):
        bootstrap_ci(np.mean, ["a", "b"], np.ones(3))
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci(np.mean, None, np.ones(3), confidence=95)
    with pytest.raises(ValueError, match="same length"):
        bootstrap_ci(lambda a, b: 0.0, None, np.ones(3), np.ones(4))


def test_evaluate_with_ci_refits_per_resample():
    s, y, groups = _grouped_data()
    out = evaluate_with_ci(s, y, groups, n_resamples=60, seed=0)
    for name in ("srcc", "plcc", "krcc", "rmse"):
        ci = getattr(out, name)
        assert ci.estimate == pytest.approx(getattr(out.result, name))
        assert ci.low <= ci.estimate <= ci.high and ci.n_groups == 12
    fixed = evaluate_with_ci(s, y, groups, fit_on=out.result.fit, n_resamples=60, seed=0)
    assert fixed.result.fit_split == "separate"
    assert fixed.srcc.low == pytest.approx(out.srcc.low)  # rank CIs do not depend on the mapping


# -------------------------------------------------------------------------------------------------- breakdown


def test_breakdown_skips_small_subsets_with_reason():
    s, y, groups = _grouped_data(n_groups=10, per_group=4)
    by = np.array(["blur"] * 24 + ["jpeg"] * 12 + ["noise"] * 4)
    out = breakdown(s, y, by, min_count=10)
    assert list(out) == ["blur", "jpeg", "noise"]
    assert out["noise"].skipped and out["noise"].result is None and "min_count=10" in out["noise"].reason
    assert out["noise"].n == 4
    assert not out["blur"].skipped and out["blur"].result.n == 24 and out["blur"].ci is None
    assert out["jpeg"].result.srcc == pytest.approx(srcc(s[24:36], y[24:36]))
    with_ci = breakdown(s, y, by, groups=groups, min_count=10, n_resamples=30, refit_maxfev=1000)
    assert with_ci["blur"].ci is not None and with_ci["blur"].n_groups == 6
    assert with_ci["jpeg"].ci.srcc.low <= with_ci["jpeg"].result.srcc <= with_ci["jpeg"].ci.srcc.high


def test_breakdown_with_one_fixed_mapping_and_bad_min_count():
    s, y, _ = _grouped_data()
    by = np.tile([1, 2, 3], s.size // 3)
    fit = fit_logistic(s, y)
    out = breakdown(s, y, by, fit_on=fit, min_count=5)
    assert list(out) == [1, 2, 3] and all(e.result.fit is fit for e in out.values())
    assert isinstance(out[1].result.fit, LogisticFit)
    with pytest.raises(ValueError, match="min_count"):
        breakdown(s, y, by, min_count=1)
    with pytest.raises(ValueError, match="by has 3 entries"):
        breakdown(s, y, [1, 2, 3])


# ------------------------------------------------------------------------------------------------------- 2AFC


def test_two_afc_hand_made_pairs():
    score_a = [0.9, 0.2, 0.5, 0.7, 0.4]
    score_b = [0.1, 0.8, 0.5, 0.3, 0.6]
    # metric prefers:  A    B    tie   A    B   -> p = 1, 0, 0.5, 1, 0
    soft = [0.8, 0.3, 0.9, 0.5, 0.6]
    res = two_afc(score_a, score_b, soft)
    # majority from soft: 1, 0, 1, tie (excluded), 1 -> correct: 1, 1, 0.5, -, 0
    assert res.n == 5 and res.n_decided == 4 and res.n_label_ties == 1 and res.n_metric_ties == 1
    assert res.accuracy == pytest.approx(2.5 / 4)
    # soft: 0.8, 0.7, 0.5, 0.5, 0.4
    assert res.soft_agreement == pytest.approx((0.8 + 0.7 + 0.5 + 0.5 + 0.4) / 5)
    assert res.accuracy_ci is None


def test_two_afc_explicit_majority_distances_and_ci():
    dist_a, dist_b = np.array([0.1, 0.5, 0.3]), np.array([0.2, 0.4, 0.3])  # lower is better: A, B, tie
    res = two_afc(dist_a, dist_b, [1.0, 0.0, 1.0], majority_label=[1, 1, 0.5], higher_is_better=False)
    assert res.accuracy == pytest.approx(0.5) and res.n_label_ties == 1
    assert res.soft_agreement == pytest.approx((1.0 + 1.0 + 0.5) / 3)
    rng = np.random.default_rng(0)
    a, b = rng.uniform(size=40), rng.uniform(size=40)
    soft = np.clip((a > b) * 0.8 + 0.1, 0, 1)
    res = two_afc(a, b, soft, groups=np.repeat(np.arange(10), 4), n_resamples=50)
    assert res.accuracy == 1.0 and res.accuracy_ci.low == 1.0 and res.accuracy_ci.n_groups == 10
    assert res.soft_agreement_ci.low <= res.soft_agreement <= res.soft_agreement_ci.high


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"soft_label": [0.5, 1.2]}, r"\[0, 1\]"),
        ({"soft_label": [0.5, np.nan]}, "non-finite"),
        ({"soft_label": [0.5]}, "lengths"),
        ({"soft_label": [0.5, 0.5], "majority_label": [1, 0.3]}, "majority_label"),
    ],
)
def test_two_afc_bad_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        two_afc([0.1, 0.2], [0.2, 0.1], **kwargs)
