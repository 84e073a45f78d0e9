"""Which layers ML-CLIPSim compares and with what weights.

Resolution when the caller gives neither layers nor weights: the calibrated file shipped for the
backbone (``mlclipsim/weights/ml_clipsim/<backbone>.json``, written by the calibration command
recorded inside it) if there is one, else the backbone's default layers with uniform weights over
those layers and the global embedding. Weights are non-negative and normalised to sum 1.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

import torch

from mlclipsim.backbones import EMBEDDING, FrozenEncoder

WEIGHTS_PACKAGE = "mlclipsim.weights"
WEIGHTS_FOLDER = "ml_clipsim"


def calibrated_weights_filename(backbone_name: str) -> str:
    """File name of a backbone's calibrated weights (``/`` in names becomes ``__``)."""
    return backbone_name.replace("/", "__") + ".json"


def load_calibrated_weights(backbone_name: str) -> dict[str, Any] | None:
    """The shipped calibration record for a backbone (keys ``weights``, ``command``, ...), or None."""
    path = resources.files(WEIGHTS_PACKAGE) / WEIGHTS_FOLDER / calibrated_weights_filename(backbone_name)
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def normalise_weights(weights: Mapping[str, float], layers: Sequence[str]) -> torch.Tensor:
    """Weights keyed by ``(*layers, "embedding")`` -> (L+1,) float tensor summing to 1."""
    values = []
    for key in (*layers, EMBEDDING):
        value = float(weights.get(key, 0.0))
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"ML-CLIPSim weight for {key!r} is {value}; weights must be finite and non-negative.")
        values.append(value)
    total = sum(values)
    if total <= 0:
        raise ValueError("ML-CLIPSim weights sum to 0; give at least one positive weight "
                         f"among {[*layers, EMBEDDING]}.")
    return torch.tensor([v / total for v in values], dtype=torch.float32)


def resolve_layer_weights(encoder: FrozenEncoder, layers: Sequence[str] | None,
                          weights: Mapping[str, float] | None) -> tuple[tuple[str, ...], torch.Tensor]:
    """Decide the compared layers and their normalised weights (see the module docstring)."""
    if weights is not None:
        unknown = [k for k in weights if k != EMBEDDING and k not in encoder.layer_names]
        if unknown:
            raise ValueError(f"Weights name unknown layer(s) {unknown} for backbone {encoder.name!r}; valid: "
                             f"{list(encoder.layer_names)} and {EMBEDDING!r}.")
        if layers is None:
            layers = [k for k in encoder.layer_names if k in weights]
        else:
            extra = [k for k in weights if k != EMBEDDING and k not in layers]
            if extra:
                raise ValueError(f"Weights name layer(s) {extra} that are not among layers={list(layers)}.")
        layers = encoder.check_layers(layers)
        return layers, normalise_weights(weights, layers)
    if layers is None:
        record = load_calibrated_weights(encoder.name)
        if record is not None:
            calibrated = record["weights"]
            layers = encoder.check_layers([k for k in calibrated if k != EMBEDDING])
            return layers, normalise_weights(calibrated, layers)
    layers = encoder.check_layers(layers)
    return layers, normalise_weights({key: 1.0 for key in (*layers, EMBEDDING)}, layers)
