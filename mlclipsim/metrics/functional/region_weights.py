"""Region weighting for ML-CLIPSim: per-token weights so that damage inside objects costs more.

ML-CLIPSim's layer terms are means of per-token cosines. With region weighting they become weighted
means, the weights coming from a map m in [0,1] over the reference image::

    w_t = alpha + (1 - alpha) * m_t,   normalised to mean 1 over the spatial tokens of each image

``alpha`` in (0, 1] is the floor: the background never weighs 0 (alpha = 1 is the unweighted score).
The global-embedding term is unchanged. Identical images still score 1 (a weighted mean of ones),
and the weights are constants (no gradient), so gradients to the distorted image stay finite.

Sources of m (registry ``REGION_SOURCES``, keyed by the name passed as ``region_weights``):

- ``"mask"``: a mask the caller passes, (N,1,H,W) or (N,H,W) in [0,1] at image resolution (for
  example rasterised task-model boxes or a segmentation mask). It goes through the encoder's own
  resize policy (whole resize, centre crop, tiles, or native size), so it lands on the same pixels
  the encoder sees, and is then area-averaged onto each layer's token grid.
- ``"saliency"``: no labels. The L2 norm of the reference's deepest compared layer tokens (a
  class-agnostic activation map of the frozen encoder), min-max normalised per image and resampled
  bilinearly to each layer's grid. It is computed from the reference features themselves, so it
  costs no extra encoder pass and works with cached :class:`ReferenceFeatures`.

Token grids: a layer's tokens per view, minus the encoder's prefix tokens (a ViT's class token, which
keeps weight 1 and is excluded from weighting), form an h x w grid, row-major; (h, w) is the
factorisation of the token count whose aspect ratio is closest to the preprocessed view's (H x W
for ``"native"``, S x S otherwise). Tiled images carry K views, tokens of one view adjacent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mlclipsim.backbones import EncoderOutput, FrozenEncoder
from mlclipsim.backbones.preprocessing import get_resize_policy

DEFAULT_ALPHA: dict[str, float] = {"mask": 0.2, "saliency": 0.02}
"""Background floor per source when ``region_alpha`` is not given: the values chosen on the validation photos
of the offline dataset for calibrated MobileNetV2 (``benchmarks/machine_preference.py``, section "Region
weighting" of ``benchmarks/results/machine_preference.md``)."""

MASK_TOLERANCE = 1e-4


# ----------------------------------------------------------------------------- geometry


def prefix_tokens(encoder: FrozenEncoder) -> int:
    """Tokens per view that are not spatial (a ViT's class token when it is returned), placed first."""
    declared = getattr(encoder, "prefix_tokens", None)
    if declared is not None:
        return int(declared)
    return int(getattr(encoder, "kind", None) == "vit" and bool(getattr(encoder, "include_class_token", False)))


def view_geometry(encoder: FrozenEncoder, image_size: tuple[int, int]) -> tuple[int, int, int]:
    """(K views per image, view height, view width) of the encoder's resize policy for an H x W image.

    Runs the policy on a meta tensor: no memory, and always the policy's own geometry.
    """
    policy = get_resize_policy(encoder.resize_policy)
    views, count = policy(torch.empty(1, 1, *image_size, device="meta"), encoder.input_size)
    return count, int(views.shape[-2]), int(views.shape[-1])


def token_grid(count: int, height: int, width: int) -> tuple[int, int]:
    """The (h, w) with h * w = ``count`` whose aspect ratio is closest to ``height`` / ``width``."""
    if count < 1:
        raise ValueError(f"A layer with {count} spatial tokens has no grid to weight.")
    target = math.log(height / width)
    pairs = [(h, count // h) for h in range(1, count + 1) if count % h == 0]
    return min(pairs, key=lambda hw: abs(math.log(hw[0] / hw[1]) - target))


def _resample(maps: torch.Tensor, size: tuple[int, int], area: bool) -> torch.Tensor:
    """(B,1,h,w) -> (B,1,*size): area average (masks) or bilinear (saliency), values stay in [0,1]."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    if area:
        return F.adaptive_avg_pool2d(maps, size)
    shrinking = size[0] < maps.shape[-2] or size[1] < maps.shape[-1]
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False, antialias=shrinking).clamp(0, 1)


def _weights_from_maps(maps: torch.Tensor, batch: int, views: int, prefix: int, alpha: float) -> torch.Tensor:
    """Per-view maps (N*K,1,h,w) in [0,1] -> token weights (N, K*(prefix + h*w)), spatial mean 1."""
    values = maps.flatten(1).reshape(batch, -1)  # (N, K*h*w), views of one image adjacent
    weights = alpha + (1.0 - alpha) * values
    weights = weights / weights.mean(dim=1, keepdim=True)
    if prefix:
        spatial = weights.reshape(batch, views, -1)
        ones = torch.ones(batch, views, prefix, dtype=weights.dtype, device=weights.device)
        weights = torch.cat([ones, spatial], dim=2).reshape(batch, -1)
    return weights


def _layer_grids(encoder: FrozenEncoder, tokens: Mapping[str, torch.Tensor], layers: Sequence[str],
                 image_size: tuple[int, int]) -> tuple[int, int, dict[str, tuple[int, int]]]:
    views, view_h, view_w = view_geometry(encoder, image_size)
    prefix = prefix_tokens(encoder)
    grids = {}
    for layer in layers:
        count = tokens[layer].shape[1]
        if count % views or count // views <= prefix:
            raise ValueError(f"Layer {layer!r} has {count} tokens per image, which does not split into {views} "
                             f"view(s) of {prefix} prefix token(s) plus a spatial grid; region weighting cannot "
                             "place them.")
        grids[layer] = token_grid(count // views - prefix, view_h, view_w)
    return views, prefix, grids


# ----------------------------------------------------------------------------- mask checks


def check_mask(mask: object, batch: int, image_size: tuple[int, int]) -> torch.Tensor:
    """Validate a region mask: (N,1,H,W) or (N,H,W), float or bool, finite, in [0,1], the images' N, H, W.

    Returns it as float32 (N,1,H,W).
    """
    height, width = image_size
    expected = f"(N,1,H,W) or (N,H,W) = ({batch},1,{height},{width}) or ({batch},{height},{width})"
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor of shape {expected} with values in [0,1], got "
                        f"{type(mask).__name__}; convert with torch.as_tensor(array, dtype=torch.float32).")
    if mask.dtype == torch.bool:
        mask = mask.float()
    if not torch.is_floating_point(mask):
        raise TypeError(f"mask has integer dtype {mask.dtype}; pass floats in [0,1] (or bool), e.g. "
                        "(mask > 0).float() for a label map or mask.float() / 255 for an 8-bit mask.")
    if mask.ndim == 3:
        mask = mask.unsqueeze(1)
    if mask.ndim != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask must have shape {expected}, got {tuple(mask.shape)}; for several masks per image "
                         "combine them first, e.g. mask.amax(dim=1, keepdim=True).")
    if mask.shape[0] != batch:
        raise ValueError(f"mask has {mask.shape[0]} mask(s) for {batch} image(s); give one mask per reference image.")
    if tuple(mask.shape[-2:]) != (height, width):
        raise ValueError(f"mask is {mask.shape[-2]}x{mask.shape[-1]} px but the images are {height}x{width}; "
                         "rasterise it at image resolution, or resize it with torch.nn.functional.interpolate("
                         f"mask, size=({height}, {width}), mode='nearest').")
    data = mask.detach()
    if not bool(torch.isfinite(data).all()):
        raise ValueError("mask contains NaN or infinite values; a region mask holds values in [0,1].")
    low, high = float(data.min()), float(data.max())
    if low < -MASK_TOLERANCE or high > 1 + MASK_TOLERANCE:
        hint = " It looks like an 8-bit mask: divide by 255." if high <= 255 and low >= 0 else ""
        raise ValueError(f"mask must have values in [0,1], got min {low:.4g}, max {high:.4g}.{hint}")
    return data.float().clamp(0, 1)


# ----------------------------------------------------------------------------- sources


def mask_maps(encoder: FrozenEncoder, reference: EncoderOutput, grids: Mapping[str, tuple[int, int]],
              image_size: tuple[int, int], mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Per-view maps (N*K,1,h,w) in [0,1] per layer from a caller's mask (already checked, (N,1,H,W))."""
    if mask is None:
        raise ValueError("region_weights='mask' needs a mask: pass mask=(N,1,H,W) in [0,1] with the references "
                         "(to the call, or to reference_features()).")
    policy = get_resize_policy(encoder.resize_policy)
    mask_views, _ = policy(mask.to(reference.embedding.device), encoder.input_size)  # (N*K,1,vh,vw)
    return {layer: _resample(mask_views, grid, area=True) for layer, grid in grids.items()}


def feature_norm(tokens: torch.Tensor) -> torch.Tensor:
    """(B, g, C) spatial tokens -> (B, g) L2 norms: how strongly the encoder responds at each position."""
    return tokens.float().norm(dim=-1)


SALIENCY_MAPS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"feature-norm": feature_norm}
"""Class-agnostic saliency of reference tokens, keyed by name."""


def deepest_layer(encoder: FrozenEncoder, layers: Sequence[str]) -> str:
    """The compared layer that comes last in the encoder (its coarsest, most semantic tokens)."""
    order = {name: i for i, name in enumerate(encoder.layer_names)}
    return max(layers, key=lambda layer: order.get(layer, -1))


def saliency_maps(encoder: FrozenEncoder, reference: EncoderOutput, grids: Mapping[str, tuple[int, int]],
                  image_size: tuple[int, int], mask: torch.Tensor | None = None,
                  saliency: str = "feature-norm") -> dict[str, torch.Tensor]:
    """Per-view maps (N*K,1,h,w) in [0,1] per layer from the saliency of the deepest compared layer's tokens."""
    if mask is not None:
        raise ValueError("region_weights='saliency' estimates the regions from the reference itself; do not pass "
                         "a mask (use region_weights='mask' to weight by your own mask).")
    views, _, _ = view_geometry(encoder, image_size)
    prefix = prefix_tokens(encoder)
    source = deepest_layer(encoder, list(grids))
    batch = reference.batch_size
    tokens = reference.tokens[source].detach()
    per_view = tokens.reshape(batch * views, tokens.shape[1] // views, tokens.shape[2])[:, prefix:]
    values = SALIENCY_MAPS[saliency](per_view).reshape(batch, -1)
    low, high = values.amin(dim=1, keepdim=True), values.amax(dim=1, keepdim=True)
    values = (values - low) / (high - low).clamp_min(1e-12)  # constant map -> 0 -> uniform weights
    maps = values.reshape(batch * views, 1, *grids[source])
    return {layer: _resample(maps, grid, area=False) for layer, grid in grids.items()}


MapSource = Callable[..., dict[str, torch.Tensor]]

REGION_SOURCES: dict[str, MapSource] = {"mask": mask_maps, "saliency": saliency_maps}
"""Where the region map comes from, keyed by the ``region_weights`` name."""


@dataclass(frozen=True)
class RegionWeighting:
    """A region-weighting configuration: its source (``"mask"`` or ``"saliency"``) and background floor alpha."""

    source: str
    alpha: float

    @classmethod
    def create(cls, source: str | None, alpha: float | None = None) -> RegionWeighting | None:
        """Validate ``region_weights`` / ``region_alpha``; None when region weighting is off."""
        if source is None:
            if alpha is not None:
                raise ValueError("region_alpha is set but region_weights is None; choose region_weights='mask' or "
                                 "'saliency', or leave region_alpha out.")
            return None
        if source not in REGION_SOURCES:
            raise ValueError(f"Unknown region_weights {source!r}; choose one of {sorted(REGION_SOURCES)} "
                             "or None (off).")
        alpha = DEFAULT_ALPHA[source] if alpha is None else alpha
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 < float(alpha) <= 1.0:
            raise ValueError(f"region_alpha must be a number in (0, 1] (the background's floor weight; 1 = "
                             f"unweighted), got {alpha!r}.")
        return cls(source, float(alpha))

    @property
    def needs_mask(self) -> bool:
        return self.source == "mask"

    def token_maps(self, encoder: FrozenEncoder, reference: EncoderOutput, layers: Sequence[str],
                   image_size: tuple[int, int], mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The region map m in [0,1] on each layer's spatial tokens: (N, K*h*w), prefix tokens left out."""
        batch = reference.batch_size
        return {layer: maps.reshape(batch, -1)
                for layer, maps in self._maps(encoder, reference, layers, image_size, mask)[2].items()}

    def token_weights(self, encoder: FrozenEncoder, reference: EncoderOutput, layers: Sequence[str],
                      image_size: tuple[int, int], mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Weights (N, T) per token layer for a batch of reference features of H x W images."""
        views, prefix, maps = self._maps(encoder, reference, layers, image_size, mask)
        return {layer: _weights_from_maps(values, reference.batch_size, views, prefix, self.alpha)
                for layer, values in maps.items()}

    def _maps(self, encoder: FrozenEncoder, reference: EncoderOutput, layers: Sequence[str],
              image_size: tuple[int, int], mask: torch.Tensor | None) -> tuple[int, int, dict[str, torch.Tensor]]:
        if mask is not None and self.needs_mask:
            mask = check_mask(mask, reference.batch_size, image_size)
        views, prefix, grids = _layer_grids(encoder, reference.tokens, layers, image_size)
        with torch.no_grad():
            return views, prefix, REGION_SOURCES[self.source](encoder, reference, grids, image_size, mask)
