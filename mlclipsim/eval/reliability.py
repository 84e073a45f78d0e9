"""Reliability of machine labels: how far two independent measurements of the same label agree.

A label (a task's MMOS of each image) is only worth learning from if measuring it again gives the
same ranking. Two ways to measure it again, both on the same images:

- **another set of voters**: the mean label of one set of task models (e.g. CenterNet) against
  that of a disjoint set of the same task (NanoDet): :func:`voter_split_reliability`; with k
  voters, :func:`mean_voter_reliability` takes their mean pairwise SRCC instead;
- **another draw of the distortion**: the label of an image against that of a second image made
  with the same type, severity and reference but another random seed (noise, snow, fog, ...):
  :func:`paired_draws` lines the two draws up, :func:`split_reliability` scores them.

Both give r, the SRCC between the two measurements (the split-half reliability of one
measurement), and the Spearman-Brown prophecy ``factor * r / (1 + (factor - 1) * r)``: the
reliability of the mean of ``factor`` such measurements, here both halves together (factor 2).
Spearman-Brown assumes parallel halves (equal reliability each); with unequal voter sets it is an
approximation. Intervals: percentile bootstrap over whole groups (the reference photos, so
crops and distortions of one photo stay together), :func:`mlclipsim.eval.bootstrap.bootstrap_ci`.

Takes plain arrays; knows nothing of datasets or models.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlclipsim.eval._validation import check_pair
from mlclipsim.eval.bootstrap import BootstrapCI, bootstrap_ci
from mlclipsim.eval.correlation import srcc


def spearman_brown(r: float, factor: float = 2.0) -> float:
    """Reliability of the mean of ``factor`` parallel measurements whose pairwise correlation is ``r``.

    NaN stays NaN; ``factor`` must be > 0 (factor < 1 predicts a shorter test)."""
    if factor <= 0:
        raise ValueError(f"factor must be > 0, got {factor}")
    r = float(r)
    if not np.isfinite(r):
        return float("nan")
    denominator = 1.0 + (factor - 1.0) * r
    return float("nan") if denominator == 0 else float(factor * r / denominator)


@dataclass(frozen=True)
class Reliability:
    """SRCC between two measurements of the same labels and the Spearman-Brown reliability of their mean.

    Attributes:
        srcc: SRCC between the two measurements, with its group-bootstrap interval.
        corrected: ``spearman_brown(srcc, factor)`` (estimate and interval mapped the same way:
            the map is increasing, so the percentile interval carries over).
        factor: how many measurements the corrected reliability is for (2: both halves).
        n: items compared.
    """

    srcc: BootstrapCI
    corrected: BootstrapCI
    factor: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"srcc": self.srcc.to_dict(), "corrected": self.corrected.to_dict(), "factor": self.factor,
                "n": self.n}


def split_reliability(a: Any, b: Any, groups: Sequence[Hashable] | None = None, factor: float = 2.0,
                      n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> Reliability:
    """SRCC of two measurements ``a``, ``b`` (shape (N,), same items in the same order) and the
    Spearman-Brown reliability of the mean of ``factor`` of them, with bootstrap intervals over ``groups``.

    Raises:
        ValueError: lengths differ, fewer than 3 items, non-finite values, bad ``groups`` or settings.
    """
    x, y = check_pair(a, b, names=("a", "b"))
    ci = bootstrap_ci(srcc, groups, x, y, n_resamples=n_resamples, confidence=confidence, seed=seed)
    corrected = BootstrapCI(spearman_brown(ci.estimate, factor), spearman_brown(ci.low, factor),
                            spearman_brown(ci.high, factor), ci.confidence, ci.n_resamples, ci.n_valid,
                            ci.n_groups)
    return Reliability(ci, corrected, float(factor), int(x.size))


def voter_split_reliability(per_model: Mapping[str, Any], set_a: Sequence[str], set_b: Sequence[str],
                            groups: Sequence[Hashable] | None = None, **options: Any) -> Reliability:
    """Reliability of a task's mean label from two disjoint voter sets.

    Args:
        per_model: model name -> (N,) scores of that model on the same N images.
        set_a, set_b: disjoint, non-empty lists of model names; each set's label is its models' mean.
        groups, options: as :func:`split_reliability` (``factor`` defaults to 2: the mean of both sets).
    """
    if not set_a or not set_b:
        raise ValueError("Both voter sets need at least one model")
    overlap = sorted(set(set_a) & set(set_b))
    if overlap:
        raise ValueError(f"Voter sets must be disjoint; both hold {overlap}")
    missing = sorted((set(set_a) | set(set_b)) - set(per_model))
    if missing:
        raise ValueError(f"No scores for model(s) {missing}; have {sorted(per_model)}")
    mean_a = np.mean([np.asarray(per_model[name], np.float64) for name in set_a], axis=0)
    mean_b = np.mean([np.asarray(per_model[name], np.float64) for name in set_b], axis=0)
    return split_reliability(mean_a, mean_b, groups, **options)


def paired_draws(keys: Sequence[Hashable], draws: Sequence[int], values: Any,
                 first: int = 0, second: int = 1) -> tuple[np.ndarray, np.ndarray, list[Hashable]]:
    """Line up two draws of the same items.

    Args:
        keys: per row, what makes two rows the same item but for the draw (e.g. (reference, type,
            severity)); each (key, draw) must occur at most once.
        draws: per row, the draw index.
        values: per row, the label (shape (N,)).
        first, second: the two draws to pair.

    Returns:
        ``(a, b, paired_keys)``: labels of draw ``first`` and ``second`` for every key that has both,
        in order of first appearance.
    """
    values = np.asarray(values, np.float64).reshape(-1)
    if not len(keys) == len(draws) == values.size:
        raise ValueError(f"keys, draws and values must have one entry per row, got {len(keys)}, {len(draws)}, "
                         f"{values.size}")
    seen: dict[tuple[Hashable, int], float] = {}
    order: dict[Hashable, None] = {}
    for key, draw, value in zip(keys, draws, values):
        slot = (key, int(draw))
        if slot in seen:
            raise ValueError(f"Item {key!r} has draw {int(draw)} twice")
        seen[slot] = float(value)
        order.setdefault(key, None)
    paired = [k for k in order if (k, first) in seen and (k, second) in seen]
    a = np.array([seen[(k, first)] for k in paired])
    b = np.array([seen[(k, second)] for k in paired])
    return a, b, paired


def mean_voter_reliability(per_model: Mapping[str, Any], groups: Sequence[Hashable] | None = None,
                           n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> Reliability:
    """Reliability of the mean label of k voters from their mean pairwise SRCC r:
    ``spearman_brown(r, k)`` (the reliability of a k-rater mean; k >= 2 models, each (N,) scores)."""
    if len(per_model) < 2:
        raise ValueError(f"Need at least two voters, got {sorted(per_model)}")
    names = sorted(per_model)
    matrix = np.stack([np.asarray(per_model[name], np.float64).reshape(-1) for name in names], axis=1)
    for k, name in enumerate(names):
        check_pair(matrix[:, k], matrix[:, 0], names=(name, names[0]))
    pairs = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names))]

    def mean_srcc(m: np.ndarray) -> float:
        return float(np.mean([srcc(m[:, i], m[:, j]) for i, j in pairs]))

    ci = bootstrap_ci(mean_srcc, groups, matrix, n_resamples=n_resamples, confidence=confidence, seed=seed)
    factor = float(len(names))
    corrected = BootstrapCI(spearman_brown(ci.estimate, factor), spearman_brown(ci.low, factor),
                            spearman_brown(ci.high, factor), ci.confidence, ci.n_resamples, ci.n_valid,
                            ci.n_groups)
    return Reliability(ci, corrected, factor, int(matrix.shape[0]))
