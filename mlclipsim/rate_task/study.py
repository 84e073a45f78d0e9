"""``mlclipsim rate-task``: every codec at every operating point on every photo, scored by machines.

For each photo (shrunk so that its long side is at most ``size`` px, as the dataset builder makes
its references: :func:`mlclipsim.data.references.reference_crops`, crop 0), each codec and each of
its operating points: code the photo into a real file (:mod:`~mlclipsim.coding.interface`),
quantise the decoded image to 8 bits (what a decoder writes), and record

- ``bits``, ``bytes``, ``bpp``: the file's true size (header included) over the photo's pixels
  (learned codecs pad inside, :mod:`~mlclipsim.coding.entropy`; bpp counts the real pixels);
- ``psnr``, ``ms_ssim`` (NaN for photos of 160 px or less: 5 scales need more), ``ml_clipsim``;
- ``consistency/<model>`` per task model: :func:`mlclipsim.machine.agreement.consistency` of its
  prediction on the decoded photo with its prediction on the photo (the task's default score:
  F1 for detection, IoU for segmentation, soft top-5 for classification); no ground truth needed;
- for rate-controlled codecs (``BASE@mlclipsim``): the quality chosen, its score, whether the target
  was reached; and seconds per stage.

On disk, under ``out``::

    rows/<codec>/<point>/<photo file name>.json   one result, cached (re-running skips it)
    predictions/<model>/<photo file name>/reference.npz   task predictions on the photos
    failures/<photo file name>.txt                unreadable photos (reported, skipped)
    run_config.json                               size, encoder, codecs (a resume must match)
    rows.csv, curves.csv, curves.md, bd_rate.csv, bd_rate.md, rate_monotonicity.csv/.md, rate_task.png, rate_task.svg
    summary.json, history.jsonl                   counts, wall times (this run and every run)

Batch scoring runs on Lightning's ``Trainer.predict`` through the data engine's
:class:`~mlclipsim.machine.labelling.LabellingModule` (one work item per photo, items sharded by
rank): ``processes > 1`` runs CPU processes under ``ddp_spawn``, ``accelerator="gpu"`` puts the
ML-CLIPSim encoder and learned codecs on each process's GPU (the ONNX task models stay on the CPU).
Deterministic: no random choice anywhere; codecs run with fixed settings (AVIF on one thread).

Adding a codec to a finished study: :func:`import_rows` seeds the cache of a new ``out`` from the
``rows.csv`` and ``summary.json`` that a run wrote (e.g. a committed copy), after checking that they
were made with the same photo size, encoder, search and learned checkpoints; only the rows it lacks
are then computed.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlclipsim.coding.interface import (
    Codec,
    CodecSpec,
    Point,
    create_codec,
    format_point,
    parse_codec_spec,
    resolve_points,
    unique_names,
)
from mlclipsim.coding.learned import register_learned_codec
from mlclipsim.coding.rate_control import SEARCHES
from mlclipsim.core.images import ImageReadError, array_to_tensor, list_images, tensor_to_array
from mlclipsim.data.references import reference_crops
from mlclipsim.eval.bd_rate import METHOD_MIN_POINTS
from mlclipsim.machine.agreement import consistency
from mlclipsim.machine.labelling import LabellingModule
from mlclipsim.machine.prediction_cache import PredictionCache, load_task_models
from mlclipsim.machine.registry import task_of
from mlclipsim.metrics import MLCLIPSimScorer
from mlclipsim.metrics.baselines import create_baseline
from mlclipsim.rate_task import curves
from mlclipsim.rate_task.rows import collect_rows, read_row, read_rows_csv, row_path, write_json

MIN_SIDE = 32
DEFAULT_BACKBONE = "torchvision/mobilenet_v2"


@dataclass(frozen=True)
class LearnedFamily:
    """A named family of CompressAI checkpoints (paths or glob patterns), one per operating point."""

    name: str
    checkpoints: tuple[str, ...]
    architecture: str | None = None


def parse_learned(text: str, architecture: str | None = None) -> LearnedFamily:
    """``"NAME=GLOB[,GLOB...]"`` -> :class:`LearnedFamily`."""
    name, sep, paths = text.partition("=")
    parts = tuple(p.strip() for p in paths.split(",") if p.strip())
    if not sep or not name.strip() or not parts:
        raise ValueError(f"--learned takes NAME=GLOB[,GLOB...] (e.g. mse='runs/*_mse_*.pth'), got {text!r}.")
    return LearnedFamily(name.strip(), parts, architecture)


@dataclass
class RateTaskConfig:
    """Settings of one rate-task run (recorded in summary.json).

    Attributes:
        images: folder of photos; ``photos``: file names (or stems) to use from it (None: all).
        out: output folder (created; re-running resumes).
        codecs: specs ``NAME`` or ``NAME:P1,P2,...`` (registry names, learned families, ``BASE@mlclipsim``).
        task_models: task-model registry names; ``anchors``: codecs every other is compared with
            (default: the first codec).
        backbone, pretrained: the ML-CLIPSim encoder (never one of the task models).
        learned: learned families to register by name.
        size: long side (px) the photos are shrunk to; ``limit``: at most this many photos.
        processes, threads, accelerator: Lightning devices, CPU threads per process, accelerator.
        search: rate-control search (``"bisect"`` or ``"exhaustive"``); ``bd_method``: BD interpolation.
    """

    images: Path
    out: Path
    codecs: tuple[str, ...]
    task_models: tuple[str, ...]
    backbone: str = DEFAULT_BACKBONE
    pretrained: str | None = None
    anchors: tuple[str, ...] = ()
    learned: tuple[LearnedFamily, ...] = ()
    photos: tuple[str, ...] | None = None
    size: int = 512
    limit: int | None = None
    processes: int = 1
    threads: int = 1
    accelerator: str = "cpu"
    search: str = "bisect"
    bd_method: str = "pchip"
    specs: tuple[CodecSpec, ...] = field(default=(), init=False)

    def __post_init__(self) -> None:
        self.images, self.out = Path(self.images), Path(self.out)
        self.codecs, self.task_models = tuple(self.codecs), tuple(self.task_models)
        self.learned = tuple(self.learned)
        if not self.codecs:
            raise ValueError("Give at least one codec (--codec NAME[:points]).")
        if not self.task_models:
            raise ValueError("Give at least one task model (--task-model NAME).")
        self.specs = tuple(parse_codec_spec(c) for c in self.codecs)
        unique_names(self.specs)
        for name in self.task_models:
            task_of(name)  # unknown names fail here, listing the registered ones
        if len(set(self.task_models)) != len(self.task_models):
            raise ValueError(f"A task model is given twice: {list(self.task_models)}.")
        check_encoder_not_task_model(self.backbone, self.task_models)
        names = [s.name for s in self.specs]
        self.anchors = tuple(self.anchors) or (names[0],)
        unknown = [a for a in self.anchors if a not in names]
        if unknown:
            raise ValueError(f"Anchor codec(s) {unknown} are not among the codecs {names}; add them with --codec.")
        families = [f.name for f in self.learned]
        if len(set(families)) != len(families):
            raise ValueError(f"A learned family name is given twice: {families}.")
        if self.size < MIN_SIDE:
            raise ValueError(f"size must be >= {MIN_SIDE} px, got {self.size}.")
        if self.processes < 1 or self.threads < 1:
            raise ValueError(f"processes and threads must be >= 1, got {self.processes} and {self.threads}.")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}.")
        if self.search not in SEARCHES:
            raise ValueError(f"Unknown search {self.search!r}; choose one of {list(SEARCHES)}.")
        if self.bd_method not in METHOD_MIN_POINTS:
            raise ValueError(f"Unknown BD method {self.bd_method!r}; choose one of {sorted(METHOD_MIN_POINTS)}.")

    @property
    def codec_names(self) -> list[str]:
        return [s.name for s in self.specs]


def check_encoder_not_task_model(backbone: str, task_models: Sequence[str]) -> None:
    """The ML-CLIPSim encoder must not be a task model being scored (it would score itself)."""
    encoder = backbone.split("/")[-1].lower()
    same = [m for m in task_models if m.lower() == encoder]
    if same:
        raise ValueError(f"The ML-CLIPSim encoder {backbone!r} is also the task model {same[0]!r}: an encoder must "
                         "not score the machine it predicts. Drop that task model or use another --backbone.")


def register_families(families: Sequence[LearnedFamily]) -> None:
    for family in families:
        register_learned_codec(family.name, list(family.checkpoints), family.architecture, overwrite=True)


def build_codecs(config: RateTaskConfig, scorer: Any = None, device: str | torch.device = "cpu"
                 ) -> dict[str, tuple[Codec, tuple[Point, ...]]]:
    """Every codec of the run with its checked operating points (learned families registered first).

    Rate-controlled codecs get ``scorer`` (or build one from the config's backbone on first use).
    """
    register_families(config.learned)
    learned = {f.name for f in config.learned}
    out = {}
    for spec in config.specs:
        base, _, modifier = spec.name.partition("@")
        device_option = {"device": device} if base in learned else {}
        if modifier:
            options: dict[str, Any] = {"search": config.search} if modifier == "mlclipsim" else {}
            options.update({"scorer": scorer} if scorer is not None else
                           {"backbone": config.backbone, "pretrained": config.pretrained})
            codec = create_codec(spec.name, base_options=device_option, **options)
        else:
            codec = create_codec(spec.name, **device_option)
        out[spec.name] = (codec, resolve_points(codec, spec))
    return out


def select_photos(config: RateTaskConfig) -> list[Path]:
    """The photos of the run, sorted by name: all of ``images``, or those named in ``photos``."""
    available = list_images(config.images)
    if config.photos is not None:
        by_name = {p.name: p for p in available}
        by_stem: dict[str, list[Path]] = {}
        for p in available:
            by_stem.setdefault(p.stem, []).append(p)
        chosen, missing = [], []
        for name in config.photos:
            if name in by_name:
                chosen.append(by_name[name])
            elif len(by_stem.get(name, [])) == 1:
                chosen.append(by_stem[name][0])
            else:
                missing.append(name)
        if missing:
            raise ValueError(f"{len(missing)} photo(s) of the list are not image files in {str(config.images)!r}: "
                             f"{missing[:5]}{' ...' if len(missing) > 5 else ''} (give file names, one per line).")
        available = sorted(set(chosen), key=lambda p: p.name)
    if config.limit is not None:
        available = available[:config.limit]
    if not available:
        raise ValueError(f"No photos to code in {str(config.images)!r}.")
    return available


def read_photo_list(path: str | os.PathLike) -> tuple[str, ...]:
    """File names, one per line; blank lines and lines starting with ``#`` are ignored."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Photo list {str(path)!r} does not exist.")
    names = [line.strip() for line in path.read_text().splitlines()]
    names = [n for n in names if n and not n.startswith("#")]
    if not names:
        raise ValueError(f"Photo list {str(path)!r} names no photo.")
    if len(set(names)) != len(names):
        raise ValueError(f"Photo list {str(path)!r} names a photo twice.")
    return tuple(names)


# ----------------------------------------------------------------------------- cache








def photo_done(config: RateTaskConfig, photo: Path, codec_points: dict[str, tuple[Point, ...]]) -> bool:
    """Every row of the photo is cached, or the photo was found unreadable and has not changed since."""
    failure = config.out / "failures" / f"{photo.name}.txt"
    if failure.is_file() and failure.stat().st_mtime >= photo.stat().st_mtime:
        return True
    return all(read_row(row_path(config.out, name, p, photo.name), config.task_models) is not None
               for name, points in codec_points.items() for p in points)


# ----------------------------------------------------------------------------- worker


class RateTaskWorker:
    """Built once per process: the codecs, the ML-CLIPSim scorer, the task models; codes one photo per call."""

    def __init__(self, config: RateTaskConfig, device: str | torch.device = "cpu") -> None:
        self.config = config
        self.device = torch.device(device)
        self.scorer = MLCLIPSimScorer(config.backbone, pretrained=config.pretrained).to(self.device).eval()
        self.codecs = build_codecs(config, scorer=self.scorer, device=self.device)
        self.models = load_task_models(config.task_models, config.threads, {})
        self.psnr, self.ms_ssim = create_baseline("psnr"), create_baseline("ms-ssim")
        self.cache = PredictionCache(config.out / "predictions")

    def process(self, photo: Path) -> dict:
        photo = Path(photo)
        start = time.perf_counter()
        try:
            reference = reference_crops(photo, 1, self.config.size)[0].image
            if min(reference.shape[:2]) < MIN_SIDE:
                raise ImageReadError(f"{str(photo)!r} is {reference.shape[1]}x{reference.shape[0]} px after "
                                     f"shrinking; ML-CLIPSim needs >= {MIN_SIDE} px on each side.")
        except ImageReadError as err:
            _write_text(self.config.out / "failures" / f"{photo.name}.txt", str(err) + "\n")
            return {"photo": photo.name, "rows": 0, "error": str(err)}
        failure = self.config.out / "failures" / f"{photo.name}.txt"
        if failure.is_file():
            failure.unlink()
        x = array_to_tensor(np.array(reference))[None].to(self.device)  # a writable copy
        features = self.scorer.reference_features(x)
        reference_preds = {m.name: self.cache.predict(m, photo.name, ["reference"], [reference])[0]
                           for m in self.models}
        written = 0
        for name, (codec, points) in self.codecs.items():
            for point in points:
                path = row_path(self.config.out, name, point, photo.name)
                if read_row(path, self.config.task_models) is not None:
                    continue
                row = self._row(photo.name, codec, point, x, features, reference_preds)
                write_json(path, row)
                written += 1
        return {"photo": photo.name, "rows": written, "seconds": time.perf_counter() - start}

    def _row(self, photo: str, codec: Codec, point: Point, x: torch.Tensor, features: Any,
             reference_preds: dict) -> dict:
        height, width = x.shape[-2:]
        t0 = time.perf_counter()
        coded = codec.code(x, point)
        t1 = time.perf_counter()
        decoded = tensor_to_array(coded.reconstructions[0])  # 8 bits, as a decoder writes the image
        y = array_to_tensor(decoded)[None].to(self.device)
        with torch.no_grad():
            psnr = float(self.psnr(y, x)[0])
            try:
                ms_ssim = float(self.ms_ssim(y, x)[0])
            except ValueError:  # <= 160 px: too small for 5 scales
                ms_ssim = math.nan
            ml_clipsim = float(self.scorer(y, features)[0])
        t2 = time.perf_counter()
        bits = int(coded.bits[0])
        row: dict[str, Any] = {
            "photo": photo, "codec": codec.name, "point": format_point(point), "height": int(height),
            "width": int(width), "bits": bits, "bytes": bits // 8, "bpp": bits / float(height * width),
            "psnr": psnr, "ms_ssim": ms_ssim, "ml_clipsim": ml_clipsim,
        }
        if coded.details:
            detail = coded.details[0]
            row.update({"chosen_point": format_point(detail["point"]), "rc_score": detail["score"],
                        "rc_monotone": bool(detail["monotone"]), "rc_codings": int(detail["codings"]),
                        "rc_probes": ";".join(format_point(p) for p in detail.get("probes", ()))})
            if detail.get("reached") is not None:  # equal-slope allocation has no target to reach
                row["reached"] = bool(detail["reached"])
        seconds = {"seconds/code": t1 - t0, "seconds/metrics": t2 - t1}
        for model in self.models:
            t = time.perf_counter()
            pred = model.predict([decoded])[0]
            row[f"consistency/{model.name}"] = float(consistency(model, pred, reference_preds[model.name]))
            seconds[f"seconds/{model.name}"] = time.perf_counter() - t
        row.update(seconds)
        return row


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


class _RateTaskModule(LabellingModule):
    """The data engine's ``Trainer.predict`` shell, with the worker built on the process's device."""

    def setup(self, stage: str) -> None:
        torch.set_num_threads(self.threads)
        self.worker = self.worker_cls(self.config, device=self.trainer.strategy.root_device)


def run_items(config: RateTaskConfig, photos: Sequence[Path]) -> None:
    """Code and score ``photos`` on Lightning's ``Trainer.predict`` (one work item per photo)."""
    if not photos:
        return
    import lightning as L
    from lightning.pytorch.callbacks import TQDMProgressBar

    strategy = "ddp_spawn" if config.processes > 1 else "auto"
    trainer = L.Trainer(accelerator=config.accelerator, devices=config.processes, strategy=strategy, logger=False,
                        enable_checkpointing=False, enable_model_summary=False, use_distributed_sampler=False,
                        callbacks=[TQDMProgressBar()])
    threads = torch.get_num_threads()
    try:
        trainer.predict(_RateTaskModule(RateTaskWorker, config, list(photos), config.threads),
                        return_predictions=False)
    finally:
        torch.set_num_threads(threads)  # the module's setup set this process's threads








def import_rows(config: RateTaskConfig, source: str | os.PathLike) -> dict[str, int]:
    """Seed ``config.out``'s cache from a finished run's folder (its ``rows.csv`` and ``summary.json``).

    Rows of codecs and points that ``config`` asks for, of photos it selects, holding every task model
    it asks for, are written where the run would cache them, unless already cached; the photos that the
    source found unreadable are marked so too. Raises ValueError if the source was made with another
    photo size, encoder or rate-control search, or another checkpoint set (by file names) for a learned codec
    of the same name (its rows would not apply). Returns ``{"imported": n, "already_cached": n, "not_asked_for": n}``.
    """
    source = Path(source)
    config.out.mkdir(parents=True, exist_ok=True)
    check_run_config(config)
    rows_path, summary_path = source / "rows.csv", source / "summary.json"
    for path in (rows_path, summary_path):
        if not path.is_file():
            raise FileNotFoundError(f"{str(path)!r} does not exist: import_rows takes the folder a rate-task run "
                                    "wrote (rows.csv and summary.json).")
    summary = json.loads(summary_path.read_text())
    saved = summary["config"]
    for key, current in (("size", config.size), ("backbone", config.backbone), ("pretrained", config.pretrained),
                         ("search", config.search)):
        if saved.get(key) != current:
            raise ValueError(f"{str(source)!r} was made with {key}={saved.get(key)!r}, this run has {current!r}: its "
                             "rows do not apply.")
    # checkpoint sets are compared by file name (pattern), not by folder: a clone of the repository elsewhere
    # (another absolute path) keeps the committed rows
    saved_learned = {f["name"]: list(f["checkpoints"]) for f in saved.get("learned", [])}
    for family in config.learned:
        if family.name in saved_learned and ([Path(c).name for c in saved_learned[family.name]]
                                             != [Path(c).name for c in family.checkpoints]):
            raise ValueError(f"{str(source)!r} has rows of a learned codec {family.name!r} made from "
                             f"{saved_learned[family.name]}; this run names {list(family.checkpoints)}.")
    codec_points = {name: {format_point(p) for p in points} for name, (_, points) in build_codecs(config).items()}
    photos = {p.name for p in select_photos(config)}
    counts = {"imported": 0, "already_cached": 0, "not_asked_for": 0}
    for row in read_rows_csv(rows_path):
        asked = (row.get("codec") in codec_points and row.get("point") in codec_points[row["codec"]]
                 and row.get("photo") in photos and all(f"consistency/{m}" in row for m in config.task_models))
        if not asked:
            counts["not_asked_for"] += 1
            continue
        path = row_path(config.out, row["codec"], row["point"], row["photo"])
        if read_row(path, config.task_models) is not None:
            counts["already_cached"] += 1
            continue
        write_json(path, row)
        counts["imported"] += 1
    for photo, reason in summary.get("failures", {}).items():
        if photo in photos and not (config.out / "failures" / f"{photo}.txt").is_file():
            _write_text(config.out / "failures" / f"{photo}.txt", str(reason) + "\n")
    return counts


# ----------------------------------------------------------------------------- run


def check_run_config(config: RateTaskConfig) -> None:
    """Refuse to resume a folder made with another photo size or encoder (its cache would be wrong)."""
    path = config.out / "run_config.json"
    current = {"size": config.size, "backbone": config.backbone, "pretrained": config.pretrained,
               "learned": {f.name: {"checkpoints": list(f.checkpoints), "architecture": f.architecture}
                           for f in config.learned}}
    if path.is_file():
        saved = json.loads(path.read_text())
        for key in ("size", "backbone", "pretrained"):
            if saved.get(key) != current[key]:
                raise ValueError(f"{str(config.out)!r} was made with {key}={saved.get(key)!r}, this run has "
                                 f"{current[key]!r}: its cached results do not apply. Use another --out.")
        for name, family in current["learned"].items():
            old = saved.get("learned", {}).get(name)
            if old is not None and old != family:
                raise ValueError(f"{str(config.out)!r} has results of a learned codec {name!r} made from "
                                 f"{old['checkpoints']}; this run names {family['checkpoints']}. Use another name "
                                 "or another --out.")
        current["learned"] = {**saved.get("learned", {}), **current["learned"]}
    write_json(path, current)


def run_rate_task(config: RateTaskConfig) -> dict:
    """Run (or resume) the study and write every output; returns the summary written to summary.json."""


    start = time.perf_counter()
    config.out.mkdir(parents=True, exist_ok=True)
    check_run_config(config)
    codecs = build_codecs(config)  # checks every codec and point before any work
    codec_points = {name: points for name, (_, points) in codecs.items()}
    photos = select_photos(config)
    pending = [p for p in photos if not photo_done(config, p, codec_points)]
    run_items(config, pending)
    compute_seconds = time.perf_counter() - start
    failures = {p.name: (config.out / "failures" / f"{p.name}.txt").read_text().strip()
                for p in photos if (config.out / "failures" / f"{p.name}.txt").is_file()}
    rows, incomplete = collect_rows(config.out, [p.name for p in photos if p.name not in failures],
                                                codec_points, config.task_models)
    written = curves.write_outputs(config.out, rows, codec_points, config.task_models, config.anchors,
                                        config.bd_method)
    summary = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items() if k != "specs"},
        "codecs": {name: [format_point(p) for p in points] for name, points in codec_points.items()},
        "photos": [p.name for p in photos if p.name not in failures and p.name not in incomplete],
        "failures": failures,
        "incomplete": incomplete,
        "photos_processed_this_run": len(pending),
        "rows": len(rows),
        "seconds_this_run": round(time.perf_counter() - start, 2),
        "compute_seconds_this_run": round(compute_seconds, 2),
        "stage_seconds_all_rows": curves.stage_seconds(rows),
        "bd_method": curves.bd_method_statement(config.bd_method),
        "outputs": written,
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, {os.cpu_count()} CPU(s), "
                   f"{torch.get_num_threads()} torch threads, accelerator {config.accelerator}",
    }
    write_json(config.out / "summary.json", summary)
    with (config.out / "history.jsonl").open("a") as history:
        history.write(json.dumps({k: summary[k] for k in ("photos_processed_this_run", "rows", "seconds_this_run",
                                                          "compute_seconds_this_run", "machine")}) + "\n")
    return summary

