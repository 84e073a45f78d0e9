"""Codecs: anything that maps images to (reconstruction, true bitstream bits), behind one interface.

- the interface and registry (:mod:`~mlclipsim.coding.interface`: :class:`Codec`,
  :func:`create_codec`, :func:`register_codec`, :func:`list_codecs`);
- classic codecs through Pillow (:mod:`~mlclipsim.coding.pillow_codecs`: JPEG, WebP, AVIF, JPEG XL);
- learned codecs: CompressAI architectures (:mod:`~mlclipsim.coding.architectures`), entropy coding
  (:mod:`~mlclipsim.coding.entropy`), the ``.bin`` format (:mod:`~mlclipsim.coding.bitstream`),
  checkpoint families (:mod:`~mlclipsim.coding.learned`) and export (:mod:`~mlclipsim.coding.export`);
- machine-targeted rate control (:mod:`~mlclipsim.coding.rate_control`, ``BASE@mlclipsim`` codecs).

Training codecs lives in :mod:`mlclipsim.training`, the rate-task study in :mod:`mlclipsim.rate_task`.
"""

from mlclipsim.coding.architectures import ARCHITECTURES, build_codec, load_codec
from mlclipsim.coding.bitstream import Bitstream, BitstreamError, read_bitstream, write_bitstream
from mlclipsim.coding.export import export_state_dict
from mlclipsim.coding.interface import (
    Codec,
    CodecSpec,
    CodedImages,
    create_codec,
    describe_codecs,
    list_codecs,
    list_modifiers,
    parse_codec_spec,
    register_codec,
    register_codec_modifier,
)
from mlclipsim.coding.learned import LearnedCodec, register_learned_codec
from mlclipsim.coding.pillow_codecs import PillowCodec
from mlclipsim.coding.rate_control import RateControlledCodec, RateControlResult, control_rate

__all__ = ["ARCHITECTURES", "Bitstream", "BitstreamError", "Codec", "CodecSpec", "CodedImages", "LearnedCodec",
           "PillowCodec", "RateControlResult", "RateControlledCodec", "build_codec", "control_rate", "create_codec",
           "describe_codecs", "export_state_dict", "list_codecs", "list_modifiers", "load_codec", "parse_codec_spec",
           "read_bitstream", "register_codec", "register_codec_modifier", "register_learned_codec", "write_bitstream"]
