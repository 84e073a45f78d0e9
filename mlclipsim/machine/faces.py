"""Face detection (BlazeFace long/short range, MTCNN) and face embedding (faceres).

| name | task | notes |
| --- | --- | --- |
| ``blazeface`` | face_detection | MediaPipe BlazeFace long range, NHWC 1x256x256x3 stretched, RGB -1..1 |
| ``blazeface-front`` | face_detection | short range (faces filling the frame), 128x128 |
| ``mtcnn`` | face_detection | facenet-pytorch's MTCNN, packaged weights, thresholds (0.6, 0.7, 0.7) |
| ``faceres`` | face_embedding | 1024-d ``global_pooling/Mean`` of faceres, NHWC 224x224, RGB 0..255 |

BlazeFace decoding: 896 anchors (16x16 grid x 2, then 8x8 x 6, centres ((x+0.5)/g, (y+0.5)/g));
box centre = anchor + (v0, v1)/S, size (v2, v3)/S, then 6 keypoints (right eye, left eye, nose,
mouth, right ear, left ear) the same way; score = sigmoid(logit) > 0.75, then NMS at IoU 0.3.

faceres embeds the largest face that ``blazeface`` (long range, threshold 0.75) finds, cropped
as a square of ``crop_scale`` (1.5) x the box's longer side around the box centre (parts outside
the photo are black); when no face is found it embeds the whole photo, stretched, and the
prediction's ``box`` is None. So a degraded photo whose face is lost is compared through its
whole-photo embedding, which is far from a face embedding: agreement drops, as it should.
``face_detector=None`` always embeds the whole photo.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from mlclipsim.machine._image import resize_rgb
from mlclipsim.machine.boxes import box_area, nms
from mlclipsim.machine.predictions import FaceDetections, FaceEmbedding
from mlclipsim.machine.protocol import OnnxTaskModel, TaskModel
from mlclipsim.machine.registry import create_task_model, models_dir_spec, register_task_model, resolve_model_file


def blazeface_anchors() -> np.ndarray:
    """(896, 2) anchor centres in 0..1, in the order of the concatenated outputs."""
    out = []
    for grid, per_cell in ((16, 2), (8, 6)):
        ys, xs = np.mgrid[0:grid, 0:grid]
        centres = np.stack([(xs.ravel() + 0.5) / grid, (ys.ravel() + 0.5) / grid], 1)
        out.append(np.repeat(centres, per_cell, axis=0))
    return np.concatenate(out).astype(np.float32)


class BlazeFaceDetector(OnnxTaskModel):
    """MediaPipe BlazeFace (``blazeface``: long range 256; ``blazeface-front``: short range 128).

    Args:
        path: explicit model file (``blazeface.onnx`` / ``blazeface-front.onnx``).
        score_threshold: keep faces with sigmoid score > this (0.75: on the project's photos real
            faces score 0.77-0.92, photos without a human face reach 0.76).
        iou_threshold: NMS IoU (0.3).
        threads: onnxruntime intra-op threads.
    """

    name = "blazeface"
    task = "face_detection"
    SIZE = 256
    FILE = "blazeface.onnx"

    def __init__(self, path: str | os.PathLike | None = None, score_threshold: float = 0.75,
                 iou_threshold: float = 0.3, threads: int | None = None) -> None:
        super().__init__(threads)
        model_file = resolve_model_file(models_dir_spec(self.name, self.FILE), path)
        self.session = self._session(model_file)
        self.source = str(model_file)
        self.score_threshold = float(score_threshold)
        self.iou_threshold = float(iou_threshold)
        self.anchors = blazeface_anchors()
        self._outputs = ["Identity:0", "Identity_1:0", "Identity_2:0", "Identity_3:0"]

    def _predict(self, images: list[np.ndarray]) -> list[FaceDetections]:
        s = self.SIZE
        out = []
        for image in images:
            h, w = image.shape[:2]
            x = resize_rgb(image, s, s).astype(np.float32)[None] / 127.5 - 1.0
            logit_a, logit_b, reg_a, reg_b = self.session.run(self._outputs, {"input:0": x})
            logit = np.concatenate([logit_a[0], logit_b[0]])[:, 0]
            reg = np.concatenate([reg_a[0], reg_b[0]])
            scores = 1.0 / (1.0 + np.exp(-np.clip(logit, -80, 80)))
            m = scores > self.score_threshold
            reg, anchors, scores = reg[m], self.anchors[m], scores[m].astype(np.float32)
            scale = np.array([w, h], np.float32)
            centre = anchors + reg[:, 0:2] / s
            half = reg[:, 2:4] / s / 2
            boxes = np.concatenate([centre - half, centre + half], 1) * np.tile(scale, 2)
            keypoints = (anchors[:, None, :] + reg[:, 4:16].reshape(-1, 6, 2) / s) * scale
            keep = nms(boxes, scores, self.iou_threshold)
            out.append(FaceDetections(boxes[keep], scores[keep], keypoints[keep]))
        return out


class BlazeFaceFrontDetector(BlazeFaceDetector):
    __doc__ = BlazeFaceDetector.__doc__
    name = "blazeface-front"
    SIZE = 128
    FILE = "blazeface-front.onnx"


class MTCNNDetector(TaskModel):
    """facenet-pytorch's MTCNN (P/R/O-Net weights packaged with facenet-pytorch, loaded offline).

    Args:
        min_face_size: smallest face searched, px (20).
        thresholds: the three stages' thresholds ((0.6, 0.7, 0.7), MTCNN's own).
        score_threshold: extra filter on the final score (0: keep all MTCNN returns).
        threads: torch threads during predict.
    """

    name = "mtcnn"
    task = "face_detection"
    uses_torch = True

    def __init__(self, min_face_size: int = 20, thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
                 score_threshold: float = 0.0, threads: int | None = None) -> None:
        super().__init__(threads)
        try:
            import facenet_pytorch
            from facenet_pytorch import MTCNN
        except ImportError as err:
            raise ImportError("mtcnn needs facenet-pytorch: pip install --no-deps facenet-pytorch==2.6.0 "
                              "(see requirements-nodeps.txt)") from err
        self.mtcnn = MTCNN(keep_all=True, min_face_size=min_face_size, thresholds=list(thresholds),
                           device="cpu").eval()
        self.source = os.path.join(os.path.dirname(facenet_pytorch.__file__), "data")
        self.score_threshold = float(score_threshold)

    def _predict(self, images: list[np.ndarray]) -> list[FaceDetections]:
        import torch

        out = []
        for image in images:
            with torch.no_grad():
                boxes, probs, points = self.mtcnn.detect(image, landmarks=True)
            if boxes is None:
                out.append(FaceDetections(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))))
                continue
            probs = np.asarray(probs, np.float32)
            keep = np.flatnonzero(probs >= self.score_threshold)
            keep = keep[np.argsort(-probs[keep], kind="stable")]
            h, w = image.shape[:2]
            boxes = np.clip(np.asarray(boxes, np.float32), 0, [w, h, w, h])
            out.append(FaceDetections(boxes[keep], probs[keep], np.asarray(points, np.float32)[keep]))
        return out


def square_crop(image: np.ndarray, box: np.ndarray, scale: float, size: int) -> np.ndarray:
    """A square of ``scale`` x the box's longer side around its centre, resized to size x size
    (outside the photo: black)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = max(box[2] - box[0], box[3] - box[1]) * scale / 2
    region = tuple(int(round(v)) for v in (cx - half, cy - half, cx + half, cy + half))
    if region[2] <= region[0] or region[3] <= region[1]:
        return resize_rgb(image, size, size)
    return np.asarray(Image.fromarray(image).crop(region).resize((size, size), Image.BILINEAR))


