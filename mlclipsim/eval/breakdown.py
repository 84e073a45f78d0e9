"""Breakdowns: the correlation protocol on each subset of the data (distortion type, severity, region mode, task).

Each subset gets its own :func:`~mlclipsim.eval.correlation.evaluate` (the logistic refitted on the subset,
unless ``fit_on`` gives one mapping for all) and, when ``groups`` is given, group-bootstrap CIs. Subsets
smaller than ``min_count`` are not dropped: they come back with ``skipped=True`` and the reason.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlclipsim.eval._validation import check_bootstrap_settings, check_groups, check_pair
from mlclipsim.eval.bootstrap import CorrelationCI, evaluate_with_ci
from mlclipsim.eval.correlation import CorrelationResult, evaluate, resolve_fit
from mlclipsim.eval.logistic import LogisticFit


@dataclass(frozen=True)
class BreakdownEntry:
    """The protocol on one subset.

    Attributes:
        key: the subset's value of ``by``.
        n: points in the subset.
        result: the statistics (None when skipped).
        ci: group-bootstrap CIs (None when skipped, when no groups were given, or with a single group).
        skipped: True when the subset was too small to evaluate.
        reason: why it was skipped, or why it has no CI; None otherwise.
        n_groups: distinct groups in the subset (None without groups).
    """

    key: Hashable
    n: int
    result: CorrelationResult | None
    ci: CorrelationCI | None = None
    skipped: bool = False
    reason: str | None = None
    n_groups: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "n": self.n, "result": None if self.result is None else self.result.to_dict(),
                "ci": None if self.ci is None else self.ci.to_dict(), "skipped": self.skipped,
                "reason": self.reason, "n_groups": self.n_groups}


def _ordered_keys(keys: list[Hashable]) -> list[Hashable]:
    unique = list(dict.fromkeys(keys))
    try:
        return sorted(unique)  # e.g. severities 1..5 in order
    except TypeError:
        return unique  # mixed types: order of first appearance


def breakdown(scores: Any, labels: Any, by: Sequence[Hashable], groups: Sequence[Hashable] | None = None,
              min_count: int = 10, fit_on: tuple[Any, Any] | LogisticFit | None = None,
              n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0,
              refit_maxfev: int = 20000) -> dict[Hashable, BreakdownEntry]:
    """Evaluate ``scores`` against ``labels`` within each subset sharing a value of ``by``.

    Args:
        scores, labels: shape (N,), finite.
        by: one key per item (e.g. distortion name, severity, region mode, task).
        groups: one key per item (e.g. reference photo name) for group-bootstrap CIs; None: no CIs.
        min_count: subsets with fewer points are returned skipped, with the reason (>= 3).
        fit_on: None refits the logistic per subset; a (scores, labels) split or a :class:`LogisticFit`
            gives one mapping for every subset (fitted once).
        n_resamples, confidence, seed, refit_maxfev: bootstrap settings, see :func:`evaluate_with_ci`
            (the same seed for every subset).

    Returns:
        Subset key -> :class:`BreakdownEntry`, keys sorted when comparable, else in order of first appearance.
    """
    s, y = check_pair(scores, labels)
    by_keys = check_groups(by, s.size, name="by")
    group_keys = check_groups(groups, s.size)
    if not (isinstance(min_count, (int, np.integer)) and min_count >= 3):
        raise ValueError(f"min_count must be an integer >= 3 (correlations need 3 points), got {min_count!r}")
    if group_keys is not None:
        check_bootstrap_settings(n_resamples, confidence)
    fixed = None if fit_on is None else resolve_fit(s, y, fit_on)[0]

    positions: dict[Hashable, list[int]] = {}
    for i, key in enumerate(by_keys):
        positions.setdefault(key, []).append(i)
    out: dict[Hashable, BreakdownEntry] = {}
    for key in _ordered_keys(by_keys):
        idx = np.asarray(positions[key])
        n = int(idx.size)
        sub_groups = None if group_keys is None else [group_keys[i] for i in idx]
        n_groups = None if sub_groups is None else len(set(sub_groups))
        if n < min_count:
            out[key] = BreakdownEntry(key, n, None, None, True, f"only {n} points, fewer than min_count={min_count}",
                                      n_groups)
            continue
        result = evaluate(s[idx], y[idx], fit_on=fixed)
        if sub_groups is None:
            out[key] = BreakdownEntry(key, n, result)
        elif n_groups is not None and n_groups < 2:
            out[key] = BreakdownEntry(key, n, result, None, False, "one group only: no bootstrap CI", n_groups)
        else:
            ci = evaluate_with_ci(s[idx], y[idx], sub_groups, fit_on=fixed, n_resamples=n_resamples,
                                  confidence=confidence, seed=seed, refit_maxfev=refit_maxfev)
            out[key] = BreakdownEntry(key, n, result, ci, False, None, n_groups)
    return out
