"""``mlclipsim build-pairs``: preference pairs of two distortions of one reference, labelled by machines.

Two kinds of pair, both written to ``pairs.csv`` in the dataset folder:

- ``psnr_matched`` (PCMP): for each reference, ``pairs_per_reference`` pairs of two different
  distortion types (drawn without repeats, seeded by the reference id) distorted uniformly to the
  same PSNR within ``tol_db`` (:func:`mlclipsim.distortions.match_psnr`). The target PSNR is type A
  at a continuous severity drawn from [1.5, 4]. Pairs that cannot be matched (a type cannot reach
  the target, or JPEG's integer quality misses the tolerance) are dropped and replaced by the next
  drawn pair, up to ``3 * pairs_per_reference`` attempts. PSNR is at chance on these by construction.
  Images go to ``pairs/<reference_id>/<pair_id>_{a,b}.png``.
- ``roi_vs_background``: from the dataset itself, for every reference, type and severity pair
  (r, b) with r > b, image A is the background-dominated version (ROI at b, background at r: the
  cleaner ROI) and image B the ROI-dominated one (ROI at r, background at b).

Labels, from the same task models as the dataset (their cached reference predictions are reused):
``soft_label`` is the share of models whose consistency on A is higher than on B (ties count 1/2);
``majority_label`` is 1 when soft_label > 1/2 (A preferred), 0 when < 1/2, and 1/2 for a tie;
``soft_label/<task>`` is the same share within one task's models. Per image the scores they come
from are kept (``a_consistency/<model>``, ``b_consistency/<model>``).

Label sets (:data:`mlclipsim.data.manifest.LABEL_SETS`): the labels above are the ``discrete`` set.
Where the manifest carries the continuous ``soft/<model>`` columns, every pair also gets the same
labels from the continuous scores, under the same names with the suffix ``@soft``:
``soft_label@soft``, ``majority_label@soft``, ``soft_label/<task>@soft``, from ``a_soft/<model>``,
``b_soft/<model>`` (:func:`mlclipsim.machine.soft_agreement.soft_consistency`, the builder's own
scoring; the PSNR-matched images are scored here, ROI-vs-background pairs read the manifest). They
follow the manifest's continuous labels: the person models of the build (``person_models``) vote only
on references where a COCO detector finds a person, a task whose voters are not all defined on both
images (NaN: e.g. a detector finds nothing on the reference) drops out, and a pair with no task left
is NaN (``mlclipsim.data.datamodules`` drops such pairs with a warning). ``pairs_info.json`` records
the label sets the pairs carry (``label_sets``). A dataset without ``soft/`` columns gets the discrete
labels only, as before.
Resumable per reference (``pair_parts/<reference_id>.csv``), deterministic, and run through
:mod:`mlclipsim.machine.labelling`.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mlclipsim.core.images import read_image_array
from mlclipsim.data.build_dataset import has_person
from mlclipsim.data.codec_distortions import register_codec_distortions
from mlclipsim.data.manifest import LABEL_SETS, label_column, pair_label_column, read_header, read_rows, write_rows
from mlclipsim.data.references import stable_seed
from mlclipsim.distortions import PSNRMatchError, distort_with_param, get_distortion, match_psnr, psnr
from mlclipsim.machine.agreement import consistency
from mlclipsim.machine.labelling import run_labelling
from mlclipsim.machine.prediction_cache import PredictionCache, load_task_models
from mlclipsim.machine.soft_agreement import soft_consistency

PAIR_COLUMNS = ("pair_id", "kind", "reference_id", "photo", "reference_path", "a_path", "b_path",
                "a_distortion", "b_distortion", "a_mode", "b_mode", "a_roi_severity", "a_bg_severity",
                "b_roi_severity", "b_bg_severity", "a_psnr", "b_psnr")


@dataclass
class PairsConfig:
    """Settings of one pairs build (recorded in pairs_info.json)."""

    dataset: Path
    pairs_per_reference: int = 8
    tol_db: float = 0.25
    distortions: tuple[str, ...] | None = None  # None: the dataset's distortion types
    seed: int = 0
    threads: int = 1
    processes: int = 1
    include_roi_vs_background: bool = True

    def __post_init__(self) -> None:
        self.dataset = Path(self.dataset)
        info = self.dataset / "build_info.json"
        if not (self.dataset / "manifest.csv").is_file() or not info.is_file():
            raise FileNotFoundError(f"{self.dataset} has no manifest.csv/build_info.json; build the dataset first "
                                    "with `mlclipsim build-dataset`.")
        build = json.loads(info.read_text())["config"]
        self.task_models = tuple(build["task_models"])
        self.model_options = build.get("model_options", {})
        self.codec_distortions = build.get("codec_distortions", {})
        register_codec_distortions(self.codec_distortions)
        if self.distortions is None:
            self.distortions = tuple(build["distortions"])
        self.person_models = tuple(build.get("person_models", ()))
        self.label_sets = pair_label_sets(read_header(self.dataset / "manifest.csv"), self.task_models)


def pair_label_sets(columns: list[str], task_models: tuple[str, ...]) -> tuple[str, ...]:
    """The label sets whose per-model columns the manifest holds for every task model (discrete always)."""
    columns = set(columns)
    return ("discrete", *(name for name in LABEL_SETS if name != "discrete"
                          and all(label_column(name, model=m) in columns for m in task_models)))


def preference(scores_a: dict[str, float], scores_b: dict[str, float]) -> float:
    """Share of models preferring A (higher consistency), ties counted 1/2."""
    votes = [1.0 if scores_a[m] > scores_b[m] else 0.0 if scores_a[m] < scores_b[m] else 0.5 for m in scores_a]
    return float(np.mean(votes))


def majority(soft: float) -> float:
    """1 (A preferred), 0 (B) or 1/2 (tie) from a soft label; NaN stays NaN."""
    if np.isnan(soft):
        return float("nan")
    return 1.0 if soft > 0.5 else 0.0 if soft < 0.5 else 0.5


def defined_preference(scores_a: dict[str, float], scores_b: dict[str, float], tasks: dict[str, str],
                       voters: list[str]) -> tuple[float, dict[str, float]]:
    """Overall and per-task preference for A from continuous scores that may be NaN.

    A task's preference is NaN where any of its voters is NaN on either image (as the manifest's
    ``mmos_soft/<task>``); the overall one is the share over the voters of the defined tasks (NaN if none)."""
    per_task: dict[str, float] = {}
    counted: list[str] = []
    for task in sorted(set(tasks.values())):
        names = [m for m in voters if tasks[m] == task]
        if not names or any(np.isnan(scores_a[m]) or np.isnan(scores_b[m]) for m in names):
            per_task[task] = float("nan")
            continue
        per_task[task] = preference({m: scores_a[m] for m in names}, {m: scores_b[m] for m in names})
        counted += names
    if not counted:
        return float("nan"), per_task
    return preference({m: scores_a[m] for m in counted}, {m: scores_b[m] for m in counted}), per_task


class PairsLabeller:
    """Per process: loads the task models once; ``process(reference_id)`` writes that reference's pairs."""

    def __init__(self, config: PairsConfig) -> None:
        self.config = config
        register_codec_distortions(config.codec_distortions)  # a spawned worker starts with an empty registry
        self.models = load_task_models(config.task_models, config.threads, config.model_options)
        self.tasks = {m.name: m.task for m in self.models}
        self.cache = PredictionCache(config.dataset / "predictions")
        rows = read_rows(config.dataset / "manifest.csv")
        self.rows_by_reference: dict[str, list[dict]] = defaultdict(list)
        for row in rows:
            self.rows_by_reference[row["reference_id"]].append(row)

    def process(self, reference_id: str) -> dict:
        rows = self.rows_by_reference[reference_id]
        first = rows[0]
        reference = read_image_array(self.config.dataset / first["reference_path"])
        reference_preds = {m.name: self.cache.predict(m, reference_id, ["reference"], [reference])[0]
                           for m in self.models}
        # the voters of the continuous labels, as in the manifest (person models only where a person is found)
        self.voters = [m.name for m in self.models
                       if m.name not in self.config.person_models or has_person(reference_preds)]
        pairs = self._psnr_matched(reference_id, first, reference, reference_preds)
        if self.config.include_roi_vs_background:
            pairs += self._roi_vs_background(rows)
        write_rows(self.config.dataset / "pair_parts" / f"{reference_id}.csv", pairs, pair_columns(pairs))
        return {"reference_id": reference_id, "pairs": len(pairs)}

    def _labels(self, scores_a: dict[str, float], scores_b: dict[str, float]) -> dict:
        soft = preference(scores_a, scores_b)
        out = {f"a_consistency/{m}": v for m, v in scores_a.items()}
        out.update({f"b_consistency/{m}": v for m, v in scores_b.items()})
        out.update({"soft_label": soft, "majority_label": majority(soft)})
        for task in sorted(set(self.tasks.values())):
            names = [m for m in scores_a if self.tasks[m] == task]
            out[f"soft_label/{task}"] = preference({m: scores_a[m] for m in names}, {m: scores_b[m] for m in names})
        return out

    def _set_labels(self, labels: str, scores_a: dict[str, float], scores_b: dict[str, float]) -> dict:
        """The pair labels of a label set other than discrete (suffixed names; module docstring)."""
        prefix = LABEL_SETS[labels].model_prefix
        soft, per_task = defined_preference(scores_a, scores_b, self.tasks, self.voters)
        out = {f"a_{prefix}/{m}": v for m, v in scores_a.items()}
        out.update({f"b_{prefix}/{m}": v for m, v in scores_b.items()})
        out.update({pair_label_column(labels): soft, pair_label_column(labels, majority=True): majority(soft)})
        out.update({pair_label_column(labels, task=task): value for task, value in per_task.items()})
        return out

    def _psnr_matched(self, reference_id: str, first: dict, reference: np.ndarray, reference_preds: dict) -> list:
        config = self.config
        rng = np.random.default_rng(stable_seed(reference_id, config.seed, "pairs"))
        names = list(config.distortions)
        combos = [(a, b) for a in names for b in names if a != b]
        order = rng.permutation(len(combos))
        reference_float = reference.astype(np.float32) / 255.0
        pairs, used = [], set()
        for attempt, index in enumerate(order[:3 * config.pairs_per_reference]):
            if len(pairs) == config.pairs_per_reference:
                break
            name_a, name_b = combos[index]
            if frozenset((name_a, name_b)) in used:
                continue
            seed = stable_seed(reference_id, name_a, name_b, config.seed)
            severity = float(rng.uniform(1.5, 4.0))
            target = psnr(distort_with_param(reference_float, name_a, get_distortion(name_a).param_at(severity), seed),
                          reference_float)
            try:
                match = match_psnr(reference_float, name_a, name_b, target_psnr=target, seed=seed, tol_db=config.tol_db)
            except PSNRMatchError:
                continue
            used.add(frozenset((name_a, name_b)))
            pair_id = f"{reference_id}__p{attempt:02d}"
            images, paths = [], []
            for side, image in (("a", match.image_a), ("b", match.image_b)):
                array = (image * 255.0).round().clip(0, 255).astype(np.uint8)
                path = config.dataset / "pairs" / reference_id / f"{pair_id}_{side}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(path, compress_level=1)
                images.append(array)
                paths.append(path)
            keys = [f"{pair_id}_a", f"{pair_id}_b"]
            scores, continuous = {}, {}
            for model in self.models:
                pred_a, pred_b = self.cache.predict(model, reference_id, keys, images)
                scores[model.name] = (consistency(model.task, pred_a, reference_preds[model.name]),
                                      consistency(model.task, pred_b, reference_preds[model.name]))
                if "soft" in config.label_sets:
                    continuous[model.name] = (soft_consistency(model, pred_a, reference_preds[model.name]),
                                              soft_consistency(model, pred_b, reference_preds[model.name]))
            row = {
                "pair_id": pair_id, "kind": "psnr_matched", "reference_id": reference_id, "photo": first["photo"],
                "reference_path": first["reference_path"],
                "a_path": str(paths[0].relative_to(config.dataset)),
                "b_path": str(paths[1].relative_to(config.dataset)),
                "a_distortion": name_a, "b_distortion": name_b, "a_mode": "uniform", "b_mode": "uniform",
                "a_roi_severity": round(match.severity_a, 3), "a_bg_severity": round(match.severity_a, 3),
                "b_roi_severity": round(match.severity_b, 3), "b_bg_severity": round(match.severity_b, 3),
                "a_psnr": psnr(images[0].astype(np.float32) / 255.0, reference_float),
                "b_psnr": psnr(images[1].astype(np.float32) / 255.0, reference_float),
            }
            row.update(self._labels({m: s[0] for m, s in scores.items()}, {m: s[1] for m, s in scores.items()}))
            if continuous:
                row.update(self._set_labels("soft", {m: s[0] for m, s in continuous.items()},
                                            {m: s[1] for m, s in continuous.items()}))
            pairs.append(row)
        return pairs

    def _roi_vs_background(self, rows: list[dict]) -> list:
        models = [c.split("/", 1)[1] for c in rows[0] if c.startswith("consistency/")]
        by_key = {(r["distortion"], r["mode"], r["roi_severity"], r["bg_severity"]): r for r in rows}
        pairs = []
        for (name, mode, roi, bg), b_row in sorted(by_key.items()):
            if mode != "roi":
                continue
            a_row = by_key.get((name, "background", bg, roi))
            if a_row is None:
                continue
            row = {
                "pair_id": f"{b_row['reference_id']}__rb_{name}_{roi}{bg}", "kind": "roi_vs_background",
                "reference_id": b_row["reference_id"], "photo": b_row["photo"],
                "reference_path": b_row["reference_path"],
                "a_path": a_row["distorted_path"], "b_path": b_row["distorted_path"],
                "a_distortion": name, "b_distortion": name, "a_mode": "background", "b_mode": "roi",
                "a_roi_severity": bg, "a_bg_severity": roi, "b_roi_severity": roi, "b_bg_severity": bg,
                "a_psnr": a_row["psnr"], "b_psnr": b_row["psnr"],
            }
            row.update(self._labels({m: a_row[f"consistency/{m}"] for m in models},
                                    {m: b_row[f"consistency/{m}"] for m in models}))
            for labels in self.config.label_sets[1:]:
                columns = {m: label_column(labels, model=m) for m in models}
                row.update(self._set_labels(labels, {m: float(a_row[c]) for m, c in columns.items()},
                                            {m: float(b_row[c]) for m, c in columns.items()}))
            pairs.append(row)
        return pairs


