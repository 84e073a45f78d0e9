"""Task-model predictions cached on disk, so that a resumed labelling job never runs a model twice
on the same image; and the task models of a job, built once per process.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlclipsim.machine.predictions import load_predictions, save_predictions
from mlclipsim.machine.registry import create_task_model


class PredictionCache:
    """Task-model predictions on disk, one ``.npz`` per model, reference and image key."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, model: str, reference_id: str, key: str) -> Path:
        return self.root / model / reference_id / f"{key}.npz"

    def predict(self, model, reference_id: str, keys: Sequence[str], images: Sequence[np.ndarray]) -> list:
        """Predictions of ``model`` for ``images`` (uint8), loading those already cached."""
        out: list = [None] * len(keys)
        todo = []
        for i, key in enumerate(keys):
            path = self.path(model.name, reference_id, key)
            if path.is_file():
                try:
                    out[i] = load_predictions(path)[0]
                    continue
                except (OSError, ValueError, KeyError):
                    path.unlink()  # a damaged cache entry is recomputed
            todo.append(i)
        if todo:
            for i, pred in zip(todo, model.predict([images[i] for i in todo])):
                # what is stored (e.g. probability maps in 1/255 steps) is what every run scores, fresh or resumed
                out[i] = load_predictions(save_predictions(self.path(model.name, reference_id, keys[i]), pred))[0]
        return out


def load_task_models(names: Sequence[str], threads: int, options: dict) -> list:
    """Build the named task models once (per-model constructor options in ``options[name]``)."""
    return [create_task_model(name, threads=threads, **options.get(name, {})) for name in names]

