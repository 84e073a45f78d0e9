"""The frozen-encoder contract every backbone of the registry fulfils.

A :class:`FrozenEncoder` takes images (N,3,H,W) in [0,1], applies its own differentiable
preprocessing (a resize policy, then channel normalisation) and returns an :class:`EncoderOutput`:
token maps of chosen intermediate layers, each (N,T,C), and a global embedding (N,D). Parameters
are frozen and the module stays in eval mode even when a parent calls ``.train()``; gradients
still flow to the input image.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mlclipsim.backbones.preprocessing import SIZE_FREE_POLICIES, get_resize_policy, normalize

EMBEDDING = "embedding"
"""Name of the global-embedding term wherever layer names and weights are listed together."""


@dataclass
class EncoderOutput:
    """Features of one batch.

    Attributes:
        tokens: layer name -> (N, T, C) token map (CNNs: flattened spatial positions, row-major;
            tiled images: the tokens of all K tiles of an image concatenated, T = K * T_tile).
        embedding: (N, D) global embedding (tiled images: the mean over tiles).
    """

    tokens: dict[str, torch.Tensor]
    embedding: torch.Tensor

    def detach(self) -> EncoderOutput:
        return EncoderOutput({k: v.detach() for k, v in self.tokens.items()}, self.embedding.detach())

    def to(self, device: torch.device | str) -> EncoderOutput:
        return EncoderOutput({k: v.to(device) for k, v in self.tokens.items()}, self.embedding.to(device))

    def select(self, index: torch.Tensor | slice) -> EncoderOutput:
        """Rows of the batch, e.g. ``features.select(slice(0, 2))``."""
        return EncoderOutput({k: v[index] for k, v in self.tokens.items()}, self.embedding[index])

    @property
    def batch_size(self) -> int:
        return self.embedding.shape[0]


class FrozenEncoder(nn.Module):
    """Base class: subclasses set the class attributes and implement :meth:`encode`.

    Class attributes (set per subclass or instance):
        layer_names: every layer whose tokens can be returned, shallow to deep.
        default_layers: the layers ML-CLIPSim uses when the caller names none.
        input_size: side S of the square input the encoder was trained at.
        accepts_any_size: True for fully convolutional encoders, which may run on the image as it
            is (resize policy ``"native"``).
    """

    layer_names: tuple[str, ...] = ()
    default_layers: tuple[str, ...] = ()
    input_size: int = 224
    accepts_any_size: bool = False

    def __init__(self, name: str, mean: Sequence[float], std: Sequence[float], resize: str = "resize") -> None:
        super().__init__()
        self.name = name
        self.resize_policy = resize
        self._resize_fn = get_resize_policy(resize)
        if resize in SIZE_FREE_POLICIES and not self.accepts_any_size:
            raise ValueError(f"Backbone {name!r} needs a fixed input size, so resize={resize!r} is not possible; "
                             "use 'resize', 'center_crop' or 'tile', or a convolutional backbone such as "
                             "'torchvision/mobilenet_v2'.")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32), persistent=False)

    def freeze(self) -> FrozenEncoder:
        """Switch every parameter off for training and put the module in eval mode."""
        for param in self.parameters():
            param.requires_grad_(False)
        return super().train(False)

    def train(self, mode: bool = True) -> FrozenEncoder:
        """A frozen encoder stays in eval mode (batch norm and dropout never change behaviour)."""
        return super().train(False)

    def check_layers(self, layers: Sequence[str] | None) -> tuple[str, ...]:
        """Validate layer names; None means :attr:`default_layers`."""
        if layers is None:
            return tuple(self.default_layers)
        layers = tuple(layers)
        unknown = [layer for layer in layers if layer not in self.layer_names]
        if unknown:
            raise ValueError(f"Unknown layer(s) {unknown} for backbone {self.name!r}; "
                             f"valid layers: {list(self.layer_names)}.")
        return layers

    def preprocess(self, images: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(N,3,H,W) in [0,1] -> normalised (N*K,3,S,S) and the number K of views per image."""
        views, per_image = self._resize_fn(images, self.input_size)
        return normalize(views, self.mean.to(views.dtype), self.std.to(views.dtype)), per_image

    @abstractmethod
    def encode(self, pixels: torch.Tensor, layers: tuple[str, ...]) -> EncoderOutput:
        """Normalised (B,3,S,S) -> tokens of ``layers`` (B,T,C) and embedding (B,D)."""

    def forward(self, images: torch.Tensor, layers: Sequence[str] | None = None) -> EncoderOutput:
        """(N,3,H,W) in [0,1] -> :class:`EncoderOutput` for the requested layers."""
        layers = self.check_layers(layers)
        pixels, per_image = self.preprocess(images)
        out = self.encode(pixels, layers)
        if per_image == 1:
            return out
        batch = images.shape[0]
        tokens = {k: v.reshape(batch, per_image * v.shape[1], v.shape[2]) for k, v in out.tokens.items()}
        embedding = out.embedding.reshape(batch, per_image, -1).mean(dim=1)
        return EncoderOutput(tokens, embedding)


def flatten_spatial(feature_map: torch.Tensor) -> torch.Tensor:
    """(B,C,H,W) -> (B,H*W,C) tokens, row-major over positions."""
    return feature_map.flatten(2).transpose(1, 2)
