"""The ``.bin`` file format of ``mlclipsim codec compress``: a small header, then the model's byte strings.

Format versions 2 (one-rate models) and 3 (variable-rate models, :mod:`~mlclipsim.coding.variable_rate`),
all integers big-endian:

=========  =================  ==========================================================
offset     field              meaning
=========  =================  ==========================================================
0          4 bytes            magic ``b"MLCC"``
4          uint8              format version (2, or 3 when the stream has a rate level)
5          uint8              length A of the architecture name, 1..64
6          A bytes            architecture name, printable ASCII (a CompressAI zoo name)
6+A        8 bytes            fingerprint of the model that wrote the stream (the first 8 bytes
                              of the SHA-256 of its exported weights and entropy tables,
                              :func:`~mlclipsim.coding.architectures.model_fingerprint`);
                              decoding with another model is an error naming both
14+A       uint32, uint32     image height, width (px, before padding), each 1..:data:`MAX_SIDE`,
                              their product at most :data:`MAX_PIXELS`
22+A       uint8              number C of channel counts (1..4), then C x uint16 (N[, M]), each
                              1..:data:`MAX_CHANNELS`: checked against the decoder's model
           uint8, uint8       version 3 only: number L of rate levels of the model (1..
                              :data:`MAX_LEVELS`) and the level the image was coded at (0..L-1,
                              lowest rate first; the model's ladder gives its lambda)
           uint8              number S of strings (1..8; 1 for bmshj2018-factorized, 2 for the others)
           S x uint32         byte length of each string, each >= 1
           uint32             CRC-32 of everything before it and of the strings
           sum of lengths     the strings, in the order of the model's ``compress()``
=========  =================  ==========================================================

The header costs ``6 + A + 8 + 8 + 1 + 2C + 1 + 4S + 4`` bytes (60 for ``bmshj2018-hyperprior``), 2 more
in version 3 (57 for ``mbt2018-mean-vr``).

**Bounds.** :func:`read_bitstream` checks every field before anything is allocated from it: the
magic, the version, every count and length against its range and against the bytes that are
actually there, the CRC, the image size against :data:`MAX_PIXELS` (2**25, about 33.5 Mpx: an 8K
UHD frame fits; pass ``max_pixels=`` to lower it for untrusted files, since the decoder's memory
grows with the announced size) and against the payload: every latent symbol (``M`` channels at
1/16 of the resolution, ``M`` the last channel count) costs the range coder at least
:data:`MIN_BITS_PER_SYMBOL` (its 16-bit precision), so a payload of ``b`` bytes cannot describe more
than ``8 b / MIN_BITS_PER_SYMBOL`` symbols. Every failure raises :class:`BitstreamError` saying
what is wrong (never a bare ``struct.error``, ``OverflowError`` or ``MemoryError``). The reader
holds at most the file's bytes twice.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass

from mlclipsim.coding.variable_rate import MAX_LEVELS

MAGIC = b"MLCC"
FORMAT_VERSION = 2
LEVEL_FORMAT_VERSION = 3
"""The version of streams with a rate level (variable-rate models); version 2 streams have none."""
FINGERPRINT_BYTES = 8
MAX_NAME = 64
MAX_SIDE = 2**15
MAX_PIXELS = 2**25
MAX_CHANNELS = 4096
MAX_CHANNEL_COUNTS = 4
MAX_STRINGS = 8
LATENT_STRIDE = 16
MIN_BITS_PER_SYMBOL = math.log2(2**16 / (2**16 - 1))
"""The fewest bits CompressAI's rANS coder (16-bit precision) spends on one symbol: the most
probable symbol has at most 2**16 - 1 of the 2**16 frequency slots (the overflow symbol keeps one)."""


class BitstreamError(ValueError):
    """A file is not a valid mlclipsim codec bitstream (wrong magic, version, bounds, truncated, corrupted)."""


@dataclass
class Bitstream:
    """What a ``.bin`` file holds (``fingerprint``: :data:`FINGERPRINT_BYTES` bytes naming the model;
    ``level`` and ``levels``: the rate level and the model's number of levels, both None for a one-rate model)."""

    architecture: str
    height: int
    width: int
    channels: tuple[int, ...]
    strings: list[bytes]
    fingerprint: bytes
    level: int | None = None
    levels: int | None = None

    @property
    def payload_bytes(self) -> int:
        return sum(len(s) for s in self.strings)


def max_pixels_for_payload(payload_bytes: int, channels: tuple[int, ...]) -> int:
    """The most pixels ``payload_bytes`` of range-coded latents can describe (see the module docstring)."""
    symbols = 8 * payload_bytes / MIN_BITS_PER_SYMBOL
    return int(symbols * LATENT_STRIDE**2 / max(1, channels[-1]))


def _check_fields(stream: Bitstream, max_pixels: int, error: type[Exception]) -> None:
    """Every bound of the module docstring, raising ``error`` with what is wrong."""
    name = stream.architecture
    if not (0 < len(name) <= MAX_NAME and name.isascii() and name.isprintable()):
        raise error(f"The architecture name must be 1..{MAX_NAME} printable ASCII characters, got {name!r}.")
    if (stream.level is None) != (stream.levels is None):
        raise error(f"A rate level and the number of levels go together, got level {stream.level!r} of "
                    f"{stream.levels!r}.")
    if stream.levels is not None and not (
            isinstance(stream.levels, int) and isinstance(stream.level, int) and 1 <= stream.levels <= MAX_LEVELS
            and 0 <= stream.level < stream.levels):
        raise error(f"The rate level must be in 0..L-1 with L (the number of levels) in 1..{MAX_LEVELS}, got level "
                    f"{stream.level!r} of {stream.levels!r}.")
    if len(stream.fingerprint) != FINGERPRINT_BYTES:
        raise error(f"The model fingerprint must be {FINGERPRINT_BYTES} bytes, got {len(stream.fingerprint)}.")
    height, width = stream.height, stream.width
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise error(f"Image size {height}x{width} is outside 1..{MAX_SIDE} px per side.")
    if height * width > max_pixels:
        raise error(f"Image size {height}x{width} ({height * width} px) is more than the {max_pixels} px a "
                    "bitstream may announce (MAX_PIXELS, or max_pixels=).")
    if not 1 <= len(stream.channels) <= MAX_CHANNEL_COUNTS or not all(
            1 <= c <= MAX_CHANNELS for c in stream.channels):
        raise error(f"Channel counts must be 1..{MAX_CHANNEL_COUNTS} values in 1..{MAX_CHANNELS}, got "
                    f"{list(stream.channels)}.")
    if not 1 <= len(stream.strings) <= MAX_STRINGS or any(len(s) == 0 for s in stream.strings):
        raise error(f"A bitstream holds 1..{MAX_STRINGS} non-empty strings, got lengths "
                    f"{[len(s) for s in stream.strings]}.")
    limit = max_pixels_for_payload(stream.payload_bytes, tuple(stream.channels))
    if height * width > limit:
        raise error(f"Image size {height}x{width} ({height * width} px) cannot be coded in "
                    f"{stream.payload_bytes} payload bytes with {stream.channels[-1]} latent channels (at most "
                    f"{limit} px).")


def write_bitstream(stream: Bitstream, max_pixels: int = MAX_PIXELS) -> bytes:
    """Serialise a :class:`Bitstream` (header + strings); ValueError if a field is out of bounds."""
    _check_fields(stream, max_pixels, ValueError)
    name = stream.architecture.encode("ascii")
    header = bytearray(MAGIC)
    version = FORMAT_VERSION if stream.level is None else LEVEL_FORMAT_VERSION
    header += struct.pack(">BB", version, len(name)) + name + bytes(stream.fingerprint)
    header += struct.pack(">II", stream.height, stream.width)
    header += struct.pack(f">B{len(stream.channels)}H", len(stream.channels), *stream.channels)
    if stream.level is not None:
        header += struct.pack(">BB", stream.levels, stream.level)
    header += struct.pack(f">B{len(stream.strings)}I", len(stream.strings), *(len(s) for s in stream.strings))
    payload = b"".join(stream.strings)
    crc = zlib.crc32(payload, zlib.crc32(bytes(header)))
    return bytes(header) + struct.pack(">I", crc) + payload


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def take(self, size: int, what: str) -> bytes:
        if self.offset + size > len(self.data):
            raise BitstreamError(f"Bitstream is truncated: it ends at byte {len(self.data)} inside the {what} "
                                 f"(bytes {self.offset}..{self.offset + size}); the file was cut short.")
        chunk = self.data[self.offset:self.offset + size]
        self.offset += size
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))


