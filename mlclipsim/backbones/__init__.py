"""Frozen encoders that return per-layer token maps and a global embedding.

See :func:`create_backbone` and :func:`list_backbones`; weights are found as described in
:mod:`mlclipsim.core.weights`.
"""

from mlclipsim.backbones.base import EMBEDDING, EncoderOutput, FrozenEncoder
from mlclipsim.backbones.cnn_encoders import CNNEncoder, CNNSpec
from mlclipsim.backbones.open_clip_encoders import OpenCLIPEncoder, register_open_clip_config
from mlclipsim.backbones.preprocessing import MIN_IMAGE_SIDE, RESIZE_POLICIES
from mlclipsim.backbones.registry import create_backbone, list_backbones, register_backbone
from mlclipsim.core.weights import (
    OFFLINE_ENV,
    RANDOM_INIT,
    WEIGHTS_DIR_ENV,
    MissingWeightsError,
    WeightSpec,
    load_weights,
)

__all__ = [
    "EMBEDDING", "EncoderOutput", "FrozenEncoder", "OpenCLIPEncoder", "CNNEncoder", "CNNSpec",
    "MIN_IMAGE_SIDE", "RESIZE_POLICIES", "create_backbone", "list_backbones", "register_backbone",
    "register_open_clip_config", "OFFLINE_ENV", "RANDOM_INIT", "WEIGHTS_DIR_ENV", "MissingWeightsError",
    "WeightSpec", "load_weights",
]
