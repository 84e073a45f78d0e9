"""Evaluation protocol on plain arrays: correlations after a 5-parameter logistic, group-bootstrap CIs,
breakdowns, 2AFC on preference pairs and Bjontegaard deltas of rate-quality curves.

Knows nothing of metrics or datasets: every function takes scores, labels and keys as arrays.
"""

from mlclipsim.eval.bd_rate import METHOD_MIN_POINTS, BDResult, bd_quality, bd_rate, pareto_filter
from mlclipsim.eval.bootstrap import BootstrapCI, CorrelationCI, bootstrap_ci, evaluate_with_ci
from mlclipsim.eval.breakdown import BreakdownEntry, breakdown
from mlclipsim.eval.correlation import CorrelationResult, evaluate, krcc, plcc, rmse, srcc
from mlclipsim.eval.logistic import LogisticFit, fit_logistic, logistic5
from mlclipsim.eval.two_afc import TwoAFCResult, majority_from_soft, two_afc

__all__ = [
    "BDResult",
    "BootstrapCI",
    "BreakdownEntry",
    "CorrelationCI",
    "CorrelationResult",
    "LogisticFit",
    "METHOD_MIN_POINTS",
    "TwoAFCResult",
    "bd_quality",
    "bd_rate",
    "bootstrap_ci",
    "breakdown",
    "evaluate",
    "evaluate_with_ci",
    "fit_logistic",
    "krcc",
    "logistic5",
    "majority_from_soft",
    "pareto_filter",
    "plcc",
    "rmse",
    "srcc",
    "two_afc",
]