def read_bitstream(data: bytes, max_pixels: int = MAX_PIXELS) -> Bitstream:
    """Parse and check a ``.bin`` file's bytes; :class:`BitstreamError` says what is wrong.

    ``max_pixels`` (default :data:`MAX_PIXELS`) is the largest image size accepted."""
    data = bytes(data)
    reader = _Reader(data)
    magic = data[:len(MAGIC)]
    if magic != MAGIC:
        raise BitstreamError(f"Not an mlclipsim codec bitstream: it starts with {magic!r}, expected {MAGIC!r} "
                             "(files written by `mlclipsim codec compress`).")
    reader.offset = len(MAGIC)
    (version,) = reader.unpack(">B", "format version")
    if version not in (FORMAT_VERSION, LEVEL_FORMAT_VERSION):
        raise BitstreamError(f"Bitstream format version {version} is not supported (this mlclipsim reads versions "
                             f"{FORMAT_VERSION} and {LEVEL_FORMAT_VERSION}); decode it with the mlclipsim version that "
                             "wrote it.")
    (name_length,) = reader.unpack(">B", "architecture name length")
    if not 1 <= name_length <= MAX_NAME:
        raise BitstreamError(f"Bitstream header is invalid: architecture name length {name_length} is outside "
                             f"1..{MAX_NAME}.")
    raw_name = reader.take(name_length, "architecture name")
    try:
        architecture = raw_name.decode("ascii")
    except UnicodeDecodeError:
        raise BitstreamError("Bitstream header is corrupted: the architecture name is not ASCII.") from None
    fingerprint = reader.take(FINGERPRINT_BYTES, "model fingerprint")
    height, width = reader.unpack(">II", "image size")
    (num_channels,) = reader.unpack(">B", "channel count")
    if not 1 <= num_channels <= MAX_CHANNEL_COUNTS:
        raise BitstreamError(f"Bitstream header is invalid: {num_channels} channel counts (1..{MAX_CHANNEL_COUNTS}).")
    channels = reader.unpack(f">{num_channels}H", "channel counts")
    level = levels = None
    if version == LEVEL_FORMAT_VERSION:
        levels, level = reader.unpack(">BB", "rate level")
        if not (1 <= levels <= MAX_LEVELS and level < levels):
            raise BitstreamError(f"Bitstream header is invalid: rate level {level} of {levels} levels (level 0..L-1, "
                                 f"L in 1..{MAX_LEVELS}).")
    (num_strings,) = reader.unpack(">B", "string count")
    if not 1 <= num_strings <= MAX_STRINGS:
        raise BitstreamError(f"Bitstream header is invalid: {num_strings} strings (1..{MAX_STRINGS}).")
    lengths = reader.unpack(f">{num_strings}I", "string lengths")
    header_end = reader.offset
    (crc,) = reader.unpack(">I", "checksum")
    payload_size = sum(lengths)
    available = len(data) - reader.offset
    if available < payload_size:
        raise BitstreamError(f"Bitstream is truncated: the header announces {payload_size} payload bytes "
                             f"({num_strings} string(s) of {list(lengths)} bytes) but only {available} follow.")
    if available > payload_size:
        raise BitstreamError(f"Bitstream has {available - payload_size} unexpected trailing byte(s) after the "
                             f"{payload_size} payload bytes the header announces; the file is corrupted.")
    view = memoryview(data)  # no copies of the payload but the strings themselves
    if zlib.crc32(view[reader.offset:], zlib.crc32(view[:header_end])) != crc:
        raise BitstreamError("Bitstream is corrupted: its CRC-32 checksum does not match the header and payload.")
    payload = view[reader.offset:]
    strings, start = [], 0
    for length in lengths:
        strings.append(bytes(payload[start:start + length]))
        start += length
    stream = Bitstream(architecture, height, width, tuple(channels), strings, fingerprint, level, levels)
    _check_fields(stream, max_pixels, BitstreamError)
    return stream
