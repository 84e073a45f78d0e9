"""A readable scale for ML-CLIPSim: the score mapped to predicted machine agreement.

A raw ML-CLIPSim score (a weighted mean of cosines) has no unit a user can reason about: heavily
compressed photos still score above 0.9. The agreement scale maps it through the 5-parameter logistic
(:func:`mlclipsim.eval.logistic.logistic5`) fitted on the training photos of the machine-preference
dataset, score -> mean MMOS (the mean over task models of how much their output on the distorted image
agrees with their output on the original: 1 = unchanged, 0 = nothing left). The map is shipped per
backbone in its weight file (``agreement_scale``: the logistic's parameters, the weights of the variant
it was fitted for, the photos, the command) and is only valid for that variant.

The map is checked to be non-decreasing on [0, 1], so it keeps every ranking, and rate control can
invert it (:meth:`AgreementScale.score_for`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

SCALES: tuple[str, ...] = ("raw", "agreement")
_GRID = np.linspace(0.0, 1.0, 2001)


def _logistic5(q: Any, a1: float, a2: float, a3: float, a4: float, a5: float) -> Any:
    """The 5-parameter logistic on numpy arrays or torch tensors (differentiable for tensors)."""
    if isinstance(q, torch.Tensor):
        return a1 * (0.5 - torch.sigmoid(-a2 * (q - a3))) + a4 * q + a5
    q = np.asarray(q, dtype=np.float64)
    z = np.clip(a2 * (q - a3), -500.0, 500.0)
    return a1 * (0.5 - 1.0 / (1.0 + np.exp(z))) + a4 * q + a5


@dataclass(frozen=True)
class AgreementScale:
    """Score in [0,1] -> predicted machine agreement in [0,1] (monotone); ``scale(score)``.

    Attributes:
        params: the logistic's (a1, a2, a3, a4, a5).
        weights: the variant's normalised weights (term name -> weight) the map was fitted for.
        record: the shipped record (provenance), or {} for a map made in memory.
    """

    params: tuple[float, float, float, float, float]
    weights: Mapping[str, float]
    record: Mapping[str, Any]

    def __post_init__(self) -> None:
        if len(self.params) != 5 or not all(math.isfinite(p) for p in self.params):
            raise ValueError(f"An agreement scale needs 5 finite logistic parameters, got {self.params!r}.")
        values = _logistic5(_GRID, *self.params)
        if np.any(np.diff(values) < -1e-12):
            raise ValueError("This logistic is not non-decreasing on [0, 1]; it cannot serve as a scale.")

    def __call__(self, score: torch.Tensor) -> torch.Tensor:
        """(...) scores -> (...) predicted agreement, clamped to [0,1]; differentiable."""
        return _logistic5(score, *self.params).clamp(0.0, 1.0)

    @property
    def range(self) -> tuple[float, float]:
        """Predicted agreement at score 0 and at score 1 (identical images)."""
        low, high = (float(np.clip(v, 0.0, 1.0)) for v in _logistic5(np.array([0.0, 1.0]), *self.params))
        return low, high

    def score_for(self, agreement: float) -> float:
        """The lowest raw score whose predicted agreement reaches ``agreement``.

        Raises:
            ValueError: ``agreement`` is above what identical images are predicted to get.
        """
        low, high = self.range
        if agreement > high:
            raise ValueError(f"A predicted agreement of {agreement} is out of reach: this scale tops out at {high:.3f} "
                             f"(identical images); choose a target in ({low:.3f}, {high:.3f}].")
        if agreement <= low:
            return 0.0
        lo, hi = 0.0, 1.0  # f(lo) < agreement <= f(hi)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if float(np.clip(_logistic5(mid, *self.params), 0.0, 1.0)) >= agreement:
                hi = mid
            else:
                lo = mid
        return hi


def fit_agreement_scale(scores: Sequence[float], agreement: Sequence[float],
                        weights: Mapping[str, float]) -> AgreementScale:
    """Fit the map on (score, mean MMOS) of training images: the 5-parameter logistic by least squares
    under the bounds a1, a2, a4 >= 0, which make it non-decreasing (scipy's trust-region reflective solver,
    started from :func:`mlclipsim.eval.logistic.fit_logistic`'s unconstrained fit projected onto the bounds).

    Raises:
        ValueError: fewer than 5 distinct scores, or the fit does not converge to finite parameters.
    """
    from scipy.optimize import least_squares

    from mlclipsim.eval.logistic import fit_logistic, logistic5

    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(agreement, dtype=np.float64)
    free = fit_logistic(s, y)
    if free.method == "logistic5":
        start = np.array(free.params)
    else:
        start = np.array([float(np.ptp(y)) or 1.0, 1.0 / (float(np.std(s)) or 1.0), float(np.mean(s)), 0.0,
                          float(np.mean(y))])
    if start[0] * start[1] < 0:  # (a1, a2) ~ (-a1, -a2)
        start[:2] = -start[:2]
    lower = np.array([0.0, 0.0, -np.inf, 0.0, -np.inf])
    start = np.clip(np.maximum(start, lower + 1e-9 * (lower == 0)), lower, None)
    result = least_squares(lambda p: logistic5(s, *p) - y, start, bounds=(lower, np.full(5, np.inf)),
                           method="trf", max_nfev=20000)
    if not np.all(np.isfinite(result.x)):
        raise ValueError("The monotone 5-parameter logistic did not converge to finite parameters.")
    rss = float(np.sum(result.fun ** 2))
    return AgreementScale(tuple(float(p) for p in result.x), dict(weights),
                          {"rss": rss, "n": int(s.size), "unconstrained_fit": free.to_dict()})


def load_agreement_scale(backbone_name: str, weights: Mapping[str, float]) -> AgreementScale:
    """The scale shipped for ``backbone_name``, checked to belong to the variant with these ``weights``.

    Raises:
        ValueError: no scale ships for the backbone, or it was fitted for another variant.
    """
    from mlclipsim.metrics.layer_weights import load_calibrated_weights

    record = (load_calibrated_weights(backbone_name) or {}).get("agreement_scale")
    if record is None:
        raise ValueError(f"No agreement scale ships for backbone {backbone_name!r}; use scale='raw'.")
    fitted_for = {k: float(v) for k, v in record["weights"].items()}
    mine = {k: float(v) for k, v in weights.items() if v > 0}
    if set(fitted_for) != set(mine) or any(abs(fitted_for[k] - mine[k]) > 1e-5 for k in mine):
        raise ValueError(f"The agreement scale shipped for {backbone_name!r} was fitted for the weights {fitted_for}, "
                         f"not {mine}; use the backbone's default variant (no layers/weights/magnitude arguments) "
                         "or scale='raw'.")
    return AgreementScale(tuple(float(p) for p in record["params"]), fitted_for, record)
