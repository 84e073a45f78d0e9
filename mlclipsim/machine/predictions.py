"""What task models return: one small dataclass per task, each serialisable for an on-disk cache.

Every prediction is in the pixel coordinates of the image it was made on (the caller's image,
not the network's input). Arrays are numpy; ``to_dict()`` gives a plain dict of arrays, strings
and numbers, ``prediction_from_dict`` inverts it, and :func:`save_predictions` /
:func:`load_predictions` write and read a list of predictions (of any tasks) as one ``.npz``
file that loads without pickle.

- :class:`Classification` (``classification``): ``probs`` (C,) float32 summing to 1, ``label_space``.
- :class:`Detections` (``detection``): ``boxes`` (k, 4) float32 x1, y1, x2, y2 px, ``scores`` (k,),
  ``labels`` (k,) int64, ``label_space``.
- :class:`SegmentationMask` (``segmentation``): ``probs`` (H, W) float32 in [0, 1] for one class, or
  ``labels`` (H, W) int label map; ``classes``; ``threshold``.
- :class:`FaceDetections` (``face_detection``): ``boxes`` (k, 4), ``scores`` (k,), ``keypoints``
  (k, K, 2) or None.
- :class:`FaceEmbedding` (``face_embedding``): ``vector`` (D,) float32 or None (no face), ``box``
  (4,) of the face embedded or None (whole image).
- :class:`TextResult` (``text_recognition``): ``lines`` (list of str), ``boxes`` (k, 4, 2)
  quadrilaterals px, ``scores`` (k,).

``label_space`` names the list of class names the indices refer to (``"imagenet1k"``,
``"coco80"``, ``"voc21"``; see :func:`mlclipsim.machine.classes.class_names`), so cached
predictions do not repeat the names.

"Empty" (no detection, no foreground pixel, no face, no text, no probability mass) is a valid
prediction; :attr:`is_empty` tells it, and the agreement scores treat it explicitly.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mlclipsim.machine.classes import class_names

TASKS = ("classification", "detection", "segmentation", "face_detection", "face_embedding",
         "text_recognition")
"""Every task kind a :class:`~mlclipsim.machine.protocol.TaskModel` can have."""


def _as_boxes(boxes: Any) -> np.ndarray:
    if boxes is None:
        return np.zeros((0, 4), np.float32)
    return np.ascontiguousarray(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))


def _as_vector(values: Any, dtype: Any, n: int | None = None, what: str = "array") -> np.ndarray:
    arr = np.zeros(0, dtype) if values is None else np.asarray(values, dtype=dtype).reshape(-1)
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{what} has {arr.shape[0]} entries but there are {n} boxes")
    return arr


def _name(label_space: str | None, index: int) -> str:
    if label_space is None:
        return str(index)
    return class_names(label_space)[index]


class _Prediction:
    """Shared serialisation: ``to_dict`` / ``from_dict`` over the dataclass fields."""

    task: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict: numpy arrays, None, strings, numbers, lists of strings; plus ``"task"``."""
        out: dict[str, Any] = {"task": self.task}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        task = data.get("task", cls.task)
        if task != cls.task:
            raise ValueError(f"Cannot read a {task!r} prediction as {cls.__name__} ({cls.task!r}).")
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class Classification(_Prediction):
    """Class probabilities of one image (ImageNet: 1000 entries, softmax of the logits)."""

    probs: np.ndarray
    label_space: str | None = None
    task: ClassVar[str] = "classification"

    def __post_init__(self) -> None:
        self.probs = _as_vector(self.probs, np.float32)

    @property
    def is_empty(self) -> bool:
        return self.probs.size == 0 or not np.any(self.probs > 0)

    def topk(self, k: int = 5) -> np.ndarray:
        """Indices of the k most probable classes, most probable first (ties: lower index first)."""
        k = min(k, self.probs.size)
        return np.argsort(-self.probs, kind="stable")[:k]

    def top1_name(self) -> str:
        """Name of the most probable class (its index as text when the label space is unknown)."""
        return _name(self.label_space, int(self.topk(1)[0]))


