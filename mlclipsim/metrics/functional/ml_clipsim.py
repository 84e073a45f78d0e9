"""ML-CLIPSim, the functional core: a full-reference similarity on a frozen encoder.

For a distorted image x and its reference r, with token maps f_l(.) of chosen layers l (N,T,C) and
global embeddings g(.) (N,D)::

    ML-CLIPSim(x, r) = sum_l w_l * mean_t m(cos(f_l(x)[t], f_l(r)[t])) + w_g * m(cos(g(x), g(r)))

with non-negative weights normalised to sum 1 and m a map of cosines into [0,1]:

- ``"clamp"`` (default): m(c) = min(max(c, 0), 1). A token whose features point away from the
  reference's is as wrong as an unrelated one; the full [0,1] range stays for the cosines that
  actually occur between an image and a degraded copy (mostly positive), so the score keeps its
  resolution where it matters. Tokens clamped at 0 pass no gradient.
- ``"rescale"``: m(c) = (c + 1) / 2. Every token keeps a gradient (useful for codecs trained from
  scratch, whose first reconstructions are unrelated to the input), at the price of a compressed
  range: unrelated images score about 0.5.

The cosine is computed on vectors augmented with a constant sqrt(eps): it equals 1 exactly for
identical tokens (also two all-zero tokens, e.g. dead ReLU positions), lies in [-1,1], and has a
finite gradient everywhere, including at zero vectors and at identical inputs.

Identical images score 1. Higher is better.

Magnitude-aware term (``magnitude=True``, one more weighted column, key ``"magnitude"``): cosines are
blind to a change of feature magnitude, which brightness and contrast changes mostly are. The term
compares token norms as SSIM compares luminances, per token ``2 |a| |b| / (|a|^2 + |b|^2)`` (norms of
the same sqrt(eps)-augmented vectors, so it is 1 for identical tokens, in (0,1], with a finite
gradient everywhere, zero at identical inputs), averaged over tokens and then over the compared
layers (the global embeddings' norms when no token layer is compared). It is weighted like any layer:
by the calibration or by the preset.

Presets (``weights="calibrated" | "uniform" | "embedding"``) and the default are described in
:mod:`mlclipsim.metrics.layer_weights`. ``scale="agreement"`` maps the score through the monotone
logistic shipped for the backbone's default variant to predicted machine agreement (mean MMOS); see
:mod:`mlclipsim.metrics.agreement_scale`.

Region weighting (``region_weights="mask"`` or ``"saliency"``, off by default): the mean over tokens
becomes a weighted mean whose weights favour the reference's objects, so damage inside them costs
more than damage around them; see :mod:`mlclipsim.metrics.functional.region_weights`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import torch
from torch import nn

from mlclipsim.backbones import EncoderOutput, FrozenEncoder, create_backbone
from mlclipsim.backbones.registry import DEFAULT_BACKBONE, create_default_backbone
from mlclipsim.metrics.agreement_scale import SCALES, AgreementScale, load_agreement_scale
from mlclipsim.metrics.frozen import exclude_from_state_dict
from mlclipsim.metrics.functional.region_weights import RegionWeighting
from mlclipsim.metrics.input_checks import check_device, check_images, check_same_shape
from mlclipsim.metrics.layer_weights import WeightsArg, default_variant, resolve_layer_weights, term_names

COSINE_EPS = 1e-6

COSINE_MAPS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "clamp": lambda c: c.clamp(0.0, 1.0),
    "rescale": lambda c: ((c + 1.0) / 2.0).clamp(0.0, 1.0),
}

Reduction = Literal["mean", "sum", "none"]


def _at_least_float32(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both tensors in their common dtype, raised to float32 at least (fp16/bf16 up, fp64 kept)."""
    dtype = torch.promote_types(torch.promote_types(a.dtype, b.dtype), torch.float32)
    return a.to(dtype), b.to(dtype)


def augmented_cosine(a: torch.Tensor, b: torch.Tensor, eps: float = COSINE_EPS) -> torch.Tensor:
    """Cosine over the last dimension of [a, sqrt(eps)] and [b, sqrt(eps)]; (..., C) -> (...), in float32 or wider."""
    a, b = _at_least_float32(a, b)
    dot = (a * b).sum(-1) + eps
    norms = torch.sqrt((a * a).sum(-1) + eps) * torch.sqrt((b * b).sum(-1) + eps)
    return dot / norms


