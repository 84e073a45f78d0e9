"""Real entropy coding with a CompressAI model: pad, ``compress()`` to byte strings, ``decompress()``, crop.

The model must be ``update()``-d first (entropy-coder tables built from its current weights).
Images are padded (zeros, centred, CompressAI's ``compute_padding``) to a multiple of the model's
``downsampling_factor`` (16 for bmshj2018-factorized, 64 for the others) and the decoded image is
cropped back. The latent shape that ``decompress()`` needs is not stored: it is the padded size
divided by the downsampling factor, for every zoo architecture.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from compressai.models import CompressionModel
from compressai.ops import compute_padding


@dataclass
class CodedImage:
    """One image's bitstream: the model's byte strings (one per latent) and the image size."""

    strings: list[bytes]
    height: int
    width: int

    @property
    def num_bytes(self) -> int:
        return sum(len(s) for s in self.strings)

    @property
    def bpp(self) -> float:
        """Bits per pixel of the payload (the strings' byte lengths, no header)."""
        return 8.0 * self.num_bytes / (self.height * self.width)


def downsampling_factor(model: CompressionModel) -> int:
    return int(getattr(model, "downsampling_factor", 64))


def pad(images: torch.Tensor, model: CompressionModel) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Zero-pad (N,3,H,W) to multiples of the model's downsampling factor; returns (padded, unpad)."""
    height, width = images.shape[-2:]
    padding, unpad = compute_padding(height, width, min_div=downsampling_factor(model))
    return F.pad(images, padding, mode="constant", value=0.0), unpad


def unpad(images: torch.Tensor, unpadding: tuple[int, int, int, int]) -> torch.Tensor:
    return F.pad(images, unpadding)


def latent_shape(model: CompressionModel, height: int, width: int) -> tuple[int, int]:
    factor = downsampling_factor(model)
    return -(-height // factor), -(-width // factor)


@torch.no_grad()
def encode(model: CompressionModel, images: torch.Tensor) -> list[CodedImage]:
    """Compress each image of (N,3,H,W) in [0,1] to byte strings."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"encode takes (N,3,H,W) images, got shape {tuple(images.shape)}.")
    height, width = images.shape[-2:]
    padded, _ = pad(images, model)
    result = model.compress(padded)
    strings = result["strings"]
    return [CodedImage([bytes(latent[i]) for latent in strings], int(height), int(width))
            for i in range(images.shape[0])]


@torch.no_grad()
def decode(model: CompressionModel, coded: CodedImage) -> torch.Tensor:
    """Decompress one image: (1,3,H,W) in [0,1]."""
    padded_height, padded_width = latent_shape(model, coded.height, coded.width)
    shape = (padded_height, padded_width)
    _, unpadding = compute_padding(coded.height, coded.width, min_div=downsampling_factor(model))
    x_hat = model.decompress([[s] for s in coded.strings], shape)["x_hat"]
    return unpad(x_hat, unpadding).clamp(0.0, 1.0)


@torch.no_grad()
def forward_reconstruction(model: CompressionModel, images: torch.Tensor) -> torch.Tensor:
    """The model's forward-pass reconstruction (as in eval mode) of the padded images, cropped and clamped."""
    padded, unpadding = pad(images, model)
    return unpad(model(padded)["x_hat"], unpadding).clamp(0.0, 1.0)
