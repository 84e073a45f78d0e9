"""Class-name lists the task models share.

- :data:`COCO80`: the 80 COCO object classes, 0-based, in the darknet/NanoDet/CenterNet order and
  spelling of ``shared/models/coco80.names`` (``motorbike``, ``aeroplane``, ``sofa``,
  ``pottedplant``, ``diningtable``, ``tvmonitor``). Every detector in this package reports labels
  in this space, so detections of different detectors are comparable.
- :func:`imagenet_classes`: the 1000 ImageNet class names, read from torchvision's weight metadata
  (ships with torchvision, no download).
"""

from __future__ import annotations

from functools import lru_cache

COCO80 = (
    "person", "bicycle", "car", "motorbike", "aeroplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "sofa",
    "pottedplant", "bed", "diningtable", "toilet", "tvmonitor", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)

# torchvision's COCO category spelling -> COCO80 spelling where they differ.
_TORCHVISION_TO_COCO80 = {
    "motorcycle": "motorbike", "airplane": "aeroplane", "couch": "sofa", "potted plant": "pottedplant",
    "dining table": "diningtable", "tv": "tvmonitor",
}


def coco80_index(name: str) -> int | None:
    """Index of a COCO class name (either spelling) in :data:`COCO80`, None if it is not one."""
    name = _TORCHVISION_TO_COCO80.get(name, name)
    try:
        return COCO80.index(name)
    except ValueError:
        return None


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in the usual index order (torchvision's metadata)."""
    import torchvision

    return tuple(torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])


def voc21() -> tuple[str, ...]:
    """Background + the 20 PASCAL VOC classes (torchvision's segmentation models)."""
    return ("__background__", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
            "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep",
            "sofa", "train", "tvmonitor")


LABEL_SPACES = ("coco80", "imagenet1k", "voc21")


def class_names(label_space: str) -> tuple[str, ...]:
    """The class names of a label space: "coco80", "imagenet1k" or "voc21"."""
    if label_space == "coco80":
        return COCO80
    if label_space == "imagenet1k":
        return imagenet_classes()
    if label_space == "voc21":
        return voc21()
    raise ValueError(f"Unknown label space {label_space!r}; known: {LABEL_SPACES}")
