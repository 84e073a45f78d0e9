"""Hostile bitstreams: every truncation, bit flip and forged field value ends in BitstreamError (or a
stream whose every field is in bounds), and reading never holds much more than the file itself."""

from __future__ import annotations

import random
import struct
import tracemalloc
import zlib

import pytest

from mlclipsim.coding.bitstream import (
    MAGIC,
    MAX_CHANNELS,
    MAX_PIXELS,
    MAX_SIDE,
    Bitstream,
    BitstreamError,
    max_pixels_for_payload,
    read_bitstream,
    write_bitstream,
)

VALID = Bitstream("bmshj2018-hyperprior", 40, 56, (8, 8), [bytes(range(40)), bytes(range(7))], bytes(range(8)))
MEMORY_SLACK = 64 * 1024


def _forge(name: bytes = b"bmshj2018-hyperprior", version: int = 2, fingerprint: bytes = bytes(8),
           size: tuple[int, int] = (40, 56), channels: tuple[int, ...] = (8, 8), lengths: tuple[int, ...] | None = None,
           strings: tuple[bytes, ...] = (bytes(40), bytes(7)), name_length: int | None = None) -> bytes:
    """A file with arbitrary field values and a correct CRC (so that the bounds, not the CRC, must catch it)."""
    lengths = tuple(len(s) for s in strings) if lengths is None else lengths
    header = MAGIC + struct.pack(">BB", version, len(name) if name_length is None else name_length) + name
    header += fingerprint + struct.pack(">II", *size)
    header += struct.pack(f">B{len(channels)}H", len(channels), *channels)
    header += struct.pack(f">B{len(lengths)}I", len(lengths), *lengths)
    payload = b"".join(strings)
    return header + struct.pack(">I", zlib.crc32(payload, zlib.crc32(header))) + payload


def _read_bounded(data: bytes) -> Bitstream | None:
    """read_bitstream under tracemalloc: BitstreamError (None) or a stream in bounds; memory <= 3x the file."""
    tracemalloc.start()
    try:
        stream = read_bitstream(data)
    except BitstreamError:
        stream = None
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak <= 3 * len(data) + MEMORY_SLACK, (peak, len(data))
    if stream is not None:
        assert 1 <= stream.height <= MAX_SIDE and 1 <= stream.width <= MAX_SIDE
        assert stream.height * stream.width <= min(MAX_PIXELS, max_pixels_for_payload(stream.payload_bytes,
                                                                                       stream.channels))
        assert all(1 <= c <= MAX_CHANNELS for c in stream.channels) and all(stream.strings)
        assert stream.payload_bytes == len(data) - (len(data) - stream.payload_bytes)
    return stream


def test_every_truncation_is_refused():
    data = write_bitstream(VALID)
    assert read_bitstream(data) == VALID
    for end in range(len(data)):
        assert _read_bounded(data[:end]) is None, end


def test_every_header_bit_flip_and_random_payload_flips_are_refused():
    data = write_bitstream(VALID)
    header_bits = 8 * (len(data) - VALID.payload_bytes)
    rng = random.Random(0)
    positions = list(range(header_bits)) + rng.sample(range(header_bits, 8 * len(data)), 200)
    for bit in positions:
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        assert _read_bounded(bytes(flipped)) is None, bit  # the CRC-32 catches every single-bit error


def test_forged_field_values_are_refused_before_allocating():
    cases = {
        "60000x60000 in a tiny file (the reported 6 GB allocation)": _forge(size=(60000, 60000)),
        "0xFFFFFFF0 height (the reported overflow)": _forge(size=(0xFFFFFFF0, 16)),
        "zero width": _forge(size=(40, 0)),
        "one side too long": _forge(size=(1, MAX_SIDE + 1)),
        "more pixels than 2 payload bytes can code": _forge(size=(4096, 4096), channels=(128, 192),
                                                            strings=(b"\x01", b"\x02")),
        "zero channel counts": _forge(channels=()),
        "too many channel counts": _forge(channels=(8,) * 200),
        "a zero channel count": _forge(channels=(8, 0)),
        "no strings": _forge(strings=()),
        "an empty string": _forge(strings=(b"", bytes(7))),
        "string length beyond the file": _forge(lengths=(2**32 - 1, 7)),
        "255 strings announced": _forge(lengths=(1,) * 255, strings=(bytes(255),)),
        "empty architecture name": _forge(name=b""),
        "name length beyond the file": _forge(name=b"x", name_length=255),
        "non-ASCII name": _forge(name="bmshj2018-\u00e9".encode()),
        "unprintable name": _forge(name=b"bmshj\x00"),
        "version 1 (no fingerprint)": _forge(version=1),
    }
    for what, data in cases.items():
        assert _read_bounded(data) is None, what
    with pytest.raises(BitstreamError, match=r"60000x60000 \(3600000000 px\) is outside|outside 1..32768"):
        read_bitstream(cases["60000x60000 in a tiny file (the reported 6 GB allocation)"])
    with pytest.raises(BitstreamError, match="cannot be coded in 2 payload bytes"):
        read_bitstream(cases["more pixels than 2 payload bytes can code"])


def test_random_field_values():
    rng = random.Random(1)
    extremes = [0, 1, 2, 255, 256, MAX_SIDE, MAX_SIDE + 1, 60000, 2**31, 0xFFFFFFF0, 2**32 - 1]
    parsed = 0
    for _ in range(400):
        strings = tuple(bytes(rng.randrange(0, 50)) for _ in range(rng.randrange(0, 4)))
        lengths = tuple(rng.choice([len(s), rng.choice(extremes)]) for s in strings)
        side = [rng.choice(extremes + [rng.randrange(1, 5000)]) for _ in range(2)]
        data = _forge(size=(side[0], side[1]),
                      channels=tuple(rng.choice([0, 1, 8, 192, MAX_CHANNELS, MAX_CHANNELS + 1, 65535])
                                     for _ in range(rng.randrange(0, 6))),
                      lengths=lengths, strings=strings, fingerprint=rng.randbytes(8))
        parsed += _read_bounded(data) is not None
    assert parsed > 0  # some forged files are valid, and those are in bounds


def test_writer_refuses_what_the_reader_refuses():
    with pytest.raises(ValueError, match="outside 1..32768"):
        write_bitstream(Bitstream("bmshj2018-factorized", 60000, 60000, (8, 8), [b"x"], bytes(8)))
    with pytest.raises(ValueError, match="fingerprint must be 8 bytes"):
        write_bitstream(Bitstream("bmshj2018-factorized", 8, 8, (8, 8), [b"x"], b"abc"))
