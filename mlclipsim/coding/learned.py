"""A family of CompressAI checkpoints (one per lambda) as one codec of the codec interface.

    codec = LearnedCodec.from_checkpoints("runs/bmshj2018-factorized_mse_small_*.pth", name="mse")
    codec.points            # ("0.0035", "0.0067", "0.013", "0.025"): one per checkpoint, by rate
    coded = codec.code(images, "0.0067")

Each checkpoint is a plain CompressAI state dict (``python -m mlclipsim.coding.export``) or a
Lightning checkpoint of :class:`~mlclipsim.training.codec_module.CompressionModule`, loaded
by :func:`~mlclipsim.coding.architectures.load_codec`. The architecture of a state dict exported
here is in its export record; for another plain state dict it is ``architecture=`` or, if not
given, the zoo name its file name starts with (``bmshj2018-factorized_mse_small_0.0067.pth``).

**Operating points.** When every file name ends in a number (``..._<lambda>.pth``), the points
are those numbers as written, ordered by value: a larger lambda of ``bpp + lambda * D`` buys
quality with bits, so this is the rate order. Else, for Lightning checkpoints (``.../best.ckpt``)
and exported state dicts, their ``lmbda`` hyper-parameter, likewise. Otherwise the points are the
file stems in the order given (a glob expands in sorted order): give the list lowest rate first.

**Variable-rate checkpoints** (``mbt2018-mean-vr``, :mod:`~mlclipsim.coding.variable_rate`: an exported
state dict, a Lightning checkpoint or a codec-pilot training checkpoint) give one operating point per
rate level of the one network, labelled by the level's lambda (``"0.0035"``, ..., ordered by value)::

    codec = create_codec("compressai", checkpoints=["mbt2018-mean-vr_base.pth"])
    codec.points            # ("0.0035", "0.0067", "0.013", "0.025", "0.0483")

Several variable-rate files may form one family if their lambdas differ; a family does not mix
variable-rate and one-rate checkpoints.

**Coding** is the real path of ``mlclipsim codec compress``: :func:`~mlclipsim.coding.entropy.encode`
(padding to the model's downsampling factor inside), the ``.bin`` file of
:mod:`~mlclipsim.coding.bitstream` (header with architecture, model fingerprint, image size and
channel counts, string lengths, CRC), then that file is parsed back and decoded by ``decompress()``. The rate is 8 x
the file's byte length, header included; the reconstruction comes from the parsed file. A
variable-rate point writes its rate level into the header (format version 3) and decodes at the
level the file names.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from compressai.models import CompressionModel

from mlclipsim.coding import entropy
from mlclipsim.coding.architectures import (
    ARCHITECTURES,
    channels_of,
    export_metadata,
    is_lightning_checkpoint,
    load_codec,
    model_fingerprint,
    read_checkpoint,
)
from mlclipsim.coding.bitstream import Bitstream, read_bitstream, write_bitstream
from mlclipsim.coding.interface import Codec, CodedImages, Point, register_codec
from mlclipsim.coding.variable_rate import is_variable_rate

_TRAILING_NUMBER = re.compile(r"[_-]((?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)$")


@dataclass
class FamilyMember:
    """One operating point of a learned codec: its label, file, ready model, architecture, fingerprint
    (16 hex digits, :func:`~mlclipsim.coding.architectures.model_fingerprint`) and, for a variable-rate
    model, the rate level (the members of one variable-rate file share its model)."""

    label: str
    path: Path
    model: CompressionModel
    architecture: str
    channels: tuple[int, ...]
    fingerprint: str = ""
    level: int | None = None

    def __post_init__(self) -> None:
        if not self.fingerprint:
            self.fingerprint = model_fingerprint(self.model)


def expand_checkpoints(checkpoints: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Paths from a path, a glob pattern, or a list of either (each pattern expanded in sorted order)."""
    items = [checkpoints] if isinstance(checkpoints, (str, os.PathLike)) else list(checkpoints)
    if not items:
        raise ValueError("A learned codec needs at least one checkpoint (a path, a glob pattern or a list).")
    paths: list[Path] = []
    for item in items:
        text = str(item)
        if glob.has_magic(text):
            matches = sorted(glob.glob(text))
            if not matches:
                raise FileNotFoundError(f"No checkpoint matches {text!r}.")
            paths.extend(Path(m) for m in matches)
        else:
            path = Path(text)
            if not path.is_file():
                raise FileNotFoundError(f"Checkpoint {text!r} does not exist.")
            paths.append(path)
    if len(set(paths)) != len(paths):
        raise ValueError(f"A checkpoint is listed twice: {[str(p) for p in paths]}.")
    return paths


