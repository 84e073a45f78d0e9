"""open_clip visual towers as frozen encoders: ViTs and the modified ResNet (RN50 family).

Names are open_clip model names (``"ViT-B-32"``, ``"RN50"``; ``open_clip.list_models()``), with an
optional ``"open_clip/"`` prefix. ``pretrained`` is an open_clip tag (``"openai"``,
``"laion2b_s34b_b79k"``; ``open_clip.list_pretrained_tags_by_model(name)``), a local checkpoint
path, or ``"random"``.

Layers:
- ViT: ``"blocks.i"`` is the output of residual block i (0-based), patch tokens (N, T, C); the class
  token is dropped unless ``include_class_token=True`` (then it is token 0). Defaults: the blocks at
  1/4, 1/2, 3/4 and the end of the depth (ViT-B-32: blocks 2, 5, 8, 11).
- Modified ResNet: ``"stem"``, ``"layer1"`` .. ``"layer4"`` (stage outputs, flattened positions).
  Defaults: ``layer1`` .. ``layer4``.
- The global embedding is the tower's projected image embedding (what CLIP compares with text).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mlclipsim.backbones.base import EncoderOutput, FrozenEncoder, flatten_spatial
from mlclipsim.core.weights import RANDOM_INIT, WeightSpec, load_weights, looks_like_path

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
PREFIX = "open_clip/"


def _open_clip() -> Any:
    import open_clip

    return open_clip


def strip_prefix(name: str) -> str:
    return name[len(PREFIX):] if name.startswith(PREFIX) else name


def is_open_clip_model(name: str) -> bool:
    """True when ``name`` (with or without ``open_clip/``) is an architecture open_clip knows."""
    return strip_prefix(name) in _open_clip().list_models()


def register_open_clip_config(name: str, config: Mapping[str, Any]) -> None:
    """Make a model config known to open_clip under ``name`` (used for small test models).

    ``config`` has open_clip's keys ``embed_dim``, ``vision_cfg``, ``text_cfg``.
    """
    folder = Path(tempfile.mkdtemp(prefix="mlclipsim-open-clip-"))
    path = folder / f"{name}.json"
    path.write_text(json.dumps(dict(config)))
    _open_clip().add_model_config(path)


def default_open_clip_tag(model_name: str) -> str:
    """``"openai"`` when open_clip lists it for the model, else the first listed tag."""
    tags = _open_clip().list_pretrained_tags_by_model(model_name)
    if not tags:
        raise ValueError(
            f"open_clip lists no pretrained tags for {model_name!r}: pass a checkpoint path or "
            "pretrained='random'."
        )
    return "openai" if "openai" in tags else tags[0]


def _download_hosts(model_name: str, tag: str) -> tuple[str, ...]:
    """The host open_clip downloads these weights from (Hugging Face when it has them, else the URL's)."""
    from urllib.parse import urlparse

    cfg = _open_clip().get_pretrained_cfg(model_name, tag) or {}
    if cfg.get("hf_hub"):
        return ("huggingface.co",)
    host = urlparse(cfg.get("url") or "").hostname
    return (host,) if host else ()


def _create_visual(model_name: str, pretrained: str | os.PathLike | None, allow_download: bool | None) -> nn.Module:
    open_clip = _open_clip()

    def build(source: str | None) -> nn.Module:
        model = open_clip.create_model(model_name, pretrained=source, load_weights=source is not None)
        return model.visual

    if pretrained == RANDOM_INIT:
        return build(None)
    explicit = None
    tag = pretrained
    if looks_like_path(pretrained) or (pretrained is not None and os.path.exists(str(pretrained))):
        explicit, tag = pretrained, "file"
    elif pretrained is None:
        tag = default_open_clip_tag(model_name)
    else:
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        if tag not in tags:
            raise ValueError(f"Unknown pretrained tag {tag!r} for open_clip model {model_name!r}; valid tags: "
                             f"{tags}, a local checkpoint path, or 'random'.")
    spec = WeightSpec(
        owner=f"open_clip model {model_name!r}",
        tag=str(tag),
        filename=f"{model_name.replace('/', '_')}_{tag}.pt",
        download_hint=f"open_clip.create_model({model_name!r}, pretrained={tag!r}) from the hub",
        download_hosts=_download_hosts(model_name, str(tag)),
    )
    return load_weights(spec, explicit, load_file=lambda path: build(str(path)),
                        load_upstream=lambda: build(str(tag)), allow_download=allow_download)


class OpenCLIPEncoder(FrozenEncoder):
    """Frozen open_clip visual tower (ViT or modified ResNet) returning per-layer tokens."""

    def __init__(
        self,
        model_name: str,
        pretrained: str | os.PathLike | None = None,
        resize: str = "resize",
        include_class_token: bool = False,
        allow_download: bool | None = None,
    ) -> None:
        model_name = strip_prefix(model_name)
        visual = _create_visual(model_name, pretrained, allow_download)
        cfg = getattr(visual, "preprocess_cfg", None) or {}
        super().__init__(model_name, cfg.get("mean", OPENAI_MEAN), cfg.get("std", OPENAI_STD), resize)
        self.visual = visual
        self.include_class_token = include_class_token
        size = visual.image_size
        self.input_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        if hasattr(visual, "transformer") and hasattr(visual.transformer, "resblocks"):
            self.kind = "vit"
            depth = len(visual.transformer.resblocks)
            self.layer_names = tuple(f"blocks.{i}" for i in range(depth))
            quarters = sorted({max(0, round(depth * k / 4) - 1) for k in range(1, 5)})
            self.default_layers = tuple(f"blocks.{i}" for i in quarters)
        elif hasattr(visual, "layer4") and hasattr(visual, "attnpool"):
            self.kind = "resnet"
            self.layer_names = ("stem", "layer1", "layer2", "layer3", "layer4")
            self.default_layers = ("layer1", "layer2", "layer3", "layer4")
        else:
            raise ValueError(f"open_clip model {model_name!r} has a visual tower of type {type(visual).__name__}; "
                             "mlclipsim supports open_clip ViTs and modified ResNets.")
        self.freeze()

    def encode(self, pixels: torch.Tensor, layers: tuple[str, ...]) -> EncoderOutput:
        indices = [self.layer_names.index(layer) for layer in layers]
        if not indices:  # global embedding only
            pooled = self.visual(pixels)
            return EncoderOutput({}, pooled[0] if isinstance(pooled, tuple) else pooled)
        if self.kind == "vit":
            out = self.visual.forward_intermediates(pixels, indices=indices, output_fmt="NLC",
                                                    output_extra_tokens=self.include_class_token)
            maps = out["image_intermediates"]
            if self.include_class_token:
                maps = [torch.cat([prefix, patch], dim=1)
                        for prefix, patch in zip(out["image_intermediates_prefix"], maps)]
        else:
            out = self.visual.forward_intermediates(pixels, indices=indices, output_fmt="NCHW")
            maps = [flatten_spatial(m) for m in out["image_intermediates"]]
        # forward_intermediates returns the maps in depth order; map them back to the names asked for.
        by_index = dict(zip(sorted(indices), maps))
        tokens = {layer: by_index[self.layer_names.index(layer)] for layer in layers}
        return EncoderOutput(tokens, out["image_features"])
