"""Any codec of the codec registry as a graded distortion type, so the data engine labels what a codec
(and a codec trained with a machine loss) actually produces.

    register_codec_distortions({"mbt2018-mean-vr": "runs/mbt2018-mean-vr_base.pth", "webp": None})
    -> distortion types "codec_mbt2018-mean-vr" and "codec_webp"

The image goes through the codec's real bitstream (:meth:`mlclipsim.coding.interface.Codec.code`): what
a receiver decodes, not a forward pass with simulated quantisation. Severity 1 is the codec's
highest-rate default operating point and severity 5 its lowest; in between, points evenly spaced along
those (a variable-rate learned model with five lambdas uses all five; WebP its qualities 90, 70, 40, 20,
5). The parameter is the index of the point in the ladder (lowest rate first), an integer, so PSNR
matching works on that grid.

The registration lives in the data engine, above the codecs, because the distortion registry sits
below them; a dataset build records the mapping (``BuildConfig.codec_distortions``), and every worker
process registers it again (a spawned process starts with an empty registry).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from mlclipsim.coding import create_codec, list_codecs, register_learned_codec
from mlclipsim.coding.interface import Codec
from mlclipsim.core.images import array_to_tensor, tensor_to_array
from mlclipsim.distortions.registry import DISTORTIONS, NUM_SEVERITIES, Distortion, Param, register_distortion

PREFIX = "codec_"


def distortion_name(codec: str) -> str:
    """The distortion type of ``codec``: ``"webp"`` -> ``"codec_webp"``."""
    return PREFIX + codec


def severity_indices(num_points: int) -> tuple[int, ...]:
    """Ladder indices (lowest rate first) of severities 1..5: the highest-rate point first, the lowest last,
    evenly spaced in between.

    >>> severity_indices(5), severity_indices(100)
    ((4, 3, 2, 1, 0), (99, 74, 50, 25, 0))
    """
    if num_points < NUM_SEVERITIES:
        raise ValueError(f"A codec distortion needs at least {NUM_SEVERITIES} operating points (one per severity), "
                         f"the codec has {num_points}. Train or register a family with more rates.")
    return tuple(int(round(i)) for i in np.linspace(num_points - 1, 0, NUM_SEVERITIES))


def codec_distortion(codec: Codec, name: str) -> Distortion:
    """A :class:`~mlclipsim.distortions.registry.Distortion` that codes an image with ``codec`` and decodes it."""
    points = codec.points
    indices = severity_indices(len(points))

    def fn(image: np.ndarray, param: Param, rng: np.random.Generator) -> np.ndarray:
        index = int(round(float(param)))
        if not 0 <= index < len(points):
            raise ValueError(f"{name}: point index {param} outside the codec's ladder 0..{len(points) - 1}")
        with torch.no_grad():
            coded = codec.code(array_to_tensor(image).unsqueeze(0), points[index])
        return tensor_to_array(coded.reconstructions[0]).astype(np.float32) / 255.0  # what a file holds: 8 bits

    doc = (f"codec {codec.name!r} through its real bitstream; parameter = index into its operating points (lowest "
           f"rate first); severities 1..5 = points {[str(points[i]) for i in indices]}")
    return Distortion(name=name, fn=fn, severity_params=tuple(float(i) for i in indices), doc=doc,
                      integer_param=True)


def register_codec_distortions(codecs: Mapping[str, str | os.PathLike | None]) -> list[str]:
    """Register one distortion type per codec and return their names, in order.

    ``codecs`` maps a codec name to the checkpoint(s) of a learned family (a path or glob: it is registered
    as a codec under that name first) or to None for a codec already registered (``"webp"``). A name
    registered before is kept (the call is idempotent: workers repeat it).
    """
    names = []
    for codec, checkpoints in codecs.items():
        name = distortion_name(codec)
        names.append(name)
        if name in DISTORTIONS.names():
            continue
        if checkpoints is not None:
            register_learned_codec(codec, str(Path(checkpoints)) if not isinstance(checkpoints, str) else checkpoints)
        elif codec not in list_codecs():
            raise ValueError(f"Unknown codec {codec!r}: give a registered codec ({', '.join(list_codecs())}) or "
                             f"NAME=CHECKPOINT for a learned family.")
        register_distortion(codec_distortion(create_codec(codec), name))
    return names


def parse_codec_distortions(specs: list[str]) -> dict[str, str | None]:
    """Command-line form: ``NAME=CHECKPOINTS`` (a learned family) or ``NAME`` (a registered codec)."""
    out: dict[str, str | None] = {}
    for spec in specs:
        name, _, checkpoints = spec.partition("=")
        if not name:
            raise ValueError(f"Bad --codec-distortions entry {spec!r}: write NAME or NAME=CHECKPOINTS.")
        out[name] = checkpoints or None
    return out
