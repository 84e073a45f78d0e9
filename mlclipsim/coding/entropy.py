"""Real entropy coding with a CompressAI model: pad, ``compress()`` to byte strings, ``decompress()``, crop.

The model must be ``update()``-d first (entropy-coder tables built from its current weights).
Images are padded (zeros, centred, CompressAI's ``compute_padding``) to a multiple of the model's
``downsampling_factor`` (16 for bmshj2018-factorized, 64 for the others) and the decoded image is
cropped back. The latent shape that ``decompress()`` needs is not stored: it is the padded size
divided by the downsampling factor, for every zoo architecture.

A variable-rate model (:mod:`~mlclipsim.coding.variable_rate`) codes at a rate ``level`` (0..L-1,
lowest rate first), which every function here then requires and which :class:`CodedImage` keeps;
for the other models ``level`` must be None.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from compressai.models import CompressionModel
from compressai.ops import compute_padding

from mlclipsim.coding.variable_rate import is_variable_rate


@dataclass
class CodedImage:
    """One image's bitstream: the model's byte strings (one per latent), the image size and, for a
    variable-rate model, the rate level it was coded at."""

    strings: list[bytes]
    height: int
    width: int
    level: int | None = None

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


def check_level(model: CompressionModel, level: int | None) -> int | None:
    """``level`` checked against the model: an int in 0..L-1 for a variable-rate model, None for the others."""
    if is_variable_rate(model):
        if level is None:
            ladder = ", ".join(f"{i}: {v:g}" for i, v in enumerate(model.lmbdas.tolist()))
            raise ValueError(f"This is a variable-rate model: give a rate level (level: lambda, lowest rate first: "
                             f"{ladder}).")
        return model.check_level(level)
    if level is not None:
        raise ValueError(f"This model codes at one rate; a rate level ({level!r}) is only for variable-rate models.")
    return None


def _level_args(model: CompressionModel, level: int | None) -> tuple:
    return () if check_level(model, level) is None else (level,)


def latent_shape(model: CompressionModel, height: int, width: int) -> tuple[int, int]:
    factor = downsampling_factor(model)
    return -(-height // factor), -(-width // factor)


@torch.no_grad()
def encode(model: CompressionModel, images: torch.Tensor, level: int | None = None) -> list[CodedImage]:
    """Compress each image of (N,3,H,W) in [0,1] to byte strings (at ``level`` for a variable-rate model)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"encode takes (N,3,H,W) images, got shape {tuple(images.shape)}.")
    args = _level_args(model, level)
    height, width = images.shape[-2:]
    padded, _ = pad(images, model)
    result = model.compress(padded, *args)
    strings = result["strings"]
    return [CodedImage([bytes(latent[i]) for latent in strings], int(height), int(width), level)
            for i in range(images.shape[0])]


@torch.no_grad()
def decode(model: CompressionModel, coded: CodedImage) -> torch.Tensor:
    """Decompress one image: (1,3,H,W) in [0,1] (at ``coded.level`` for a variable-rate model)."""
    args = _level_args(model, coded.level)
    padded_height, padded_width = latent_shape(model, coded.height, coded.width)
    shape = (padded_height, padded_width)
    _, unpadding = compute_padding(coded.height, coded.width, min_div=downsampling_factor(model))
    x_hat = model.decompress([[s] for s in coded.strings], shape, *args)["x_hat"]
    return unpad(x_hat, unpadding).clamp(0.0, 1.0)


@torch.no_grad()
def forward_reconstruction(model: CompressionModel, images: torch.Tensor, level: int | None = None) -> torch.Tensor:
    """The model's forward-pass reconstruction (as in eval mode) of the padded images, cropped and clamped."""
    args = _level_args(model, level)
    padded, unpadding = pad(images, model)
    return unpad(model(padded, *args)["x_hat"], unpadding).clamp(0.0, 1.0)