def infer_architecture(path: Path) -> str | None:
    """The longest zoo architecture name that the file name starts with, or None."""
    matches = [name for name in ARCHITECTURES if path.name.startswith(name)]
    return max(matches, key=len) if matches else None


def _lightning_lambda(path: Path) -> str | None:
    data = read_checkpoint(path)
    metadata = export_metadata(data)
    if metadata is not None and isinstance(metadata.get("settings"), dict):
        value = metadata["settings"].get("lmbda")
    elif is_lightning_checkpoint(data):
        value = data["hyper_parameters"].get("lmbda")
    else:
        return None
    return None if value is None else f"{float(value):g}"


def point_labels(paths: Sequence[Path]) -> tuple[list[str], list[int]]:
    """Labels of the family members and the order (indices into ``paths``), see the module docstring.

    Labels are, in this order of preference: the numbers the file stems end with (``..._0.0067``), the
    ``lmbda`` hyper-parameter of Lightning checkpoints (``runs/.../best.ckpt``), both ordered by value;
    else the file stems in the order given.
    """
    numbers = [_TRAILING_NUMBER.search(p.stem) for p in paths]
    candidates = [[m.group(1) for m in numbers] if all(numbers) else None]  # type: ignore[union-attr]
    if candidates[0] is None:
        lambdas = [_lightning_lambda(p) for p in paths]
        candidates.append(lambdas if all(lambdas) else None)  # type: ignore[arg-type]
    for labels in candidates:
        if labels is None:
            continue
        values = [float(label) for label in labels]
        if len(set(values)) == len(values):
            return labels, sorted(range(len(paths)), key=lambda i: values[i])
    labels = [p.stem for p in paths]
    if len(set(labels)) != len(labels):
        raise ValueError(f"Cannot tell the checkpoints of the family apart: file stems {labels} repeat and they do "
                         "not carry distinct lambdas (file names ending in _<lambda>, or Lightning checkpoints with "
                         "an lmbda hyper-parameter). Rename or export them (python -m mlclipsim.coding.export).")
    return labels, list(range(len(paths)))


