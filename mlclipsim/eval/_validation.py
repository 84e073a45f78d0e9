"""Input checks shared by the evaluation protocol: 1-D float arrays, equal lengths, finite values."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np


def as_1d_float(values: Any, name: str) -> np.ndarray:
    """Return ``values`` as a 1-D float64 array (lists, numpy arrays, CPU/GPU tensors).

    Raises:
        ValueError: the input is not 1-D or not numeric.
    """
    if hasattr(values, "detach") and hasattr(values, "cpu"):  # a torch tensor, without importing torch
        values = values.detach().cpu().numpy()
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric; could not convert it to floats ({exc})") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per image), got shape {arr.shape}; "
                         "flatten it (e.g. .reshape(-1)) if it holds one value per image")
    return arr


def check_finite(arr: np.ndarray, name: str) -> None:
    """Raise if ``arr`` holds NaN or inf, saying how many and where the first ones are."""
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        first = ", ".join(str(int(i)) for i in bad[:5]) + (", ..." if bad.size > 5 else "")
        raise ValueError(f"{name} has {bad.size} non-finite value(s) (NaN/inf) of {arr.size}, at index {first}; "
                         "drop those items from every array (or fix the metric that produced them) and retry")


def check_pair(scores: Any, labels: Any, min_points: int = 3, names: tuple[str, str] = ("scores", "labels"),
               ) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (scores, labels) pair: 1-D, equal length, finite, at least ``min_points`` points.

    Returns:
        Both as float64 arrays of shape (N,).
    """
    s = as_1d_float(scores, names[0])
    y = as_1d_float(labels, names[1])
    if s.shape != y.shape:
        raise ValueError(f"{names[0]} has {s.size} values but {names[1]} has {y.size}; "
                         "give one score and one label per image, in the same order")
    check_finite(s, names[0])
    check_finite(y, names[1])
    if s.size < min_points:
        raise ValueError(f"Need at least {min_points} points, got {s.size}")
    return s, y


def check_groups(groups: Sequence[Hashable] | None, n: int, name: str = "groups") -> list[Hashable] | None:
    """Validate a per-item group key sequence of length ``n`` (or None)."""
    if groups is None:
        return None
    if isinstance(groups, np.ndarray):
        if groups.ndim != 1:
            raise ValueError(f"{name} must be 1-D (one key per item), got shape {groups.shape}")
        keys = groups.tolist()
    else:
        keys = list(groups)
    if len(keys) != n:
        raise ValueError(f"{name} has {len(keys)} entries but the data has {n}; give one key per item")
    for key in keys:
        if not isinstance(key, Hashable):
            raise ValueError(f"{name} entries must be hashable (str, int, tuple), got {type(key).__name__}")
    return keys


def check_bootstrap_settings(n_resamples: int, confidence: float) -> None:
    """Raise unless ``n_resamples`` is a positive integer and ``confidence`` lies in (0, 1)."""
    if isinstance(n_resamples, bool) or not (isinstance(n_resamples, (int, np.integer)) and n_resamples >= 1):
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1) (e.g. 0.95), got {confidence!r}")