def magnitude_similarity(a: torch.Tensor, b: torch.Tensor, eps: float = COSINE_EPS) -> torch.Tensor:
    """Luminance-like comparison of the norms of [a, sqrt(eps)] and [b, sqrt(eps)]: (..., C) -> (...) in (0,1],
    in float32 or wider like :func:`augmented_cosine`."""
    a, b = _at_least_float32(a, b)
    norm_a = torch.sqrt((a * a).sum(-1) + eps)
    norm_b = torch.sqrt((b * b).sum(-1) + eps)
    return 2.0 * norm_a * norm_b / (norm_a * norm_a + norm_b * norm_b)


def _token_mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """(N, T) -> (N,): the mean over tokens, or the weighted mean with non-negative (N, T) weights."""
    if weights is None:
        return values.mean(-1)
    weights = weights.to(values)
    return (values * weights).sum(-1) / weights.sum(-1).clamp_min(1e-12)


def similarity_components(
    pred: EncoderOutput,
    ref: EncoderOutput,
    layers: Sequence[str],
    cosine_map: str = "clamp",
    token_weights: Mapping[str, torch.Tensor] | None = None,
    magnitude: bool = False,
) -> torch.Tensor:
    """Per-layer similarities in [0,1]: (N, len(layers) + 1), the last column the global embedding;
    with ``magnitude`` one more column, the magnitude-aware term (see the module docstring).

    ``token_weights`` optionally maps a layer to non-negative (N, T) weights for the spatial mean.
    """
    mapping = get_cosine_map(cosine_map)
    weights = token_weights or {}
    columns = [_token_mean(mapping(augmented_cosine(pred.tokens[layer], ref.tokens[layer])), weights.get(layer))
               for layer in layers]
    columns.append(mapping(augmented_cosine(pred.embedding, ref.embedding)))
    if magnitude:
        if layers:
            per_layer = [_token_mean(magnitude_similarity(pred.tokens[layer], ref.tokens[layer]), weights.get(layer))
                         for layer in layers]
            columns.append(torch.stack(per_layer, dim=-1).mean(-1))
        else:
            columns.append(magnitude_similarity(pred.embedding, ref.embedding))
    return torch.stack(columns, dim=-1)