@dataclass
class Detections(_Prediction):
    """Boxes x1, y1, x2, y2 in image pixels, with scores and integer class labels.

    ``label_space`` names the class list the labels index (``"coco80"``: 0-based COCO names).
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    label_space: str | None = None
    task: ClassVar[str] = "detection"

    def __post_init__(self) -> None:
        self.boxes = _as_boxes(self.boxes)
        n = self.boxes.shape[0]
        self.scores = _as_vector(self.scores, np.float32, n, "scores")
        self.labels = _as_vector(self.labels, np.int64, n, "labels")

    @property
    def is_empty(self) -> bool:
        return self.boxes.shape[0] == 0

    def __len__(self) -> int:
        return self.boxes.shape[0]

    def label_names(self) -> list[str]:
        return [_name(self.label_space, int(label)) for label in self.labels]


@dataclass
class SegmentationMask(_Prediction):
    """A dense prediction at the image's size: either ``probs`` or ``labels``, not both.

    - ``probs`` (H, W) float32 in [0, 1]: probability of the single class ``classes[0]``
      (person, text); a pixel belongs to it when ``probs > threshold``.
    - ``labels`` (H, W) int label map indexing ``classes``; label ``background`` (default 0)
      is not a class of its own for agreement.

    ``threshold`` is the model's own binarisation threshold for ``probs`` (0.5 unless the
    model's decoder uses another, e.g. 0.3 for PP-OCR's text map).

    Serialised (:meth:`to_dict`, the on-disk cache), ``probs`` is stored as uint8 in steps of
    1/255 (error <= 1/510): float32 maps of noisy probabilities hardly compress (MediaPipe Meet at
    512x384: ~700 KB per map, ~5 KB as uint8), and the continuous agreement needs the maps, not
    only the thresholded masks. :meth:`from_dict` reads both forms.
    """

    probs: np.ndarray | None = None
    labels: np.ndarray | None = None
    classes: tuple[str, ...] = ("foreground",)
    threshold: float = 0.5
    background: int = 0
    task: ClassVar[str] = "segmentation"

    def __post_init__(self) -> None:
        if (self.probs is None) == (self.labels is None):
            raise ValueError("SegmentationMask needs exactly one of probs (H,W) and labels (H,W).")
        if self.probs is not None:
            self.probs = np.asarray(self.probs, dtype=np.float32)
            if self.probs.ndim != 2:
                raise ValueError(f"probs must be (H, W), got shape {self.probs.shape}")
        if self.labels is not None:
            self.labels = np.asarray(self.labels)
            if self.labels.ndim != 2 or not np.issubdtype(self.labels.dtype, np.integer):
                raise ValueError(f"labels must be an integer (H, W) map, got {self.labels.dtype} "
                                 f"{self.labels.shape}")
        self.classes = tuple(str(c) for c in self.classes)
        self.threshold = float(self.threshold)
        self.background = int(self.background)

    @property
    def shape(self) -> tuple[int, int]:
        arr = self.probs if self.probs is not None else self.labels
        return arr.shape  # type: ignore[union-attr,return-value]

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if self.probs is not None:
            out["probs"] = np.rint(np.clip(self.probs, 0.0, 1.0) * 255.0).astype(np.uint8)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        probs = data.get("probs")
        if isinstance(probs, np.ndarray) and probs.dtype == np.uint8:
            data = {**data, "probs": probs.astype(np.float32) / np.float32(255.0)}
        return super().from_dict(data)

    def class_masks(self, threshold: float | None = None) -> dict[int, np.ndarray]:
        """Boolean mask per class present (non-empty), background excluded."""
        if self.probs is not None:
            mask = self.probs > (self.threshold if threshold is None else threshold)
            return {0: mask} if mask.any() else {}
        present = [int(v) for v in np.unique(self.labels) if int(v) != self.background]
        return {v: self.labels == v for v in present}

    @property
    def is_empty(self) -> bool:
        return not self.class_masks()

    def foreground_fraction(self) -> float:
        """Fraction of pixels in any non-background class."""
        masks = self.class_masks()
        if not masks:
            return 0.0
        return float(np.logical_or.reduce(list(masks.values())).mean())


@dataclass
class FaceDetections(_Prediction):
    """Face boxes x1, y1, x2, y2 px, scores, and optional keypoints (k, K, 2) px."""

    boxes: np.ndarray
    scores: np.ndarray
    keypoints: np.ndarray | None = None
    task: ClassVar[str] = "face_detection"

    def __post_init__(self) -> None:
        self.boxes = _as_boxes(self.boxes)
        n = self.boxes.shape[0]
        self.scores = _as_vector(self.scores, np.float32, n, "scores")
        if self.keypoints is not None:
            self.keypoints = np.asarray(self.keypoints, dtype=np.float32)
            if self.keypoints.ndim != 3 or self.keypoints.shape[0] != n or self.keypoints.shape[2] != 2:
                raise ValueError(f"keypoints must be ({n}, K, 2), got {self.keypoints.shape}")

    @property
    def is_empty(self) -> bool:
        return self.boxes.shape[0] == 0

    def __len__(self) -> int:
        return self.boxes.shape[0]

    @property
    def labels(self) -> np.ndarray:
        """All faces share class 0 (lets detection matching code serve faces too)."""
        return np.zeros(self.boxes.shape[0], np.int64)


@dataclass
class FaceEmbedding(_Prediction):
    """An identity embedding; ``vector`` None means the model found no face to embed.

    ``box`` is the face box that was embedded (image px), None when the whole image was used.
    """

    vector: np.ndarray | None
    box: np.ndarray | None = None
    task: ClassVar[str] = "face_embedding"

    def __post_init__(self) -> None:
        if self.vector is not None:
            self.vector = _as_vector(self.vector, np.float32)
        if self.box is not None:
            self.box = np.asarray(self.box, dtype=np.float32).reshape(4)

    @property
    def is_empty(self) -> bool:
        return self.vector is None or self.vector.size == 0


@dataclass
class TextResult(_Prediction):
    """Recognised text lines in reading order, each with its quadrilateral (4, 2) px and score."""

    lines: list[str] = field(default_factory=list)
    boxes: np.ndarray | None = None
    scores: np.ndarray | None = None
    task: ClassVar[str] = "text_recognition"

    def __post_init__(self) -> None:
        self.lines = [str(line) for line in self.lines]
        n = len(self.lines)
        self.boxes = (np.zeros((0, 4, 2), np.float32) if self.boxes is None
                      else np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4, 2))
        if self.boxes.shape[0] not in (0, n):
            raise ValueError(f"{self.boxes.shape[0]} boxes for {n} lines")
        self.scores = np.ones(n, np.float32) if self.scores is None else _as_vector(self.scores, np.float32)

    @property
    def is_empty(self) -> bool:
        return not self.text()

    def text(self, separator: str = " ") -> str:
        """The lines joined (each stripped; empty lines dropped)."""
        return separator.join(line.strip() for line in self.lines if line.strip())


Prediction = Classification | Detections | SegmentationMask | FaceDetections | FaceEmbedding | TextResult

PREDICTION_TYPES: dict[str, type] = {
    cls.task: cls
    for cls in (Classification, Detections, SegmentationMask, FaceDetections, FaceEmbedding, TextResult)
}


def prediction_from_dict(data: dict[str, Any]) -> Prediction:
    """Rebuild a prediction from :meth:`to_dict` output (the ``"task"`` key picks the class)."""
    task = data.get("task")
    if task not in PREDICTION_TYPES:
        raise ValueError(f"Unknown prediction task {task!r}; known: {sorted(PREDICTION_TYPES)}")
    return PREDICTION_TYPES[task].from_dict(data)


# ----------------------------------------------------------------------------- on-disk cache

_META_KEY = "__meta__"


def save_predictions(path: str | os.PathLike, predictions: list[Prediction] | Prediction) -> Path:
    """Write predictions to one ``.npz`` (arrays stored as arrays, the rest as JSON; no pickle).

    Returns the path written (numpy appends ``.npz`` when missing)."""
    preds = [predictions] if not isinstance(predictions, (list, tuple)) else list(predictions)
    arrays: dict[str, np.ndarray] = {}
    meta: list[dict[str, Any]] = []
    for i, pred in enumerate(preds):
        if not hasattr(pred, "to_dict"):
            raise TypeError(f"Item {i} is a {type(pred).__name__}, not a prediction")
        entry: dict[str, Any] = {}
        for key, value in pred.to_dict().items():
            if isinstance(value, np.ndarray):
                arrays[f"{i}/{key}"] = value
                entry[key] = {"__array__": f"{i}/{key}"}
            else:
                entry[key] = value
        meta.append(entry)
    arrays[_META_KEY] = np.array(json.dumps(meta))
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def load_predictions(path: str | os.PathLike) -> list[Prediction]:
    """Read what :func:`save_predictions` wrote, as a list (in the order saved)."""
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data[_META_KEY]))
        out = []
        for entry in meta:
            restored = {k: (data[v["__array__"]] if isinstance(v, dict) and "__array__" in v else v)
                        for k, v in entry.items()}
            out.append(prediction_from_dict(restored))
    return out
