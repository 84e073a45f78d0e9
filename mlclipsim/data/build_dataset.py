"""``mlclipsim build-dataset``: the machine-preference dataset, built and labelled by task models.

For every photo of a folder: cut references (:mod:`mlclipsim.data.references`), run every task
model on each reference, take the ROI from their predictions (:mod:`mlclipsim.data.roi`), make the
planned distorted versions (:mod:`mlclipsim.data.plan`), run every task model on each, score its
consistency with the model's reference prediction, average per task (MMOS), and write the images
and one manifest (:mod:`mlclipsim.data.manifest`).

On disk, under ``--out``::

    references/<reference_id>.png           the references (PNG, lossless)
    images/<reference_id>/<spec>.png        the distorted versions
    predictions/<model>/<reference_id>/<reference|spec>.npz   every prediction, cached
    parts/<reference_id>.csv                the rows of one finished reference
    failures/<photo>.txt                    photos that could not be read (reported, skipped)
    manifest.csv                            all parts merged
    build_info.json                         settings, counts and wall times of the last run
    build_history.jsonl                     the same for every run (resumed builds add lines)

Each row holds the discrete agreement (``consistency/<model>``, ``mmos/<task>``, ``mmos``) and the
continuous one beside it (``soft/<model>``, ``mmos_soft/<task>``, ``mmos_soft``;
:mod:`mlclipsim.machine.soft_agreement`; NaN where a task does not apply, e.g. detection where a
detector finds nothing on the reference; ``mmos_soft`` averages the defined tasks); with
``draws > 1`` also the ``draw`` of each image.
``person_models`` (e.g. the person segmenters Meet and RVM, which mark texture as person on photos
without people) vote in the MMOS only on references where a COCO detector of the build finds a
person (score >= 0.5); their ``consistency/`` and ``soft/`` columns are written everywhere.

Resumable: a reference whose part exists with every requested model and distortion type is skipped;
within a reference, images and predictions already on disk are reused, so adding a model or a
distortion type later computes only what is new.
Deterministic: every random choice is seeded by the reference id, the distortion and ``seed``.
Shardable: ``shard=(i, n)`` takes every n-th photo from the i-th (for several machines), and
``processes=k`` runs k processes through Lightning's ``Trainer.predict``
(:mod:`mlclipsim.machine.labelling`; each process loads the models once and writes its own
parts); the manifest is merged from all parts present.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mlclipsim.core.images import ImageReadError, list_images, read_image_array, refuse_stem_clashes
from mlclipsim.data.codec_distortions import register_codec_distortions
from mlclipsim.data.manifest import read_header, read_rows, write_rows
from mlclipsim.data.plan import DistortionSpec, plan_distortions
from mlclipsim.data.references import DEFAULT_SIZE, ReferenceCrop, reference_crops, stable_seed
from mlclipsim.data.roi import roi_mask, usable_roi
from mlclipsim.distortions import SYNTHETIC_NAMES, distort_regions, get_distortion, psnr
from mlclipsim.machine.agreement import consistency
from mlclipsim.machine.labelling import run_labelling
from mlclipsim.machine.mmos import mmos_by_task
from mlclipsim.machine.prediction_cache import PredictionCache, load_task_models
from mlclipsim.machine.registry import task_of
from mlclipsim.machine.soft_agreement import soft_consistency, soft_task_labels

DEFAULT_TASK_MODELS = ("centernet", "nanodet", "selfie", "efficientnet-lite0")
"""Offline task models of three kinds (detection x2, segmentation, classification). MobileNetV2 is
left out on purpose: it is the default offline ML-CLIPSim encoder, and an encoder must not score
labels made by itself."""

ROI_TASKS = ("detection", "segmentation", "face_detection")


@dataclass
class BuildConfig:
    """Settings of one dataset build (all of them are recorded in build_info.json)."""

    images: Path
    out: Path
    task_models: tuple[str, ...] = DEFAULT_TASK_MODELS
    roi_models: tuple[str, ...] | None = None  # None: every detection/segmentation/face model given
    distortions: tuple[str, ...] = tuple(SYNTHETIC_NAMES)
    region_pairs: int = 2
    crops_per_image: int = 1
    crop_scales: tuple[float, ...] = (2.0,)  # crop i: scale crop_scales[(i - 1) % len] (data/references.py)
    draws: int = 1  # independent draws of each stochastic type and uniform severity (data/plan.py)
    size: int = DEFAULT_SIZE
    seed: int = 0
    batch_size: int = 8
    threads: int = 1
    processes: int = 1
    shard: tuple[int, int] = (0, 1)
    limit: int | None = None
    model_options: dict = field(default_factory=dict)
    person_models: tuple[str, ...] = ()  # vote in the MMOS only on references with a person (see below)
    # codec name -> learned checkpoint(s), or None for a registered codec: each becomes the distortion type
    # "codec_<name>" (data/codec_distortions.py), added to ``distortions``
    codec_distortions: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.images, self.out = Path(self.images), Path(self.out)
        extra = [n for n in register_codec_distortions(self.codec_distortions) if n not in self.distortions]
        self.distortions = tuple(self.distortions) + tuple(extra)
        self.task_models = tuple(self.task_models)
        self.crop_scales = tuple(float(s) for s in self.crop_scales)
        if not self.task_models:
            raise ValueError("Give at least one task model.")
        tasks = {name: task_of(name) for name in self.task_models}  # unknown names fail here
        if self.roi_models is None:
            self.roi_models = tuple(n for n, t in tasks.items() if t in ROI_TASKS)
        missing = [n for n in self.roi_models if n not in self.task_models]
        if missing:
            raise ValueError(f"roi_models {missing} must also be task models ({list(self.task_models)}).")
        self.person_models = tuple(self.person_models)
        alone = sorted({tasks[n] for n in self.person_models if n in tasks}
                       - {t for n, t in tasks.items() if n not in self.person_models})
        if any(n not in self.task_models for n in self.person_models) or alone:
            raise ValueError(f"person_models {list(self.person_models)} must be task models, and every task needs "
                             f"a model that votes everywhere (not so for {alone}).")
        index, count = self.shard
        if not (count >= 1 and 0 <= index < count):
            raise ValueError(f"shard must be (i, n) with 0 <= i < n, got {self.shard}")


def pending_photos(config: BuildConfig) -> list[Path]:
    """Photos of this shard whose references are not all finished with every requested model.

    Reference ids are photo stems, so photos that share a stem (``a.jpg``, ``a.png``) are refused with
    the list of clashes (one would silently replace the other)."""
    photos = list_images(config.images)
    refuse_stem_clashes(photos, "reference id (references are named after the photo's stem)")
    index, count = config.shard
    photos = photos[index::count]
    if config.limit is not None:
        photos = photos[:config.limit]
    return [p for p in photos if not _photo_finished(config, p)]


def _photo_finished(config: BuildConfig, photo: Path) -> bool:
    parts = sorted((config.out / "parts").glob(f"{photo.stem}.csv")) + sorted(
        (config.out / "parts").glob(f"{photo.stem}__c*.csv"))
    if len(parts) < 1 or (config.crops_per_image > 1 and len(parts) < config.crops_per_image):
        return False
    wanted = {f"{kind}/{name}" for name in config.task_models for kind in ("consistency", "soft")}
    if not all(wanted <= set(read_header(part)) for part in parts):
        return False
    draws = set(range(config.draws)) if any(get_distortion(d).stochastic for d in config.distortions) else {0}
    for part in parts:
        rows = read_rows(part)
        if not set(config.distortions) <= {row["distortion"] for row in rows}:
            return False
        if not draws <= {int(row.get("draw") or 0) for row in rows}:
            return False
    return True






def has_person(predictions: dict) -> bool:
    """Whether a COCO detector among the reference predictions finds a person (score >= 0.5)."""
    return any(getattr(p, "label_space", None) == "coco80" and bool(np.any((p.labels == 0) & (p.scores >= 0.5)))
               for p in predictions.values())


class DatasetLabeller:
    """Loads the task models once and turns photos into manifest parts."""

    def __init__(self, config: BuildConfig) -> None:
        self.config = config
        register_codec_distortions(config.codec_distortions)  # a spawned worker starts with an empty registry
        self.models = load_task_models(config.task_models, config.threads, config.model_options)
        self.tasks = {m.name: m.task for m in self.models}
        self.cache = PredictionCache(config.out / "predictions")

    def process(self, photo: Path) -> dict:
        """Label every reference of one photo; returns a summary (ids done, rows, failure)."""
        start = time.perf_counter()
        try:
            crops = reference_crops(photo, self.config.crops_per_image, self.config.size, self.config.seed,
                                    self.config.crop_scales)
        except ImageReadError as err:
            failure = self.config.out / "failures" / f"{photo.stem}.txt"
            failure.parent.mkdir(parents=True, exist_ok=True)
            failure.write_text(str(err) + "\n")
            return {"photo": photo.name, "references": [], "rows": 0, "error": str(err)}
        rows = 0
        for crop in crops:
            rows += self.process_reference(crop)
        return {"photo": photo.name, "references": [c.reference_id for c in crops], "rows": rows,
                "seconds": time.perf_counter() - start}

    def process_reference(self, crop: ReferenceCrop) -> int:
        out, ref_id = self.config.out, crop.reference_id
        reference_path = out / "references" / f"{ref_id}.png"
        if not reference_path.is_file():
            reference_path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(crop.image).save(reference_path, compress_level=1)
        height, width = crop.image.shape[:2]
        reference_preds = {m.name: self.cache.predict(m, ref_id, ["reference"], [crop.image])[0] for m in self.models}
        mask = roi_mask([reference_preds[name] for name in self.config.roi_models], height, width)
        with_regions = usable_roi(mask)
        specs = plan_distortions(ref_id, self.config.distortions, self.config.region_pairs, with_regions,
                                 self.config.seed, self.config.draws)
        reference_float = crop.image.astype(np.float32) / 255.0
        voters = [m.name for m in self.models if m.name not in self.config.person_models or has_person(reference_preds)]
        rows = []
        for start in range(0, len(specs), self.config.batch_size):
            chunk = specs[start:start + self.config.batch_size]
            images = [self._distorted(crop, reference_float, spec, mask) for spec in chunk]
            keys = [spec.key for spec in chunk]
            per_model = {m.name: self.cache.predict(m, ref_id, keys, images) for m in self.models}
            for i, spec in enumerate(chunk):
                scores = {name: consistency(self.tasks[name], per_model[name][i], reference_preds[name])
                          for name in per_model}
                by_task = mmos_by_task({n: scores[n] for n in voters}, self.tasks)
                soft = {m.name: soft_consistency(m, per_model[m.name][i], reference_preds[m.name])
                        for m in self.models}
                soft_by_task = soft_task_labels({n: soft[n] for n in voters}, self.tasks)   # NaN: task n/a
                row = {
                    "reference_id": ref_id, "photo": crop.photo, "crop": crop.crop,
                    "reference_path": str(reference_path.relative_to(out)),
                    "distorted_path": str(self._image_path(ref_id, spec).relative_to(out)),
                    "distortion": spec.distortion, "mode": spec.mode,
                    "roi_severity": spec.roi_severity, "bg_severity": spec.bg_severity,
                    **({"draw": spec.draw} if self.config.draws > 1 else {}),
                    "roi_fraction": float(mask.mean()) if with_regions else 0.0,
                    "psnr": psnr(images[i].astype(np.float32) / 255.0, reference_float),
                }
                row.update({f"consistency/{name}": value for name, value in scores.items()})
                row.update({f"mmos/{task}": value.score for task, value in sorted(by_task.items())})
                row["mmos"] = float(np.mean([value.score for value in by_task.values()]))
                row.update({f"soft/{name}": value for name, value in soft.items()})
                row.update({f"mmos_soft/{task}": value for task, value in sorted(soft_by_task.items())})
                defined = [value for value in soft_by_task.values() if not np.isnan(value)]
                row["mmos_soft"] = float(np.mean(defined)) if defined else float("nan")
                rows.append(row)
        write_rows(out / "parts" / f"{ref_id}.csv", rows)
        return len(rows)

    def _image_path(self, reference_id: str, spec: DistortionSpec) -> Path:
        return self.config.out / "images" / reference_id / f"{spec.key}.png"

    def _distorted(self, crop: ReferenceCrop, reference: np.ndarray, spec: DistortionSpec,
                   mask: np.ndarray) -> np.ndarray:
        path = self._image_path(crop.reference_id, spec)
        if path.is_file():
            try:
                return read_image_array(path)
            except ImageReadError:
                path.unlink()
        seed = stable_seed(crop.reference_id, spec.distortion, self.config.seed,
                           *((spec.draw,) if spec.draw else ()))
        image = distort_regions(reference, spec.distortion, spec.roi_severity, spec.bg_severity, mask, seed=seed)
        array = (image * 255.0).round().clip(0, 255).astype(np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(path, compress_level=1)
        return array


def merge_parts(out: Path) -> Path:
    """Concatenate every part (sorted by reference id) into ``manifest.csv``; returns its path."""
    rows = []
    for part in sorted((out / "parts").glob("*.csv")):
        rows.extend(read_rows(part))
    manifest = out / "manifest.csv"
    write_rows(manifest, rows)
    return manifest


def build_dataset(config: BuildConfig) -> dict:
    """Build (or resume) the dataset; returns the summary also written to build_info.json."""
    start = time.perf_counter()
    config.out.mkdir(parents=True, exist_ok=True)
    photos = pending_photos(config)
    if photos and config.processes > 1:  # a missing model file fails here in one line, not in every process
        load_task_models(config.task_models, config.threads, config.model_options)
    run_labelling(DatasetLabeller, config, photos, config.processes, config.threads)
    label_seconds = time.perf_counter() - start
    manifest = merge_parts(config.out)
    rows = read_rows(manifest) if manifest.stat().st_size else []
    failures = sorted(p.stem for p in (config.out / "failures").glob("*.txt"))
    summary = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "photos_processed_this_run": len(photos),
        "references": len({r["reference_id"] for r in rows}),
        "photos": len({r["photo"] for r in rows}),
        "rows": len(rows),
        "failures": failures,
        "seconds_this_run": round(time.perf_counter() - start, 1),
        "labelling_seconds_this_run": round(label_seconds, 1),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
    }
    (config.out / "build_info.json").write_text(json.dumps(summary, indent=2))
    with (config.out / "build_history.jsonl").open("a") as history:  # every run, for wall-time accounting
        history.write(json.dumps(summary) + "\n")
    return summary
