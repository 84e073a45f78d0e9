"""torchvision detectors and segmenters with hub weights (for users with a network).

- ``torchvision/fasterrcnn_mobilenet_v3_large_fpn`` (detection;
  ``FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1``) and
  ``torchvision/ssdlite320_mobilenet_v3_large`` (detection;
  ``SSDLite320_MobileNet_V3_Large_Weights.COCO_V1``): boxes with score >= 0.5, labels mapped
  to ``coco80`` (torchvision's 91-id list has other spellings and "N/A" gaps).
- ``torchvision/deeplabv3_mobilenet_v3_large`` (segmentation;
  ``DeepLabV3_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1``): a ``voc21`` label map
  (argmax), nearest-resized to the photo.

Each network is built with ``weights=None, weights_backbone=None`` (nothing fetched while
building); its weights come through :func:`~mlclipsim.core.weights.load_weights`: explicit
``path``, ``$MLCLIPSIM_WEIGHTS_DIR/<torchvision's file name>`` (so ``~/.cache/torch/hub/checkpoints``
works), then torchvision's own download, unless ``MLCLIPSIM_OFFLINE=1``. Offline and without a
file they raise :class:`~mlclipsim.core.weights.MissingWeightsError`; they never run untrained.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mlclipsim.backbones.cnn_encoders import load_state_dict_file
from mlclipsim.core.weights import WeightSpec
from mlclipsim.machine._image import resize_labels
from mlclipsim.machine.classes import coco80_index
from mlclipsim.machine.predictions import Detections, SegmentationMask
from mlclipsim.machine.protocol import TaskModel
from mlclipsim.machine.registry import load_task_weights, register_task_model


def _weights_enum(module: str, enum_name: str, member: str):
    import importlib

    return getattr(getattr(importlib.import_module(module), enum_name), member)


class _TorchvisionModel(TaskModel):
    uses_torch = True
    MODULE = ""
    BUILDER = ""
    ENUM = ""
    MEMBER = ""

    def _load(self, path: str | os.PathLike | None, allow_download: bool | None, **build_kwargs):
        import importlib

        weights = _weights_enum(self.MODULE, self.ENUM, self.MEMBER)
        spec = WeightSpec(owner=self.name, tag=self.MEMBER, filename=Path(weights.url).name,
                          download_hint=f"torchvision {self.ENUM}.{self.MEMBER} download")
        state = load_task_weights(spec, path, load_file=load_state_dict_file,
                                  load_upstream=lambda: weights.get_state_dict(progress=False),
                                  allow_download=allow_download)
        builder: Callable = getattr(importlib.import_module(self.MODULE), self.BUILDER)
        network = builder(weights=None, weights_backbone=None, num_classes=len(weights.meta["categories"]),
                          **build_kwargs)
        # Built untrained, the detection backbones use BatchNorm2d where torchvision's pretrained
        # build uses FrozenBatchNorm2d (same eps, same eval behaviour): only the BatchNorm
        # counters ``num_batches_tracked`` may be missing from the file; anything else is an error.
        try:
            result = network.load_state_dict(state, strict=False)
        except RuntimeError as err:
            raise ValueError(f"The weights for {self.name!r} do not fit its architecture: {err}") from err
        missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
        if missing or result.unexpected_keys:
            raise ValueError(f"The weights for {self.name!r} do not fit its architecture: "
                             f"missing {missing[:5]}, unexpected {list(result.unexpected_keys)[:5]}")
        self.source = str(path) if path is not None else weights.url
        self.categories = list(weights.meta["categories"])
        return network.eval().requires_grad_(False)


class TorchvisionDetector(_TorchvisionModel):
    """A torchvision COCO detector; labels mapped to ``coco80`` (boxes of other labels dropped).

    Args:
        path: explicit state-dict file.
        score_threshold: keep boxes with score >= this (0.5).
        allow_download: override MLCLIPSIM_OFFLINE for torchvision's download.
        threads: torch threads during predict.
    """

    task = "detection"
    MODULE = "torchvision.models.detection"

    def __init__(self, path: str | os.PathLike | None = None, score_threshold: float = 0.5,
                 allow_download: bool | None = None, threads: int | None = None) -> None:
        super().__init__(threads)
        self.network = self._load(path, allow_download)
        self.score_threshold = float(score_threshold)
        indices = [coco80_index(c) for c in self.categories]
        self._to_coco80 = np.array([-1 if i is None else i for i in indices])

    def _predict(self, images: list[np.ndarray]) -> list[Detections]:
        import torch

        tensors = [torch.tensor(img).permute(2, 0, 1).float() / 255.0 for img in images]
        with torch.no_grad():
            results = self.network(tensors)
        out = []
        for r in results:
            scores = r["scores"].numpy().astype(np.float32)
            labels = self._to_coco80[r["labels"].numpy()]
            keep = np.flatnonzero((scores >= self.score_threshold) & (labels >= 0))
            keep = keep[np.argsort(-scores[keep], kind="stable")]
            out.append(Detections(r["boxes"].numpy()[keep], scores[keep], labels[keep], label_space="coco80"))
        return out


class FasterRCNNMobileNetDetector(TorchvisionDetector):
    __doc__ = TorchvisionDetector.__doc__
    name = "torchvision/fasterrcnn_mobilenet_v3_large_fpn"
    BUILDER = "fasterrcnn_mobilenet_v3_large_fpn"
    ENUM = "FasterRCNN_MobileNet_V3_Large_FPN_Weights"
    MEMBER = "COCO_V1"


class SSDLiteDetector(TorchvisionDetector):
    __doc__ = TorchvisionDetector.__doc__
    name = "torchvision/ssdlite320_mobilenet_v3_large"
    BUILDER = "ssdlite320_mobilenet_v3_large"
    ENUM = "SSDLite320_MobileNet_V3_Large_Weights"
    MEMBER = "COCO_V1"


class DeepLabV3MobileNetSegmenter(_TorchvisionModel):
    """torchvision DeepLabV3 MobileNetV3-Large (21 VOC classes): a ``voc21`` label map.

    The photo is scaled so its short side is ``short_side`` (520, torchvision's evaluation size),
    normalised with ImageNet mean/std; the argmax label map is resized (nearest) to the photo.

    Args:
        path: explicit state-dict file.
        short_side: short side fed to the net (520).
        allow_download: override MLCLIPSIM_OFFLINE for torchvision's download.
        threads: torch threads during predict.
    """

    name = "torchvision/deeplabv3_mobilenet_v3_large"
    task = "segmentation"
    MODULE = "torchvision.models.segmentation"
    BUILDER = "deeplabv3_mobilenet_v3_large"
    ENUM = "DeepLabV3_MobileNet_V3_Large_Weights"
    MEMBER = "COCO_WITH_VOC_LABELS_V1"

    def __init__(self, path: str | os.PathLike | None = None, short_side: int = 520,
                 allow_download: bool | None = None, threads: int | None = None) -> None:
        super().__init__(threads)
        self.network = self._load(path, allow_download, aux_loss=True)
        self.short_side = int(short_side)

    def _predict(self, images: list[np.ndarray]) -> list[SegmentationMask]:
        import torch
        import torch.nn.functional as F

        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        out = []
        for image in images:
            h, w = image.shape[:2]
            scale = self.short_side / min(h, w)
            x = torch.tensor(image).permute(2, 0, 1)[None].float() / 255.0
            x = F.interpolate(x, size=(max(1, round(h * scale)), max(1, round(w * scale))), mode="bilinear",
                              align_corners=False, antialias=True)
            with torch.no_grad():
                logits = self.network((x - mean) / std)["out"][0]
            labels = resize_labels(logits.argmax(0).numpy(), w, h)
            out.append(SegmentationMask(labels=labels, classes=tuple(self.categories), background=0))
        return out


for _cls in (FasterRCNNMobileNetDetector, SSDLiteDetector, DeepLabV3MobileNetSegmenter):
    register_task_model(_cls.name, _cls, description=f"torchvision {_cls.BUILDER} (hub weights: a network "
                                                     "or the file in $MLCLIPSIM_WEIGHTS_DIR)")