def build_pairs(config: PairsConfig) -> dict:
    """Build (or resume) the pairs of a dataset; returns the summary written to pairs_info.json."""
    start = time.perf_counter()
    references = sorted({r["reference_id"] for r in read_rows(config.dataset / "manifest.csv")})
    parts = config.dataset / "pair_parts"
    check_settings(config, parts)
    pending = [ref for ref in references if not _part_done(parts / f"{ref}.csv", config.label_sets, config.dataset)]
    run_labelling(PairsLabeller, config, pending, config.processes, config.threads)
    rows = []
    for part in sorted(parts.glob("*.csv")):
        rows.extend(read_rows(part))
    write_rows(config.dataset / "pairs.csv", rows, pair_columns(rows))
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        counts[row["kind"]] += 1
    summary = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "references_processed_this_run": len(pending), "pairs": dict(counts),
        "label_sets": {labels: {"soft_label": pair_label_column(labels),
                                "majority_label": pair_label_column(labels, majority=True),
                                "per_task": pair_label_column(labels, task="<task>")}
                       for labels in config.label_sets},
        "seconds_this_run": round(time.perf_counter() - start, 1),
        "machine": f"{torch.get_num_threads()} torch threads",
    }
    (config.dataset / "pairs_info.json").write_text(json.dumps(summary, indent=2))
    with (config.dataset / "pairs_history.jsonl").open("a") as history:
        history.write(json.dumps(summary) + "\n")
    return summary


