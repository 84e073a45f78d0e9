"""CompressAI zoo architectures by name: build, load from a checkpoint or state dict, fetch pretrained weights.

The registry is CompressAI's own (``compressai.zoo.image``): :data:`ARCHITECTURES` maps the zoo names
this package trains to their model classes, and the quality index maps to channel counts through the
zoo's ``cfgs``. A model is built from exactly one of

- ``quality`` (1..8, or 1..6 for the cheng2020 models): the zoo's channel counts for that quality;
- ``channels``: ``[N, M]`` (``[N]`` for cheng2020-*), e.g. a small ``[64, 96]`` for CPU training.

``mbt2018-mean-vr`` (:mod:`~mlclipsim.coding.variable_rate`) is this package's variable-rate
mbt2018-mean (gain units): one network for a ladder of lambdas (``lmbdas``), built from ``channels``
only (it has no zoo qualities or pretrained weights); its ladder is part of its weights.

Weights come from random initialisation, a local file (a Lightning checkpoint of
:class:`~mlclipsim.training.codec_module.CompressionModule` or a plain CompressAI state dict,
see :func:`load_codec`), or CompressAI's pretrained zoo weights (``pretrained=True``, downloaded from
CompressAI's model server, so it needs a network: with ``MLCLIPSIM_OFFLINE=1`` or no network it
raises :class:`~mlclipsim.backbones.MissingWeightsError`, never falls back to random weights).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from compressai.models import CompressionModel
from compressai.zoo import image as zoo_image

from mlclipsim.coding import variable_rate
from mlclipsim.core.weights import MissingWeightsError, downloads_allowed

ARCHITECTURE_NAMES = ("bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean", "mbt2018",
                      "cheng2020-anchor", "cheng2020-attn")
VARIABLE_RATE_ARCHITECTURES: dict[str, type[CompressionModel]] = {
    "mbt2018-mean-vr": variable_rate.GainMeanScaleHyperprior}
"""Variable-rate architectures: built with ``lmbdas`` (their ladder); their rate level is a coding argument."""
ARCHITECTURES: dict[str, type[CompressionModel]] = {**{name: zoo_image.model_architectures[name]
                                                       for name in ARCHITECTURE_NAMES},
                                                    **VARIABLE_RATE_ARCHITECTURES}
PRETRAINED_METRICS = ("mse", "ms-ssim")
LIGHTNING_PREFIX = "model."
METADATA_KEY = "mlclipsim"
"""Exported state dicts carry ``{"architecture", "channels", "fingerprint", "settings"}`` under this key
of the state dict's ``_metadata`` (the attribute PyTorch keeps module versions in), so the file stays
a plain CompressAI state dict that ``load_state_dict`` takes as it is."""


def check_architecture(architecture: str) -> type[CompressionModel]:
    """The model class of a zoo name; ValueError naming the valid ones otherwise."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {architecture!r}; choose one of {list(ARCHITECTURES)}.")
    return ARCHITECTURES[architecture]


def channel_names(architecture: str) -> tuple[str, ...]:
    """``("N",)`` for the cheng2020 models, ``("N", "M")`` for the others."""
    check_architecture(architecture)
    return ("N",) if architecture.startswith("cheng2020") else ("N", "M")


def qualities(architecture: str) -> list[int]:
    """The zoo qualities of an architecture (none for this package's own, e.g. mbt2018-mean-vr)."""
    check_architecture(architecture)
    return sorted(zoo_image.cfgs.get(architecture, {}))


def resolve_channels(architecture: str, quality: int | None = None,
                     channels: Sequence[int] | None = None) -> tuple[int, ...]:
    """Channel counts from exactly one of ``quality`` and ``channels``; errors name the valid choices."""
    names = channel_names(architecture)
    if (quality is None) == (channels is None):
        raise ValueError(f"Give {architecture} either a quality ({qualities(architecture)}) or channels "
                         f"[{', '.join(names)}], not {'both' if quality is not None else 'neither'}.")
    if quality is not None:
        if architecture not in zoo_image.cfgs:
            raise ValueError(f"{architecture} is not a CompressAI zoo model and has no qualities; give channels "
                             f"[{', '.join(names)}].")
        if isinstance(quality, bool) or quality not in zoo_image.cfgs[architecture]:
            raise ValueError(f"{architecture} has no quality {quality!r}; choose one of {qualities(architecture)}.")
        return tuple(zoo_image.cfgs[architecture][quality])
    values = tuple(channels)  # type: ignore[arg-type]
    if len(values) != len(names) or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                            for v in values):
        raise ValueError(f"{architecture} takes channels [{', '.join(names)}] as {len(names)} positive int(s), "
                         f"got {list(values)}.")
    return values


