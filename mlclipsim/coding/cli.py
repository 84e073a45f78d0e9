"""``mlclipsim codec compress|decompress``: a learned codec on real files.

    mlclipsim codec compress IMAGE OUT.bin --checkpoint CKPT [--architecture NAME [--quality Q | --channels N [M]]]
    mlclipsim codec decompress IN.bin IMAGE --checkpoint CKPT

CKPT is a Lightning checkpoint of :class:`~mlclipsim.training.codec_module.CompressionModule`
(it names its architecture and channels) or a plain CompressAI state dict (from
``python -m mlclipsim.coding.export`` or CompressAI's zoo). For a plain state dict, compress
needs ``--architecture NAME``; the channel counts are read off the weights, and ``--quality`` or
``--channels``, if given, are checked against them. Decompress reads the architecture from the
bitstream header and checks the checkpoint against it. The bitstream format is
:mod:`mlclipsim.coding.bitstream`. Both print a JSON summary (bytes, bpp of the payload and of
the whole file).

This module imports nothing heavy at import time (the ``mlclipsim`` command builds its parser from it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def setup(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="{compress,decompress}")
    compress = actions.add_parser("compress", help="encode an image to a .bin bitstream",
                                  description="Encode IMAGE with a learned codec into the bitstream file OUT.")
    compress.add_argument("image", help="input image (any format Pillow reads)")
    compress.add_argument("out", help="output bitstream file (.bin)")
    decompress = actions.add_parser("decompress", help="decode a .bin bitstream to an image",
                                    description="Decode the bitstream IN into the image file IMAGE (PNG unless the "
                                                "suffix says otherwise).")
    decompress.add_argument("bitstream", help="input bitstream file (.bin)")
    decompress.add_argument("image", help="output image file, e.g. out.png")
    for sub in (compress, decompress):
        sub.add_argument("--checkpoint", required=True,
                         help="Lightning checkpoint of the codec, or a plain CompressAI state dict")
        sub.add_argument("--architecture", default=None,
                         help="zoo architecture, needed for a plain state dict at compress (e.g. bmshj2018-hyperprior)")
        group = sub.add_mutually_exclusive_group()
        group.add_argument("--quality", type=int, default=None, help="zoo quality, checked against the weights")
        group.add_argument("--channels", type=int, nargs="+", default=None, metavar="N",
                           help="channel counts N [M], checked against the weights")
        sub.add_argument("--device", default="cpu", help="torch device (default cpu)")


def run(args: argparse.Namespace) -> int:
    from mlclipsim.coding.bitstream import BitstreamError
    from mlclipsim.core.images import ImageReadError

    try:
        summary = _compress(args) if args.action == "compress" else _decompress(args)
    except (BitstreamError, ImageReadError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


def _compress(args: argparse.Namespace) -> dict:
    import torch

    from mlclipsim.coding import entropy
    from mlclipsim.coding.architectures import load_codec
    from mlclipsim.coding.bitstream import Bitstream, write_bitstream
    from mlclipsim.core.images import read_image

    model, architecture = load_codec(args.checkpoint, args.architecture, args.quality, args.channels)
    model.to(args.device)
    image = read_image(args.image)[None].to(args.device)
    with torch.no_grad():
        (coded,) = entropy.encode(model, image)
    channels = _channels(model, architecture)
    data = write_bitstream(Bitstream(architecture, coded.height, coded.width, channels, coded.strings))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    pixels = coded.height * coded.width
    return {"image": str(args.image), "bitstream": str(out), "architecture": architecture, "channels": list(channels),
            "height": coded.height, "width": coded.width, "payload_bytes": coded.num_bytes,
            "file_bytes": len(data), "bpp": 8.0 * coded.num_bytes / pixels, "file_bpp": 8.0 * len(data) / pixels}


def _decompress(args: argparse.Namespace) -> dict:
    import torch
    from PIL import Image

    from mlclipsim.coding import entropy
    from mlclipsim.coding.architectures import load_codec
    from mlclipsim.coding.bitstream import BitstreamError, read_bitstream
    from mlclipsim.core.images import tensor_to_array

    path = Path(args.bitstream)
    if not path.is_file():
        raise FileNotFoundError(f"Bitstream {str(path)!r} does not exist.")
    data = path.read_bytes()
    stream = read_bitstream(data)
    if args.architecture is not None and args.architecture != stream.architecture:
        raise BitstreamError(f"The bitstream was written by {stream.architecture}, not {args.architecture}.")
    model, architecture = load_codec(args.checkpoint, stream.architecture, args.quality, args.channels)
    channels = _channels(model, architecture)
    if tuple(stream.channels) != tuple(channels):
        raise BitstreamError(f"The bitstream was written by {stream.architecture} with channels "
                             f"{list(stream.channels)}, but the checkpoint has {list(channels)}: use the encoder's "
                             "checkpoint.")
    expected_strings = 1 if architecture == "bmshj2018-factorized" else 2
    if len(stream.strings) != expected_strings:
        raise BitstreamError(f"A {architecture} bitstream holds {expected_strings} string(s), this one "
                             f"{len(stream.strings)}; the file is corrupted.")
    model.to(args.device)
    with torch.no_grad():
        image = entropy.decode(model, entropy.CodedImage(stream.strings, stream.height, stream.width))
    out = Path(args.image)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(tensor_to_array(image[0])).save(out)
    pixels = stream.height * stream.width
    return {"bitstream": str(path), "image": str(out), "architecture": architecture, "height": stream.height,
            "width": stream.width, "payload_bytes": stream.payload_bytes, "file_bytes": len(data),
            "bpp": 8.0 * stream.payload_bytes / pixels, "file_bpp": 8.0 * len(data) / pixels}


def _channels(model, architecture: str) -> tuple[int, ...]:
    from mlclipsim.coding.architectures import channels_of

    return channels_of(architecture, model.state_dict())
