"""Which layers ML-CLIPSim compares and with what weights: named presets or explicit weights.

``weights`` is a preset name or a mapping:

- ``"calibrated"``: the file shipped for the backbone (``mlclipsim/weights/ml_clipsim/<backbone>.json``,
  fitted on machine-preference pairs of training photos; the file records how). With
  ``magnitude=True`` the weights fitted on the magnitude-aware components (``magnitude_weights``) are
  used when the file has them. An error when no file ships for the backbone.
- ``"uniform"``: the backbone's default layers (or ``layers=``) and the global embedding, equal weights.
- ``"embedding"``: the global embedding only (no token layers are computed).
- a mapping ``{layer or "embedding": weight}``: non-negative, normalised to sum 1.
- None (default): the preset the backbone's file names as its default (``"default"``, the variant that
  won on the validation photos), ``"calibrated"`` if the file names none, ``"uniform"`` without a file;
  with ``layers=`` given, uniform over those layers.

The same goes for ``magnitude=None``: the file's default, else off.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from mlclipsim.backbones import EMBEDDING, FrozenEncoder
from mlclipsim.weights import shipped_record

WEIGHTS_PACKAGE = "mlclipsim.weights"
WEIGHTS_FOLDER = "ml_clipsim"
PRESETS: tuple[str, ...] = ("calibrated", "uniform", "embedding")
MAGNITUDE = "magnitude"
"""Weight key of the magnitude-aware term (``magnitude=True``; see the functional's module docstring)."""
WeightsArg = Mapping[str, float] | str | None


def calibrated_weights_filename(backbone_name: str) -> str:
    """File name of a backbone's calibrated weights (``/`` in names becomes ``__``)."""
    return backbone_name.replace("/", "__") + ".json"


def load_calibrated_weights(backbone_name: str) -> dict[str, Any] | None:
    """The shipped calibration record for a backbone (keys ``weights``, ``command``, ...), or None."""
    return shipped_record(WEIGHTS_FOLDER, calibrated_weights_filename(backbone_name))


def default_variant(backbone_name: str) -> tuple[str, bool]:
    """(preset, magnitude) used when the caller gives neither weights nor layers (see the module docstring)."""
    record = load_calibrated_weights(backbone_name)
    if record is None:
        return "uniform", False
    default = record.get("default") or {}
    return str(default.get("weights", "calibrated")), bool(default.get("magnitude", False))


def term_names(layers: Sequence[str], magnitude: bool = False) -> tuple[str, ...]:
    """The weighted terms in column order: ``(*layers, "embedding")``, then ``"magnitude"`` when on."""
    return (*layers, EMBEDDING, *((MAGNITUDE,) if magnitude else ()))


def normalise_weights(weights: Mapping[str, float], layers: Sequence[str], magnitude: bool = False) -> torch.Tensor:
    """Weights keyed by :func:`term_names` -> (L+1,) (or (L+2,) with ``magnitude``) float tensor summing to 1."""
    values = []
    for key in term_names(layers, magnitude):
        value = float(weights.get(key, 0.0))
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"ML-CLIPSim weight for {key!r} is {value}; weights must be finite and non-negative.")
        values.append(value)
    total = sum(values)
    if total <= 0:
        raise ValueError("ML-CLIPSim weights sum to 0; give at least one positive weight "
                         f"among {list(term_names(layers, magnitude))}.")
    return torch.tensor([v / total for v in values], dtype=torch.float32)


def _explicit(encoder: FrozenEncoder, layers: Sequence[str] | None, weights: Mapping[str, float],
              magnitude: bool) -> tuple[tuple[str, ...], torch.Tensor]:
    if MAGNITUDE in weights and not magnitude:
        raise ValueError(f"The weights give the {MAGNITUDE!r} term a weight, but magnitude=False; pass magnitude=True.")
    unknown = [k for k in weights if k not in (EMBEDDING, MAGNITUDE) and k not in encoder.layer_names]
    if unknown:
        raise ValueError(f"Weights name unknown layer(s) {unknown} for backbone {encoder.name!r}; valid: "
                         f"{list(encoder.layer_names)} and {EMBEDDING!r}.")
    if layers is None:
        layers = [k for k in encoder.layer_names if k in weights]
    else:
        extra = [k for k in weights if k not in (EMBEDDING, MAGNITUDE) and k not in layers]
        if extra:
            raise ValueError(f"Weights name layer(s) {extra} that are not among layers={list(layers)}.")
    layers = encoder.check_layers(layers)
    return layers, normalise_weights(weights, layers, magnitude)


def _preset(encoder: FrozenEncoder, layers: Sequence[str] | None, preset: str,
            magnitude: bool) -> tuple[tuple[str, ...], torch.Tensor]:
    if preset == "uniform":
        layers = encoder.check_layers(layers)
        return layers, normalise_weights({key: 1.0 for key in term_names(layers, magnitude)}, layers, magnitude)
    if layers is not None:
        raise ValueError(f"weights={preset!r} chooses its own layers; drop layers= (or use weights='uniform' "
                         "with layers=, or a mapping of weights).")
    if preset == "embedding":
        return (), normalise_weights({key: 1.0 for key in term_names((), magnitude)}, (), magnitude)
    record = load_calibrated_weights(encoder.name)
    if record is None:
        raise ValueError(f"No calibrated weights ship for backbone {encoder.name!r}; use weights='uniform' or "
                         "'embedding', pass a mapping, or fit them with `mlclipsim calibrate`.")
    if magnitude and not record.get("magnitude_weights"):
        raise ValueError(f"The calibration shipped for {encoder.name!r} has no weights for the magnitude-aware "
                         "terms; use weights='uniform' or a mapping with magnitude=True, or magnitude=False.")
    return _explicit(encoder, None, record["magnitude_weights"] if magnitude else record["weights"], magnitude)


def resolve_layer_weights(encoder: FrozenEncoder, layers: Sequence[str] | None, weights: WeightsArg,
                          magnitude: bool = False) -> tuple[tuple[str, ...], torch.Tensor]:
    """Decide the compared layers and their normalised (L+1,) weights (see the module docstring).

    Raises:
        ValueError: unknown preset or layer, bad weight values, or a preset that conflicts with ``layers``.
    """
    if isinstance(weights, str):
        if weights not in PRESETS:
            raise ValueError(f"Unknown ML-CLIPSim weights preset {weights!r}; choose one of {list(PRESETS)} "
                             "or pass a mapping {layer or 'embedding': weight}.")
        return _preset(encoder, layers, weights, magnitude)
    if weights is not None:
        return _explicit(encoder, layers, weights, magnitude)
    if layers is None:
        return _preset(encoder, None, default_variant(encoder.name)[0], magnitude)
    return _preset(encoder, layers, "uniform", magnitude)
