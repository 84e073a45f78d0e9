"""The dataset manifest: one CSV row per distorted image, and splitting by reference photo.

Columns (paths relative to the dataset folder):

| column | meaning |
| --- | --- |
| reference_id, photo, crop | the reference (``photo`` is the split key) |
| reference_path, distorted_path | PNG files |
| distortion, mode, roi_severity, bg_severity | what was done (mode: uniform, roi, background) |
| roi_fraction | share of the image inside the ROI mask (0 when the reference has no usable ROI) |
| psnr | PSNR of the distorted image against the reference, dB (data range 1) |
| draw | which independent draw of a stochastic type (only with ``draws > 1``) |
| label columns | per label set, below (:data:`LABEL_SETS`; pick one by name with :func:`label_column`) |

Label sets: the same three kinds of label, from two kinds of agreement score. Every consumer names a
label set (``labels="discrete"`` or ``"soft"``) and asks :func:`label_column` for the column, so a
model, a benchmark or a report switches labels with one word.

| label set | per model | per task | overall |
| --- | --- | --- | --- |
| ``discrete`` (default) | ``consistency/<model>`` | ``mmos/<task>`` | ``mmos`` |
| ``soft`` | ``soft/<model>`` | ``mmos_soft/<task>`` | ``mmos_soft`` |

- per model: agreement of the model's output on the distorted image with its output on the
  reference, in [0,1]. ``discrete``: discrete events (boxes kept at the model's threshold, top-1,
  mask at 0.5; :mod:`mlclipsim.machine.agreement`). ``soft``: continuous scores from the full
  outputs (:mod:`mlclipsim.machine.soft_agreement`), NaN where they do not apply (detection: the
  detector finds nothing on the clean reference).
- per task: mean over the task's voters (person models vote only on references with a person, see
  :mod:`mlclipsim.data.build_dataset`); ``soft``: NaN where any voter is NaN.
- overall: mean over the tasks; ``soft``: over the tasks whose label is defined (NaN if none is).

Preference pairs (``pairs.csv``, :mod:`mlclipsim.data.build_pairs`) carry the pair labels of each
label set: ``soft_label``, ``majority_label``, ``soft_label/<task>`` (discrete) and the same names
with the label set's suffix for the others (``soft_label@soft``, ``majority_label@soft``,
``soft_label/<task>@soft``); :func:`pair_label_column` names them.
"""

from __future__ import annotations

import csv
import difflib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BASE_COLUMNS = ("reference_id", "photo", "crop", "reference_path", "distorted_path", "distortion", "mode",
                "roi_severity", "bg_severity", "roi_fraction", "psnr")
INT_COLUMNS = {"crop", "roi_severity", "bg_severity"}
TEXT_COLUMNS = {"reference_id", "photo", "reference_path", "distorted_path", "distortion", "mode",
                # pairs.csv (mlclipsim.data.build_pairs)
                "pair_id", "kind", "a_path", "b_path", "a_distortion", "b_distortion", "a_mode", "b_mode"}
"""Columns kept as strings even when they look like numbers (a photo named 0001 stays "0001")."""


@dataclass(frozen=True)
class LabelSet:
    """Column names of one label set (see the module's table); ``{task}`` / ``{model}`` are filled in."""

    name: str
    overall: str
    task: str
    model: str
    pair_suffix: str
    description: str

    @property
    def model_prefix(self) -> str:
        """``consistency`` / ``soft``: the prefix of the per-model columns (before the ``/``)."""
        return self.model.split("/", 1)[0]

    @property
    def task_prefix(self) -> str:
        return self.task.split("/", 1)[0]


LABEL_SETS: dict[str, LabelSet] = {
    "discrete": LabelSet("discrete", "mmos", "mmos/{task}", "consistency/{model}", "",
                         "discrete agreement (boxes at the model's threshold, top-1, mask at 0.5)"),
    "soft": LabelSet("soft", "mmos_soft", "mmos_soft/{task}", "soft/{model}", "@soft",
                     "continuous agreement from the full outputs (NaN where a task does not apply)"),
}
"""The label sets a manifest can carry, by name (the module docstring documents the columns)."""

