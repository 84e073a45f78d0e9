"""Learned codecs trained for machines: a CompressAI LightningModule with pluggable distortion terms.

- :class:`RateDistortionLoss` (``bpp + lambda * D``) and the distortion-term registry
  (:func:`register_term`, :func:`build_term`, :func:`list_terms`);
- :class:`CompressionModule` (any CompressAI zoo architecture) and :class:`CodecDataModule`;
- real coding (:mod:`~mlclipsim.compression.coding`), the ``.bin`` format
  (:mod:`~mlclipsim.compression.bitstream`), :func:`load_codec` and :func:`export_state_dict`;
- the codec interface and registry of the rate-task study (:class:`Codec`, :func:`create_codec`,
  :func:`register_codec`, :func:`list_codecs`): JPEG, WebP, AVIF, JPEG XL (:class:`PillowCodec`),
  CompressAI checkpoint families (:class:`LearnedCodec`), ML-CLIPSim rate control
  (:func:`control_rate`, ``BASE@mlclipsim`` codecs) and rate-task curves (:func:`run_rate_task`).

Recipes: ``codecs/*.yaml`` with ``python -m mlclipsim.compression.train --config codecs/<recipe>.yaml``.

The names are imported on first use, so that ``mlclipsim`` commands that do not code images never
import CompressAI or Lightning.
"""

from importlib import import_module
from typing import Any

_NAMES = {
    "ARCHITECTURES": "architectures", "build_codec": "architectures", "load_codec": "architectures",
    "Bitstream": "bitstream", "BitstreamError": "bitstream", "read_bitstream": "bitstream",
    "write_bitstream": "bitstream", "CodecDataModule": "datamodule", "export_state_dict": "export",
    "CompressionModule": "lightning_module", "RateDistortionLoss": "loss", "CALIBRATED_SCALES": "terms",
    "DISTORTION_TERMS": "terms", "DistortionTerm": "terms", "build_term": "terms", "list_terms": "terms",
    "register_term": "terms",
    # codecs of the rate-task study, rate control, rate-task curves
    "Codec": "codec_interface", "CodecSpec": "codec_interface", "CodedImages": "codec_interface",
    "create_codec": "codec_interface", "describe_codecs": "codec_interface", "list_codecs": "codec_interface",
    "list_modifiers": "codec_interface", "parse_codec_spec": "codec_interface", "register_codec": "codec_interface",
    "register_codec_modifier": "codec_interface", "PillowCodec": "classic_codecs", "LearnedCodec": "learned_codec",
    "register_learned_codec": "learned_codec", "RateControlResult": "rate_control",
    "RateControlledCodec": "rate_control", "control_rate": "rate_control", "LearnedFamily": "rate_task",
    "RateTaskConfig": "rate_task", "run_rate_task": "rate_task", "bd_rates": "rate_curves",
    "mean_curves": "rate_curves", "per_photo_bd_rates": "rate_curves", "plot_curves": "rate_curves",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module 'mlclipsim.compression' has no attribute {name!r}")
    value = getattr(import_module(f"mlclipsim.compression.{_NAMES[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
