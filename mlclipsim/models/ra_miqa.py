"""RA-MIQA, the network: a region-aware, no-reference predictor of machine quality.

The published architecture (Wang, Zhang and Lin, "Image Quality Assessment for Machines: Paradigm,
Large-scale Database, and Models", arXiv:2508.19850): a sequence of patch tokens, a learnable class
token and a *region token* (the features of a frozen region encoder pooled to one token), each with a
position embedding, goes through a Transformer encoder; the head concatenates the class and region
outputs and maps them with Linear(2D, D), GELU, Linear(D, 1). One head per task (classification,
detection, segmentation) and target (consistency, accuracy, composite), chosen at construction
(``heads=("detection/consistency",)``); the model returns (N, len(heads)).

Patch encoders (``patch_encoder``):

- ``"timm/<name>"``, e.g. ``"timm/vit_small_patch16_224"`` (the paper's): a timm ViT whose patch
  embedding, class token, position embeddings and blocks ARE the Transformer (trained); the region
  token is inserted after the class token. Weights: ``pretrained`` = a local file, or timm's hub
  download for users with a network (switched off by ``MLCLIPSIM_OFFLINE=1``; no ViT weights exist
  offline here, so this path raises :class:`~mlclipsim.backbones.MissingWeightsError` naming every way).
- any CNN of :mod:`mlclipsim.backbones` (the offline hybrid, default ``"torchvision/mobilenet_v2"``):
  the frozen CNN's feature maps of ``patch_layers`` are brought to one token grid of stride
  ``grid_stride`` (default 32: 7 x 7 tokens at 224 px; 16 gives a ViT/16's 14 x 14 at four times the
  attention cost, too slow to train on 2 CPU cores): maps larger than the grid by mean and
  standard-deviation pooling, so the local energy that noise, blur and blocking change survives the
  pooling, concatenated, layer-normalised and linearly projected to D, then a small *trainable*
  Transformer (``depth`` pre-norm blocks, width ``dim``) runs over [class, region, patches].

Region encoder (``region_encoder``, any frozen encoder of the registry, its ``region_layer`` map
pooled to one token by ``region_pool``: ``"attention"`` (a learned query, initialised to the mean),
``"saliency"`` (weights = the token norms: where the encoder's evidence is) or ``"mean"``).

Offline default, and why: the paper's self-supervised region encoder has no offline weights, and the
only other offline ImageNet encoder, EfficientNet-Lite0, is one of the task models whose labels train
and evaluate RA-MIQA (``efficientnet-lite0`` labels the classification task), so it must not be an
encoder. MobileNetV2 labels nothing here (the labellers are centernet, nanodet, selfie and
efficientnet-lite0). Both encoders are therefore the SAME frozen MobileNetV2 (ImageNet weights), run
once: patch tokens from its shallow-to-middle blocks ``features.3``, ``.6``, ``.13`` (strides 4, 8, 16:
local texture and distortion statistics), the region token from its deepest block ``features.17``
(stride 32, 320 channels: object evidence), attention-pooled. They differ in depth and pooling, not
in network.

All preprocessing is tensor code (``view`` policies below, then each encoder's own normalisation),
so scores are differentiable with respect to the input images; the frozen encoders stay in eval
mode and take no gradient steps.

Views (``view``): ``"resize"`` (default): the whole image resized to ``view_size`` (224) square, as
the task models themselves stretch their input: nothing is cropped away, so damage in a corner or in
the background is seen, and a codec loss reaches every pixel. ``"center_crop"`` (the paper's): short
side to ``train_view_size`` (288), centre ``view_size`` crop; training takes random ``view_size``
crops of the 288 view.

Bounded output (``bounded``, default on for new models): each head's output goes through a sigmoid,
so a predicted quality lies in (0, 1) whatever the input: no prediction can exceed 1, the label of a
clean photo (its consistency with itself), however a codec or an attack pushes it. (That a flat or
adversarial image scores below the clean photos themselves is what the hard negatives and adversarial
examples of :mod:`mlclipsim.training.ra_miqa_negatives` train for, and
``benchmarks/ra_miqa_robustness.py`` measures.) The sigmoid is monotone, so rankings are the raw
head's; signed-gradient attacks see the same gradient signs. Files written before the option have
unbounded heads and load unchanged (:meth:`RAMIQAModel.from_file` reads a missing ``bounded`` as False).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mlclipsim.backbones import EMBEDDING, FrozenEncoder, MissingWeightsError, WeightSpec, create_backbone
from mlclipsim.backbones.cnn_encoders import CNN_SPECS
from mlclipsim.backbones.preprocessing import resize_center_crop, resize_whole
from mlclipsim.core.weights import RANDOM_INIT, load_weights, looks_like_path

TASKS = ("classification", "detection", "segmentation")
TARGETS = ("consistency", "accuracy", "composite")
ARCHITECTURES = ("ra-miqa", "no-region", "cnn")
"""``ra-miqa``: class + region + patch tokens; ``no-region``: class + patch tokens (the paper's plain ViT
baseline); ``cnn``: pooled encoder features -> MLP (the paper's retrained-backbone baseline)."""

DEFAULT_PATCH_ENCODER = "torchvision/mobilenet_v2"
DEFAULT_PATCH_LAYERS = ("features.3", "features.6", "features.13")
DEFAULT_REGION_LAYER = "features.17"
FILE_FORMAT = "mlclipsim-ra-miqa/1"
TIMM_PREFIX = "timm/"
_STD_EPS = 1e-6


def head_name(task: str, target: str = "consistency") -> str:
    """``"detection", "consistency"`` -> ``"detection/consistency"``; unknown names raise ValueError."""
    if task not in TASKS:
        raise ValueError(f"Unknown RA-MIQA task {task!r}; choose one of {list(TASKS)}.")
    if target not in TARGETS:
        raise ValueError(f"Unknown RA-MIQA target {target!r}; choose one of {list(TARGETS)}.")
    return f"{task}/{target}"


def parse_heads(heads: str | Sequence[str]) -> tuple[str, ...]:
    """Validate head names ``task/target``; a single string is one head."""
    heads = (heads,) if isinstance(heads, str) else tuple(heads)
    if not heads:
        raise ValueError(f"RA-MIQA needs at least one head 'task/target', e.g. 'detection/consistency' "
                         f"(tasks {list(TASKS)}, targets {list(TARGETS)}).")
    parsed = []
    for head in heads:
        task, sep, target = str(head).partition("/")
        if not sep:
            raise ValueError(f"Head {head!r} must be written 'task/target', e.g. 'detection/consistency'.")
        parsed.append(head_name(task, target))
    if len(set(parsed)) != len(parsed):
        raise ValueError(f"Duplicate heads in {list(heads)}.")
    return tuple(parsed)


# ----------------------------------------------------------------------------------------------- views


@dataclass(frozen=True)
class ViewPolicy:
    """How an image becomes the square view the encoders see.

    ``train(images, train_size)`` -> (N,3,T,T), the view training crops come from (and that the
    feature cache stores); the scored view is its centre ``size`` crop (the whole of it when T = size).
    """

    name: str
    train: Callable[[torch.Tensor, int], torch.Tensor]
    default_train_ratio: float


def _whole(images: torch.Tensor, size: int) -> torch.Tensor:
    return resize_whole(images, size)[0]


def _short_side(images: torch.Tensor, size: int) -> torch.Tensor:
    return resize_center_crop(images, size)[0]


VIEWS: dict[str, ViewPolicy] = {
    "resize": ViewPolicy("resize", _whole, 1.0),
    "center_crop": ViewPolicy("center_crop", _short_side, 288 / 224),
}


def get_view(name: str) -> ViewPolicy:
    try:
        return VIEWS[name]
    except KeyError:
        raise ValueError(f"Unknown RA-MIQA view {name!r}; choose one of {sorted(VIEWS)}.") from None


def centre_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """Centre ``size`` x ``size`` crop of (..., H, W)."""
    height, width = images.shape[-2:]
    top, left = (height - size) // 2, (width - size) // 2
    return images[..., top:top + size, left:left + size]


# ------------------------------------------------------------------------------------- frozen features


@dataclass
class FrozenFeatures:
    """What the frozen encoders make of a batch of views (the part a feature cache can store).

    Attributes:
        patch: (N, C, g, g) patch-token grid of the hybrid (None for a timm ViT, which embeds pixels itself).
        region: (N, Cr, h, w) region-encoder map (pooled to one token by the trainable network).
        pixels: (N, 3, S, S) views in [0,1], only for a timm ViT patch encoder.
    """

    patch: torch.Tensor | None
    region: torch.Tensor
    pixels: torch.Tensor | None = None


def tokens_to_map(tokens: torch.Tensor) -> torch.Tensor:
    """(N, T, C) tokens of a square grid, row-major -> (N, C, s, s)."""
    count = tokens.shape[1]
    side = math.isqrt(count)
    if side * side != count:
        raise ValueError(f"{count} tokens do not form a square grid; RA-MIQA views are square.")
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], side, side)


