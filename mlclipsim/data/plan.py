"""Which distorted versions the data engine makes of each reference.

MIQD-2.5M's full product per reference is 10 types x (5 uniform + 10 ROI-dominated + 10
background-dominated) = 250 images. On 2 CPU cores that is too slow for ~90 references, so the
default plan samples the region modes:

- uniform (UD): every type at every severity 1..5 (50 images);
- ROI-dominated (ROI-DD): per type, ``region_pairs`` of the 10 (roi > bg) severity pairs drawn
  without replacement, seeded by the reference id (default 2: 20 images);
- background-dominated (BG-DD): the mirror images of the drawn ROI-DD pairs, (r, b) -> (b, r), so
  each "clean ROI" image has a "clean background" partner with the same two severities (20 images).

``region_pairs=10`` gives the full product. References without a usable ROI (see
:mod:`mlclipsim.data.roi`) get the uniform levels only.

Independent draws (``draws=n``, default 1): every *stochastic* type (noise, snow, fog, motion and
glass blur: :attr:`~mlclipsim.distortions.registry.Distortion.stochastic`) is also made at every
uniform severity with ``n - 1`` more seeds (spec ``draw`` 1..n-1, key suffix ``_d<draw>``), so the
label noise that comes from the distortion's randomness alone can be measured (the same type,
severity and reference, two draws: :mod:`mlclipsim.eval.reliability`). A deterministic type would
give the same image again, so it gets no extra draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mlclipsim.data.references import stable_seed
from mlclipsim.distortions import ROI_DOMINATED_LEVELS, UNIFORM_LEVELS, get_distortion


@dataclass(frozen=True, order=True)
class DistortionSpec:
    """One distorted version of a reference."""

    distortion: str
    mode: str
    roi_severity: int
    bg_severity: int
    draw: int = 0

    @property
    def key(self) -> str:
        """File-name-safe identifier, e.g. ``fog_roi_r4b1``; ``fog_uniform_r3b3_d1`` for draw 1."""
        suffix = f"_d{self.draw}" if self.draw else ""
        return f"{self.distortion}_{self.mode}_r{self.roi_severity}b{self.bg_severity}{suffix}"


def plan_distortions(reference_id: str, distortions: Sequence[str], region_pairs: int = 2,
                     with_regions: bool = True, seed: int = 0, draws: int = 1) -> list[DistortionSpec]:
    """The distorted versions of one reference, in a fixed order (deterministic per reference id and seed).

    ``draws``: independent draws of each stochastic type at each uniform severity (module docstring);
    the extra draws come after every draw-0 spec, so ``draws=1`` gives the plan of earlier builds."""
    if not 0 <= region_pairs <= len(ROI_DOMINATED_LEVELS):
        raise ValueError(f"region_pairs must be in 0..{len(ROI_DOMINATED_LEVELS)}, got {region_pairs}")
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    specs = [DistortionSpec(name, "uniform", r, b) for name in distortions for r, b in UNIFORM_LEVELS]
    if with_regions and region_pairs:
        for name in distortions:
            rng = np.random.default_rng(stable_seed(reference_id, name, seed, "regions"))
            chosen = rng.choice(len(ROI_DOMINATED_LEVELS), size=region_pairs, replace=False)
            for index in sorted(chosen):
                roi, bg = ROI_DOMINATED_LEVELS[index]
                specs.append(DistortionSpec(name, "roi", roi, bg))
                specs.append(DistortionSpec(name, "background", bg, roi))
    stochastic = [name for name in distortions if get_distortion(name).stochastic]
    specs += [DistortionSpec(name, "uniform", r, b, draw) for draw in range(1, draws)
              for name in stochastic for r, b in UNIFORM_LEVELS]
    return specs