SETTINGS_FILE = "_settings.json"
RESUME_SETTINGS = ("distortions", "pairs_per_reference", "tol_db", "seed", "include_roi_vs_background")


def check_settings(config: PairsConfig, parts: Path) -> None:
    """Resume only with the settings the existing parts were made with (recorded in
    ``pair_parts/_settings.json`` when the first run starts); anything else would mix two designs in one
    pairs.csv without a word. Raises ValueError naming the differences."""
    wanted = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items() if k in RESUME_SETTINGS}
    path = parts / SETTINGS_FILE
    if path.is_file():
        recorded = json.loads(path.read_text())
        changed = {k: (recorded.get(k), wanted[k]) for k in RESUME_SETTINGS if recorded.get(k) != wanted[k]}
        if changed:
            lines = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
            raise ValueError(f"{parts} was built with other settings ({lines}). Resume with the recorded settings, or "
                             f"delete {parts} and {config.dataset / 'pairs'} to rebuild the pairs with the new ones.")
        return
    parts.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(wanted, indent=2))


def _part_done(path: Path, label_sets: tuple[str, ...], dataset: Path | None = None) -> bool:
    """A reference's part exists with the labels of every label set (a part written before the manifest
    had a label set is redone; its images and predictions are reused) and, given the dataset folder, every
    image its PSNR-matched pairs name exists (else it is redone). A part without pairs is done."""
    if not path.is_file():
        return False
    header = set(read_header(path))
    if "soft_label" in header and not {pair_label_column(labels) for labels in label_sets} <= header:
        return False
    if dataset is not None and "soft_label" in header:
        rows = [r for r in read_rows(path) if r["kind"] == "psnr_matched"]
        return all((dataset / r[side]).is_file() for r in rows for side in ("a_path", "b_path"))
    return True


def pair_columns(rows: list[dict]) -> list[str]:
    extra: list[str] = []
    for row in rows:
        extra += [k for k in row if k not in PAIR_COLUMNS and k not in extra]
    return [*PAIR_COLUMNS, *extra]
