"""Differentiable preprocessing: resize policies that bring any (N,3,H,W) batch to an encoder's
square input, and channel normalisation. Everything is tensor code, so gradients reach the image.

Resize policies (registry ``RESIZE_POLICIES``, keyed by name):

- ``"resize"`` (default): the whole image is resized to S x S (aspect ratio not kept). Every pixel
  influences the score, so a distortion confined to a corner or to the background is never cropped
  away, the cost does not depend on the image size, and it is what most machine task models do
  themselves (the detectors and segmenters of this project stretch their input to a square).
- ``"center_crop"``: the short side is resized to S and the centre S x S is kept (CLIP's own
  preprocessing). Keeps the aspect ratio but is blind to whatever lies outside the crop.
- ``"tile"``: S x S tiles at native resolution cover the image (evenly spaced, overlapping where
  S does not divide the side); a side shorter than S is first upsampled to S. Sees fine
  distortions (noise, compression artefacts) that downsampling would hide, at a cost that grows
  with the image area (a 1600 x 1200 photo at S=224 makes 48 tiles).
- ``"native"``: no resize at all; the encoder runs on the image as it is. Only for fully
  convolutional encoders (the CNNs of the registry; a ViT's position embeddings or a CLIP ResNet's
  attention pool fix its input size, and they refuse this policy). Made for codec training on small
  crops: a 128-px crop costs (128/224)^2 = 1/3 of the resized forward and backward pass, and the
  encoder sees the codec's artefacts at their true scale.

Measured (``benchmarks/results/resize_policy.md``, validation photos of the offline dataset,
MobileNetV2): SRCC with the mean machine opinion score 0.718 for ``resize``, 0.698 for
``center_crop``, 0.588 for ``tile`` (at 8x the cost): the default is also the best predictor.

All policies accept any H, W >= ``MIN_IMAGE_SIDE`` (32 px): the coarsest stride of the registered
encoders is 32, so a smaller image carries less than one token of the deepest layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

MIN_IMAGE_SIDE = 32

ResizeFn = Callable[[torch.Tensor, int], tuple[torch.Tensor, int]]


def _resize(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear resize with antialiasing when shrinking; a no-op at equal size."""
    if images.shape[-2:] == (height, width):
        return images
    shrinking = height < images.shape[-2] or width < images.shape[-1]
    return F.interpolate(images, size=(height, width), mode="bilinear", align_corners=False,
                         antialias=shrinking)


def resize_whole(images: torch.Tensor, size: int) -> tuple[torch.Tensor, int]:
    """(N,3,H,W) -> (N,3,S,S), one view per image."""
    return _resize(images, size, size), 1


def resize_center_crop(images: torch.Tensor, size: int) -> tuple[torch.Tensor, int]:
    """Short side to S, then the centre S x S: (N,3,H,W) -> (N,3,S,S)."""
    height, width = images.shape[-2:]
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    resized = _resize(images, new_h, new_w)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return resized[..., top:top + size, left:left + size], 1


def _tile_starts(length: int, size: int) -> list[int]:
    count = math.ceil(length / size)
    if count == 1:
        return [0]
    step = (length - size) / (count - 1)
    return [round(i * step) for i in range(count)]


def tile(images: torch.Tensor, size: int) -> tuple[torch.Tensor, int]:
    """Cover each image with S x S tiles: (N,3,H,W) -> (N*K,3,S,S), tiles of one image adjacent."""
    height, width = images.shape[-2:]
    if height < size or width < size:
        images = _resize(images, max(height, size), max(width, size))
        height, width = images.shape[-2:]
    tiles = [images[..., top:top + size, left:left + size]
             for top in _tile_starts(height, size) for left in _tile_starts(width, size)]
    stacked = torch.stack(tiles, dim=1)  # (N, K, 3, S, S)
    return stacked.flatten(0, 1), len(tiles)


def native(images: torch.Tensor, size: int) -> tuple[torch.Tensor, int]:
    """No resize: (N,3,H,W) -> (N,3,H,W), one view per image (``size`` is ignored)."""
    return images, 1


RESIZE_POLICIES: dict[str, ResizeFn] = {
    "resize": resize_whole,
    "center_crop": resize_center_crop,
    "tile": tile,
    "native": native,
}

SIZE_FREE_POLICIES = frozenset({"native"})
"""Policies that keep the input size: only encoders with ``accepts_any_size`` may use them."""


def get_resize_policy(name: str) -> ResizeFn:
    """Look a resize policy up by name; unknown names raise a ValueError listing the valid ones."""
    try:
        return RESIZE_POLICIES[name]
    except KeyError:
        raise ValueError(f"Unknown resize policy {name!r}; choose one of {sorted(RESIZE_POLICIES)}.") from None


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(x - mean) / std per channel; mean and std are (3,) tensors on the images' device."""
    return (images - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
