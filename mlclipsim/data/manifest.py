"""The dataset manifest: one CSV row per distorted image, and splitting by reference photo.

Columns (paths relative to the dataset folder):

| column | meaning |
| --- | --- |
| reference_id, photo, crop | the reference (``photo`` is the split key) |
| reference_path, distorted_path | PNG files |
| distortion, mode, roi_severity, bg_severity | what was done (mode: uniform, roi, background) |
| roi_fraction | share of the image inside the ROI mask (0 when the reference has no usable ROI) |
| psnr | PSNR of the distorted image against the reference, dB (data range 1) |
| consistency/<model> | agreement of the model's output on the distorted image with its reference output, [0,1] |
| mmos/<task> | mean machine opinion score of the task: mean over its models, [0,1] |
| mmos | mean over the tasks |
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

BASE_COLUMNS = ("reference_id", "photo", "crop", "reference_path", "distorted_path", "distortion", "mode",
                "roi_severity", "bg_severity", "roi_fraction", "psnr")
INT_COLUMNS = {"crop", "roi_severity", "bg_severity"}
TEXT_COLUMNS = {"reference_id", "photo", "reference_path", "distorted_path", "distortion", "mode",
                # pairs.csv (mlclipsim.data.build_pairs)
                "pair_id", "kind", "a_path", "b_path", "a_distortion", "b_distortion", "a_mode", "b_mode"}
"""Columns kept as strings even when they look like numbers (a photo named 0001 stays "0001")."""


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
