"""Box utilities shared by the detectors and the agreement scores (numpy, x1, y1, x2, y2)."""

from __future__ import annotations

import numpy as np


def box_area(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, m) IoU matrix of boxes a (n, 4) and b (m, 4); 0 where a union is empty."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; kept indices, best score first. A box is dropped when
    its IoU with a kept, better box exceeds ``iou_threshold``."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep: list[int] = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        order = rest[box_iou(boxes[i:i + 1], boxes[rest])[0] <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                iou_threshold: float) -> np.ndarray:
    """Per-class NMS; kept indices sorted by descending score."""
    labels = np.asarray(labels)
    scores = np.asarray(scores)
    keep = [np.flatnonzero(labels == c)[nms(boxes[labels == c], scores[labels == c], iou_threshold)]
            for c in np.unique(labels)]
    if not keep:
        return np.zeros(0, np.int64)
    kept = np.concatenate(keep)
    return kept[np.argsort(-scores[kept], kind="stable")]


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.clip(boxes, 0, np.array([width, height, width, height], np.float32)).astype(np.float32)