DEFAULT_LABELS = "discrete"


def label_set(labels: str) -> LabelSet:
    """The :class:`LabelSet` named ``labels``; an unknown name raises ValueError with the closest names."""
    if labels in LABEL_SETS:
        return LABEL_SETS[labels]
    close = difflib.get_close_matches(str(labels), LABEL_SETS, n=1, cutoff=0.4)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"Unknown label set {labels!r}; label sets are {list(LABEL_SETS)}.{hint}")


def label_column(labels: str = DEFAULT_LABELS, task: str | None = None, model: str | None = None) -> str:
    """The manifest column of a label: the overall one, one ``task``'s, or one ``model``'s.

    ``label_column("soft", task="detection")`` -> ``"mmos_soft/detection"``;
    ``label_column("discrete", model="centernet")`` -> ``"consistency/centernet"``; no task and no
    model -> the overall label (``"mmos"``, ``"mmos_soft"``).
    """
    chosen = label_set(labels)
    if task is not None and model is not None:
        raise ValueError(f"Give a task or a model, not both (got task={task!r}, model={model!r}).")
    if task is not None:
        return chosen.task.format(task=task)
    if model is not None:
        return chosen.model.format(model=model)
    return chosen.overall


def pair_label_column(labels: str = DEFAULT_LABELS, task: str | None = None, majority: bool = False) -> str:
    """The pairs.csv label of a label set: ``soft_label`` (share of voters preferring A),
    ``soft_label/<task>`` or, with ``majority``, ``majority_label``; other label sets than discrete
    add their suffix (``soft_label@soft``, ``soft_label/detection@soft``, ``majority_label@soft``)."""
    chosen = label_set(labels)
    if majority and task is not None:
        raise ValueError("Pairs carry a majority label overall only; give task or majority, not both.")
    base = "majority_label" if majority else "soft_label" if task is None else f"soft_label/{task}"
    return base + chosen.pair_suffix


def parse_pair_label_column(column: str) -> tuple[str, str, str | None] | None:
    """``(label set, kind, task)`` of a pairs.csv label, kind ``"soft"``, ``"majority"`` or ``"task"``
    (``"soft_label/detection@soft"`` -> ``("soft", "task", "detection")``); None for other columns."""
    for chosen in sorted(LABEL_SETS.values(), key=lambda s: -len(s.pair_suffix)):
        suffix = chosen.pair_suffix
        if suffix and not column.endswith(suffix):
            continue
        base = column[:len(column) - len(suffix)] if suffix else column
        if "@" in base:
            continue
        if base == "soft_label":
            return chosen.name, "soft", None
        if base == "majority_label":
            return chosen.name, "majority", None
        if base.startswith("soft_label/") and len(base) > len("soft_label/"):
            return chosen.name, "task", base[len("soft_label/"):]
    return None


def resolve_pair_target(target: str, labels: str | None) -> str:
    """The pairs.csv column for ``target`` (a pair label of any label set) in the label set ``labels``;
    ``labels=None`` keeps it as given (``resolve_pair_target("soft_label", "soft")`` -> ``"soft_label@soft"``)."""
    if labels is None:
        return target
    parsed = parse_pair_label_column(target)
    if parsed is None:
        others = [s for s in LABEL_SETS if s != DEFAULT_LABELS]
        raise ValueError(f"{target!r} is not a pair label; pair labels are soft_label, soft_label/<task> and "
                         f"majority_label, with a label set's suffix for {others} "
                         f"({', '.join(pair_label_column(s) for s in LABEL_SETS)}).")
    _, kind, task = parsed
    return pair_label_column(labels, task=task, majority=kind == "majority")


def parse_label_column(column: str) -> tuple[str, str, str | None] | None:
    """``(label set, kind, name)`` of a manifest label column, kind ``"overall"``, ``"task"`` or
    ``"model"`` (``"mmos_soft/detection"`` -> ``("soft", "task", "detection")``); None for other columns."""
    for chosen in LABEL_SETS.values():
        if column == chosen.overall:
            return chosen.name, "overall", None
        for kind, pattern in (("task", chosen.task), ("model", chosen.model)):
            prefix = pattern.split("{", 1)[0]
            if column.startswith(prefix) and len(column) > len(prefix):
                return chosen.name, kind, column[len(prefix):]
    return None


