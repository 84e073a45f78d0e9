"""The 5-parameter logistic that maps metric scores onto labels before PLCC/RMSE (VQEG / MIQA protocol).

    f(q) = a1 * (1/2 - 1 / (1 + exp(a2 * (q - a3)))) + a4 * q + a5

:func:`fit_logistic` fits it by least squares (MINPACK Levenberg-Marquardt, as ``curve_fit``'s default,
called through ``scipy.optimize.least_squares`` so an exhausted budget still returns its last iterate) from
a robust start: a1 = range of the labels, a2 = ±1/std(scores) with the sign of the Spearman correlation (so
decreasing relations, e.g. distances against quality labels, fit as well as increasing ones), a3 = mean
(and, as a second start, median) of the scores, a4 = 0, a5 = mean of the labels. The exponent's argument
is clipped to ±500, so no value of the parameters overflows. (a1, a2) and (-a1, -a2) give the same
curve; the fit reports the one with a1 >= 0, so a2 < 0 means a decreasing sigmoid.

Fallbacks (``success=False``; ``method`` and ``reason`` say which and why):

- ``"linear"``: the least-squares line ``y = slope * q + intercept`` replaces the logistic when the fit
  raises, gives non-finite parameters or predictions, leaves a larger residual than the line (the 5PL
  contains the line, a1 = 0, so this only happens when the optimiser got lost), or when the scores take
  fewer than 5 distinct values (5 parameters cannot be identified from fewer, the fit just interpolates).
- ``"constant"``: all scores are equal; every score maps to the mean label (PLCC is then undefined).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import least_squares
from scipy.stats import rankdata

from mlclipsim.eval._validation import check_pair

LOGISTIC_PARAM_NAMES = ("a1", "a2", "a3", "a4", "a5")
FIT_METHODS = ("logistic5", "linear", "constant")
_EXP_CLIP = 500.0
_MIN_DISTINCT = 5  # distinct score values needed to identify the 5 parameters


def logistic5(q: np.ndarray, a1: float, a2: float, a3: float, a4: float, a5: float) -> np.ndarray:
    """The 5-parameter logistic, element-wise; overflow-safe (the exponent is clipped to ±500)."""
    q = np.asarray(q, dtype=np.float64)
    z = np.clip(a2 * (q - a3), -_EXP_CLIP, _EXP_CLIP)
    return a1 * (0.5 - 1.0 / (1.0 + np.exp(z))) + a4 * q + a5


def _logistic5_jac(q: np.ndarray, a1: float, a2: float, a3: float, a4: float, a5: float) -> np.ndarray:
    """Jacobian of :func:`logistic5` w.r.t. (a1..a5), shape (N, 5)."""
    z = np.clip(a2 * (q - a3), -_EXP_CLIP, _EXP_CLIP)
    g = 1.0 / (1.0 + np.exp(z))
    dg = g * (1.0 - g)  # = -d g / d z
    return np.stack([0.5 - g, a1 * dg * (q - a3), -a1 * dg * a2, q, np.ones_like(q)], axis=1)


@dataclass(frozen=True)
class LogisticFit:
    """A fitted score -> label mapping; call it on scores to get predicted labels.

    Attributes:
        params: ``method == "logistic5"``: (a1, a2, a3, a4, a5); ``"linear"``: (slope, intercept);
            ``"constant"``: (mean label,).
        success: True only when the 5-parameter logistic was fitted and kept.
        method: "logistic5", "linear" or "constant" (the fallback that was used).
        reason: why a fallback was used, or a note on an unconverged 5PL fit; None otherwise.
        rss: residual sum of squares on the fitting data.
        n: number of fitting points.
    """

    params: tuple[float, ...]
    success: bool
    method: str
    reason: str | None = None
    rss: float = float("nan")
    n: int = 0

    def __call__(self, q: Any) -> np.ndarray:
        """Map scores (any shape) to the label scale; returns float64 of the same shape."""
        q = np.asarray(q, dtype=np.float64)
        if self.method == "logistic5":
            return logistic5(q, *self.params)
        if self.method == "linear":
            slope, intercept = self.params
            return slope * q + intercept
        if self.method == "constant":
            return np.full_like(q, self.params[0])
        raise ValueError(f"Unknown fit method {self.method!r}; expected one of {FIT_METHODS}")

    def to_dict(self) -> dict[str, Any]:
        return {"params": list(self.params), "success": self.success, "method": self.method,
                "reason": self.reason, "rss": self.rss, "n": self.n}


def _spearman_sign(s: np.ndarray, y: np.ndarray) -> float:
    rs, ry = rankdata(s), rankdata(y)
    if np.ptp(rs) == 0 or np.ptp(ry) == 0:
        return 1.0
    rho = np.corrcoef(rs, ry)[0, 1]
    return -1.0 if rho < 0 else 1.0


def _to_standard(a: np.ndarray, ms: float, ss: float, my: float, sy: float) -> np.ndarray:
    """Parameters on the raw scale -> on standardised scores/labels (z = (q - ms) / ss, t = (y - my) / sy)."""
    a1, a2, a3, a4, a5 = a
    b4 = a4 * ss / sy
    return np.array([a1 / sy, a2 * ss, (a3 - ms) / ss, b4, (a5 - my) / sy + b4 * ms / ss])


def _from_standard(b: np.ndarray, ms: float, ss: float, my: float, sy: float) -> np.ndarray:
    """Inverse of :func:`_to_standard`."""
    b1, b2, b3, b4, b5 = b
    return np.array([sy * b1, b2 / ss, ms + ss * b3, sy * b4 / ss, sy * (b5 - b4 * ms / ss) + my])


def _default_starts(z: np.ndarray, t: np.ndarray) -> list[np.ndarray]:
    """The module doc's starts, on standardised data: a2 = ±1/std = ±1, a3 = mean (0) or median."""
    a1 = float(np.ptp(t)) or 1.0
    sign = _spearman_sign(z, t)
    starts = [np.array([a1, sign, 0.0, 0.0, 0.0])]
    median = float(np.median(z))
    if abs(median) > 1e-6:
        starts.append(np.array([a1, sign, median, 0.0, 0.0]))
    return starts


