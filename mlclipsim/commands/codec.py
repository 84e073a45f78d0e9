"""``mlclipsim codec compress|decompress``: a learned codec on real files.

    mlclipsim codec compress IMAGE OUT.bin --checkpoint CKPT [--architecture NAME [--quality Q | --channels N [M]]]
    mlclipsim codec compress IMAGE OUT.bin --checkpoint VR_CKPT --level K     # a variable-rate model
    mlclipsim codec decompress IN.bin IMAGE --checkpoint CKPT

CKPT is a Lightning checkpoint of :class:`~mlclipsim.training.codec_module.CompressionModule`
(it names its architecture and channels), a state dict exported by ``python -m
mlclipsim.coding.export`` (its export record names them), or another plain CompressAI state dict
(e.g. CompressAI's zoo), for which compress needs ``--architecture NAME``. The channel counts are
read off the weights, and ``--quality`` or ``--channels``, if given, are checked against them.
A variable-rate model (``mbt2018-mean-vr``) compresses at ``--level K`` (0..L-1, lowest rate first; the
error for a missing level lists the ladder); the level is written into the header and decompress
decodes at it.

Every bitstream carries the fingerprint of the model that wrote it; decompress refuses a checkpoint
with another fingerprint (naming both) instead of decoding garbage. It also reads the architecture
from the header and checks the checkpoint against it. The format is :mod:`mlclipsim.coding.bitstream`.

Outputs are never written over an input, an existing output is replaced only with ``--overwrite``,
and files are written to a temporary name and renamed, so an interrupted run leaves no half file.
Both print a JSON summary (bytes, bpp of the payload and of the whole file).

This module imports nothing heavy at import time (the ``mlclipsim`` command builds its parser from it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def setup(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="{compress,decompress}")
    compress = actions.add_parser("compress", help="encode an image to a .bin bitstream",
                                  description="Encode IMAGE with a learned codec into the bitstream file OUT.")
    compress.add_argument("image", help="input image (any format Pillow reads)")
    compress.add_argument("out", help="output bitstream file (.bin)")
    compress.add_argument("--level", type=int, default=None, metavar="K",
                          help="rate level of a variable-rate model (0 = lowest rate; its lambda ladder is in the "
                               "checkpoint)")
    decompress = actions.add_parser("decompress", help="decode a .bin bitstream to an image",
                                    description="Decode the bitstream IN into the image file IMAGE (the format "
                                                "follows the suffix: .png, .bmp, .tif, ...).")
    decompress.add_argument("bitstream", help="input bitstream file (.bin)")
    decompress.add_argument("image", help="output image file, e.g. out.png")
    for sub in (compress, decompress):
        sub.add_argument("--checkpoint", required=True,
                         help="Lightning checkpoint of the codec, an exported state dict, or a plain CompressAI "
                              "state dict")
        sub.add_argument("--architecture", default=None,
                         help="zoo architecture, needed only for a plain state dict mlclipsim did not export "
                              "(e.g. bmshj2018-hyperprior)")
        group = sub.add_mutually_exclusive_group()
        group.add_argument("--quality", type=int, default=None, help="zoo quality, checked against the weights")
        group.add_argument("--channels", type=int, nargs="+", default=None, metavar="N",
                           help="channel counts N [M], checked against the weights")
        sub.add_argument("--device", default="cpu", help="torch device (default cpu)")
        sub.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    decompress.add_argument("--max-pixels", type=int, default=None, metavar="PX",
                            help="largest image size a bitstream may announce (default 2**25 px); lower it for "
                                 "files from untrusted sources")


def run(args: argparse.Namespace) -> int:
    """Errors propagate to the ``mlclipsim`` command, which prints them as one ``error:`` line."""
    summary = _compress(args) if args.action == "compress" else _decompress(args)
    print(json.dumps(summary, indent=2))
    return 0


def _input_file(path: str, what: str) -> Path:
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {str(path)!r} is a folder; give one file (the command codes one file at a time).")
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist.")
    return path


def _compress(args: argparse.Namespace) -> dict:
    # lazy: CLI command module, imported to build its subparser; these load only when the command runs
    import torch

    from mlclipsim.coding import entropy
    from mlclipsim.coding.architectures import channels_of, load_codec, model_fingerprint
    from mlclipsim.coding.bitstream import Bitstream, write_bitstream
    from mlclipsim.core.devices import check_device
    from mlclipsim.core.files import atomic_write, check_output
    from mlclipsim.core.images import read_image

    source = _input_file(args.image, "Image")
    out = check_output(args.out, inputs=[source, args.checkpoint], overwrite=args.overwrite)
    device = check_device(args.device)
    model, architecture = load_codec(args.checkpoint, args.architecture, args.quality, args.channels)
    fingerprint = model_fingerprint(model)
    model.to(device)
    image = read_image(source)[None].to(device)
    level = entropy.check_level(model, args.level)  # before any work: a missing level lists the ladder
    with torch.no_grad():
        (coded,) = entropy.encode(model, image, level=level)
    channels = channels_of(architecture, model.state_dict())
    levels = None if level is None else model.num_levels
    data = write_bitstream(Bitstream(architecture, coded.height, coded.width, channels, coded.strings,
                                     bytes.fromhex(fingerprint), level, levels))
    atomic_write(out, data)
    pixels = coded.height * coded.width
    summary = {"image": str(source), "bitstream": str(out), "architecture": architecture, "channels": list(channels),
               "fingerprint": fingerprint, "height": coded.height, "width": coded.width,
               "payload_bytes": coded.num_bytes, "file_bytes": len(data), "bpp": 8.0 * coded.num_bytes / pixels,
               "file_bpp": 8.0 * len(data) / pixels}
    if level is not None:
        summary.update(level=level, lmbda=float(f"{float(model.lmbdas[level]):g}"))
    return summary


def _decompress(args: argparse.Namespace) -> dict:
    # lazy: CLI command module, imported to build its subparser; these load only when the command runs
    import torch
    from PIL import Image

    from mlclipsim.coding import entropy
    from mlclipsim.coding.architectures import channels_of, load_codec, model_fingerprint
    from mlclipsim.coding.bitstream import MAX_PIXELS, BitstreamError, read_bitstream
    from mlclipsim.coding.variable_rate import is_variable_rate
    from mlclipsim.core.devices import check_device
    from mlclipsim.core.files import atomic_write, check_output
    from mlclipsim.core.images import tensor_to_array

    path = _input_file(args.bitstream, "Bitstream")
    out = check_output(args.image, inputs=[path, args.checkpoint], overwrite=args.overwrite)
    if out.suffix.lower() not in Image.registered_extensions():
        raise ValueError(f"Cannot tell the image format of {str(out)!r} from its suffix; end it in .png (lossless), "
                         ".bmp or .tif.")
    device = check_device(args.device)
    data = path.read_bytes()
    stream = read_bitstream(data, max_pixels=args.max_pixels or MAX_PIXELS)
    if args.architecture is not None and args.architecture != stream.architecture:
        raise BitstreamError(f"The bitstream was written by {stream.architecture}, not {args.architecture}.")
    model, architecture = load_codec(args.checkpoint, stream.architecture, args.quality, args.channels)
    fingerprint = model_fingerprint(model)
    if stream.fingerprint.hex() != fingerprint:
        raise BitstreamError(f"{str(path)!r} was written by the model with fingerprint {stream.fingerprint.hex()}, "
                             f"but {str(args.checkpoint)!r} has fingerprint {fingerprint}: decoding with another "
                             "model gives garbage. Use the checkpoint that compressed it.")
    channels = channels_of(architecture, model.state_dict())
    if tuple(stream.channels) != tuple(channels):
        raise BitstreamError(f"The bitstream was written by {stream.architecture} with channels "
                             f"{list(stream.channels)}, but the checkpoint has {list(channels)}: use the encoder's "
                             "checkpoint.")
    levels = model.num_levels if is_variable_rate(model) else None
    if stream.levels != levels:
        written = "no rate level" if stream.levels is None else f"rate level {stream.level} of {stream.levels}"
        held = "codes at one rate" if levels is None else f"has {levels} rate levels"
        raise BitstreamError(f"The bitstream has {written}, but the checkpoint's {architecture} {held}: the file is "
                             "corrupted or comes from another model.")
    expected_strings = 1 if architecture == "bmshj2018-factorized" else 2
    if len(stream.strings) != expected_strings:
        raise BitstreamError(f"A {architecture} bitstream holds {expected_strings} string(s), this one "
                             f"{len(stream.strings)}; the file is corrupted.")
    model.to(device)
    with torch.no_grad():
        image = entropy.decode(model, entropy.CodedImage(stream.strings, stream.height, stream.width, stream.level))
    array = tensor_to_array(image[0])
    atomic_write(out, lambda temporary: Image.fromarray(array).save(temporary, format=Image.registered_extensions()[
        out.suffix.lower()]))
    pixels = stream.height * stream.width
    summary = {"bitstream": str(path), "image": str(out), "architecture": architecture, "fingerprint": fingerprint,
               "height": stream.height, "width": stream.width, "payload_bytes": stream.payload_bytes,
               "file_bytes": len(data), "bpp": 8.0 * stream.payload_bytes / pixels,
               "file_bpp": 8.0 * len(data) / pixels}
    if stream.level is not None:
        summary.update(level=stream.level, lmbda=float(f"{float(model.lmbdas[stream.level]):g}"))
    return summary
