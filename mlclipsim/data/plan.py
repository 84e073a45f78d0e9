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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mlclipsim.data.references import stable_seed
from mlclipsim.distortions import ROI_DOMINATED_LEVELS, UNIFORM_LEVELS


@dataclass(frozen=True, order=True)
class DistortionSpec:
    """One distorted version of a reference."""

    distortion: str
    mode: str
    roi_severity: int
    bg_severity: int

    @property
    def key(self) -> str:
        """File-name-safe identifier, e.g. ``fog_roi_r4b1``."""
        return f"{self.distortion}_{self.mode}_r{self.roi_severity}b{self.bg_severity}"


def plan_distortions(reference_id: str, distortions: Sequence[str], region_pairs: int = 2,
                     with_regions: bool = True, seed: int = 0) -> list[DistortionSpec]:
    """The distorted versions of one reference, in a fixed order (deterministic per reference id and seed)."""
    if not 0 <= region_pairs <= len(ROI_DOMINATED_LEVELS):
        raise ValueError(f"region_pairs must be in 0..{len(ROI_DOMINATED_LEVELS)}, got {region_pairs}")
    specs = [DistortionSpec(name, "uniform", r, b) for name in distortions for r, b in UNIFORM_LEVELS]
    if with_regions and region_pairs:
        for name in distortions:
            rng = np.random.default_rng(stable_seed(reference_id, name, seed, "regions"))
            chosen = rng.choice(len(ROI_DOMINATED_LEVELS), size=region_pairs, replace=False)
            for index in sorted(chosen):
                roi, bg = ROI_DOMINATED_LEVELS[index]
                specs.append(DistortionSpec(name, "roi", roi, bg))
                specs.append(DistortionSpec(name, "background", bg, roi))
    return specs
