"""Regions of interest from the task models' own predictions on the reference.

The ROI is the union of: detected boxes (detectors, face detectors; the models' own score
thresholds), and foreground masks of segmenters (person, text: pixels above the model's
threshold). A caller may give a mask instead. A reference whose ROI covers less than
``MIN_ROI_FRACTION`` or more than ``MAX_ROI_FRACTION`` of the image has no usable split into
ROI and background, and the data engine gives it uniform distortions only.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from mlclipsim.distortions import mask_from_boxes
from mlclipsim.machine.predictions import Detections, FaceDetections, SegmentationMask

MIN_ROI_FRACTION = 0.02
MAX_ROI_FRACTION = 0.85


def roi_mask(predictions: Iterable[object], height: int, width: int) -> np.ndarray:
    """Union of the ROI evidence in ``predictions`` as a float32 (H, W) mask of 0 and 1."""
    mask = np.zeros((height, width), dtype=np.float32)
    for pred in predictions:
        if isinstance(pred, (Detections, FaceDetections)) and len(pred.boxes):
            mask = np.maximum(mask, mask_from_boxes(pred.boxes.tolist(), height, width))
        elif isinstance(pred, SegmentationMask):
            masks = pred.class_masks()
            if masks and pred.shape == (height, width):
                mask = np.maximum(mask, np.logical_or.reduce(list(masks.values())).astype(np.float32))
    return mask


def usable_roi(mask: np.ndarray) -> bool:
    """True when the ROI leaves both a region and a background worth distorting differently."""
    fraction = float(mask.mean()) if mask.size else 0.0
    return MIN_ROI_FRACTION <= fraction <= MAX_ROI_FRACTION
