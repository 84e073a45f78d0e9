"""Bjontegaard deltas between two rate-quality curves (via the ``bjontegaard`` package).

- :func:`bd_rate`: mean rate difference of test against anchor at equal quality, in percent
  (negative: the test codec needs fewer bits). The package interpolates log10(rate) as a function of
  quality and averages over the overlap of the two quality ranges.
- :func:`bd_quality`: mean quality difference at equal rate, in the quality's units (e.g. dB for
  PSNR, agreement points for a task score in [0, 1]); averaged over the overlap of the log10(rate) ranges.

Rates are bits per pixel (> 0); quality is any "higher is better" score.

Before interpolating, each curve is made monotone by a **Pareto filter**: points are sorted by rate
(ties: highest quality first) and a point is kept only if its quality is strictly higher than that of
every point of lower rate. A dominated point (more bits, no better quality) is never an operating point
one would choose, and the interpolators need strictly increasing abscissae. The dropped indices are
reported. The ``overlap`` (length of the intersection over length of the union of the two ranges the
delta is averaged over) is reported too; with no overlap the result has ``value=None`` and
``reason="no overlap"`` instead of an extrapolation, and likewise a curve with fewer than 2 points left.

Interpolation methods (the package's): "pchip" (default, monotone, >= 2 points), "akima" (>= 3 points;
the package would silently swap in a line for 2), "cubic" (a cubic polynomial fitted to the points,
>= 4). With too few points the method falls back to "pchip" and ``method_used``/``note`` say so.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlclipsim.eval._validation import as_1d_float, check_finite

METHOD_MIN_POINTS = {"pchip": 2, "akima": 3, "cubic": 4}
FALLBACK_METHOD = "pchip"


@dataclass(frozen=True)
class BDResult:
    """A Bjontegaard delta with what went into it.

    Attributes:
        value: BD-rate in percent (kind "bd_rate") or BD-quality in quality units (kind "bd_quality");
            None when it could not be computed (see ``reason``).
        kind: "bd_rate" or "bd_quality".
        method: the interpolation method asked for.
        method_used: the one used (differs when a curve had too few points for ``method``); None if none.
        overlap: intersection / union of the two curves' ranges along the averaging axis, in [0, 1]
            (quality for BD-rate, log10 rate for BD-quality); NaN when a curve had < 2 points.
        reason: why ``value`` is None ("no overlap", "too few points ..."), else None.
        note: e.g. which fallback method was used and why.
        n_anchor, n_test: points kept by the Pareto filter.
        dropped_anchor, dropped_test: input indices the Pareto filter removed.
    """

    value: float | None
    kind: str
    method: str
    method_used: str | None
    overlap: float
    reason: str | None = None
    note: str | None = None
    n_anchor: int = 0
    n_test: int = 0
    dropped_anchor: tuple[int, ...] = field(default_factory=tuple)
    dropped_test: tuple[int, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "kind": self.kind, "method": self.method, "method_used": self.method_used,
                "overlap": self.overlap, "reason": self.reason, "note": self.note, "n_anchor": self.n_anchor,
                "n_test": self.n_test, "dropped_anchor": list(self.dropped_anchor),
                "dropped_test": list(self.dropped_test)}


def _check_curve(rate: Any, quality: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    r = as_1d_float(rate, f"rate_{name}")
    q = as_1d_float(quality, f"quality_{name}")
    if r.size != q.size:
        raise ValueError(f"rate_{name} has {r.size} points but quality_{name} has {q.size}; "
                         "give one (rate, quality) pair per operating point")
    if r.size == 0:
        raise ValueError(f"The {name} curve has no points")
    check_finite(r, f"rate_{name}")
    check_finite(q, f"quality_{name}")
    if np.any(r <= 0):
        raise ValueError(f"rate_{name} must be > 0 (bits per pixel; BD works on log rate), "
                         f"got minimum {r.min():.4g}; drop zero-rate points")
    return r, q


def pareto_filter(rate: Any, quality: Any) -> np.ndarray:
    """Indices of the non-dominated points, sorted by increasing rate (and then strictly increasing quality).

    A point is kept only if its quality is strictly higher than that of every point of lower rate; of
    points with equal rate only the one with the highest quality can be kept.
    """
    r, q = _check_curve(rate, quality, "curve")
    order = np.lexsort((-q, r))  # by rate, ties: highest quality first
    kept, best = [], -np.inf
    for i in order:
        if q[i] > best:
            kept.append(int(i))
            best = q[i]
    return np.asarray(kept, dtype=np.int64)


def _overlap(x_a: np.ndarray, x_t: np.ndarray) -> float:
    inter = min(x_a.max(), x_t.max()) - max(x_a.min(), x_t.min())
    union = max(x_a.max(), x_t.max()) - min(x_a.min(), x_t.min())
    return float(max(inter, 0.0) / union) if union > 0 else 0.0


def _bd(kind: str, rate_anchor: Any, quality_anchor: Any, rate_test: Any, quality_test: Any, method: str,
        min_overlap: float) -> BDResult:
    if method not in METHOD_MIN_POINTS:
        raise ValueError(f"Unknown interpolation method {method!r}; choose one of {sorted(METHOD_MIN_POINTS)}")
    if not 0.0 <= min_overlap <= 1.0:
        raise ValueError(f"min_overlap must be in [0, 1], got {min_overlap!r}")
    ra, qa = _check_curve(rate_anchor, quality_anchor, "anchor")
    rt, qt = _check_curve(rate_test, quality_test, "test")
    keep_a, keep_t = pareto_filter(ra, qa), pareto_filter(rt, qt)
    common = {"kind": kind, "method": method, "n_anchor": int(keep_a.size), "n_test": int(keep_t.size),
              "dropped_anchor": tuple(np.setdiff1d(np.arange(ra.size), keep_a).tolist()),
              "dropped_test": tuple(np.setdiff1d(np.arange(rt.size), keep_t).tolist())}
    ra, qa, rt, qt = ra[keep_a], qa[keep_a], rt[keep_t], qt[keep_t]

    n_min = min(ra.size, rt.size)
    if n_min < 2:
        return BDResult(None, method_used=None, overlap=float("nan"),
                        reason=f"too few points after the Pareto filter (anchor {ra.size}, test {rt.size}); "
                               "need >= 2 on each curve", **common)
    axis_a, axis_t = (qa, qt) if kind == "bd_rate" else (np.log10(ra), np.log10(rt))
    overlap = _overlap(axis_a, axis_t)
    if overlap <= 0.0:
        return BDResult(None, method_used=None, overlap=overlap, reason="no overlap", **common)
    if overlap < min_overlap:
        return BDResult(None, method_used=None, overlap=overlap,
                        reason=f"overlap {overlap:.3f} below min_overlap={min_overlap}", **common)

    method_used, note = method, None
    if n_min < METHOD_MIN_POINTS[method]:
        method_used = FALLBACK_METHOD
        note = (f"{method!r} needs >= {METHOD_MIN_POINTS[method]} points per curve, the smaller curve has "
                f"{n_min}; used {FALLBACK_METHOD!r}")
    import bjontegaard  # imported here: it pulls in matplotlib.pyplot, which `import mlclipsim.eval` should not

    fn = bjontegaard.bd_rate if kind == "bd_rate" else bjontegaard.bd_psnr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overlap warnings: reported in the result instead
        value = float(fn(ra, qa, rt, qt, method_used, require_matching_points=False, min_overlap=0.0))
    if not np.isfinite(value):
        return BDResult(None, method_used=method_used, overlap=overlap, reason="interpolation gave a non-finite value",
                        note=note, **common)
    return BDResult(value, method_used=method_used, overlap=overlap, note=note, **common)


def bd_rate(rate_anchor: Any, quality_anchor: Any, rate_test: Any, quality_test: Any, method: str = "pchip",
            min_overlap: float = 0.0) -> BDResult:
    """BD-rate of test against anchor, in percent (negative = the test saves bits at equal quality).

    Args:
        rate_anchor, quality_anchor: the anchor's operating points, shape (Na,), rates in bpp (> 0).
        rate_test, quality_test: the test's operating points, shape (Nt,).
        method: "pchip", "akima" or "cubic" (falls back to "pchip" with too few points).
        min_overlap: below this quality-range overlap fraction, return ``value=None`` (0: only no overlap).

    Raises:
        ValueError: lengths differ, NaN/inf, rate <= 0, empty curve, unknown method.
    """
    return _bd("bd_rate", rate_anchor, quality_anchor, rate_test, quality_test, method, min_overlap)


def bd_quality(rate_anchor: Any, quality_anchor: Any, rate_test: Any, quality_test: Any, method: str = "pchip",
               min_overlap: float = 0.0) -> BDResult:
    """BD-quality (BD-PSNR for PSNR) of test against anchor, in quality units (positive = test better).

    Same arguments as :func:`bd_rate`; the overlap is measured on log10(rate).
    """
    return _bd("bd_quality", rate_anchor, quality_anchor, rate_test, quality_test, method, min_overlap)