def get_cosine_map(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    try:
        return COSINE_MAPS[name]
    except KeyError:
        raise ValueError(f"Unknown cosine_map {name!r}; choose one of {sorted(COSINE_MAPS)}.") from None


def reduce(values: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    """Reduce a per-image (N,) tensor: ``"mean"``, ``"sum"`` or ``"none"`` (unchanged)."""
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    if reduction == "none":
        return values
    raise ValueError(f"Unknown reduction {reduction!r}; choose 'mean', 'sum' or 'none'.")


@dataclass
class ReferenceFeatures:
    """Reference-image features computed once (without gradients) and reused.

    Get them from ``MLCLIPSim.reference_features(target)`` (or the loss / scorer of the same name)
    and pass them wherever a target image is accepted. They remember which scorer made them and the
    image size, so a mismatch is an error instead of a silently wrong score.

    Attributes:
        features: the detached encoder output for the reference batch.
        image_size: (H, W) of the reference images.
        fingerprint: identifies the encoder, layers, preprocessing and region weighting that produced them.
        token_weights: region weights (N, T) per layer when the scorer weights regions (else None).
    """

    features: EncoderOutput
    image_size: tuple[int, int]
    fingerprint: tuple
    token_weights: dict[str, torch.Tensor] | None = None

    @property
    def batch_size(self) -> int:
        return self.features.batch_size

    def select(self, index: torch.Tensor | slice) -> ReferenceFeatures:
        """Rows of the batch (e.g. to pair them with a sub-batch of distorted images)."""
        weights = None if self.token_weights is None else {k: v[index] for k, v in self.token_weights.items()}
        return ReferenceFeatures(self.features.select(index), self.image_size, self.fingerprint, weights)

    def expand(self, count: int) -> ReferenceFeatures:
        """Features of one reference repeated ``count`` times (views, no copy): to score several
        distorted versions of the same reference in one batch."""
        if self.batch_size != 1:
            raise ValueError(f"expand() repeats the features of a single reference, these hold {self.batch_size}; "
                             "use select() to pick one first.")
        tokens = {k: v.expand(count, *v.shape[1:]) for k, v in self.features.tokens.items()}
        embedding = self.features.embedding.expand(count, -1)
        weights = (None if self.token_weights is None
                   else {k: v.expand(count, *v.shape[1:]) for k, v in self.token_weights.items()})
        return ReferenceFeatures(EncoderOutput(tokens, embedding), self.image_size, self.fingerprint, weights)


class MLCLIPSimScorer(nn.Module):
    """The frozen encoder plus layer weights: ``scorer(preds, target) -> (N,)`` similarities in [0,1].

    This is the engine behind :func:`ml_clipsim`, :class:`~mlclipsim.MLCLIPSim` and
    :class:`~mlclipsim.MLCLIPSimLoss`.

    Args:
        backbone: a backbone name (``mlclipsim.backbones.list_backbones()`` or an open_clip model name)
            or an already built :class:`~mlclipsim.backbones.FrozenEncoder`. None (default): ViT-B-32 (OpenAI)
            where its weights can be had, else the best installed encoder, with a ``DefaultBackboneWarning``
            (:func:`~mlclipsim.backbones.registry.create_default_backbone`); ``scorer.encoder.name`` says which.
        pretrained: pretrained tag, weights path, ``"random"`` (by name only), or None for the default.
        layers: token layers to compare; None for the preset's layers.
        weights: a preset, ``"calibrated"``, ``"uniform"`` or ``"embedding"``, or non-negative weights keyed
            by layer name, ``"embedding"`` (and ``"magnitude"``); normalised to sum 1. None: the backbone's
            default variant (see :mod:`mlclipsim.metrics.layer_weights`).
        resize: ``"resize"`` (default), ``"center_crop"`` or ``"tile"``; see
            :mod:`mlclipsim.backbones.preprocessing` for why whole-image resize is the default.
        cosine_map: ``"clamp"`` (default) or ``"rescale"``: how negative cosines map into [0,1].
        allow_download: allow the upstream weight download (default: unless MLCLIPSIM_OFFLINE=1).
        region_weights: None (default, off), ``"mask"`` (per-token weights from a mask passed with the
            references, ``mask=`` (N,1,H,W) or (N,H,W) in [0,1]) or ``"saliency"`` (from the reference's
            own deepest-layer features, no labels); see :mod:`~mlclipsim.metrics.functional.region_weights`.
        region_alpha: the background's floor weight in (0, 1] (w = alpha + (1 - alpha) * mask); None for
            the source's default.
        magnitude: add the magnitude-aware term (see the module docstring); None: the backbone's default
            variant when neither layers nor weights are given, else off.
        scale: ``"raw"`` (default, the weighted similarity in [0,1]) or ``"agreement"`` (predicted machine
            agreement through the logistic shipped for this variant; an error when none ships).
        backbone_options: passed to the encoder, e.g. ``include_class_token=True`` for ViTs.

    The frozen encoder and the layer weights are left out of ``state_dict()`` (they come from their weight
    source and the constructor's arguments, and a codec checkpoint should not carry hundreds of MB of CLIP;
    see :mod:`mlclipsim.metrics.frozen`).
    """

    def __init__(
        self,
        backbone: str | FrozenEncoder | None = None,
        pretrained: str | os.PathLike | None = None,
        layers: Sequence[str] | None = None,
        weights: WeightsArg = None,
        resize: str = "resize",
        cosine_map: str = "clamp",
        allow_download: bool | None = None,
        region_weights: str | None = None,
        region_alpha: float | None = None,
        magnitude: bool | None = None,
        scale: str = "raw",
        **backbone_options: Any,
    ) -> None:
        super().__init__()
        region = RegionWeighting.create(region_weights, region_alpha)
        if isinstance(backbone, FrozenEncoder):
            if pretrained is not None or backbone_options or resize not in ("resize", backbone.resize_policy):
                raise ValueError("pretrained, resize and backbone options apply when backbone is a name; an already "
                                 f"built encoder keeps its own (resize policy {backbone.resize_policy!r}).")
            encoder = backbone
        elif backbone is None and pretrained is None and not backbone_options:
            encoder = create_default_backbone(resize=resize, allow_download=allow_download)
        elif isinstance(backbone, str) or backbone is None:
            backbone = DEFAULT_BACKBONE if backbone is None else backbone
            encoder = create_backbone(backbone, pretrained=pretrained, resize=resize,
                                      allow_download=allow_download, **backbone_options)
        else:
            raise TypeError(f"backbone must be a name or a FrozenEncoder, got {type(backbone).__name__}.")
        get_cosine_map(cosine_map)
        if scale not in SCALES:
            raise ValueError(f"Unknown scale {scale!r}; choose one of {list(SCALES)}.")
        if magnitude is None:
            magnitude = default_variant(encoder.name)[1] if layers is None and weights is None else False
        self.encoder = encoder
        self.cosine_map = cosine_map
        self.magnitude = bool(magnitude)
        self.layers, weight_vector = resolve_layer_weights(encoder, layers, weights, self.magnitude)
        if region is not None and not self.layers:
            raise ValueError("region_weights weights the tokens of the compared layers, but this configuration "
                             "compares the global embedding only; add token layers or set region_weights=None.")
        self.region = region
        self.scale = scale
        self.agreement: AgreementScale | None = None
        if scale == "agreement":
            self.agreement = load_agreement_scale(encoder.name, self._weights_by_name(weight_vector))
        self.register_buffer("layer_weights", weight_vector)
        exclude_from_state_dict(self, "encoder", "layer_weights")

    @property
    def device(self) -> torch.device:
        return self.layer_weights.device

    @property
    def fingerprint(self) -> tuple:
        return (self.encoder.name, self.encoder.resize_policy, self.layers, id(self.encoder), self.region)

    def weights_by_name(self) -> dict[str, float]:
        """The normalised weights, keyed by layer name and ``"embedding"``."""
        return self._weights_by_name(self.layer_weights)

    def _weights_by_name(self, vector: torch.Tensor) -> dict[str, float]:
        return dict(zip(term_names(self.layers, self.magnitude), vector.tolist()))

    def _encode(self, images: torch.Tensor) -> EncoderOutput:
        return self.encoder(images.to(self.layer_weights.dtype), self.layers)

    def reference_features(self, target: torch.Tensor, validate: bool = True,
                           mask: torch.Tensor | None = None) -> ReferenceFeatures:
        """Encode reference images (N,3,H,W) in [0,1] once, without gradients.

        With region weighting the token weights are computed here too (``mask``: (N,1,H,W) or (N,H,W) in
        [0,1] for ``region_weights="mask"``; it may also be given later, with the call).
        """
        if validate:
            if isinstance(target, torch.Tensor):
                check_device(target, self.device, "target")
            check_images(target, "target")
        if mask is not None and self.region is None:
            raise ValueError("A mask was given but this ML-CLIPSim does not weight regions; construct it with "
                             "region_weights='mask'.")
        with torch.no_grad():
            features = self._encode(target).detach()
        size = tuple(target.shape[-2:])
        weights = None
        if self.region is not None and (mask is not None or not self.region.needs_mask):
            weights = self.region.token_weights(self.encoder, features, self.layers, size, mask)
        return ReferenceFeatures(features, size, self.fingerprint, weights)

    def _reference(self, preds: torch.Tensor, target: torch.Tensor | ReferenceFeatures, validate: bool,
                   mask: torch.Tensor | None = None) -> tuple[EncoderOutput, dict[str, torch.Tensor] | None]:
        """The reference features and their region weights (None when unweighted)."""
        if mask is not None and self.region is None:
            raise ValueError("A mask was given but this ML-CLIPSim does not weight regions; construct it with "
                             "region_weights='mask'.")
        if isinstance(target, ReferenceFeatures):
            if target.fingerprint != self.fingerprint:
                raise ValueError("These reference features were computed by another ML-CLIPSim configuration "
                                 "(backbone, layers or resize policy); compute them with this metric's "
                                 "reference_features().")
            if target.batch_size != preds.shape[0] or target.image_size != tuple(preds.shape[-2:]):
                raise ValueError(f"Reference features are for {target.batch_size} image(s) of size "
                                 f"{target.image_size}, but preds has shape {tuple(preds.shape)}; pair each "
                                 "distorted image with its own reference (use ReferenceFeatures.select for a "
                                 "sub-batch).")
            if target.features.embedding.device != preds.device:
                raise ValueError(f"Reference features are on {target.features.embedding.device} but preds "
                                 f"on {preds.device}; compute them on the same device.")
            if self.region is None:
                return target.features, None
            if target.token_weights is not None:
                if mask is not None:
                    raise ValueError("These reference features already carry region weights (from the mask given "
                                     "to reference_features()); do not pass a mask again.")
                return target.features, target.token_weights
            if self.region.needs_mask and mask is None:
                raise ValueError("region_weights='mask' needs a mask: pass mask=(N,1,H,W) in [0,1] with the call "
                                 "or to reference_features().")
            weights = self.region.token_weights(self.encoder, target.features, self.layers, target.image_size, mask)
            return target.features, weights
        if validate:
            check_images(target, "target")
            check_same_shape(preds, target)
        if self.region is not None and self.region.needs_mask and mask is None:
            raise ValueError("region_weights='mask' needs a mask: pass mask=(N,1,H,W) in [0,1] with the references.")
        reference = self.reference_features(target, validate=False, mask=mask)
        return reference.features, reference.token_weights

    def components(self, preds: torch.Tensor, target: torch.Tensor | ReferenceFeatures,
                   validate: bool = True, range_tolerance: float = 1e-3,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-layer similarities (N, L+1) in [0,1], columns ordered as ``(*self.layers, "embedding")``
        (then ``"magnitude"`` when the magnitude term is on: (N, L+2))."""
        if validate:
            if isinstance(preds, torch.Tensor):
                check_device(preds, self.device, "preds")
            check_images(preds, "preds", range_tolerance=range_tolerance)
        reference, token_weights = self._reference(preds, target, validate, mask)
        return similarity_components(self._encode(preds), reference, self.layers, self.cosine_map, token_weights,
                                     self.magnitude)

    def forward(self, preds: torch.Tensor, target: torch.Tensor | ReferenceFeatures,
                validate: bool = True, range_tolerance: float = 1e-3,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Similarity per image: preds (N,3,H,W) and target (same shape, or its ReferenceFeatures) -> (N,).

        ``mask``: the references' region masks (N,1,H,W) or (N,H,W) in [0,1], for ``region_weights="mask"``.
        With ``scale="agreement"`` the result is the predicted machine agreement instead.
        """
        parts = self.components(preds, target, validate=validate, range_tolerance=range_tolerance, mask=mask)
        score = parts @ self.layer_weights.to(parts.dtype)
        return score if self.agreement is None else self.agreement(score)


@lru_cache(maxsize=4)
def _cached_scorer(backbone: str | None, pretrained: str | None, layers: tuple | None, weights: tuple | str | None,
                   resize: str, cosine_map: str, options: tuple, region_weights: str | None = None,
                   region_alpha: float | None = None, magnitude: bool | None = None,
                   scale: str = "raw") -> MLCLIPSimScorer:
    return MLCLIPSimScorer(backbone, pretrained=pretrained, layers=layers,
                           weights=dict(weights) if isinstance(weights, tuple) else weights,
                           resize=resize, cosine_map=cosine_map, region_weights=region_weights,
                           region_alpha=region_alpha, magnitude=magnitude, scale=scale, **dict(options))


def ml_clipsim(
    preds: torch.Tensor,
    target: torch.Tensor | ReferenceFeatures,
    backbone: str | FrozenEncoder | None = None,
    pretrained: str | os.PathLike | None = None,
    layers: Sequence[str] | None = None,
    weights: WeightsArg = None,
    resize: str = "resize",
    cosine_map: str = "clamp",
    reduction: Reduction = "mean",
    region_weights: str | None = None,
    region_alpha: float | None = None,
    mask: torch.Tensor | None = None,
    magnitude: bool | None = None,
    scale: str = "raw",
    **backbone_options: Any,
) -> torch.Tensor:
    """ML-CLIPSim between distorted ``preds`` and reference ``target``.

    Args:
        preds: distorted images (N,3,H,W), float in [0,1]; gradients flow to them.
        target: reference images of the same shape (no gradients), or their ``ReferenceFeatures``.
        backbone, pretrained, layers, weights, resize, cosine_map, magnitude, scale, backbone_options: as for
            :class:`MLCLIPSimScorer` (``weights`` a preset name or a mapping). A named backbone is built
            once and cached (up to 4 configurations).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` for the (N,) per-image scores.
        region_weights, region_alpha: region weighting (default off), as for :class:`MLCLIPSimScorer`.
        mask: the references' region masks (N,1,H,W) or (N,H,W) in [0,1], for ``region_weights="mask"``.

    Returns:
        The reduced similarity; 1 for identical images, higher is better.

    Example (MobileNetV2's ImageNet weights work offline; with a network ``backbone="ViT-B-32"``):
        >>> import torch
        >>> reference = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        >>> noise = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
        >>> distorted = (reference + 0.1 * noise).clamp(0, 1)
        >>> ml_clipsim(distorted, reference, backbone="torchvision/mobilenet_v2", reduction="none").shape
        torch.Size([2])
        >>> round(float(ml_clipsim(reference, reference, backbone="torchvision/mobilenet_v2")), 4)
        1.0
    """
    if isinstance(backbone, FrozenEncoder):
        scorer = MLCLIPSimScorer(backbone, layers=layers, weights=weights, cosine_map=cosine_map,
                                 region_weights=region_weights, region_alpha=region_alpha, magnitude=magnitude,
                                 scale=scale)
    else:
        scorer = _cached_scorer(
            backbone, None if pretrained is None else str(pretrained),
            None if layers is None else tuple(layers),
            weights if weights is None or isinstance(weights, str) else tuple(sorted(weights.items())),
            resize, cosine_map, tuple(sorted(backbone_options.items())), region_weights, region_alpha, magnitude,
            scale,
        )
    if isinstance(preds, torch.Tensor) and scorer.device != preds.device:
        scorer.to(preds.device)
    return reduce(scorer(preds, target, mask=mask), reduction)
