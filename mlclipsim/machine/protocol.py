"""The one protocol every task model follows.

A task model has a ``name`` (its registry name), a ``task`` (one of :data:`TASKS`) and
``predict(images) -> list[Prediction]``:

- ``images``: a list of uint8 ``(H, W, 3)`` RGB numpy arrays of any sizes (or one ``(N, H, W, 3)``
  array); every prediction is in the pixel coordinates of its own image;
- the network is loaded once, in ``__init__`` (no lazy download, no random weights);
- ``threads`` bounds the CPU threads used: onnxruntime's ``intra_op_num_threads`` of the model's
  sessions, and ``torch.set_num_threads`` for the duration of ``predict`` only (restored after).

Write a new model by subclassing :class:`TaskModel` and implementing ``_predict``; any object
with the same three attributes satisfies :class:`TaskModelProtocol` and can be registered too.
"""

from __future__ import annotations

import abc
import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mlclipsim.machine.predictions import TASKS, Prediction

DEFAULT_THREADS = 2
"""Default CPU threads per model: small and fixed, so scores and timings do not depend on the host."""


@runtime_checkable
class TaskModelProtocol(Protocol):
    name: str
    task: str

    def predict(self, images: Sequence[np.ndarray]) -> list[Prediction]: ...


def check_images(images: Any) -> list[np.ndarray]:
    """Validate a batch: list of uint8 (H, W, 3) arrays, or one (N, H, W, 3) uint8 array.

    Raises:
        TypeError / ValueError: saying what was wrong (type, dtype, shape).
    """
    if isinstance(images, np.ndarray):
        if images.ndim == 3:
            raise ValueError("predict() takes a batch: wrap a single (H, W, 3) image in a list")
        if images.ndim != 4:
            raise ValueError("Expected a list of (H, W, 3) images or an (N, H, W, 3) array, "
                             f"got shape {images.shape}")
        images = list(images)
    if not isinstance(images, (list, tuple)):
        raise TypeError(f"Expected a list of uint8 (H, W, 3) RGB numpy arrays, got {type(images).__name__}")
    out = []
    for i, img in enumerate(images):
        if not isinstance(img, np.ndarray):
            raise TypeError(f"Image {i} is a {type(img).__name__}; convert it with "
                            "np.asarray(pil_image.convert('RGB'))")
        if img.dtype != np.uint8:
            raise ValueError(f"Image {i} has dtype {img.dtype}; task models take uint8 RGB 0..255 "
                             "(for floats in [0,1]: (x * 255).round().astype(np.uint8))")
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"Image {i} has shape {img.shape}; expected (H, W, 3) RGB")
        if img.shape[0] < 1 or img.shape[1] < 1:
            raise ValueError(f"Image {i} is empty: shape {img.shape}")
        out.append(np.ascontiguousarray(img))
    return out


def resolve_threads(threads: int | None) -> int:
    if threads is None:
        return max(1, min(DEFAULT_THREADS, os.cpu_count() or 1))
    if int(threads) < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return int(threads)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run a block with ``torch.set_num_threads(threads)`` and restore the previous value."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class TaskModel(abc.ABC):
    """Base class: validates the batch, scopes torch threads, calls :meth:`_predict`.

    Attributes:
        name: the registry name (``"centernet"``).
        task: one of :data:`TASKS`.
        threads: CPU threads (default :data:`DEFAULT_THREADS`).
        source: where the weights were read from (a file path or a description), for provenance.
    """

    name: str = ""
    task: str = ""
    uses_torch: bool = False

    def __init__(self, threads: int | None = None) -> None:
        if self.task not in TASKS:
            raise TypeError(f"{type(self).__name__}.task must be one of {TASKS}, got {self.task!r}")
        self.threads = resolve_threads(threads)
        self.source: str = ""

    def predict(self, images: Sequence[np.ndarray] | np.ndarray) -> list[Prediction]:
        """Predictions for a batch of uint8 (H, W, 3) RGB images, one per image, in image pixels."""
        batch = check_images(images)
        if not batch:
            return []
        context = torch_threads(self.threads) if self.uses_torch else contextlib.nullcontext()
        with context:
            preds = self._predict(batch)
        if len(preds) != len(batch):
            raise RuntimeError(f"{self.name} returned {len(preds)} predictions for {len(batch)} images")
        return preds

    __call__ = predict

    @abc.abstractmethod
    def _predict(self, images: list[np.ndarray]) -> list[Prediction]:
        """Subclasses: predictions for validated uint8 RGB images."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, task={self.task!r}, threads={self.threads})"


class OnnxTaskModel(TaskModel):
    """A task model around onnxruntime sessions made on the CPU with ``threads`` intra-op threads."""

    def _session(self, path: str | os.PathLike):
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise ImportError(f"{self.name} needs onnxruntime: pip install onnxruntime "
                              "(part of mlclipsim[offline])") from err
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        return ort.InferenceSession(str(Path(path)), options, providers=["CPUExecutionProvider"])
