"""Correlation protocol: SRCC, KRCC on raw scores; PLCC, RMSE after the 5-parameter logistic.

:func:`evaluate` is the MIQA/VQEG protocol in one call. SRCC (Spearman) and KRCC (Kendall tau-b) are
rank statistics and use the raw scores. PLCC (Pearson) and RMSE are computed between the labels and the
scores mapped onto the label scale by :func:`~mlclipsim.eval.logistic.fit_logistic`. By default the
logistic is fitted on the scored data itself (``fit_split="scored"``, as MIQA reports it); pass
``fit_on=(scores_fit, labels_fit)`` to fit it on a separate split, or an already fitted
:class:`~mlclipsim.eval.logistic.LogisticFit` (``fit_split="separate"``).

A statistic of a constant input (all scores or all labels equal) is undefined and returned as NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import kendalltau, spearmanr

from mlclipsim.eval._validation import check_pair
from mlclipsim.eval.logistic import LogisticFit, fit_logistic

FIT_SPLITS = ("scored", "separate")


def _constant(*arrays: np.ndarray) -> bool:
    return any(np.ptp(a) == 0 for a in arrays)


def _srcc(s: np.ndarray, y: np.ndarray) -> float:
    return float("nan") if _constant(s, y) else float(spearmanr(s, y)[0])


def _krcc(s: np.ndarray, y: np.ndarray) -> float:
    return float("nan") if _constant(s, y) else float(kendalltau(s, y, variant="b")[0])


def _plcc(p: np.ndarray, y: np.ndarray) -> float:
    if _constant(p, y):
        return float("nan")
    return float(np.clip(np.corrcoef(p, y)[0, 1], -1.0, 1.0))


def _rmse(p: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean((p - y) ** 2)))


def srcc(scores: Any, labels: Any) -> float:
    """Spearman rank correlation of (N,) scores and labels, in [-1, 1]; NaN if either is constant."""
    return _srcc(*check_pair(scores, labels))


def krcc(scores: Any, labels: Any) -> float:
    """Kendall rank correlation (tau-b, tie-corrected) of (N,) scores and labels, in [-1, 1]; NaN if constant."""
    return _krcc(*check_pair(scores, labels))


def plcc(predictions: Any, labels: Any) -> float:
    """Pearson correlation of (N,) predictions and labels, in [-1, 1]; NaN if either is constant.

    This is the raw coefficient: for the protocol's PLCC pass logistic-mapped scores
    (``fit_logistic(s, y)(s)``) or use :func:`evaluate`.
    """
    return _plcc(*check_pair(predictions, labels, names=("predictions", "labels")))


def rmse(predictions: Any, labels: Any) -> float:
    """Root-mean-square error of (N,) predictions against labels, in label units (>= 0).

    Only meaningful once the scores are on the label scale: pass logistic-mapped scores or use :func:`evaluate`.
    """
    return _rmse(*check_pair(predictions, labels, names=("predictions", "labels")))


@dataclass(frozen=True)
class CorrelationResult:
    """Protocol statistics of one set of scores against labels.

    Attributes:
        srcc: Spearman rank correlation of raw scores and labels.
        plcc: Pearson correlation of logistic-mapped scores and labels.
        krcc: Kendall tau-b of raw scores and labels.
        rmse: RMSE of logistic-mapped scores against labels (label units).
        n: number of points.
        fit: the score -> label mapping used for PLCC/RMSE (``fit.method`` says if a fallback was used).
        fit_split: "scored" (fitted on these points) or "separate" (fitted elsewhere).
    """

    srcc: float
    plcc: float
    krcc: float
    rmse: float
    n: int
    fit: LogisticFit
    fit_split: str

    def to_dict(self) -> dict[str, Any]:
        return {"srcc": self.srcc, "plcc": self.plcc, "krcc": self.krcc, "rmse": self.rmse, "n": self.n,
                "fit": self.fit.to_dict(), "fit_split": self.fit_split}


def resolve_fit(s: np.ndarray, y: np.ndarray,
                fit_on: tuple[Any, Any] | LogisticFit | None) -> tuple[LogisticFit, str]:
    """The mapping to use and its split name: fit on (s, y), fit on ``fit_on``, or ``fit_on`` itself."""
    if fit_on is None:
        return fit_logistic(s, y), "scored"
    if isinstance(fit_on, LogisticFit):
        return fit_on, "separate"
    if isinstance(fit_on, (tuple, list)) and len(fit_on) == 2:
        s_fit, y_fit = check_pair(fit_on[0], fit_on[1], names=("fit_on scores", "fit_on labels"))
        return fit_logistic(s_fit, y_fit), "separate"
    raise ValueError("fit_on must be None (fit on the scored data), a (scores, labels) pair of the fitting "
                     f"split, or a fitted LogisticFit; got {type(fit_on).__name__}")


def statistics(s: np.ndarray, y: np.ndarray, fit: LogisticFit) -> tuple[float, float, float, float]:
    """(srcc, plcc, krcc, rmse) of validated arrays under a given mapping (no checks; for resampling loops)."""
    pred = fit(s)
    return _srcc(s, y), _plcc(pred, y), _krcc(s, y), _rmse(pred, y)


def evaluate(scores: Any, labels: Any, fit_on: tuple[Any, Any] | LogisticFit | None = None) -> CorrelationResult:
    """SRCC, PLCC, KRCC and RMSE of ``scores`` against ``labels`` under the logistic protocol.

    Args:
        scores: metric scores, shape (N,), N >= 3, finite (any direction: the logistic handles decreasing).
        labels: ground truth, shape (N,), finite.
        fit_on: None to fit the logistic on (scores, labels) (MIQA protocol); a (scores_fit, labels_fit)
            pair from a separate split to fit it there; or a fitted :class:`LogisticFit` to reuse.

    Raises:
        ValueError: not 1-D, lengths differ, NaN/inf present (the message counts them), fewer than 3 points.
    """
    s, y = check_pair(scores, labels)
    fit, split = resolve_fit(s, y, fit_on)
    r_s, r_p, r_k, e = statistics(s, y, fit)
    return CorrelationResult(r_s, r_p, r_k, e, int(s.size), fit, split)
