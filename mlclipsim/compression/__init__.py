"""Learned codecs trained for machines: a CompressAI LightningModule with pluggable distortion terms.

- :class:`RateDistortionLoss` (``bpp + lambda * D``) and the distortion-term registry
  (:func:`register_term`, :func:`build_term`, :func:`list_terms`);
- :class:`CompressionModule` (any CompressAI zoo architecture) and :class:`CodecDataModule`;
- real coding (:mod:`~mlclipsim.compression.coding`), the ``.bin`` format
  (:mod:`~mlclipsim.compression.bitstream`), :func:`load_codec` and :func:`export_state_dict`.

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