def resolve_target(target: str, labels: str | None) -> str:
    """The manifest column for ``target`` in the label set ``labels``.

    ``target`` names what to predict: an overall, task or model column of any label set (``"mmos"``,
    ``"mmos/detection"``, ``"consistency/centernet"``, ``"mmos_soft/detection"``) or a bare task name
    (``"detection"``). ``labels=None`` keeps a column as given (a bare task name then means the
    default label set); a label set maps the target to its own column
    (``resolve_target("mmos/detection", "soft")`` -> ``"mmos_soft/detection"``).
    """
    parsed = parse_label_column(target)
    if parsed is None:
        if "/" in target and labels is None:
            return target  # not a label column: the caller's check lists the columns it has
        if "/" in target:
            raise ValueError(f"{target!r} is not a label column; label columns are "
                             + ", ".join(f"{s.overall}, {s.task}, {s.model}" for s in LABEL_SETS.values())
                             + ", or give a bare task name.")
        parsed = (DEFAULT_LABELS, "task", target)
    elif labels is None:
        return target
    name, kind, what = parsed
    chosen = label_set(labels if labels is not None else name)
    if kind == "overall":
        return label_column(chosen.name)
    return label_column(chosen.name, **{kind: what})


def label_sets_of(columns: Iterable[str]) -> list[str]:
    """The label sets whose overall column is among ``columns``, in :data:`LABEL_SETS` order."""
    columns = set(columns)
    return [name for name, chosen in LABEL_SETS.items() if chosen.overall in columns]


def score_columns(fieldnames: Iterable[str], prefix: str) -> list[str]:
    """Columns starting with ``prefix/`` (e.g. ``consistency``), in file order."""
    return [name for name in fieldnames if name.startswith(prefix + "/")]


def write_rows(path: str | os.PathLike, rows: Sequence[dict], columns: Sequence[str] | None = None) -> None:
    """Write rows atomically (temporary file, then rename), so a killed run leaves no half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(columns or _columns_of(rows))
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="raise")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _format(row.get(k, "")) for k in columns})
    os.replace(temporary, path)


def read_rows(path: str | os.PathLike) -> list[dict]:
    """Read a manifest (or part) CSV; numbers come back as int/float."""
    with Path(path).open(newline="") as handle:
        return [{k: _parse(k, v) for k, v in row.items()} for row in csv.DictReader(handle)]


def read_header(path: str | os.PathLike) -> list[str]:
    with Path(path).open(newline="") as handle:
        return next(csv.reader(handle), [])


def _columns_of(rows: Sequence[dict]) -> list[str]:
    extra: list[str] = []
    for row in rows:
        extra += [k for k in row if k not in BASE_COLUMNS and k not in extra]
    ordered = [c for c in extra if c.startswith("consistency/")] + sorted(c for c in extra if c.startswith("mmos/"))
    ordered += [c for c in extra if c not in ordered]
    return [*BASE_COLUMNS, *ordered]


def _format(value: object) -> object:
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def _parse(key: str, value: str) -> object:
    if key in TEXT_COLUMNS or value == "":
        return value
    if key in INT_COLUMNS:
        return int(value)
    try:
        return float(value)
    except ValueError:
        return value


def split_by_photo(photos: Iterable[str], fractions: Sequence[float] = (0.8, 0.2), seed: int = 0) -> list[set[str]]:
    """Partition distinct photo names into groups of the given fractions (seeded shuffle).

    Every crop and distorted version of a photo lands in the group of its photo.
    """
    if any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be non-negative and sum to 1, got {fractions}")
    names = sorted(set(photos))
    order = np.random.default_rng(seed).permutation(len(names))
    bounds = np.round(np.cumsum([0, *fractions]) * len(names)).astype(int)
    return [{names[i] for i in order[bounds[k]:bounds[k + 1]]} for k in range(len(fractions))]