def _fit_from(z: np.ndarray, t: np.ndarray, p0: np.ndarray, maxfev: int) -> tuple[np.ndarray, float, bool]:
    """Levenberg-Marquardt from ``p0``; returns (params, rss, converged). Raises on numerical failure."""
    res = least_squares(lambda p: logistic5(z, *p) - t, p0, jac=lambda p: _logistic5_jac(z, *p), method="lm",
                        max_nfev=maxfev)
    if not (np.all(np.isfinite(res.x)) and np.all(np.isfinite(res.fun))):
        raise FloatingPointError("non-finite parameters or predictions")
    return res.x, float(np.sum(res.fun ** 2)), res.status > 0


def fit_logistic(scores: Any, labels: Any, init: Sequence[float] | None = None, maxfev: int = 20000) -> LogisticFit:
    """Fit the 5-parameter logistic mapping ``scores`` onto ``labels`` (fallbacks: see the module doc).

    The fit runs on standardised scores and labels (zero mean, unit variance; better conditioned) and
    the parameters are converted back to the raw scales. If the evaluation budget runs out before
    convergence (typical of near-linear data, where the 5PL's optimum drifts to a1 -> inf), the last
    iterate is kept when it beats the line, and ``reason`` says so.

    Args:
        scores: metric scores, shape (N,), N >= 3, finite; any scale and direction.
        labels: ground-truth labels (e.g. MMOS in [0, 1]), shape (N,), finite.
        init: optional starting point (a1..a5) on the raw scale, e.g. a full-data fit when refitting on
            bootstrap resamples; tried first, and the default starts only if it fails or loses to the line.
        maxfev: maximum function evaluations per start.

    Returns:
        A :class:`LogisticFit`; ``fit(scores)`` are the predicted labels.

    Raises:
        ValueError: inputs not 1-D, of different lengths, non-finite, or fewer than 3 points.
    """
    s, y = check_pair(scores, labels)
    n = int(s.size)
    n_distinct = int(np.unique(s).size)
    if n_distinct == 1:
        mean = float(np.mean(y))
        return LogisticFit((mean,), False, "constant",
                           f"all {n} scores are equal ({s[0]:.6g}); every score maps to the mean label",
                           float(np.sum((y - mean) ** 2)), n)

    slope, intercept = np.polyfit(s, y, 1)
    linear = (float(slope), float(intercept))
    rss_linear = float(np.sum((slope * s + intercept - y) ** 2))

    def _linear(reason: str) -> LogisticFit:
        return LogisticFit(linear, False, "linear", reason, rss_linear, n)

    if n_distinct < _MIN_DISTINCT:
        return _linear(f"only {n_distinct} distinct score values; the 5-parameter logistic needs at least "
                       f"{_MIN_DISTINCT} to be identified, so a least-squares line is used")

    ms, ss, my = float(np.mean(s)), float(np.std(s)), float(np.mean(y))
    sy = float(np.std(y)) or 1.0
    z, t = (s - ms) / ss, (y - my) / sy
    tolerance = rss_linear * (1.0 + 1e-9) + 1e-12

    candidates: list[list[np.ndarray]] = [_default_starts(z, t)]
    if init is not None:
        init_arr = np.asarray(init, dtype=np.float64)
        if init_arr.shape != (5,) or not np.all(np.isfinite(init_arr)):
            raise ValueError(f"init must be 5 finite numbers (a1..a5), got {init!r}")
        candidates.insert(0, [_to_standard(init_arr, ms, ss, my, sy)])

    best: tuple[float, np.ndarray, bool] | None = None
    errors: list[str] = []
    for starts in candidates:
        for p0 in starts:
            try:
                with np.errstate(all="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    b, rss_std, converged = _fit_from(z, t, p0, maxfev)
            except (ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:
                errors.append(str(exc).splitlines()[0])
                continue
            rss = rss_std * sy * sy
            if best is None or rss < best[0]:
                best = (rss, b, converged)
        if best is not None and best[0] <= tolerance:
            break  # a good warm start: the default starts are not needed

    if best is None:
        return _linear("logistic fit failed (" + "; ".join(errors) + "); a least-squares line is used")
    rss, b, converged = best
    if rss > tolerance:
        return _linear(f"logistic fit residual {rss:.6g} is worse than the linear fit's {rss_linear:.6g}; "
                       "a least-squares line is used")
    a1, a2, a3, a4, a5 = (float(p) for p in _from_standard(b, ms, ss, my, sy))
    if a1 < 0:  # (a1, a2) and (-a1, -a2) are the same curve: report the one with a1 >= 0
        a1, a2 = -a1, -a2
    reason = None if converged else (f"stopped at maxfev={maxfev} before converging (near-linear data?); "
                                     "the last iterate is kept since it fits better than a line")
    return LogisticFit((a1, a2, a3, a4, a5), True, "logistic5", reason, rss, n)