def build_codec(architecture: str, quality: int | None = None, channels: Sequence[int] | None = None,
                pretrained: bool = False, pretrained_metric: str = "mse",
                lmbdas: Sequence[float] | None = None) -> CompressionModel:
    """A zoo model, randomly initialised or with CompressAI's pretrained weights (``pretrained=True``, by quality).

    A variable-rate architecture (:data:`VARIABLE_RATE_ARCHITECTURES`) needs ``lmbdas``, its ladder (lowest
    rate first); the others take none."""
    cls = check_architecture(architecture)
    resolved = resolve_channels(architecture, quality, channels)
    if architecture in VARIABLE_RATE_ARCHITECTURES:
        if lmbdas is None:
            raise ValueError(f"{architecture} is a variable-rate model: give its lambda ladder (lmbdas, lowest rate "
                             "first, e.g. [0.0035, 0.0067, 0.013, 0.025, 0.0483]).")
        if pretrained:
            raise ValueError(f"{architecture} has no pretrained zoo weights; start from a checkpoint (init=PATH).")
        return cls(*resolved, lmbdas=lmbdas)
    if lmbdas is not None:
        raise ValueError(f"{architecture} codes at one lambda; lmbdas (a ladder) is for variable-rate models "
                         f"({list(VARIABLE_RATE_ARCHITECTURES)}).")
    if not pretrained:
        return cls(*resolved)
    if quality is None:
        raise ValueError("CompressAI's pretrained weights are indexed by quality; give quality, not channels.")
    if pretrained_metric not in PRETRAINED_METRICS:
        raise ValueError(f"Unknown pretrained_metric {pretrained_metric!r}; choose one of {list(PRETRAINED_METRICS)}.")
    url = zoo_image.model_urls[architecture][pretrained_metric][quality]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    what = f"CompressAI's pretrained {architecture} ({pretrained_metric}, quality {quality}) weights"
    if not cached.is_file() and not downloads_allowed():
        raise MissingWeightsError(
            f"{what} are not in the torch hub cache ({cached}) and downloads are off (MLCLIPSIM_OFFLINE=1). On a "
            f"machine with a network, unset MLCLIPSIM_OFFLINE (the zoo fetches {url}), or copy that file to {cached}, "
            "or start from it as a local checkpoint (init=/path/to/file).")
    try:  # CompressAI's own loader: compressai.zoo.<architecture>(quality, metric, pretrained=True)
        return zoo_image_models()[architecture](quality, metric=pretrained_metric, pretrained=True, progress=False)
    except Exception as err:  # network errors come in many types (URLError, HTTPError, OSError, ...)
        raise MissingWeightsError(f"Could not load {what} from {url} ({type(err).__name__}: {err}). Download the file "
                                  f"elsewhere and put it at {cached}, or pass it as init=/path/to/file.") from err


def zoo_image_models() -> dict[str, Any]:
    from compressai.zoo import image_models

    return image_models


# --------------------------------------------------------------------------------------- files


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """``torch.load`` a checkpoint or state dict on CPU, with a clear error for a missing or bad file.

    The mapping is returned as loaded (a state dict keeps its ``_metadata``, see :func:`export_metadata`)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"Checkpoint {str(path)!r} is a folder; give the checkpoint file inside it.")
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {str(path)!r} does not exist.")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"Cannot read {str(path)!r} as a torch checkpoint ({type(err).__name__}: {err}).") from err
    if not isinstance(data, Mapping):
        raise ValueError(f"{str(path)!r} holds a {type(data).__name__}, not a checkpoint or state dict.")
    return data if isinstance(data, dict) else dict(data)


def export_metadata(data: Mapping[str, Any]) -> dict[str, Any] | None:
    """What an exported state dict says about itself (:data:`METADATA_KEY`), or None for other files."""
    metadata = getattr(data, "_metadata", None)
    found = metadata.get(METADATA_KEY) if isinstance(metadata, Mapping) else None
    return dict(found) if isinstance(found, Mapping) else None


def model_fingerprint(model: torch.nn.Module | Mapping[str, torch.Tensor]) -> str:
    """16 hex digits naming a model's exact weights and entropy-coder tables (the first 8 bytes of a
    SHA-256 over its state dict: names, dtypes, shapes and bytes, in name order). Two models decode each
    other's bitstreams only when their fingerprints are equal."""
    state = model.state_dict() if isinstance(model, torch.nn.Module) else model
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def is_lightning_checkpoint(data: Mapping[str, Any]) -> bool:
    return "state_dict" in data and "hyper_parameters" in data


