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
``soft_label/<task>`` is the same share within one task's models.
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
from mlclipsim.data.manifest import read_rows, score_columns, write_rows
from mlclipsim.data.references import stable_seed
from mlclipsim.distortions import PSNRMatchError, distort_with_param, get_distortion, match_psnr, psnr
from mlclipsim.machine.agreement import consistency
from mlclipsim.machine.labelling import run_labelling
from mlclipsim.machine.prediction_cache import PredictionCache, load_task_models

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
        if self.distortions is None:
            self.distortions = tuple(build["distortions"])


def preference(scores_a: dict[str, float], scores_b: dict[str, float]) -> float:
    """Share of models preferring A (higher consistency), ties counted 1/2."""
    votes = [1.0 if scores_a[m] > scores_b[m] else 0.0 if scores_a[m] < scores_b[m] else 0.5 for m in scores_a]
    return float(np.mean(votes))


def majority(soft: float) -> float:
    return 1.0 if soft > 0.5 else 0.0 if soft < 0.5 else 0.5


class PairsLabeller:
    """Per process: loads the task models once; ``process(reference_id)`` writes that reference's pairs."""

    def __init__(self, config: PairsConfig) -> None:
        self.config = config
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
            scores = {}
            for model in self.models:
                pred_a, pred_b = self.cache.predict(model, reference_id, keys, images)
                scores[model.name] = (consistency(model.task, pred_a, reference_preds[model.name]),
                                      consistency(model.task, pred_b, reference_preds[model.name]))
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
            pairs.append(row)
        return pairs

    def _roi_vs_background(self, rows: list[dict]) -> list:
        models = [c.split("/", 1)[1] for c in score_columns(rows[0], "consistency")]
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
            pairs.append(row)
        return pairs


def build_pairs(config: PairsConfig) -> dict:
    """Build (or resume) the pairs of a dataset; returns the summary written to pairs_info.json."""
    start = time.perf_counter()
    references = sorted({r["reference_id"] for r in read_rows(config.dataset / "manifest.csv")})
    parts = config.dataset / "pair_parts"
    pending = [ref for ref in references if not (parts / f"{ref}.csv").is_file()]
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
        "seconds_this_run": round(time.perf_counter() - start, 1),
        "machine": f"{torch.get_num_threads()} torch threads",
    }
    (config.dataset / "pairs_info.json").write_text(json.dumps(summary, indent=2))
    with (config.dataset / "pairs_history.jsonl").open("a") as history:
        history.write(json.dumps(summary) + "\n")
    return summary


def pair_columns(rows: list[dict]) -> list[str]:
    extra: list[str] = []
    for row in rows:
        extra += [k for k in row if k not in PAIR_COLUMNS and k not in extra]
    return [*PAIR_COLUMNS, *extra]