class FaceResEmbedder(OnnxTaskModel):
    """faceres identity embedding (1024-d), of the largest BlazeFace face or of the whole photo.

    Args:
        path: explicit ``faceres.onnx``.
        face_detector: registry name of the face detector that picks the crop ("blazeface"), or
            None to embed the whole photo always.
        crop_scale: side of the square crop / longer side of the face box (1.5).
        detector_path: explicit file for the face detector.
        threads: onnxruntime intra-op threads (also for the face detector).
    """

    name = "faceres"
    task = "face_embedding"
    SIZE = 224
    FILE = "faceres.onnx"

    def __init__(self, path: str | os.PathLike | None = None, face_detector: str | None = "blazeface",
                 crop_scale: float = 1.5, detector_path: str | os.PathLike | None = None,
                 threads: int | None = None) -> None:
        super().__init__(threads)
        model_file = resolve_model_file(models_dir_spec(self.name, self.FILE), path)
        self.session = self._session(model_file)
        self.source = str(model_file)
        self.crop_scale = float(crop_scale)
        self.detector = None
        if face_detector is not None:
            options = {} if detector_path is None else {"path": detector_path}
            self.detector = create_task_model(face_detector, threads=self.threads, **options)

    def _predict(self, images: list[np.ndarray]) -> list[FaceEmbedding]:
        faces = self.detector.predict(images) if self.detector is not None else [None] * len(images)
        crops, boxes = [], []
        for image, found in zip(images, faces):
            if found is not None and len(found):
                box = found.boxes[int(np.argmax(box_area(found.boxes)))]
                crops.append(square_crop(image, box, self.crop_scale, self.SIZE))
                boxes.append(box)
            else:
                crops.append(resize_rgb(image, self.SIZE, self.SIZE))
                boxes.append(None)
        x = np.stack(crops).astype(np.float32)
        vectors = self.session.run(["global_pooling/Mean"], {"input_1:0": x})[0]
        return [FaceEmbedding(v, box=b) for v, b in zip(vectors, boxes)]


register_task_model("blazeface", BlazeFaceDetector, description="MediaPipe BlazeFace long range (ONNX, 256)")
register_task_model("blazeface-front", BlazeFaceFrontDetector,
                    description="MediaPipe BlazeFace short range (ONNX, 128)")
register_task_model("mtcnn", MTCNNDetector, description="facenet-pytorch MTCNN (packaged weights)")
register_task_model("faceres", FaceResEmbedder, description="faceres 1024-d face embedding (ONNX, 224)")
