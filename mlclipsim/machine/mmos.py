"""Mean machine opinion scores (MMOS): per task, a weighted mean of the task models' agreement.

For one image and one task with models m = 1..M and agreement scores s_m in [0, 1],
MMOS = Σ w_m s_m / Σ w_m, with weights w_m >= 0 given per model name (default: uniform).
The per-model scores and the normalised weights are kept in the result, so a label can be
re-weighted or broken down later without re-running the models.

:func:`mmos` does one task from given scores; :func:`mmos_by_task` groups a dict of per-model
scores by each model's task; :func:`machine_opinion` runs the models on distorted images,
compares with their output on the references (or cached reference predictions) and returns the
MMOS per task for every image; ``continuous=True`` averages the continuous agreement of
:mod:`mlclipsim.machine.soft_agreement` instead of the discrete one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlclipsim.machine.agreement import consistency
from mlclipsim.machine.predictions import TASKS, Prediction
from mlclipsim.machine.registry import task_of
from mlclipsim.machine.soft_agreement import soft_consistency


@dataclass(frozen=True)
class MMOS:
    """One task's mean machine opinion score of one image.

    Attributes:
        task: the task kind.
        score: the weighted mean, in [0, 1].
        per_model: each model's agreement score.
        weights: each model's weight, normalised to sum to 1.
    """

    task: str
    score: float
    per_model: dict[str, float] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "score": self.score, "per_model": dict(self.per_model),
                "weights": dict(self.weights)}


def mmos(per_model: Mapping[str, float], task: str, weights: Mapping[str, float] | None = None,
         allow_nan: bool = False) -> MMOS:
    """Weighted mean of one task's per-model scores.

    ``allow_nan=True`` is for continuous scores, which are NaN where a task does not apply to the
    reference (e.g. a detector finds nothing on it): the task's score is then NaN when any voter's is,
    as :func:`~mlclipsim.machine.soft_agreement.soft_task_labels` defines it.

    Raises:
        ValueError: no scores, a score outside [0, 1] or NaN (unless ``allow_nan``), a weight missing,
            negative, or all zero.
    """
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}; tasks: {TASKS}")
    if not per_model:
        raise ValueError(f"No model scores for task {task!r}")
    for name, value in per_model.items():
        if allow_nan and isinstance(value, (float, np.floating)) and math.isnan(value):
            continue
        if not (isinstance(value, (int, float, np.floating)) and 0.0 <= float(value) <= 1.0):
            raise ValueError(f"Score of {name!r} is {value!r}; agreement scores are floats in [0, 1]")
    if weights is None:
        raw = dict.fromkeys(per_model, 1.0)
    else:
        missing = sorted(set(per_model) - set(weights))
        if missing:
            raise ValueError(f"No weight for model(s) {missing}; give every model of task {task!r} a weight")
        raw = {name: float(weights[name]) for name in per_model}
        if any(w < 0 or math.isnan(w) for w in raw.values()):
            raise ValueError(f"Weights must be >= 0, got {raw}")
    total = sum(raw.values())
    if total <= 0:
        raise ValueError(f"The weights of task {task!r} sum to 0: {raw}")
    norm = {name: w / total for name, w in raw.items()}
    score = sum(norm[name] * float(per_model[name]) for name in per_model)
    score = score if math.isnan(score) else min(1.0, max(0.0, score))
    return MMOS(task, float(score), {k: float(v) for k, v in per_model.items()}, norm)


def mmos_by_task(per_model: Mapping[str, float], tasks: Mapping[str, str] | None = None,
                 weights: Mapping[str, float] | None = None, allow_nan: bool = False) -> dict[str, MMOS]:
    """Group per-model scores by task and average each group.

    Args:
        per_model: model name -> agreement score.
        tasks: model name -> task (default: the registry's task of each name).
        weights: model name -> weight (default uniform within each task).
        allow_nan: continuous scores may be NaN (see :func:`mmos`).
    """
    if tasks is None:
        tasks = {name: task_of(name) for name in per_model}
    groups: dict[str, dict[str, float]] = {}
    for name, value in per_model.items():
        if name not in tasks:
            raise ValueError(f"No task given for model {name!r}")
        groups.setdefault(tasks[name], {})[name] = value
    out = {}
    for task, scores in groups.items():
        task_weights = None if weights is None else {n: weights[n] for n in scores if n in weights}
        out[task] = mmos(scores, task, task_weights, allow_nan=allow_nan)
    return out


def machine_opinion(models: Sequence[Any], distorted: Sequence[np.ndarray],
                    reference: Sequence[np.ndarray] | Mapping[str, Sequence[Prediction]],
                    weights: Mapping[str, float] | None = None,
                    scores: Mapping[str, str] | None = None, continuous: bool = False) -> list[dict[str, MMOS]]:
    """MMOS per task for each distorted image, against its reference.

    Args:
        models: task models (anything with ``name``, ``task``, ``predict``); names must be unique.
        distorted: uint8 RGB images.
        reference: the reference images (same order and sizes), or already computed reference
            predictions per model name (e.g. loaded from a cache).
        weights: model name -> weight (default uniform per task).
        scores: task -> score name (default: each task's default score).
        continuous: score with :func:`~mlclipsim.machine.soft_agreement.soft_consistency` (the
            continuous scores; ``scores`` then names continuous score names).
    """
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ValueError(f"Model names must be unique, got {names}")
    per_image: list[dict[str, float]] = [{} for _ in distorted]
    for model in models:
        if isinstance(reference, Mapping):
            if model.name not in reference:
                raise ValueError(f"No cached reference predictions for {model.name!r}")
            ref_preds = list(reference[model.name])
        else:
            ref_preds = model.predict(list(reference))
        dist_preds = model.predict(list(distorted))
        if len(ref_preds) != len(dist_preds):
            raise ValueError(f"{len(dist_preds)} distorted images but {len(ref_preds)} references "
                             f"for {model.name!r}")
        score_name = None if scores is None else scores.get(model.task)
        for i, (d, r) in enumerate(zip(dist_preds, ref_preds)):
            score_fn = soft_consistency if continuous else consistency
            per_image[i][model.name] = score_fn(model, d, r, score=score_name)
    tasks = {m.name: m.task for m in models}
    return [mmos_by_task(s, tasks, weights, allow_nan=continuous) for s in per_image]