def codec_state_dict(data: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The CompressAI model's state dict inside a Lightning checkpoint or a codec-pilot training checkpoint
    (:func:`~mlclipsim.coding.variable_rate.pilot_state_dict`), or ``data`` itself if it is one."""
    if variable_rate.is_pilot_checkpoint(data):
        return variable_rate.pilot_state_dict(data)
    if is_lightning_checkpoint(data):
        state = data["state_dict"]
        return {k[len(LIGHTNING_PREFIX):]: v for k, v in state.items() if k.startswith(LIGHTNING_PREFIX)}
    if "state_dict" in data and isinstance(data["state_dict"], Mapping):  # CompressAI's training checkpoints
        data = data["state_dict"]
    from compressai.zoo.pretrained import load_pretrained

    return load_pretrained({k: v for k, v in data.items() if isinstance(v, torch.Tensor)})


def channels_of(architecture: str, state_dict: Mapping[str, torch.Tensor]) -> tuple[int, ...]:
    """Channel counts read off the weights (as the zoo classes' ``from_state_dict`` does)."""
    try:
        if architecture.startswith("cheng2020"):
            return (int(state_dict["g_a.0.conv1.weight"].size(0)),)
        return int(state_dict["g_a.0.weight"].size(0)), int(state_dict["g_a.6.weight"].size(0))
    except KeyError as err:
        raise ValueError(f"This state dict is not a {architecture} model (it has no {err.args[0]!r}); check "
                         f"--architecture (one of {list(ARCHITECTURES)}).") from None


def load_codec(path: str | os.PathLike, architecture: str | None = None, quality: int | None = None,
               channels: Sequence[int] | None = None, default_architecture: str | None = None
               ) -> tuple[CompressionModel, str]:
    """A ready-to-code model (eval mode, entropy-coder tables built) and its architecture name.

    ``path`` is a Lightning checkpoint of :class:`CompressionModule` (the architecture and channels are
    in its hyper-parameters), a training checkpoint of the codec pilot (``benchmarks/codec_pilot``; its
    config names the architecture), a state dict exported by :func:`~mlclipsim.coding.export.export_state_dict`
    (architecture, channels and fingerprint in its metadata; a fingerprint that does not match the
    weights means the file was changed and is an error), or another plain CompressAI state dict (e.g.
    CompressAI's zoo), for which ``architecture`` (or ``default_architecture``, a guess such as the
    file name's that the file's own record overrides) must be given. The channel counts are read off
    the weights, and ``quality`` or ``channels``, if given, are checked against them.
    """
    data = read_checkpoint(path)
    metadata = export_metadata(data)
    if metadata is not None and metadata.get("architecture") is not None:
        saved = str(metadata["architecture"])
        if architecture is not None and architecture != saved:
            raise ValueError(f"{str(path)!r} holds a {saved} model (its export record says so), not {architecture}.")
        architecture = saved
    if is_lightning_checkpoint(data):
        saved = data["hyper_parameters"].get("architecture")
        if architecture is not None and saved is not None and architecture != saved:
            raise ValueError(f"{str(path)!r} holds a {saved} model, not {architecture}.")
        architecture = architecture or saved
    if variable_rate.is_pilot_checkpoint(data):
        saved = variable_rate.pilot_architecture(data)
        if architecture is not None and architecture != saved:
            raise ValueError(f"{str(path)!r} holds a {saved} model (its pilot config says so), not {architecture}.")
        architecture = saved
    architecture = architecture or default_architecture
    if architecture is None:
        raise ValueError(f"{str(path)!r} is a plain state dict without an mlclipsim export record: name its "
                         f"architecture (--architecture, one of {list(ARCHITECTURES)}), or export it with "
                         "`python -m mlclipsim.coding.export`.")
    cls = check_architecture(architecture)
    state = codec_state_dict(data)
    found = channels_of(architecture, state)
    if quality is not None or channels is not None:
        expected = resolve_channels(architecture, quality, channels)
        if expected != found:
            raise ValueError(f"{str(path)!r} holds {architecture} with channels {list(found)}, but "
                             f"{'quality ' + str(quality) if quality is not None else 'channels'} means "
                             f"{list(expected)}.")
    if architecture in VARIABLE_RATE_ARCHITECTURES:
        if "lmbdas" not in state:
            raise ValueError(f"{str(path)!r} is not a {architecture} model: it has no lambda ladder ('lmbdas').")
        model = cls(*found, lmbdas=state["lmbdas"].tolist())
    else:
        model = cls(*found)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{str(path)!r} does not load into {architecture}{list(found)}: {err}") from None
    model.eval()
    # Tables saved with an exported state dict are used as they are (so that every decoder uses the
    # encoder's tables); a training checkpoint's may be stale, so they are rebuilt from the weights.
    model.update(force=is_lightning_checkpoint(data) or variable_rate.is_pilot_checkpoint(data))
    if metadata is not None and metadata.get("fingerprint") is not None:
        found_fingerprint = model_fingerprint(model)
        if found_fingerprint != metadata["fingerprint"]:
            raise ValueError(f"{str(path)!r} was changed after export: its weights have fingerprint "
                             f"{found_fingerprint}, its export record says {metadata['fingerprint']}. Export the "
                             "checkpoint again.")
    return model, architecture