class LearnedCodec(Codec):
    """A CompressAI family: one checkpoint per operating point (see the module docstring)."""

    suffix = ".bin"

    def __init__(self, members: Sequence[FamilyMember], name: str = "compressai",
                 device: str | torch.device = "cpu") -> None:
        if not members:
            raise ValueError("A learned codec needs at least one member.")
        labels = [m.label for m in members]
        if len(set(labels)) != len(labels):
            raise ValueError(f"Operating point labels repeat: {labels}.")
        self.name = name
        self.members = {m.label: m for m in members}
        self._points = tuple(labels)
        self.to(device)

    @classmethod
    def from_checkpoints(cls, checkpoints: str | os.PathLike | Sequence[str | os.PathLike],
                         architecture: str | None = None, name: str = "compressai",
                         device: str | torch.device = "cpu") -> LearnedCodec:
        """Load a family from files (a path, glob pattern or list; see the module docstring)."""
        paths = expand_checkpoints(checkpoints)
        loaded = [load_codec(path, architecture=architecture, default_architecture=infer_architecture(path))
                  for path in paths]
        if any(is_variable_rate(model) for model, _ in loaded):
            return cls(variable_rate_members(paths, loaded), name=name, device=device)
        labels, order = point_labels(paths)
        members = []
        for i in order:
            model, arch = loaded[i]
            members.append(FamilyMember(labels[i], paths[i], model, arch, channels_of(arch, model.state_dict())))
        return cls(members, name=name, device=device)

    def to(self, device: str | torch.device) -> LearnedCodec:
        self.device = torch.device(device)
        for member in self.members.values():
            member.model.to(self.device).eval()
        return self

    @property
    def points(self) -> tuple[Point, ...]:
        return self._points

    def parse_point(self, text: str) -> Point:
        text = text.strip()
        if text in self.members:
            return text
        try:  # "0.0067" also matches a label written "6.7e-3"
            value = float(text)
            for label in self._points:
                try:
                    if float(label) == value:
                        return label
                except ValueError:
                    continue
        except ValueError:
            pass
        raise ValueError(self._bad_point_message(text))

    def _code(self, images: torch.Tensor, point: Point) -> CodedImages:
        member = self.members[str(point)]
        x = images.to(self.device, torch.float32)
        with torch.no_grad():
            coded = entropy.encode(member.model, x, level=member.level)
            levels = None if member.level is None else member.model.num_levels
            files, reconstructions = [], []
            for image in coded:
                data = write_bitstream(Bitstream(member.architecture, image.height, image.width, member.channels,
                                                 image.strings, bytes.fromhex(member.fingerprint), image.level,
                                                 levels))
                stream = read_bitstream(data)  # decode what the file holds, as a receiver would
                decoded = entropy.decode(member.model, entropy.CodedImage(stream.strings, stream.height, stream.width,
                                                                          stream.level))
                files.append(data)
                reconstructions.append(decoded)
        out = torch.cat(reconstructions).to(images.device, torch.float32)
        return CodedImages(out, [8 * len(f) for f in files], files)


def variable_rate_members(paths: Sequence[Path], loaded: Sequence[tuple[CompressionModel, str]]
                          ) -> list[FamilyMember]:
    """One member per rate level of each variable-rate model, labelled by its lambda, lowest first."""
    members: list[FamilyMember] = []
    for path, (model, arch) in zip(paths, loaded):
        if not is_variable_rate(model):
            raise ValueError(f"{str(path)!r} is a one-rate {arch} checkpoint, the others are variable-rate: a family "
                             "does not mix them. Register them as two codecs.")
        fingerprint, channels = model_fingerprint(model), channels_of(arch, model.state_dict())
        members += [FamilyMember(f"{lmbda:g}", path, model, arch, channels, fingerprint, level)
                    for level, lmbda in enumerate(model.lmbdas.tolist())]
    labels = [m.label for m in members]
    if len(set(labels)) != len(labels):
        raise ValueError(f"The variable-rate checkpoints {[str(p) for p in paths]} share lambdas ({labels}): a "
                         "family's operating points must differ. Register them as separate codecs.")
    return sorted(members, key=lambda m: float(m.label))


def register_learned_codec(name: str, checkpoints: str | os.PathLike | Sequence[str | os.PathLike],
                           architecture: str | None = None, overwrite: bool = True) -> None:
    """Register a family of checkpoints under ``name`` (loaded when ``create_codec(name)`` is called;
    ``device=`` may be passed there)."""
    paths = [str(p) for p in expand_checkpoints(checkpoints)]  # fail now on a missing file

    def make(device: str | torch.device = "cpu") -> LearnedCodec:
        return LearnedCodec.from_checkpoints(paths, architecture=architecture, name=name, device=device)

    register_codec(name, make, f"CompressAI family of {len(paths)} checkpoint(s): {', '.join(paths)}",
                   overwrite=overwrite)


register_codec("compressai", lambda **options: LearnedCodec.from_checkpoints(**options),
               "a family of CompressAI checkpoints (checkpoints=[...], architecture=...), one operating point per "
               "checkpoint, or per rate level of a variable-rate checkpoint")
