"""PSNR and PSNR-matched distortion pairs (the PCMP pairs of the data engine).

``match_psnr`` finds, for two distortion types, parameters that give the same PSNR against a
reference, so a preference between the two images cannot be explained by pixel error. Each type
is searched over its *continuous severity* ``t`` in ``[1, 5]`` (``Distortion.param_at(t)``, the
severity parameters linearly interpolated), with a bracketing root finder (Illinois regula falsi)
on ``PSNR(t) - target``; the reachable PSNR range of a type is ``[PSNR(5), PSNR(1)]``.

Integer parameters (JPEG quality) make ``PSNR(t)`` a step function, so the match may miss the
tolerance. The search then keeps the parameter whose PSNR is closest to the target; with
``strict=True`` (default) a ``PSNRMatchError`` is raised naming the closest PSNRs reached, with
``strict=False`` the closest pair is returned with ``within_tol=False``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio

from mlclipsim.distortions.registry import (
    NUM_SEVERITIES,
    Param,
    check_image,
    distort_with_param,
    get_distortion,
)

_MAX_EVALS = 40
_T_TOL = 1e-4


class PSNRMatchError(ValueError):
    """A distortion type cannot reach the requested PSNR (or not within the tolerance)."""


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two arrays of equal shape with data range 1 (torchmetrics, float64); ``inf`` if identical.

    >>> round(psnr(np.zeros((4, 4, 3)), np.full((4, 4, 3), 0.1)), 4)
    20.0
    """
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"psnr needs arrays of equal shape, got {a.shape} and {b.shape}")
    a64, b64 = torch.from_numpy(a.astype(np.float64)), torch.from_numpy(b.astype(np.float64))
    if not (torch.isfinite(a64).all() and torch.isfinite(b64).all()):
        raise ValueError("psnr inputs contain NaN or inf")
    return float(peak_signal_noise_ratio(a64, b64, data_range=1.0))  # torchmetrics; inf for identical arrays


@dataclass(frozen=True)
class PSNRMatch:
    """Two distortions of one reference at (nearly) the same PSNR.

    ``severity_*`` is the continuous severity in ``[1, 5]``, ``param_*`` the parameter it maps to,
    ``image_*`` float32 ``(H, W, 3)`` arrays in ``[0, 1]``, ``psnr_*`` in dB.
    """

    name_a: str
    name_b: str
    severity_a: float
    severity_b: float
    param_a: Param
    param_b: Param
    image_a: np.ndarray
    image_b: np.ndarray
    psnr_a: float
    psnr_b: float
    target_psnr: float
    within_tol: bool


@dataclass(frozen=True)
class _Point:
    t: float
    psnr: float
    image: np.ndarray


def _evaluate(reference: np.ndarray, name: str, t: float, seed: int) -> _Point:
    image = distort_with_param(reference, name, get_distortion(name).param_at(t), seed=seed)
    return _Point(t, psnr(reference, image), image)


def _solve(reference: np.ndarray, name: str, target: float, seed: int, half_tol: float) -> _Point:
    """Continuous severity whose PSNR is within ``half_tol`` of ``target`` (or the closest found)."""
    lo = _evaluate(reference, name, 1.0, seed)  # highest PSNR
    hi = _evaluate(reference, name, float(NUM_SEVERITIES), seed)  # lowest PSNR
    if not hi.psnr - half_tol <= target <= lo.psnr + half_tol:
        raise PSNRMatchError(
            f"{name!r} cannot reach PSNR {target:.2f} dB on this image: its reachable range over "
            f"severities 1..{NUM_SEVERITIES} is [{hi.psnr:.2f}, {lo.psnr:.2f}] dB"
        )
    best = min((lo, hi), key=lambda p: abs(p.psnr - target))
    f_lo, f_hi = lo.psnr - target, hi.psnr - target
    side = 0
    for _ in range(_MAX_EVALS):
        if abs(best.psnr - target) <= half_tol or hi.t - lo.t < _T_TOL:
            break
        if np.isfinite(f_lo) and f_lo != f_hi:
            t = (lo.t * f_hi - hi.t * f_lo) / (f_hi - f_lo)
            t = float(np.clip(t, lo.t + 0.01 * (hi.t - lo.t), hi.t - 0.01 * (hi.t - lo.t)))
        else:
            t = 0.5 * (lo.t + hi.t)
        mid = _evaluate(reference, name, t, seed)
        if abs(mid.psnr - target) < abs(best.psnr - target):
            best = mid
        f_mid = mid.psnr - target
        if f_mid > 0:  # still too clean: move the low end up
            lo, f_lo = mid, f_mid
            if side == 1:
                f_hi /= 2  # Illinois step keeps the far end from stalling
            side = 1
        else:
            hi, f_hi = mid, f_mid
            if side == -1:
                f_lo /= 2
            side = -1
    return best


def match_psnr(
    reference: np.ndarray,
    name_a: str,
    name_b: str,
    target_psnr: float | None = None,
    seed: int = 0,
    tol_db: float = 0.25,
    strict: bool = True,
) -> PSNRMatch:
    """Distort ``reference`` with types ``name_a`` and ``name_b`` to the same PSNR.

    Args:
        reference: clean float ``(H, W, 3)`` image in ``[0, 1]``.
        name_a, name_b: registered distortion names (may be equal, e.g. two seeds' worth).
        target_psnr: PSNR in dB to hit; ``None`` uses the PSNR of ``name_a`` at severity 3.
        seed: seed for both distortions.
        tol_db: the two PSNRs must differ by at most this (each is searched to within
            ``tol_db / 2`` of the target).
        strict: if the tolerance cannot be met (integer-valued parameters), raise
            ``PSNRMatchError`` (True) or return the closest pair with ``within_tol=False`` (False).

    Raises:
        PSNRMatchError: a type's reachable PSNR range (named in the message) excludes the target,
            or ``strict`` and the tolerance was missed.
    """
    reference = check_image(reference, "reference")
    get_distortion(name_a)
    get_distortion(name_b)
    if not tol_db > 0:
        raise ValueError(f"tol_db must be > 0, got {tol_db!r}")
    half_tol = 0.5 * float(tol_db)
    if target_psnr is None:
        point_a = _evaluate(reference, name_a, 3.0, seed)
        target = point_a.psnr
        if not np.isfinite(target):
            raise PSNRMatchError(f"{name_a!r} at severity 3 leaves this image unchanged; give target_psnr")
    else:
        target = float(target_psnr)
        if not np.isfinite(target):
            raise ValueError(f"target_psnr must be finite, got {target_psnr!r}")
        point_a = _solve(reference, name_a, target, seed, half_tol)
    point_b = _solve(reference, name_b, target, seed, half_tol)
    within = abs(point_a.psnr - point_b.psnr) <= tol_db
    if strict and not within:
        raise PSNRMatchError(
            f"could not match {name_a!r} and {name_b!r} within {tol_db} dB at {target:.2f} dB: closest "
            f"PSNRs were {point_a.psnr:.2f} and {point_b.psnr:.2f} dB (integer-valued parameters move "
            "PSNR in steps); raise tol_db or pass strict=False to accept the closest pair"
        )
    return PSNRMatch(
        name_a=name_a,
        name_b=name_b,
        severity_a=point_a.t,
        severity_b=point_b.t,
        param_a=get_distortion(name_a).param_at(point_a.t),
        param_b=get_distortion(name_b).param_at(point_b.t),
        image_a=point_a.image,
        image_b=point_b.image,
        psnr_a=point_a.psnr,
        psnr_b=point_b.psnr,
        target_psnr=target,
        within_tol=within,
    )
