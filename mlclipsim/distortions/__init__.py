"""Degradations at graded severities, region modes and PSNR matching (the data engine's inputs).

Images are float32 numpy arrays ``(H, W, 3)`` in ``[0, 1]``. Importing this package registers the
ten synthetic MIQD-2.5M types and the codec types ``jpeg_quality`` / ``webp_quality``.
"""

from mlclipsim.distortions.compression_artifacts import compressai_distortion, encode_decode
from mlclipsim.distortions.psnr_matching import PSNRMatch, PSNRMatchError, match_psnr, psnr
from mlclipsim.distortions.region_modes import (
    BACKGROUND_DOMINATED_LEVELS,
    REGION_MODES,
    ROI_DOMINATED_LEVELS,
    UNIFORM_LEVELS,
    distort_regions,
    feathered_mask,
    mask_from_boxes,
)
from mlclipsim.distortions.registry import (
    NUM_SEVERITIES,
    Distortion,
    distort,
    distort_with_param,
    get_distortion,
    list_distortions,
    register_distortion,
)
from mlclipsim.distortions.synthetic import SYNTHETIC_NAMES, resolution_scale

__all__ = [
    "BACKGROUND_DOMINATED_LEVELS",
    "Distortion",
    "NUM_SEVERITIES",
    "PSNRMatch",
    "PSNRMatchError",
    "REGION_MODES",
    "ROI_DOMINATED_LEVELS",
    "SYNTHETIC_NAMES",
    "UNIFORM_LEVELS",
    "compressai_distortion",
    "distort",
    "distort_regions",
    "distort_with_param",
    "encode_decode",
    "feathered_mask",
    "get_distortion",
    "list_distortions",
    "mask_from_boxes",
    "match_psnr",
    "psnr",
    "register_distortion",
    "resolution_scale",
]
