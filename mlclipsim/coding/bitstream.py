"""The ``.bin`` file format of ``mlclipsim codec compress``: a small header, then the model's byte strings.

Format version 1, all integers big-endian:

=========  =================  ==========================================================
offset     field              meaning
=========  =================  ==========================================================
0          4 bytes            magic ``b"MLCC"``
4          uint8              format version (1)
5          uint8              length A of the architecture name
6          A bytes            architecture name, ASCII (a CompressAI zoo name)
6+A        uint32, uint32     image height, width (px, before padding)
14+A       uint8              number C of channel counts, then C x uint16 (N[, M]): the model
                              that wrote the stream, checked against the decoder's
           uint8              number S of strings (1 for bmshj2018-factorized, 2 for the others)
           S x uint32         byte length of each string
           uint32             CRC-32 of everything before it and of the strings
           sum of lengths     the strings, in the order of the model's ``compress()``
=========  =================  ==========================================================

The header costs ``6 + A + 8 + 1 + 2C + 1 + 4S + 4`` bytes (52 for ``bmshj2018-hyperprior``).
:func:`read_bitstream` checks the magic, version, every length against the file size and the CRC,
and raises :class:`BitstreamError` saying what is wrong (never a bare ``struct.error``).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

MAGIC = b"MLCC"
FORMAT_VERSION = 1
_MAX_NAME = 255


class BitstreamError(ValueError):
    """A file is not a valid mlclipsim codec bitstream (wrong magic, version, truncated, corrupted)."""


@dataclass
class Bitstream:
    """What a ``.bin`` file holds."""

    architecture: str
    height: int
    width: int
    channels: tuple[int, ...]
    strings: list[bytes]

    @property
    def payload_bytes(self) -> int:
        return sum(len(s) for s in self.strings)


def write_bitstream(stream: Bitstream) -> bytes:
    """Serialise a :class:`Bitstream` (header + strings)."""
    name = stream.architecture.encode("ascii")
    if not 0 < len(name) <= _MAX_NAME:
        raise ValueError(f"architecture name must be 1..{_MAX_NAME} ASCII bytes, got {stream.architecture!r}")
    if not (0 < stream.height < 2**32 and 0 < stream.width < 2**32):
        raise ValueError(f"image size {stream.height}x{stream.width} does not fit the format")
    if not 0 < len(stream.strings) < 256 or len(stream.channels) >= 256:
        raise ValueError("a bitstream holds 1..255 strings and at most 255 channel counts")
    if any(not 0 <= c < 2**16 for c in stream.channels):
        raise ValueError(f"channel counts must be < 65536, got {stream.channels}")
    header = bytearray(MAGIC)
    header += struct.pack(">BB", FORMAT_VERSION, len(name)) + name
    header += struct.pack(">II", stream.height, stream.width)
    header += struct.pack(f">B{len(stream.channels)}H", len(stream.channels), *stream.channels)
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


def read_bitstream(data: bytes) -> Bitstream:
    """Parse and check a ``.bin`` file's bytes; :class:`BitstreamError` says what is wrong."""
    reader = _Reader(bytes(data))
    magic = reader.take(len(MAGIC), "magic bytes") if len(data) >= len(MAGIC) else bytes(data)
    if magic != MAGIC:
        raise BitstreamError(f"Not an mlclipsim codec bitstream: it starts with {bytes(magic)!r}, expected {MAGIC!r} "
                             "(files written by `mlclipsim codec compress`).")
    (version,) = reader.unpack(">B", "format version")
    if version != FORMAT_VERSION:
        raise BitstreamError(f"Bitstream format version {version} is not supported (this mlclipsim reads version "
                             f"{FORMAT_VERSION}); decode it with the mlclipsim version that wrote it.")
    (name_length,) = reader.unpack(">B", "architecture name length")
    try:
        architecture = reader.take(name_length, "architecture name").decode("ascii")
    except UnicodeDecodeError:
        raise BitstreamError("Bitstream header is corrupted: the architecture name is not ASCII.") from None
    height, width = reader.unpack(">II", "image size")
    (num_channels,) = reader.unpack(">B", "channel count")
    channels = reader.unpack(f">{num_channels}H", "channel counts")
    (num_strings,) = reader.unpack(">B", "string count")
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
    payload = reader.take(payload_size, "payload")
    if zlib.crc32(payload, zlib.crc32(bytes(data[:header_end]))) != crc:
        raise BitstreamError("Bitstream is corrupted: its CRC-32 checksum does not match the header and payload.")
    if height == 0 or width == 0 or num_strings == 0:
        raise BitstreamError(f"Bitstream header is invalid: size {height}x{width}, {num_strings} string(s).")
    strings, start = [], 0
    for length in lengths:
        strings.append(payload[start:start + length])
        start += length
    return Bitstream(architecture, height, width, tuple(channels), strings)
