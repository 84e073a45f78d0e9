"""Registry of named image distortions with five graded severities.

A distortion maps a clean image to a degraded one. Images are ``float32`` numpy arrays of shape
``(H, W, 3)`` with values in ``[0, 1]``; every distortion returns the same shape, dtype and range.
Severity 1 is subtle and severity 5 is extreme; each severity is one value of the distortion's
parameter (a float or a tuple of floats). ``param_at`` interpolates between severities, so a
continuous severity in ``[1, 5]`` names a continuous parameter (used by PSNR matching).

Randomness only ever comes from the ``numpy.random.Generator`` handed to ``apply``; ``distort``
builds it from ``seed``, so the same inputs and seed give bit-identical output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mlclipsim.core.registry import ENTRY_POINT_GROUPS, Registry

Param = float | tuple[float, ...]
DistortionFn = Callable[[np.ndarray, Param, np.random.Generator], np.ndarray]

NUM_SEVERITIES = 5
_RANGE_SLACK = 1e-4  # tolerated overshoot of [0, 1] in inputs (resampling round-off)


@dataclass(frozen=True)
class Distortion:
    """One named distortion.

    Attributes:
        name: registry key, e.g. ``"defocus_blur"``.
        fn: ``fn(image, param, rng) -> image`` on float32 ``(H, W, 3)`` arrays in ``[0, 1]``.
            It must not modify its input.
        severity_params: five parameters, severity 1 (subtle) to 5 (extreme).
        doc: what the parameter means (units, reference resolution).
        stochastic: whether ``fn`` draws from ``rng`` (different seeds give different images).
        integer_param: whether ``fn`` rounds its parameter to integers (e.g. a codec quality);
            such a distortion is only continuous on an integer grid.
    """

    name: str
    fn: DistortionFn
    severity_params: tuple[Param, ...]
    doc: str
    stochastic: bool = False
    integer_param: bool = False

    def __post_init__(self) -> None:
        if len(self.severity_params) != NUM_SEVERITIES:
            raise ValueError(
                f"distortion {self.name!r} needs {NUM_SEVERITIES} severity parameters, got {len(self.severity_params)}"
            )
        lengths = {len(p) if isinstance(p, tuple) else 0 for p in self.severity_params}
        if len(lengths) != 1:
            raise ValueError(
                f"distortion {self.name!r}: severity parameters must all be floats or all be "
                f"tuples of one length, got {self.severity_params!r}"
            )

    def apply(self, image: np.ndarray, param: Param, rng: np.random.Generator) -> np.ndarray:
        """Distort a float32 ``(H, W, 3)`` image in ``[0, 1]``; returns float32, clipped to ``[0, 1]``."""
        out = np.asarray(self.fn(image, param, rng), dtype=np.float32)
        if out.shape != image.shape:
            raise RuntimeError(f"distortion {self.name!r} returned shape {out.shape} for input {image.shape}")
        return np.clip(out, 0.0, 1.0, out=out)

    def param_at(self, severity: float) -> Param:
        """The parameter at a continuous severity in ``[1, 5]``.

        Integer severities return ``severity_params`` exactly; in between, each component is
        linearly interpolated between the two neighbouring severities (and rounded to an int for
        ``integer_param`` distortions, so the returned value is the one actually applied).
        """
        s = float(severity)
        if not np.isfinite(s) or not 1.0 <= s <= NUM_SEVERITIES:
            raise ValueError(f"continuous severity must lie in [1, {NUM_SEVERITIES}], got {severity!r}")
        lo = int(np.floor(s))
        if lo == s:
            return self.severity_params[lo - 1]
        w = s - lo
        a, b = self.severity_params[lo - 1], self.severity_params[lo]
        cast = (lambda v: int(round(v))) if self.integer_param else float
        if isinstance(a, tuple):
            return tuple(cast((1 - w) * x + w * y) for x, y in zip(a, b))
        return cast((1 - w) * a + w * b)


def register_distortion(distortion: Distortion, overwrite: bool = False) -> Distortion:
    """Add ``distortion`` to the registry under its name and return it.

    Raises:
        ValueError: the name is taken and ``overwrite`` is False.
    """
    if not isinstance(distortion, Distortion):
        raise TypeError(f"register_distortion takes a Distortion, got {type(distortion).__name__}.")
    return DISTORTIONS.register(distortion.name, distortion, distortion.doc, overwrite=overwrite)


def _register_entry_point(name: str, distortion: Distortion) -> None:
    if getattr(distortion, "name", name) != name:
        raise ValueError(f"the entry point is named {name!r} but its Distortion is named {distortion.name!r}")
    register_distortion(distortion)


DISTORTIONS: Registry[Distortion] = Registry("distortion", ENTRY_POINT_GROUPS["distortion"],
                                             register_entry_point=_register_entry_point)
"""Registered distortions (plugins: entry-point group ``mlclipsim.distortions``, pointing at a :class:`Distortion`)."""


def list_distortions() -> list[str]:
    """Names of all registered distortions, sorted."""
    return DISTORTIONS.names()


def get_distortion(name: str) -> Distortion:
    """The registered distortion called ``name``; unknown names raise ``ValueError`` listing the valid ones."""
    return DISTORTIONS[name]


def check_image(image: np.ndarray, what: str = "image") -> np.ndarray:
    """Validate an ``(H, W, 3)`` float image in ``[0, 1]`` and return it as contiguous float32."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{what} must be a numpy array (H, W, 3), got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{what} must have shape (H, W, 3), got {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{what} is empty: shape {image.shape}")
    if not np.issubdtype(image.dtype, np.floating):
        raise TypeError(
            f"{what} must be a float array in [0, 1], got dtype {image.dtype}; "
            "for uint8 images use image.astype(np.float32) / 255"
        )
    if not np.all(np.isfinite(image)):
        raise ValueError(f"{what} contains NaN or inf")
    lo, hi = float(image.min()), float(image.max())
    if lo < -_RANGE_SLACK or hi > 1 + _RANGE_SLACK:
        raise ValueError(f"{what} must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
    out = np.ascontiguousarray(image, dtype=np.float32)
    if lo < 0 or hi > 1:
        out = np.clip(out, 0.0, 1.0)
    return out


def check_severity(severity: int, allow_zero: bool = False) -> int:
    """Validate an integer severity in ``1..5`` (``0..5`` with ``allow_zero``, 0 meaning clean)."""
    low = 0 if allow_zero else 1
    if isinstance(severity, (bool, np.bool_)) or not isinstance(severity, (int, np.integer)):
        raise TypeError(
            f"severity must be an int in {low}..{NUM_SEVERITIES}, got {severity!r} "
            f"({type(severity).__name__}); for continuous parameters use distort_with_param"
        )
    if not low <= int(severity) <= NUM_SEVERITIES:
        raise ValueError(f"severity must be in {low}..{NUM_SEVERITIES}, got {severity}")
    return int(severity)


def distort_with_param(image: np.ndarray, name: str, param: Param, seed: int = 0) -> np.ndarray:
    """Apply distortion ``name`` with an explicit (possibly continuous) parameter.

    Args:
        image: float ``(H, W, 3)`` array in ``[0, 1]``; it is not modified.
        name: a registered distortion name (see ``list_distortions()``).
        param: the distortion's parameter (see ``get_distortion(name).doc``).
        seed: seeds the ``numpy.random.Generator`` handed to the distortion.

    Returns:
        float32 ``(H, W, 3)`` array in ``[0, 1]``; bit-identical for identical inputs and seed.
    """
    distortion = get_distortion(name)
    image = check_image(image)
    return distortion.apply(image, param, np.random.default_rng(seed))


def distort(image: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """Apply distortion ``name`` at an integer ``severity`` in 1 (subtle) .. 5 (extreme).

    Returns a float32 ``(H, W, 3)`` array in ``[0, 1]``; same inputs and seed give identical output.
    """
    distortion = get_distortion(name)
    severity = check_severity(severity)
    image = check_image(image)
    return distortion.apply(image, distortion.severity_params[severity - 1], np.random.default_rng(seed))
