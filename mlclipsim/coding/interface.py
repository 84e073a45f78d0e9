"""One interface for every codec of the rate-task study, and the codec registry keyed by name.

A codec maps a batch of images to reconstructions and the **true size in bits of each file it
produced** (container or bitstream header and shape bytes included; never an entropy estimate):

    codec = create_codec("webp")
    coded = codec.code(images, 50)          # images (N,3,H,W) float in [0,1], point = quality 50
    coded.reconstructions                   # (N,3,H,W) float32 in [0,1]
    coded.bits                              # N ints: 8 x the byte length of each file
    coded.files                             # N bytes objects: the files themselves

Every codec has

- ``name``: its registry name (``"jpeg"``, ``"webp@mlclipsim"``, a learned family's name);
- ``points``: the default operating points, ordered from the lowest to the highest rate;
- ``ladder``: every valid operating point in the same order (all qualities 1..100 of a classic
  codec; the checkpoints of a learned family); rate control searches it;
- ``suffix``: the file suffix of what it writes (``".webp"``, ``".bin"``);
- ``parse_point(text)`` / ``check_point(point)``: a point from the command line, and its check.

Registered here on first use: ``jpeg``, ``webp``, ``avif``, ``jxl``
(:mod:`~mlclipsim.coding.pillow_codecs`) and ``compressai`` (a family of CompressAI
checkpoints, :mod:`~mlclipsim.coding.learned`; ``register_learned_codec`` names one).
A name ``BASE@mlclipsim`` is the base codec under ML-CLIPSim rate control
(:mod:`~mlclipsim.coding.rate_control`): its points are ML-CLIPSim targets.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from mlclipsim.core.registry import ENTRY_POINT_GROUPS, Registry, first_doc_line

Point = int | float | str
CodecFactory = Callable[..., "Codec"]


class CodedImages(NamedTuple):
    """What :meth:`Codec.code` returns.

    Attributes:
        reconstructions: (N,3,H,W) float32 in [0,1], the decoded files, on the input's device.
        bits: N ints, 8 x the byte length of each file (headers included).
        files: N bytes objects, the files (write them with the codec's ``suffix``).
        details: per image, what a codec chose (e.g. rate control's quality and score); may be empty.
    """

    reconstructions: torch.Tensor
    bits: list[int]
    files: list[bytes]
    details: tuple[dict[str, Any], ...] = ()


class Codec(abc.ABC):
    """Base class: validates images and points, then calls :meth:`_code`."""

    name: str = ""
    suffix: str = ".bin"

    @property
    @abc.abstractmethod
    def points(self) -> tuple[Point, ...]:
        """Default operating points, lowest rate first."""

    @property
    def ladder(self) -> tuple[Point, ...]:
        """Every valid operating point, lowest rate first (default: :attr:`points`)."""
        return self.points

    def parse_point(self, text: str) -> Point:
        """A point from its text form (the ``:points`` of ``--codec NAME:points``), checked."""
        for point in self.ladder:
            if str(point) == text.strip():
                return point
        raise ValueError(self._bad_point_message(text))

    def check_point(self, point: Point) -> Point:
        """``point`` if it is valid for this codec; ValueError naming the valid ones otherwise."""
        if point in self.ladder:
            return point
        raise ValueError(self._bad_point_message(point))

    def rate_order(self, point: Point) -> float:
        """A sort key of a checked point: larger means more bits (default: its place on the ladder)."""
        return float(list(self.ladder).index(point))

    def _bad_point_message(self, point: Any) -> str:
        ladder = self.ladder
        shown = (", ".join(map(str, ladder)) if len(ladder) <= 12
                 else f"{ladder[0]}..{ladder[-1]} ({len(ladder)} points)")
        return f"Codec {self.name!r} has no operating point {point!r}; valid points: {shown}."

    def code(self, images: torch.Tensor, point: Point) -> CodedImages:
        """Encode each image of ``images`` (N,3,H,W) float in [0,1] at ``point`` into a file and decode it."""
        check_codec_images(images)
        point = self.check_point(point)
        coded = self._code(images, point)
        if len(coded.bits) != images.shape[0] or tuple(coded.reconstructions.shape) != tuple(images.shape):
            raise RuntimeError(f"Codec {self.name!r} returned {len(coded.bits)} sizes and reconstructions of shape "
                               f"{tuple(coded.reconstructions.shape)} for images of shape {tuple(images.shape)}.")
        return coded

    @abc.abstractmethod
    def _code(self, images: torch.Tensor, point: Point) -> CodedImages:
        """Subclasses: code validated images at a validated point."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, points={list(self.points)})"


def check_codec_images(images: Any) -> None:
    """(N,3,H,W) floating tensor, finite, in [0,1]; ValueError/TypeError saying what is wrong."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"A codec takes a torch.Tensor (N,3,H,W) in [0,1], got {type(images).__name__}.")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"A codec takes (N,3,H,W) RGB images, got shape {tuple(images.shape)} (for one image "
                         "(3,H,W) use images[None]).")
    if not images.is_floating_point():
        raise ValueError(f"A codec takes float images in [0,1], got dtype {images.dtype} (divide uint8 by 255).")
    if images.numel() == 0 or min(images.shape[-2:]) < 1:
        raise ValueError(f"Empty images: shape {tuple(images.shape)}.")
    if not torch.isfinite(images).all():
        raise ValueError("Images contain NaN or inf values.")
    low, high = float(images.min()), float(images.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(f"Images must be in [0,1], got values in [{low:.4g}, {high:.4g}].")


def bits_per_pixel(bits: int | float, height: int, width: int) -> float:
    """Bits per pixel of a file of ``bits`` bits for an image of height x width pixels."""
    return float(bits) / float(height * width)


# ----------------------------------------------------------------------------- registry


def register_codec(name: str, factory: CodecFactory, description: str = "", overwrite: bool = False) -> None:
    """Register ``factory`` (called as ``factory(**options)``, returns a :class:`Codec`) under ``name``."""
    if not isinstance(name, str) or not name or "@" in name or ":" in name or "," in name:
        raise ValueError(f"A codec name must be non-empty without '@', ':' or ',', got {name!r}.")
    CODECS.register(name, factory, description, overwrite=overwrite)


def register_codec_modifier(name: str, factory: Callable[..., Codec], description: str = "",
                            overwrite: bool = False) -> None:
    """Register ``BASE@name``: ``factory(base_codec, **options)`` returns the wrapped codec."""
    CODEC_MODIFIERS.register(name, factory, description, overwrite=overwrite)


CODECS: Registry[CodecFactory] = Registry(
    "codec", ENTRY_POINT_GROUPS["codec"],
    unknown_message="Unknown codec {name!r}. Registered codecs: {names}; append @MODIFIER for rate control "
                    "(list_modifiers(), e.g. webp@mlclipsim). A family of CompressAI checkpoints gets a name with "
                    "register_learned_codec (or --learned NAME=GLOB on the command line).",
    register_entry_point=lambda name, factory: register_codec(name, factory, first_doc_line(factory)))
"""Registered codecs (plugins: entry-point group ``mlclipsim.codecs``, pointing at a factory of a :class:`Codec`)."""

CODEC_MODIFIERS: Registry[Callable[..., Codec]] = Registry(
    "codec modifier", ENTRY_POINT_GROUPS["codec modifier"],
    unknown_message="Unknown codec modifier {name!r}; valid: {names}.")
"""``BASE@<name>`` wrappers, ``factory(base_codec, **options)`` (plugins: group ``mlclipsim.codec_modifiers``)."""


def list_codecs() -> list[str]:
    """Registered codec names, sorted (any of them may take a ``@<modifier>`` suffix, see :func:`list_modifiers`)."""
    return CODECS.names()


def list_modifiers() -> list[str]:
    return CODEC_MODIFIERS.names()


def describe_codecs() -> dict[str, str]:
    """Name -> description of every registered codec and modifier (``BASE@name``)."""
    out = CODECS.describe()
    out.update({f"BASE@{name}": text for name, text in CODEC_MODIFIERS.describe().items()})
    return out


def create_codec(name: str, /, base_options: dict[str, Any] | None = None, **options: Any) -> Codec:
    """Build a codec by name.

    ``name`` is a registered name, or ``BASE@MODIFIER`` (e.g. ``"webp@mlclipsim"``): the base codec
    is built with ``base_options`` and wrapped by the modifier with ``options`` (for ``@mlclipsim``:
    ``backbone=`` or ``scorer=``, ``targets=``). Without a modifier, ``options`` go to the factory.

    Raises:
        ValueError: unknown name or modifier (the message lists the valid ones).
    """
    base_name, _, modifier = name.partition("@")
    base_factory = CODECS[base_name]
    if not modifier:
        if base_options:
            raise ValueError("base_options apply to BASE@MODIFIER names only; pass the options directly.")
        return base_factory(**options)
    if modifier not in CODEC_MODIFIERS:
        raise CODEC_MODIFIERS.unknown(modifier, "Unknown codec modifier {name!r} in {full!r}; valid: {valid}.",
                                      full=name, valid=", ".join("@" + m for m in list_modifiers()))
    base = base_factory(**(base_options or {}))
    return CODEC_MODIFIERS[modifier](base, **options)


# ----------------------------------------------------------------------------- specs "NAME[:points]"


@dataclass(frozen=True)
class CodecSpec:
    """A codec name with the operating points asked for (None: the codec's default points)."""

    name: str
    points: tuple[str, ...] | None = None

    def __str__(self) -> str:
        return self.name if self.points is None else f"{self.name}:{','.join(self.points)}"


def parse_codec_spec(text: str) -> CodecSpec:
    """``"webp"`` or ``"webp:10,30,50"`` -> :class:`CodecSpec` (points checked later, by the codec)."""
    name, sep, points = text.strip().partition(":")
    if not name:
        raise ValueError(f"A codec spec is NAME or NAME:P1,P2,..., got {text!r}.")
    if not sep:
        return CodecSpec(name)
    parts = tuple(p.strip() for p in points.split(","))
    if not parts or any(not p for p in parts):
        raise ValueError(f"Codec spec {text!r} has an empty operating point; write NAME:P1,P2,... "
                         "(e.g. jpeg:10,30,50).")
    if len(set(parts)) != len(parts):
        raise ValueError(f"Codec spec {text!r} repeats an operating point.")
    return CodecSpec(name, parts)


def resolve_points(codec: Codec, spec: CodecSpec) -> tuple[Point, ...]:
    """The checked operating points of ``spec`` for ``codec``, in the codec's ladder order."""
    if spec.points is None:
        return tuple(codec.points)
    points = [codec.parse_point(p) for p in spec.points]
    if len(set(map(str, points))) != len(points):
        raise ValueError(f"Codec spec {spec} names an operating point twice.")
    return tuple(sorted(points, key=codec.rate_order))


def format_point(point: Point) -> str:
    """The text form of a point (the inverse of :meth:`Codec.parse_point`)."""
    return str(point)


def unique_names(specs: Sequence[CodecSpec]) -> None:
    names = [s.name for s in specs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"Codec(s) {repeated} given more than once; give each once with all its points.")
