"""The registry of frozen encoders, keyed by name.

``create_backbone("torchvision/mobilenet_v2")`` builds a registered encoder; any open_clip model
name (``"ViT-B-32"``, ``"RN50"``, optionally prefixed ``"open_clip/"``) is resolved through
open_clip's own list of architectures, so new open_clip models need no registration here.
Add your own encoder with :func:`register_backbone`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from typing import Any

from mlclipsim.backbones.base import FrozenEncoder
from mlclipsim.backbones.cnn_encoders import CNN_SPECS, CNNEncoder
from mlclipsim.backbones.open_clip_encoders import OpenCLIPEncoder, is_open_clip_model, strip_prefix

BackboneFactory = Callable[..., FrozenEncoder]
"""Called as ``factory(pretrained=..., resize=..., allow_download=..., **options)``."""

_BACKBONES: dict[str, BackboneFactory] = {}


def register_backbone(name: str, factory: BackboneFactory, overwrite: bool = False) -> None:
    """Register ``factory`` under ``name``; re-registering a name needs ``overwrite=True``."""
    if name in _BACKBONES and not overwrite:
        raise ValueError(f"A backbone named {name!r} is already registered; pass overwrite=True to replace it.")
    _BACKBONES[name] = factory


def list_backbones() -> list[str]:
    """Registered encoder names (open_clip names are accepted too: ``open_clip.list_models()``)."""
    return sorted(_BACKBONES)


def create_backbone(
    name: str,
    pretrained: str | os.PathLike | None = None,
    resize: str = "resize",
    allow_download: bool | None = None,
    **options: Any,
) -> FrozenEncoder:
    """Build a frozen encoder by name.

    Args:
        name: a registered name (:func:`list_backbones`) or an open_clip model name.
        pretrained: a pretrained tag, a local weights path, ``"random"`` (untrained, only when
            asked for by name), or None for the encoder's default weights.
        resize: resize policy for arbitrary image sizes (see :mod:`mlclipsim.backbones.preprocessing`).
        allow_download: allow the upstream library's download (default: unless MLCLIPSIM_OFFLINE=1).
        options: encoder-specific options, e.g. ``include_class_token`` for open_clip ViTs.
    """
    if name in _BACKBONES:
        factory = _BACKBONES[name]
    elif is_open_clip_model(name):
        factory = partial(OpenCLIPEncoder, strip_prefix(name))
    else:
        raise ValueError(
            f"Unknown backbone {name!r}. Registered: {list_backbones()}; any open_clip model name "
            "(open_clip.list_models(), e.g. 'ViT-B-32', 'RN50') also works."
        )
    try:
        return factory(pretrained=pretrained, resize=resize, allow_download=allow_download, **options)
    except TypeError as err:
        if options and "unexpected keyword" in str(err):
            raise TypeError(f"Backbone {name!r} does not accept option(s) {sorted(options)}: {err}") from err
        raise


for _name, _spec in CNN_SPECS.items():
    register_backbone(_name, partial(CNNEncoder, _name, _spec))
