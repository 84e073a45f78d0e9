"""Two-alternative forced choice (2AFC) on preference pairs: does a metric prefer what the machines prefer?

For pair i with images A and B, the metric's choice is p_i = 1 if it scores A higher, 0 if B, 1/2 on
equal scores. Two numbers come out:

- **accuracy** against the majority label m_i in {0, 1/2, 1} (1: A preferred): mean of 1 - |p_i - m_i|
  over the pairs whose majority is not a tie (m_i = 1/2 pairs are excluded and counted); a metric tie
  therefore counts 1/2.
- **soft agreement** with the soft label s_i in [0, 1] (the fraction of judges, or the machine
  preference, for A): mean of p_i s_i + (1 - p_i)(1 - s_i) over all pairs, the 2AFC score of
  BAPPS / LPIPS (its ceiling is mean(max(s_i, 1 - s_i)), not 1).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlclipsim.eval._validation import as_1d_float, check_bootstrap_settings, check_finite
from mlclipsim.eval.bootstrap import BootstrapCI, bootstrap_ci


@dataclass(frozen=True)
class TwoAFCResult:
    """2AFC statistics of one metric on a set of preference pairs.

    Attributes:
        accuracy: agreement with the majority label over decided pairs, in [0, 1] (NaN if none is decided).
        soft_agreement: BAPPS 2AFC score over all pairs, in [0, 1].
        n: pairs.
        n_decided: pairs with a non-tie majority label (the accuracy's denominator).
        n_label_ties: pairs excluded from the accuracy because their majority label is a tie.
        n_metric_ties: pairs the metric scores equally (each counts 1/2).
        accuracy_ci, soft_agreement_ci: group-bootstrap CIs when ``groups`` was given, else None.
    """

    accuracy: float
    soft_agreement: float
    n: int
    n_decided: int
    n_label_ties: int
    n_metric_ties: int
    accuracy_ci: BootstrapCI | None = None
    soft_agreement_ci: BootstrapCI | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "soft_agreement": self.soft_agreement, "n": self.n,
                "n_decided": self.n_decided, "n_label_ties": self.n_label_ties, "n_metric_ties": self.n_metric_ties,
                "accuracy_ci": None if self.accuracy_ci is None else self.accuracy_ci.to_dict(),
                "soft_agreement_ci": None if self.soft_agreement_ci is None else self.soft_agreement_ci.to_dict()}


def _accuracy(p: np.ndarray, m: np.ndarray) -> float:
    decided = m != 0.5
    return float(np.mean(1.0 - np.abs(p[decided] - m[decided]))) if decided.any() else float("nan")


def _soft_agreement(p: np.ndarray, s: np.ndarray) -> float:
    return float(np.mean(p * s + (1.0 - p) * (1.0 - s)))


def majority_from_soft(soft_label: Any) -> np.ndarray:
    """Majority labels from soft labels: > 0.5 -> 1 (A), < 0.5 -> 0 (B), exactly 0.5 -> 0.5 (tie)."""
    s = as_1d_float(soft_label, "soft_label")
    return np.where(s > 0.5, 1.0, np.where(s < 0.5, 0.0, 0.5))


def two_afc(score_a: Any, score_b: Any, soft_label: Any, majority_label: Any | None = None,
            groups: Sequence[Hashable] | None = None, higher_is_better: bool = True, n_resamples: int = 1000,
            confidence: float = 0.95, seed: int = 0) -> TwoAFCResult:
    """2AFC accuracy and soft agreement of a metric on preference pairs (see the module doc).

    Args:
        score_a, score_b: the metric's score of image A and of image B, shape (N,), finite.
        soft_label: preference for A in [0, 1], shape (N,).
        majority_label: 1 (A), 0 (B) or 0.5 (tie) per pair; None derives it from ``soft_label``.
        groups: one key per pair (e.g. reference photo name) for group-bootstrap CIs; None: no CIs.
        higher_is_better: False for distances (LPIPS, DISTS): the metric then prefers the lower score.
        n_resamples, confidence, seed: bootstrap settings.

    Raises:
        ValueError: shapes differ, NaN/inf, soft labels outside [0, 1], majority labels not in {0, 0.5, 1}.
    """
    a = as_1d_float(score_a, "score_a")
    b = as_1d_float(score_b, "score_b")
    s = as_1d_float(soft_label, "soft_label")
    m = majority_from_soft(s) if majority_label is None else as_1d_float(majority_label, "majority_label")
    named = {"score_a": a, "score_b": b, "soft_label": s, "majority_label": m}
    if len({v.size for v in named.values()}) != 1:
        raise ValueError(f"One value per pair in every input, got lengths {({k: v.size for k, v in named.items()})}")
    if a.size == 0:
        raise ValueError("No pairs given")
    for name, v in named.items():
        check_finite(v, name)
    if np.any((s < 0) | (s > 1)):
        raise ValueError(f"soft_label must lie in [0, 1] (preference for A), got range [{s.min():.4g}, {s.max():.4g}]")
    if not np.all(np.isin(m, (0.0, 0.5, 1.0))):
        raise ValueError(f"majority_label must be 1 (A), 0 (B) or 0.5 (tie), got values {np.unique(m)[:10]}; "
                         "or pass None to derive it from soft_label")

    diff = a - b if higher_is_better else b - a
    p = np.where(diff > 0, 1.0, np.where(diff < 0, 0.0, 0.5))
    n_label_ties = int(np.sum(m == 0.5))
    acc_ci = soft_ci = None
    if groups is not None:
        check_bootstrap_settings(n_resamples, confidence)
        kw = {"n_resamples": n_resamples, "confidence": confidence, "seed": seed}
        acc_ci = bootstrap_ci(_accuracy, groups, p, m, **kw)
        soft_ci = bootstrap_ci(_soft_agreement, groups, p, s, **kw)
    return TwoAFCResult(_accuracy(p, m), _soft_agreement(p, s), int(a.size), int(a.size) - n_label_ties,
                        n_label_ties, int(np.sum(p == 0.5)), acc_ci, soft_ci)
