"""The rate-task study's rows: one JSON file per photo x codec x point while a run works, one
``rows.csv`` when it ends; the runner (:mod:`~mlclipsim.rate_task.study`) writes them and the curves
(:mod:`~mlclipsim.rate_task.curves`) read them, both through this module.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlclipsim.coding.interface import Point, format_point


def row_path(out: Path, codec: str, point: Point, photo: str) -> Path:
    return out / "rows" / codec / format_point(point) / f"{photo}.json"


def read_row(path: Path, task_models: Sequence[str]) -> dict | None:
    """A cached row if it is readable and holds every task model asked for, else None."""
    if not path.is_file():
        return None
    try:
        row = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not all(f"consistency/{m}" in row for m in task_models):
        return None
    return row


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + f".tmp{os.getpid()}")
    temporary.write_text(json.dumps(data, indent=1, allow_nan=True))
    os.replace(temporary, path)


_INT_COLUMNS = frozenset({"height", "width", "bits", "bytes", "rc_codings"})


_BOOL_COLUMNS = frozenset({"reached", "rc_monotone"})


_TEXT_COLUMNS = frozenset({"photo", "codec", "point", "chosen_point", "rc_probes"})


def _typed_row(row: dict[str, str]) -> dict[str, Any]:
    """A rows.csv row with the types the worker writes (empty cells: the key is absent; '' MS-SSIM: NaN)."""
    typed: dict[str, Any] = {}
    for key, text in row.items():
        if key in _TEXT_COLUMNS:
            if text != "":
                typed[key] = text
        elif key == "ms_ssim":
            typed[key] = float(text) if text != "" else math.nan
        elif text == "":
            continue
        elif key in _INT_COLUMNS:
            typed[key] = int(text)
        elif key in _BOOL_COLUMNS:
            if text not in ("True", "False"):
                raise ValueError(f"rows.csv: {key}={text!r} is not True/False.")
            typed[key] = text == "True"
        else:
            typed[key] = float(text)
    return typed


def read_rows_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a ``rows.csv`` a run wrote, typed as the worker writes them (see :func:`_typed_row`)."""
    with Path(path).open(newline="") as handle:
        return [_typed_row(row) for row in csv.DictReader(handle)]


def collect_rows(out: Path, photos: Sequence[str], codec_points: Mapping[str, Sequence[Point]],
                 task_models: Sequence[str]) -> tuple[list[dict], list[str]]:
    """Rows of the photos that have every (codec, point), sorted by codec order, point, photo;
    and the photos left out because a row is missing."""
    rows, incomplete = [], []
    for photo in sorted(photos):
        found = []
        for name, points in codec_points.items():
            for point in points:
                row = read_row(row_path(out, name, point, photo), task_models)
                if row is None:
                    break
                found.append(row)
            else:
                continue
            break
        else:
            rows.extend(found)
            continue
        incomplete.append(photo)
    order = {name: i for i, name in enumerate(codec_points)}
    point_order = {(name, format_point(p)): j for name, pts in codec_points.items() for j, p in enumerate(pts)}
    rows.sort(key=lambda r: (order[r["codec"]], point_order[(r["codec"], r["point"])], r["photo"]))
    return rows, incomplete


def write_csv(path: Path, rows: Sequence[dict], columns: Sequence[str] | None = None) -> Path:
    if columns is None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(row.get(k)) for k in columns})
    return path


def _csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return "" if value is None else value