def pool_to_grid(feature_map: torch.Tensor, grid: int) -> torch.Tensor:
    """(N,C,h,w) -> (N,C',grid,grid): mean and std pooling when larger (C' = 2C), as is when equal,
    nearest upsampling when smaller. Finite gradients everywhere (std = sqrt(var + eps))."""
    size = feature_map.shape[-1]
    if size == grid:
        return feature_map
    if size < grid:
        return F.interpolate(feature_map, size=(grid, grid), mode="nearest")
    mean = F.adaptive_avg_pool2d(feature_map, grid)
    square = F.adaptive_avg_pool2d(feature_map * feature_map, grid)
    std = torch.sqrt((square - mean * mean).clamp_min(0.0) + _STD_EPS)
    return torch.cat([mean, std], dim=1)


def _native_or_resize(name: str) -> str:
    return "native" if name in CNN_SPECS else "resize"


def _build_encoder(encoder: str | FrozenEncoder, pretrained: Any, allow_download: bool | None) -> FrozenEncoder:
    if isinstance(encoder, FrozenEncoder):
        return encoder
    return create_backbone(encoder, pretrained=pretrained, resize=_native_or_resize(encoder),
                           allow_download=allow_download)


class FrozenStage(nn.Module):
    """The frozen encoders: views (N,3,S,S) in [0,1] -> :class:`FrozenFeatures`.

    When the region encoder is the patch encoder (same name and weights, the offline default), one
    forward pass yields both.
    """

    def __init__(self, patch_encoder: str | FrozenEncoder = DEFAULT_PATCH_ENCODER,
                 patch_layers: Sequence[str] = DEFAULT_PATCH_LAYERS,
                 region_encoder: str | FrozenEncoder = DEFAULT_PATCH_ENCODER,
                 region_layer: str = DEFAULT_REGION_LAYER, grid_stride: int = 32, pretrained: Any = None,
                 region_pretrained: Any = None, allow_download: bool | None = None) -> None:
        super().__init__()
        self.timm_patches = isinstance(patch_encoder, str) and patch_encoder.startswith(TIMM_PREFIX)
        self.grid_stride = int(grid_stride)
        self.region_layer = region_layer
        self.patch_layers = () if self.timm_patches else tuple(patch_layers)
        shared = (not self.timm_patches and region_encoder == patch_encoder
                  and (region_pretrained is None or region_pretrained == pretrained))
        self.patch_encoder = None if self.timm_patches else _build_encoder(patch_encoder, pretrained, allow_download)
        if shared:
            self.region_encoder = self.patch_encoder
        else:
            self.region_encoder = _build_encoder(region_encoder, region_pretrained if region_pretrained is not None
                                                 else (pretrained if region_encoder == patch_encoder else None),
                                                 allow_download)
        self.shared = shared
        if self.patch_encoder is not None:
            if not self.patch_layers:
                raise ValueError("patch_layers is empty; name at least one layer of the patch encoder, e.g. "
                                 f"{list(DEFAULT_PATCH_LAYERS)}.")
            self.patch_encoder.check_layers([x for x in self.patch_layers if x != EMBEDDING])
        if region_layer != EMBEDDING:
            self.region_encoder.check_layers([region_layer])

    def train(self, mode: bool = True) -> FrozenStage:
        return super().train(False)

    def _maps(self, encoder: FrozenEncoder, views: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        token_layers = [x for x in dict.fromkeys(layers) if x != EMBEDDING]
        out = encoder(views, layers=token_layers)
        maps = {layer: tokens_to_map(out.tokens[layer]) for layer in token_layers}
        if EMBEDDING in layers:
            maps[EMBEDDING] = out.embedding[:, :, None, None]
        return maps

    def forward(self, views: torch.Tensor) -> FrozenFeatures:
        if self.timm_patches:
            region = self._maps(self.region_encoder, views, [self.region_layer])[self.region_layer]
            return FrozenFeatures(patch=None, region=region, pixels=views)
        assert self.patch_encoder is not None
        grid = max(1, views.shape[-1] // self.grid_stride)
        layers = [*self.patch_layers, self.region_layer] if self.shared else list(self.patch_layers)
        maps = self._maps(self.patch_encoder, views, layers)
        patch = torch.cat([pool_to_grid(maps[layer], grid) for layer in self.patch_layers], dim=1)
        if self.shared:
            region = maps[self.region_layer]
        else:
            region = self._maps(self.region_encoder, views, [self.region_layer])[self.region_layer]
        return FrozenFeatures(patch=patch, region=region)


# ------------------------------------------------------------------------------------ region pooling


class RegionPool(nn.Module):
    """(N, C, h, w) region map -> (N, C) region token, by ``kind``: attention, saliency or mean."""

    KINDS = ("attention", "saliency", "mean")

    def __init__(self, kind: str, channels: int, key_dim: int = 64) -> None:
        super().__init__()
        if kind not in self.KINDS:
            raise ValueError(f"Unknown region_pool {kind!r}; choose one of {list(self.KINDS)}.")
        self.kind = kind
        if kind == "attention":
            self.norm = nn.LayerNorm(channels)
            self.key = nn.Linear(channels, key_dim)
            self.query = nn.Parameter(torch.zeros(key_dim))  # zero query: the mean at initialisation

    def weights(self, region: torch.Tensor) -> torch.Tensor:
        """(N, h*w) pooling weights, non-negative, summing to 1."""
        tokens = region.flatten(2).transpose(1, 2)  # (N, T, C)
        if self.kind == "mean":
            return torch.full(tokens.shape[:2], 1.0 / tokens.shape[1], dtype=tokens.dtype, device=tokens.device)
        if self.kind == "saliency":
            norms = torch.sqrt((tokens * tokens).sum(-1) + _STD_EPS)
            return norms / norms.sum(-1, keepdim=True)
        logits = self.key(self.norm(tokens)) @ self.query / math.sqrt(self.query.numel())
        return logits.softmax(-1)

    def forward(self, region: torch.Tensor) -> torch.Tensor:
        tokens = region.flatten(2).transpose(1, 2)
        return (self.weights(region).unsqueeze(-1) * tokens).sum(1)


# -------------------------------------------------------------------------------------- trainable nets


def make_head(in_dim: int, dim: int) -> nn.Sequential:
    """The paper's head: Linear(in, D), GELU, Linear(D, 1)."""
    return nn.Sequential(nn.Linear(in_dim, dim), nn.GELU(), nn.Linear(dim, 1))


def _head_key(head: str) -> str:
    return head.replace("/", "__")


class _HeadsMixin(nn.Module):
    heads: tuple[str, ...]
    bounded: bool = False
    """Sigmoid on every head's output (a quality in (0, 1)); set by :func:`build_net` from the config."""

    def _make_heads(self, heads: Sequence[str], in_dim: int, dim: int) -> None:
        self.heads = tuple(heads)
        self.head_modules = nn.ModuleDict({_head_key(h): make_head(in_dim, dim) for h in self.heads})

    def _apply_heads(self, pooled: torch.Tensor) -> torch.Tensor:
        out = torch.cat([self.head_modules[_head_key(h)](pooled) for h in self.heads], dim=1)
        return out.sigmoid() if self.bounded else out


class Block(nn.Module):
    """A pre-norm Transformer block (ViT's): x + Attention(LN(x)), then x + MLP(LN(x)); (B,T,D) -> (B,T,D).

    Dropout acts on the attention output and in the MLP, not on the attention weights (which keeps
    ``scaled_dot_product_attention`` on its fused kernel).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}.")
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, tokens, dim)
        x = x + self.drop(self.proj(attended))
        return x + self.drop(self.mlp(self.norm2(x)))


class HybridTransformer(_HeadsMixin):
    """Trainable part of the hybrid: [class, region, projected patch tokens] + positions -> Transformer -> heads.

    ``use_region=False`` drops the region token (the no-region ablation: the head sees the class output only).
    Input: :class:`FrozenFeatures` with patch (N,C,g,g) and region (N,Cr,h,w); output (N, len(heads)).
    """

    def __init__(self, heads: Sequence[str], patch_channels: int, region_channels: int, grid: int,
                 dim: int = 32, depth: int = 1, num_heads: int = 4, mlp_ratio: float = 4.0, dropout: float = 0.1,
                 region_pool: str = "attention", use_region: bool = True) -> None:
        super().__init__()
        self.use_region = use_region
        self.grid = grid
        self.patch_norm = nn.LayerNorm(patch_channels)
        self.patch_proj = nn.Linear(patch_channels, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        prefix = 2 if use_region else 1
        self.pos_embed = nn.Parameter(torch.zeros(1, prefix + grid * grid, dim))
        if use_region:
            self.region_pool = RegionPool(region_pool, region_channels)
            self.region_norm = nn.LayerNorm(region_channels)
            self.region_proj = nn.Linear(region_channels, dim)
        self.encoder = nn.Sequential(*[Block(dim, num_heads, mlp_ratio, dropout) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        self._make_heads(heads, prefix * dim, dim)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, features: FrozenFeatures) -> torch.Tensor:
        patch = features.patch
        if patch is None:
            raise ValueError("The hybrid RA-MIQA network needs patch features from a CNN patch encoder.")
        if patch.shape[-1] != self.grid or patch.shape[-2] != self.grid:
            raise ValueError(f"Patch grid {tuple(patch.shape[-2:])} does not match the network's {self.grid}x"
                             f"{self.grid} (view size / grid stride); score images at the model's view.")
        dtype = self.pos_embed.dtype  # cached features may be float16; the network runs in its own dtype
        tokens = self.patch_proj(self.patch_norm(patch.flatten(2).transpose(1, 2).to(dtype)))
        prefix = [self.cls_token.expand(tokens.shape[0], -1, -1)]
        if self.use_region:
            region = self.region_proj(self.region_norm(self.region_pool(features.region.to(dtype))))
            prefix.append(region.unsqueeze(1))
        x = self.drop(torch.cat([*prefix, tokens], dim=1) + self.pos_embed)
        x = self.norm(self.encoder(x))
        pooled = x[:, :len(prefix)].flatten(1)  # concat(class out, region out)
        return self._apply_heads(pooled)


class CNNRegressor(_HeadsMixin):
    """The CNN-regressor ablation: global mean of the patch grid and of the region map -> MLP heads."""

    def __init__(self, heads: Sequence[str], patch_channels: int, region_channels: int, dim: int = 32,
                 dropout: float = 0.1) -> None:
        super().__init__()
        channels = patch_channels + region_channels
        self.norm = nn.LayerNorm(channels)
        self.drop = nn.Dropout(dropout)
        self._make_heads(heads, channels, dim)

    def forward(self, features: FrozenFeatures) -> torch.Tensor:
        if features.patch is None:
            raise ValueError("The CNN regressor needs patch features from a CNN patch encoder.")
        dtype = self.norm.weight.dtype
        pooled = torch.cat([features.patch.to(dtype).mean((2, 3)), features.region.to(dtype).mean((2, 3))], dim=1)
        return self._apply_heads(self.drop(self.norm(pooled)))


def timm_weight_spec(name: str, tag: str | None) -> WeightSpec:
    model = name[len(TIMM_PREFIX):]
    return WeightSpec(owner=name, tag=tag or "timm default", filename=f"{model}.pth",
                      download_hint=f"timm's hub download of {model} (Hugging Face; needs a network)")


class TimmViT(_HeadsMixin):
    """The paper's network: a timm ViT (trainable) whose sequence gets a region token after the class token."""

    def __init__(self, heads: Sequence[str], name: str, region_channels: int, image_size: int = 224,
                 pretrained: Any = None, allow_download: bool | None = None, region_pool: str = "attention",
                 use_region: bool = True, vit_options: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        try:
            import timm
        except ImportError as err:  # timm comes with open_clip_torch
            raise ImportError("A timm ViT patch encoder needs timm: pip install timm.") from err
        model = name[len(TIMM_PREFIX):]
        options = dict(vit_options or {})
        try:
            vit = timm.create_model(model, pretrained=False, num_classes=0, img_size=image_size, **options)
        except RuntimeError as err:
            raise ValueError(f"timm has no model {model!r}: {err}") from None
        if pretrained != RANDOM_INIT:
            explicit = pretrained if looks_like_path(pretrained) else None

            def from_file(path: os.PathLike) -> dict:
                state = torch.load(path, map_location="cpu", weights_only=True)
                return state.get("state_dict", state) if isinstance(state, dict) else state

            def from_hub() -> dict:
                return timm.create_model(model, pretrained=True, num_classes=0, img_size=image_size,
                                         **options).state_dict()

            tag = None if explicit or pretrained is None else str(pretrained)
            state = load_weights(timm_weight_spec(name, tag), explicit, from_file, from_hub, allow_download)
            missing, unexpected = vit.load_state_dict({k: v for k, v in state.items() if not k.startswith("head.")},
                                                      strict=False)
            if missing:
                raise ValueError(f"The weights for {name!r} lack {len(missing)} parameter(s) (first: {missing[:3]}).")
        self.vit = vit
        self.use_region = use_region
        dim = vit.embed_dim
        mean, std = vit.pretrained_cfg.get("mean", (0.5,) * 3), vit.pretrained_cfg.get("std", (0.5,) * 3)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        if use_region:
            self.region_pool = RegionPool(region_pool, region_channels)
            self.region_norm = nn.LayerNorm(region_channels)
            self.region_proj = nn.Linear(region_channels, dim)
            self.region_pos = nn.Parameter(torch.zeros(1, 1, dim))
            nn.init.trunc_normal_(self.region_pos, std=0.02)
        self._make_heads(heads, (2 if use_region else 1) * dim, dim)

    def forward(self, features: FrozenFeatures) -> torch.Tensor:
        if features.pixels is None:
            raise ValueError("A timm ViT RA-MIQA network needs the views as pixels.")
        vit = self.vit
        x = vit.patch_embed((features.pixels - self.mean) / self.std)
        x = vit._pos_embed(x)  # prepends the class token, adds position embeddings
        prefix = 1
        if self.use_region:
            region = self.region_pool(features.region.to(self.region_pos.dtype))
            region = self.region_proj(self.region_norm(region)) + self.region_pos[0]
            x = torch.cat([x[:, :1], region.unsqueeze(1), x[:, 1:]], dim=1)
            prefix = 2
        x = vit.norm(vit.blocks(vit.norm_pre(vit.patch_drop(x))))
        return self._apply_heads(x[:, :prefix].flatten(1))


# ------------------------------------------------------------------------------------------ the model


@dataclass(frozen=True)
class FeatureDims:
    patch_channels: int
    region_channels: int
    grid: int
    region_grid: int


def model_config(**overrides: Any) -> dict[str, Any]:
    """The full construction config of :class:`RAMIQAModel` (defaults updated by ``overrides``)."""
    config = dict(heads=["detection/consistency"], architecture="ra-miqa", patch_encoder=DEFAULT_PATCH_ENCODER,
                  patch_layers=list(DEFAULT_PATCH_LAYERS), region_encoder=DEFAULT_PATCH_ENCODER,
                  region_layer=DEFAULT_REGION_LAYER, region_pool="attention", dim=32, depth=1, num_heads=4,
                  mlp_ratio=4.0, dropout=0.1, view="resize", view_size=224, train_view_size=None, grid_stride=32,
                  pretrained=None, region_pretrained=None, vit_options=None, bounded=True)
    unknown = sorted(set(overrides) - set(config))
    if unknown:
        raise TypeError(f"Unknown RA-MIQA option(s) {unknown}; options are {sorted(config)}.")
    config.update(overrides)
    config["heads"] = list(parse_heads(config["heads"]))
    config["patch_layers"] = list(config["patch_layers"])
    if config["architecture"] not in ARCHITECTURES:
        raise ValueError(f"Unknown RA-MIQA architecture {config['architecture']!r}; "
                         f"choose one of {list(ARCHITECTURES)}.")
    get_view(config["view"])
    if not isinstance(config["view_size"], int) or config["view_size"] < 32:
        raise ValueError(f"view_size must be an int >= 32, got {config['view_size']!r}.")
    return config


def train_view_size(config: Mapping[str, Any]) -> int:
    """Side of the training view (random ``view_size`` crops are taken from it when larger)."""
    if config.get("train_view_size"):
        return int(config["train_view_size"])
    return round(config["view_size"] * get_view(config["view"]).default_train_ratio)


def build_frozen_stage(config: Mapping[str, Any], pretrained: Any = "config",
                       allow_download: bool | None = None) -> FrozenStage:
    """The frozen encoders of a config; ``pretrained="random"`` builds them untrained (for shape probes)."""
    patch_pretrained = config["pretrained"] if pretrained == "config" else pretrained
    region_pretrained = config["region_pretrained"] if pretrained == "config" else pretrained
    return FrozenStage(config["patch_encoder"], config["patch_layers"], config["region_encoder"],
                       config["region_layer"], config["grid_stride"], patch_pretrained, region_pretrained,
                       allow_download)


def probe_dims(config: Mapping[str, Any], stage: FrozenStage | None = None) -> FeatureDims:
    """Channels and grids of the frozen features at the scored view (random weights: only shapes matter)."""
    stage = stage if stage is not None else build_frozen_stage(config, pretrained=RANDOM_INIT)
    with torch.no_grad():
        features = stage(torch.zeros(1, 3, config["view_size"], config["view_size"]))
    patch_channels = 0 if features.patch is None else features.patch.shape[1]
    grid = 0 if features.patch is None else features.patch.shape[-1]
    return FeatureDims(patch_channels, features.region.shape[1], grid, features.region.shape[-1])


def build_net(config: Mapping[str, Any], dims: FeatureDims, allow_download: bool | None = None,
              pretrained: Any = "config") -> nn.Module:
    """The trainable network of a config (hybrid Transformer, CNN regressor or timm ViT); its heads are
    bounded to (0, 1) by a sigmoid when ``config["bounded"]`` (absent: unbounded, the files made before)."""
    net = _build_net(config, dims, allow_download, pretrained)
    net.bounded = bool(config.get("bounded", False))
    return net


def _build_net(config: Mapping[str, Any], dims: FeatureDims, allow_download: bool | None,
               pretrained: Any) -> _HeadsMixin:
    heads, architecture = config["heads"], config["architecture"]
    use_region = architecture == "ra-miqa"
    if str(config["patch_encoder"]).startswith(TIMM_PREFIX):
        if architecture == "cnn":
            raise ValueError("architecture 'cnn' pools CNN features; use a CNN patch encoder "
                             f"(e.g. {DEFAULT_PATCH_ENCODER!r}) for it.")
        return TimmViT(heads, config["patch_encoder"], dims.region_channels, config["view_size"],
                       config["pretrained"] if pretrained == "config" else pretrained, allow_download,
                       config["region_pool"], use_region, config["vit_options"])
    if architecture == "cnn":
        return CNNRegressor(heads, dims.patch_channels, dims.region_channels, config["dim"], config["dropout"])
    return HybridTransformer(heads, dims.patch_channels, dims.region_channels, dims.grid, config["dim"],
                             config["depth"], config["num_heads"], config["mlp_ratio"], config["dropout"],
                             config["region_pool"], use_region)


class RAMIQAModel(nn.Module):
    """RA-MIQA: images (N,3,H,W) in [0,1] -> predicted machine quality (N, len(heads)), higher is better.

    Args:
        heads: ``"task/target"`` names (tasks :data:`TASKS`, targets :data:`TARGETS`).
        architecture: ``"ra-miqa"`` (default), ``"no-region"`` or ``"cnn"`` (ablations).
        patch_encoder, patch_layers, region_encoder, region_layer, region_pool: see the module docstring.
        dim, depth, num_heads, mlp_ratio, dropout: the trainable Transformer (hybrid) / MLP width.
        view, view_size, train_view_size: preprocessing (see the module docstring).
        grid_stride: the hybrid's patch grid is view_size / grid_stride per side (32: 7 x 7 at 224).
        pretrained, region_pretrained: encoder weights (tag, path, None = the encoder's default, "random").
        vit_options: extra ``timm.create_model`` arguments (e.g. ``depth`` for a small test ViT).
        bounded: a sigmoid on every head, so each prediction lies in (0, 1) (default True; files written
            before this option load unbounded, as they were trained).
        allow_download: allow upstream downloads of encoder weights (default: unless MLCLIPSIM_OFFLINE=1).

    Trained models are saved with :meth:`save` (config + trainable weights; the frozen encoders load
    their own weights) and loaded with :meth:`from_file`.
    """

    def __init__(self, allow_download: bool | None = None, **options: Any) -> None:
        super().__init__()
        self.config = model_config(**options)
        self.heads: tuple[str, ...] = tuple(self.config["heads"])
        self.view = get_view(self.config["view"])
        self.view_size = int(self.config["view_size"])
        self.train_size = train_view_size(self.config)
        self.frozen = build_frozen_stage(self.config, allow_download=allow_download)
        self.dims = probe_dims(self.config, self.frozen)
        self.net = build_net(self.config, self.dims, allow_download)

    def head_index(self, head: str) -> int:
        if head not in self.heads:
            raise ValueError(f"This RA-MIQA model has no head {head!r}; its heads are {list(self.heads)}.")
        return self.heads.index(head)

    def train_views(self, images: torch.Tensor) -> torch.Tensor:
        """(N,3,H,W) -> (N,3,T,T): the view training crops come from."""
        return self.view.train(images, self.train_size)

    def views(self, images: torch.Tensor) -> torch.Tensor:
        """(N,3,H,W) -> (N,3,S,S): the view that is scored."""
        return centre_crop(self.train_views(images), self.view_size)

    def encode(self, images: torch.Tensor) -> FrozenFeatures:
        """Frozen features of the scored view (gradients flow to ``images``)."""
        return self.frozen(self.views(images))

    def predict(self, features: FrozenFeatures) -> torch.Tensor:
        """Frozen features (e.g. from a cache) -> (N, len(heads))."""
        return self.net(features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.predict(self.encode(images))

    # ------------------------------------------------------------------------------------ files

    def save(self, path: str | os.PathLike, meta: Mapping[str, Any] | None = None, half: bool = True) -> None:
        """Write config + trainable weights (float16 when ``half``) + ``meta`` (e.g. the training command)."""
        save_trained(path, self.config, self.net.state_dict(), meta, half)

    @classmethod
    def from_file(cls, path: str | os.PathLike, allow_download: bool | None = None, **overrides: Any) -> RAMIQAModel:
        """Load a file written by :meth:`save`; ``overrides`` replace config entries (e.g. ``pretrained``).

        A file without ``bounded`` in its config predates the option: its heads were trained unbounded
        and load so (the shipped heads of ``mlclipsim/weights/ra_miqa`` among them)."""
        record = read_trained(path)
        config = {"bounded": False, **record["config"], **overrides}
        model = cls(allow_download=allow_download, **config)
        state = {k: v.float() if torch.is_floating_point(v) else v for k, v in record["state_dict"].items()}
        try:
            model.net.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(f"The RA-MIQA weights in {str(path)!r} do not fit their own config: {err}") from None
        model.meta = dict(record.get("meta") or {})
        model.eval()
        return model


def save_trained(path: str | os.PathLike, config: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor],
                 meta: Mapping[str, Any] | None = None, half: bool = True) -> None:
    """Write an RA-MIQA file: ``{"format", "config", "state_dict", "meta"}``."""
    state = {k: (v.detach().cpu().half() if half and torch.is_floating_point(v) else v.detach().cpu())
             for k, v in state_dict.items()}
    record = {"format": FILE_FORMAT, "config": dict(config), "state_dict": state, "meta": dict(meta or {})}
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    temporary = path + ".tmp"
    torch.save(record, temporary)
    os.replace(temporary, path)


def read_trained(path: str | os.PathLike) -> dict[str, Any]:
    """Read an RA-MIQA file; a file of another kind raises ValueError saying what it is."""
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise MissingWeightsError(f"RA-MIQA weights file {str(path)!r} does not exist.") from None
    except Exception as err:
        raise ValueError(f"{str(path)!r} is not a readable RA-MIQA weights file: {type(err).__name__}: {err}") from None
    if not isinstance(record, dict) or record.get("format") != FILE_FORMAT:
        raise ValueError(f"{str(path)!r} is not an RA-MIQA weights file (expected format {FILE_FORMAT!r}); "
                         "write one with `mlclipsim train-ramiqa --config ... ` or RAMIQAModel.save().")
    return record
