"""Robustness as a training objective for RA-MIQA: hard negatives and adversarial examples, labelled by the machines.

A no-reference quality head trained on distorted photos only learns what distortions look like; an
image unlike any photo (a flat grey field, noise, a carpet of photo patches, a codec's gamed output)
falls outside its data and can score anywhere, higher than a clean photo included
(``benchmarks/results/ra_miqa_codecs.md``: flat grey 0.82 against 0.73 for the photos). This module
makes such images part of the training data, labelled the way every row of the dataset is labelled:
by the task models.

**Hard negatives** (:func:`make_negative`, kinds :data:`NEGATIVE_KINDS`; uint8 (H, W, 3), deterministic
by seed): ``flat_grey`` (one grey level), ``constant_colour`` (one RGB colour), ``gaussian_noise`` and
``uniform_noise`` (i.i.d. noise around a random mean, grey or coloured, at a random grain of 1 to 8 px),
``tiled_patch`` (one patch of the photo repeated: a periodic texture) and ``carpet`` (a grid of patches
cut from random places of the photo: the photo's colours and textures without its objects). The
``codec`` kind (:func:`make_codec_output`) is the photo coded by a named codec, e.g. one trained with
the RA-MIQA term whose outputs gamed the head (``benchmarks/results/ra_miqa_codecs.md``), at a seeded
severity.

**Labels of a negative.** A negative *replaces* a clean training reference (the photo it is cut from,
for textures; one assigned by seed, for the others) and is scored against it exactly as the dataset
scores a distorted image (:mod:`mlclipsim.data.build_dataset`): each task model's discrete and
continuous agreement of its output on the negative with its output on the reference, averaged per
task (``consistency/<model>``, ``mmos/<task>``, ``mmos``, ``soft/<model>``, ``mmos_soft/<task>``,
``mmos_soft``). One rule differs, and only for negatives (``empty_reference="zero"``): where a model
finds nothing on the reference (no box, empty mask), the dataset's rule "empty vs empty = 1" (and
the continuous label's NaN) would label a flat grey field a perfect copy of a photo without objects,
and teach the head exactly the failure it is meant to lose. A negative keeps none of the photo by
construction, so there the model's agreement is 0. Where the reference has content, the machines
decide: mostly near 0, but a carpet of a photo's own patches can keep its class (the label says so).
The column ``reference_empty`` lists the models the rule applied to. Codec outputs keep the photo's
content and are labelled by the dataset's rules unchanged.

**Adversarial examples** (:func:`pgd_attack`): ``steps`` signed-gradient steps that raise the head's
score within an L-infinity ball of radius ``eps`` around a real image (PGD, Madry et al. 2018), through
the model's own preprocessing (the view, the encoders' normalisation), so the perturbation lives on the
image's pixels. During training (:class:`AdversarialExamples`, the ``adversarial`` option of
:class:`~mlclipsim.training.ra_miqa_module.RAMIQAModule`) every ``every`` epochs ``count`` training images
are attacked with the current network, rounded to 8 bits, labelled by the task models against their
references like any distorted image (the dataset's rules unchanged) and kept in a pool from which each
training batch draws a ``fraction`` of extra rows.

**Negatives in the data** (:func:`prepare_negatives`, the ``negatives`` option of
:class:`~mlclipsim.training.ra_miqa_data.RAMIQADataModule`): made once per setting, labelled, encoded
by the frozen encoders on the training view, and kept under ``<cache_dir>/negatives_<hash>/``
(``images/*.png``, ``negatives.csv`` in the manifest's format, ``features_<hash>.npz``); they join the
training split only (validation and test stay the dataset's).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from mlclipsim.core.images import array_to_tensor, read_image, read_image_array, tensor_to_array
from mlclipsim.data.build_dataset import DEFAULT_TASK_MODELS, has_person
from mlclipsim.data.codec_distortions import register_codec_distortions
from mlclipsim.data.manifest import read_rows, write_rows
from mlclipsim.data.references import stable_seed
from mlclipsim.distortions import NUM_SEVERITIES, distort, psnr
from mlclipsim.machine.agreement import consistency
from mlclipsim.machine.mmos import mmos_by_task
from mlclipsim.machine.prediction_cache import load_task_models
from mlclipsim.machine.soft_agreement import soft_consistency, soft_task_labels
from mlclipsim.models.ra_miqa import (
    FrozenStage,
    build_frozen_stage,
    centre_crop,
    get_view,
    model_config,
    train_view_size,
)

NEGATIVE_KINDS = ("flat_grey", "constant_colour", "gaussian_noise", "uniform_noise", "tiled_patch", "carpet")
"""The kinds of hard negative without a photo's content (:func:`make_negative`), the default of the plan."""
CODEC_KIND = "codec"
"""The kind of a codec's output (:func:`make_codec_output`; the codecs are named in :class:`NegativesConfig`)."""
TEXTURE_KINDS = ("tiled_patch", "carpet")
"""Kinds cut from a photo (``source`` of :func:`make_negative`)."""
EMPTY_REFERENCE_RULES = ("zero", "dataset")
NEGATIVE_MODE = "negative"
ADVERSARIAL_MODE = "adversarial"
NEGATIVES_FILE = "negatives.csv"
GRAINS = (1, 2, 4, 8)


# ------------------------------------------------------------------------------------------ generators


def _noise_field(rng: np.random.Generator, height: int, width: int, draw: Callable[[tuple[int, ...]], np.ndarray]
                 ) -> np.ndarray:
    """Noise of a random grain (1-8 px blocks), grey or coloured, float (H, W, 3)."""
    grain = int(rng.choice(GRAINS))
    small = (math.ceil(height / grain), math.ceil(width / grain))
    grey = bool(rng.random() < 0.3)
    values = draw((*small, 1)) if grey else draw((*small, 3))
    values = np.repeat(np.repeat(values, grain, axis=0), grain, axis=1)[:height, :width]
    return np.broadcast_to(values, (height, width, 3))


def _patch(rng: np.random.Generator, source: np.ndarray, size: int) -> np.ndarray:
    height, width = source.shape[:2]
    size = max(1, min(size, height, width))
    top, left = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
    return source[top:top + size, left:left + size]


def make_negative(kind: str, height: int, width: int, seed: int, source: np.ndarray | None = None) -> np.ndarray:
    """One hard negative of ``kind`` (:data:`NEGATIVE_KINDS`): uint8 (height, width, 3), the same for the same seed.

    Args:
        kind: ``flat_grey`` (grey level in [0.1, 0.9]), ``constant_colour`` (uniform RGB), ``gaussian_noise``
            (mean in [0.25, 0.75] per channel, sigma in [0.05, 0.35]), ``uniform_noise`` (U(lo, hi),
            0 <= lo < hi <= 1), ``tiled_patch`` (one 8-64 px patch of ``source`` tiled), ``carpet`` (a grid
            of 8, 16 or 32 px patches from random places of ``source``).
        source: uint8 (h, w, 3) photo the textures are cut from (required for :data:`TEXTURE_KINDS`).
    """
    if kind not in NEGATIVE_KINDS:
        raise ValueError(f"Unknown negative kind {kind!r}; choose from {list(NEGATIVE_KINDS)}.")
    if height < 1 or width < 1:
        raise ValueError(f"A negative needs a positive size, got {height} x {width}.")
    rng = np.random.default_rng(stable_seed("negative", kind, seed))
    if kind == "flat_grey":
        image = np.full((height, width, 3), rng.uniform(0.1, 0.9))
    elif kind == "constant_colour":
        image = np.broadcast_to(rng.random(3), (height, width, 3))
    elif kind == "gaussian_noise":
        mean, sigma = rng.uniform(0.25, 0.75, 3), rng.uniform(0.05, 0.35)
        image = _noise_field(rng, height, width, lambda shape: mean[:shape[-1]] + sigma * rng.standard_normal(shape))
    elif kind == "uniform_noise":
        low, high = np.sort(rng.random(2))
        high = max(high, low + 0.1)
        image = _noise_field(rng, height, width, lambda shape: rng.uniform(low, high, shape))
    else:
        if source is None or source.ndim != 3 or source.shape[-1] != 3 or source.dtype != np.uint8:
            raise ValueError(f"A {kind!r} negative is cut from a photo: pass source= a uint8 (H, W, 3) array.")
        if kind == "tiled_patch":
            tile = _patch(rng, source, int(rng.integers(8, 65)))
            reps = (math.ceil(height / tile.shape[0]), math.ceil(width / tile.shape[1]), 1)
            return np.ascontiguousarray(np.tile(tile, reps)[:height, :width])
        size = int(rng.choice((8, 16, 32)))
        rows, cols = math.ceil(height / size), math.ceil(width / size)
        out = np.empty((rows * size, cols * size, 3), dtype=np.uint8)
        for r in range(rows):
            for c in range(cols):
                patch = _patch(rng, source, size)
                out[r * size:r * size + patch.shape[0], c * size:c * size + patch.shape[1]] = patch
        return np.ascontiguousarray(out[:height, :width])
    return np.clip(np.round(np.asarray(image, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def make_codec_output(source: np.ndarray, codec: str, seed: int) -> tuple[np.ndarray, int]:
    """``source`` (uint8 (H, W, 3)) through ``codec``'s real bitstream at a severity 1-5 drawn from ``seed``
    (the data engine's codec distortion, :mod:`mlclipsim.data.codec_distortions`); returns (uint8 image,
    severity). ``codec`` is a registered codec (``"webp"``, or a learned family registered before)."""
    severity = int(np.random.default_rng(stable_seed("codec", codec, seed)).integers(1, NUM_SEVERITIES + 1))
    (name,) = register_codec_distortions({codec: None})
    image = distort(source.astype(np.float32) / 255.0, name, severity, seed=seed)
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8), severity


@dataclass(frozen=True)
class NegativeSpec:
    """One planned negative: its ``index``, ``kind``, ``seed``, the reference row it replaces and, for the
    codec kind, the ``codec``."""

    index: int
    kind: str
    seed: int
    reference: Mapping[str, Any]
    codec: str | None = None

    @property
    def name(self) -> str:
        return f"{self.index:05d}_{self.kind}" + (f"_{self.codec}" if self.codec else "")

    @property
    def distortion(self) -> str:
        return f"negative_{self.kind}" + (f"_{self.codec}" if self.codec else "")


def distinct_references(rows: Sequence[Mapping[str, Any]]) -> list[dict]:
    """One row per distinct ``reference_path`` (sorted by it), with the reference's id, photo and crop."""
    seen: dict[str, dict] = {}
    for row in rows:
        path = str(row["reference_path"])
        seen.setdefault(path, {"reference_id": str(row["reference_id"]), "photo": str(row["photo"]),
                               "crop": row.get("crop", 0), "reference_path": path})
    return [seen[path] for path in sorted(seen)]


def check_negatives(kinds: Sequence[str], count: int, codecs: Sequence[str] = ()) -> tuple[str, ...]:
    """Validated kinds (at least one, each of :data:`NEGATIVE_KINDS` or :data:`CODEC_KIND`, which needs
    ``codecs``) for ``count`` >= 1 negatives."""
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    known = (*NEGATIVE_KINDS, CODEC_KIND)
    unknown = [k for k in kinds if k not in known]
    if not kinds or unknown:
        raise ValueError(f"kinds must name negative kinds from {list(known)}, got {list(kinds)}.")
    if CODEC_KIND in kinds and not codecs:
        raise ValueError("The 'codec' kind codes photos with the codecs named in 'codecs' (e.g. {webp: null} or "
                         "{my-codec: runs/my_codec_*.pth}); none is named.")
    if int(count) < 1:
        raise ValueError(f"count must be >= 1, got {count}.")
    return kinds


def plan_negatives(references: Sequence[Mapping[str, Any]], kinds: Sequence[str] = NEGATIVE_KINDS,
                   count: int = 256, seed: int = 0, codecs: Sequence[str] = ()) -> list[NegativeSpec]:
    """``count`` negatives cycling through ``kinds`` (codec negatives through ``codecs``), each replacing a
    reference (every reference used about equally often, in a seeded order); the same inputs give the same plan."""
    codecs = tuple(codecs)
    kinds = check_negatives(kinds, count, codecs)
    if not references:
        raise ValueError("There are no training references for the negatives to replace.")
    rng = np.random.default_rng(stable_seed("negatives", seed))
    order: list[int] = []
    while len(order) < count:
        order += rng.permutation(len(references)).tolist()
    plan = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        codec = codecs[(i // len(kinds)) % len(codecs)] if kind == CODEC_KIND else None
        plan.append(NegativeSpec(i, kind, stable_seed(seed, i), dict(references[order[i]]), codec))
    return plan


# ------------------------------------------------------------------------------------------ labelling


def dataset_labellers(root: str | os.PathLike, task_models: Sequence[str] | None = None,
                      person_models: Sequence[str] | None = None) -> tuple[list[str], list[str], dict]:
    """The task models, person models and model options that labelled a dataset folder (its
    ``build_info.json``; the build defaults without one), each replaced by the given one when given."""
    info = Path(root) / "build_info.json"
    config = json.loads(info.read_text()).get("config", {}) if info.is_file() else {}
    models = list(task_models) if task_models else list(config.get("task_models") or DEFAULT_TASK_MODELS)
    persons = list(person_models) if person_models is not None else list(config.get("person_models") or [])
    return models, [p for p in persons if p in models], dict(config.get("model_options") or {})


class TaskLabeller:
    """Labels images against a clean reference with the task models and the dataset's scoring.

    Args:
        models: task models (objects with ``name``, ``task``, ``predict``) or registry names.
        person_models: models that vote in the MMOS only where a COCO detector finds a person on the
            reference (as ``mlclipsim build-dataset --person-models``).
        threads, model_options: for models given by name.
    """

    def __init__(self, models: Sequence[Any] | Sequence[str] = DEFAULT_TASK_MODELS,
                 person_models: Sequence[str] = (), threads: int = 1,
                 model_options: Mapping[str, dict] | None = None) -> None:
        names = [m for m in models if isinstance(m, str)]
        built = load_task_models(names, threads, dict(model_options or {})) if names else []
        by_name = dict(zip(names, built))
        self.models = [by_name[m] if isinstance(m, str) else m for m in models]
        if not self.models:
            raise ValueError("A TaskLabeller needs at least one task model.")
        self.tasks = {m.name: m.task for m in self.models}
        self.person_models = tuple(person_models)

    @classmethod
    def for_dataset(cls, root: str | os.PathLike, task_models: Sequence[str] | None = None,
                    person_models: Sequence[str] | None = None, threads: int = 1) -> TaskLabeller:
        """The labeller of a dataset folder: its ``build_info.json`` task and person models (and their
        options) unless given; the build defaults when the folder has no build_info.json."""
        models, persons, options = dataset_labellers(root, task_models, person_models)
        return cls(models, persons, threads, options)

    def predict(self, images: Sequence[np.ndarray]) -> dict[str, list]:
        """Every model's predictions for uint8 (H, W, 3) images."""
        return {m.name: m.predict(list(images)) for m in self.models}

    def label(self, reference: np.ndarray | Mapping[str, Any], images: Sequence[np.ndarray],
              empty_reference: str = "dataset") -> list[dict[str, Any]]:
        """Label columns of each image against ``reference`` (a uint8 photo or its predictions by model).

        ``empty_reference``: ``"dataset"`` scores as the dataset does (empty vs empty agrees: 1; the continuous
        label is NaN); ``"zero"`` gives 0 to a model whose output on the reference is empty (for negatives,
        see the module docstring), recording those models in ``reference_empty``.
        """
        if empty_reference not in EMPTY_REFERENCE_RULES:
            raise ValueError(f"empty_reference must be one of {list(EMPTY_REFERENCE_RULES)}, got {empty_reference!r}.")
        references = (dict(reference) if isinstance(reference, Mapping)
                      else {name: preds[0] for name, preds in self.predict([reference]).items()})
        voters = [m.name for m in self.models
                  if m.name not in self.person_models or has_person(references)]
        empty = [m.name for m in self.models if references[m.name].is_empty] if empty_reference == "zero" else []
        predictions = self.predict(images)
        rows = []
        for i in range(len(images)):
            scores = {m.name: 0.0 if m.name in empty else consistency(m, predictions[m.name][i], references[m.name])
                      for m in self.models}
            soft = {m.name: 0.0 if m.name in empty else soft_consistency(m, predictions[m.name][i], references[m.name])
                    for m in self.models}
            by_task = mmos_by_task({n: scores[n] for n in voters}, self.tasks)
            soft_by_task = soft_task_labels({n: soft[n] for n in voters}, self.tasks)
            defined = [v for v in soft_by_task.values() if not np.isnan(v)]
            row: dict[str, Any] = {f"consistency/{n}": v for n, v in scores.items()}
            row.update({f"mmos/{task}": value.score for task, value in sorted(by_task.items())})
            row["mmos"] = float(np.mean([value.score for value in by_task.values()]))
            row.update({f"soft/{n}": v for n, v in soft.items()})
            row.update({f"mmos_soft/{task}": v for task, v in sorted(soft_by_task.items())})
            row["mmos_soft"] = float(np.mean(defined)) if defined else math.nan
            row["reference_empty"] = ";".join(empty)
            rows.append(row)
        return rows


# ------------------------------------------------------------------------------------ negatives on disk


@dataclass
class NegativesConfig:
    """The ``negatives`` option of the RA-MIQA DataModule.

    Attributes:
        kinds: negative kinds (:data:`NEGATIVE_KINDS`, and :data:`CODEC_KIND` with ``codecs``), cycled.
        count: how many negatives join the training split.
        seed: the plan's and the generators' seed.
        task_models, person_models: labellers (default: the dataset's ``build_info.json``, see
            :meth:`TaskLabeller.for_dataset`).
        empty_reference: ``"zero"`` (default, see the module docstring) or ``"dataset"``; for the kinds without
            a photo's content (codec outputs keep the photo and are labelled by the dataset's rules).
        threads: CPU threads of the task models.
        codecs: for the ``codec`` kind, codec name -> None (a registered codec, e.g. ``webp``) or the
            checkpoint(s) of a learned family (a path or glob; e.g. a codec trained with the RA-MIQA term,
            whose gamed outputs the head must learn to rate as the machines do).
    """

    kinds: Sequence[str] = NEGATIVE_KINDS
    count: int = 256
    seed: int = 0
    task_models: Sequence[str] | None = None
    person_models: Sequence[str] | None = None
    empty_reference: str = "zero"
    threads: int = 1
    codecs: Mapping[str, str | None] | None = None

    def __post_init__(self) -> None:
        self.codecs = {str(k): (None if v is None else str(v)) for k, v in dict(self.codecs or {}).items()}
        self.kinds = list(check_negatives(self.kinds, self.count, list(self.codecs)))
        if self.empty_reference not in EMPTY_REFERENCE_RULES:
            raise ValueError(f"negatives.empty_reference must be one of {list(EMPTY_REFERENCE_RULES)}, "
                             f"got {self.empty_reference!r}.")

    @classmethod
    def parse(cls, value: NegativesConfig | Mapping[str, Any] | None) -> NegativesConfig | None:
        if value is None or isinstance(value, cls):
            return value
        unknown = sorted(set(value) - {f for f in cls.__dataclass_fields__})
        if unknown:
            raise ValueError(f"Unknown negatives option(s) {unknown}; options are {list(cls.__dataclass_fields__)}.")
        return cls(**dict(value))


@dataclass
class NegativeSet:
    """Negatives on disk: ``rows`` (manifest-style; ``distorted_path`` relative to ``folder``) and, when encoded,
    their frozen features ``patch`` (N, C, g, g) and ``region`` (N, Cr, h, w), float16, in row order."""

    folder: Path
    rows: list[dict]
    patch: torch.Tensor | None = None
    region: torch.Tensor | None = None


def _digest(value: Any) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:10]


def negatives_folder(cache_dir: str | os.PathLike, root: str | os.PathLike, config: NegativesConfig,
                     references: Sequence[Mapping[str, Any]]) -> Path:
    """``<cache_dir>/negatives_<hash>``: the hash covers the settings (threads aside), the labelling models, the
    dataset folder and the references."""
    settings = {k: v for k, v in asdict(config).items() if k not in ("threads", "task_models", "person_models")}
    key = {"config": settings, "labellers": dataset_labellers(root, config.task_models, config.person_models),
           "root": str(Path(root).resolve()), "references": [str(r["reference_path"]) for r in references]}
    return Path(cache_dir) / f"negatives_{_digest(key)}"


def encode_views(stage: FrozenStage, spec: Mapping[str, Any], images: Sequence[torch.Tensor],
                 batch_size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen features (float16 patch, region) of (3, H, W) images on the training view of ``spec``."""
    view, size = get_view(spec["view"]), int(train_view_size(spec))
    patches, regions = [], []
    for start in range(0, len(images), batch_size):
        views = torch.cat([view.train(image[None], size) for image in images[start:start + batch_size]])
        with torch.no_grad():
            features = stage(views)
        if features.patch is None:
            raise ValueError("A timm ViT patch encoder trains from images; its negatives are not encoded "
                             "(from_images: true).")
        patches.append(features.patch.half())
        regions.append(features.region.half())
    return torch.cat(patches), torch.cat(regions)


def prepare_negatives(root: str | os.PathLike, rows: Sequence[Mapping[str, Any]],
                      config: NegativesConfig | Mapping[str, Any], cache_dir: str | os.PathLike,
                      spec: Mapping[str, Any] | None = None, labeller: TaskLabeller | None = None) -> NegativeSet:
    """Make, label and (with ``spec``, the frozen-feature settings) encode the negatives of the references of
    ``rows`` (manifest rows of the training photos); everything is kept on disk and reused.

    Returns the :class:`NegativeSet`; its rows carry the manifest's label columns, ``distortion`` =
    ``negative_<kind>``, ``mode`` = ``"negative"`` and ``reference_empty``.
    """
    config = NegativesConfig.parse(config)
    assert config is not None
    root = Path(root)
    references = distinct_references(rows)
    folder = negatives_folder(cache_dir, root, config, references)
    table = folder / NEGATIVES_FILE
    if not table.is_file():
        labeller = labeller or TaskLabeller.for_dataset(root, config.task_models, config.person_models, config.threads)
        register_codec_distortions({name: checkpoints for name, checkpoints in config.codecs.items()
                                    if checkpoints is not None})  # learned families become codecs first
        by_reference: dict[str, list[NegativeSpec]] = defaultdict(list)
        for negative in plan_negatives(references, config.kinds, config.count, config.seed, list(config.codecs)):
            by_reference[str(negative.reference["reference_path"])].append(negative)
        out = []
        (folder / "images").mkdir(parents=True, exist_ok=True)
        for path, negatives in sorted(by_reference.items()):
            photo = read_image_array(root / path)
            height, width = photo.shape[:2]
            for is_codec in (False, True):
                group = [n for n in negatives if (n.kind == CODEC_KIND) == is_codec]
                if not group:
                    continue
                made = [make_codec_output(photo, str(n.codec), n.seed) if is_codec
                        else (make_negative(n.kind, height, width, n.seed, photo), 0) for n in group]
                labels = labeller.label(photo, [image for image, _ in made],
                                        "dataset" if is_codec else config.empty_reference)
                for negative, (image, severity), label in zip(group, made, labels):
                    name = f"images/{negative.name}.png"
                    Image.fromarray(image).save(folder / name, compress_level=1)
                    out.append({**negative.reference, "distorted_path": name, "distortion": negative.distortion,
                                "mode": NEGATIVE_MODE, "roi_severity": severity, "bg_severity": severity,
                                "roi_fraction": 0.0, "negative_seed": negative.seed, **label,
                                "psnr": psnr(image.astype(np.float32) / 255.0, photo.astype(np.float32) / 255.0)})
        out.sort(key=lambda r: r["distorted_path"])
        write_rows(table, out)
        (folder / "negatives.json").write_text(json.dumps({"config": asdict(config), "root": str(root),
                                                           "references": len(references)}, indent=2) + "\n")
    negative_rows = read_rows(table)
    if spec is None:
        return NegativeSet(folder, negative_rows)
    features = folder / f"features_{_digest(dict(spec))}.npz"
    if not features.is_file():
        stage = build_frozen_stage(model_config(**spec))
        patch, region = encode_views(stage, spec, [read_image(folder / r["distorted_path"]) for r in negative_rows])
        temporary = features.with_name(features.stem + ".tmp.npz")
        np.savez(temporary, paths=np.array([r["distorted_path"] for r in negative_rows]), patch=patch.numpy(),
                 region=region.numpy())
        os.replace(temporary, features)
    with np.load(features) as data:
        if data["paths"].tolist() != [r["distorted_path"] for r in negative_rows]:
            raise ValueError(f"{features} does not match {table}; delete the folder {folder} and run again.")
        return NegativeSet(folder, negative_rows, torch.from_numpy(data["patch"]), torch.from_numpy(data["region"]))


# ------------------------------------------------------------------------------------------ adversarial


def pgd_attack(score: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, eps: float = 4 / 255,
               steps: int = 3, step_size: float | None = None, random_start: bool = False,
               seed: int = 0) -> torch.Tensor:
    """Projected gradient ascent of ``score`` within an L-infinity ball: images the scorer rates higher.

    Args:
        score: images (N,3,H,W) -> (N,) scores to raise (differentiable; e.g. an RA-MIQA head through its
            preprocessing).
        images: (N,3,H,W) in [0,1], the real images attacked (not changed).
        eps: the L-infinity budget (default 4/255).
        steps: signed-gradient steps (default 3).
        step_size: per step (default 2.5 eps / steps, Madry et al.'s choice, so the ball's edge is reachable).
        random_start: start from a uniform point of the ball (seeded by ``seed``) instead of the image.

    Returns:
        (N,3,H,W) adversarial images, detached, with |x_adv - x| <= eps and x_adv in [0,1].
    """
    if eps < 0 or steps < 0:
        raise ValueError(f"eps and steps must be >= 0, got eps={eps}, steps={steps}.")
    alpha = 2.5 * eps / max(steps, 1) if step_size is None else float(step_size)
    clean = images.detach()
    low, high = (clean - eps).clamp(0.0, 1.0), (clean + eps).clamp(0.0, 1.0)
    adversarial = clean.clone()
    if random_start and eps > 0:
        generator = torch.Generator(device="cpu").manual_seed(seed)
        noise = (torch.rand(clean.shape, generator=generator) * 2 - 1) * eps
        adversarial = torch.max(torch.min(adversarial + noise.to(clean), high), low)
    for _ in range(steps):
        adversarial.requires_grad_(True)
        with torch.enable_grad():
            (gradient,) = torch.autograd.grad(score(adversarial).sum(), adversarial)
        adversarial = torch.max(torch.min(adversarial.detach() + alpha * gradient.sign(), high), low)
    return adversarial.detach()


def view_scorer(net: torch.nn.Module, frozen: FrozenStage, config: Mapping[str, Any]
                ) -> Callable[[torch.Tensor], torch.Tensor]:
    """images (N,3,H,W) -> (N,) sum of the heads' predictions, on the model's scored view (as RAMIQAModel)."""
    view, size, train_size = get_view(config["view"]), int(config["view_size"]), int(train_view_size(config))

    def score(images: torch.Tensor) -> torch.Tensor:
        return net(frozen(centre_crop(view.train(images, train_size), size))).sum(1)

    return score


@dataclass
class AdversarialConfig:
    """The ``adversarial`` option of the RA-MIQA training module.

    Attributes:
        eps, steps, step_size, random_start: the attack (:func:`pgd_attack`).
        every, start_epoch: a new round at the start of epochs start_epoch, start_epoch + every, ...
            (default 1: the untrained network of epoch 0 is no adversary worth labelling).
        count: training images attacked per round (random, seeded by ``seed`` and the epoch).
        pool_size: adversarial rows kept (the newest).
        fraction: extra rows drawn from the pool per training batch, as a share of the batch size.
        task_models, person_models, threads: labellers (default: the dataset's ``build_info.json``).
    """

    eps: float = 4 / 255
    steps: int = 3
    step_size: float | None = None
    random_start: bool = False
    every: int = 1
    start_epoch: int = 1
    count: int = 32
    pool_size: int = 512
    fraction: float = 0.25
    seed: int = 0
    task_models: Sequence[str] | None = None
    person_models: Sequence[str] | None = None
    threads: int = 1

    def __post_init__(self) -> None:
        if self.every < 1 or self.count < 1 or self.pool_size < 1 or self.steps < 1 or self.eps <= 0:
            raise ValueError("adversarial needs eps > 0 and steps, every, count, pool_size >= 1; got "
                             f"{asdict(self)}.")
        if not 0 < self.fraction <= 1:
            raise ValueError(f"adversarial.fraction must be in (0, 1], got {self.fraction}.")

    @classmethod
    def parse(cls, value: AdversarialConfig | Mapping[str, Any] | None) -> AdversarialConfig | None:
        if value is None or isinstance(value, cls):
            return value
        unknown = sorted(set(value) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"Unknown adversarial option(s) {unknown}; options are {list(cls.__dataclass_fields__)}.")
        return cls(**dict(value))


@dataclass
class AdversarialExamples:
    """A pool of labelled adversarial examples that training batches draw extra rows from.

    :meth:`refresh` attacks training images of a RAMIQADataModule (its ``root``, ``rows["train"]`` and
    ``targets``) with the current network; :meth:`mix` appends pool rows to a batch (cached features
    ``{"patch", "region", "target"}`` or ``{"images", "target"}``).
    """

    config: AdversarialConfig
    labeller: TaskLabeller | None = None
    pool: dict[str, torch.Tensor] = field(default_factory=dict)
    _frozen: FrozenStage | None = None

    def due(self, epoch: int) -> bool:
        return epoch >= self.config.start_epoch and (epoch - self.config.start_epoch) % self.config.every == 0

    def __len__(self) -> int:
        return len(self.pool.get("target", ()))

    def refresh(self, net: torch.nn.Module, options: Mapping[str, Any], datamodule: Any, epoch: int,
                frozen: FrozenStage | None = None, from_images: bool = False) -> dict[str, float]:
        """One round: attack ``count`` training images with ``net`` (and ``frozen``, else the encoders of the model
        config ``options``), label them, add them to the pool; returns statistics
        (``score_gain``: mean raise of the heads' summed score by the attack, ``label``: mean label, ``rows``)."""
        config = self.config
        for attribute in ("root", "rows", "targets"):
            if not hasattr(datamodule, attribute):
                raise ValueError("Adversarial training draws its images from a RAMIQADataModule (root, rows, "
                                 f"targets); got {type(datamodule).__name__}.")
        rows = [r for r in datamodule.rows.get("train", []) if r.get("mode") != NEGATIVE_MODE]
        if not rows:
            raise ValueError("Adversarial training found no training rows; call the DataModule's setup first.")
        root = Path(datamodule.root)
        if self.labeller is None:
            self.labeller = TaskLabeller.for_dataset(root, config.task_models, config.person_models, config.threads)
        device = next(net.parameters()).device
        if frozen is None:
            if self._frozen is None:
                self._frozen = build_frozen_stage(options)
            frozen = self._frozen.to(device)
        score = view_scorer(net, frozen, options)
        view, size, train_size = get_view(options["view"]), int(options["view_size"]), int(train_view_size(options))
        rng = np.random.default_rng(stable_seed("adversarial", config.seed, epoch))
        chosen = rng.choice(len(rows), size=min(config.count, len(rows)), replace=False)
        was_training = net.training
        net.eval()
        gains, kept_inputs, kept_targets = [], [], []
        try:
            for k, index in enumerate(chosen.tolist()):
                row = rows[index]
                image = read_image(root / str(row["distorted_path"]))[None].to(device)
                adversarial = pgd_attack(score, image, config.eps, config.steps, config.step_size,
                                         config.random_start, seed=stable_seed(config.seed, epoch, k))
                array = tensor_to_array(adversarial[0])
                quantised = array_to_tensor(array)[None].to(device)
                with torch.no_grad():
                    gains.append(float(score(quantised) - score(image)))
                reference = read_image_array(root / str(row["reference_path"]))
                label = self.labeller.label(reference, [array])[0]
                missing = [c for c in datamodule.targets if c not in label]
                if missing:
                    raise ValueError(f"The task models label no column(s) {missing} for the adversarial examples; "
                                     f"they label {sorted(label)}.")
                target = [float(label[c]) for c in datamodule.targets]
                if any(math.isnan(t) for t in target):
                    continue  # a continuous label whose task does not apply here, as the DataModule drops
                views = centre_crop(view.train(quantised, train_size), size)
                if from_images:
                    kept_inputs.append({"images": views[0].cpu()})
                else:
                    with torch.no_grad():
                        features = frozen(views)
                    kept_inputs.append({"patch": features.patch[0].half().cpu(),
                                        "region": features.region[0].half().cpu()})
                kept_targets.append(target)
        finally:
            net.train(was_training)
        if kept_targets:
            new = {key: torch.stack([item[key] for item in kept_inputs]) for key in kept_inputs[0]}
            new["target"] = torch.tensor(kept_targets, dtype=torch.float32)
            self.pool = {key: torch.cat([self.pool[key], value])[-config.pool_size:] if key in self.pool else value
                         for key, value in new.items()}
        return {"score_gain": float(np.mean(gains)) if gains else math.nan,
                "label": float(np.mean(kept_targets)) if kept_targets else math.nan,
                "rows": float(len(kept_targets)), "pool": float(len(self))}

    def mix(self, batch: Mapping[str, torch.Tensor],
            generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """``batch`` with round(fraction * batch size) (at least 1) random pool rows appended (unchanged while the
        pool is empty)."""
        batch = dict(batch)
        if not len(self):
            return batch
        size = len(batch["target"])
        extra = max(1, round(self.config.fraction * size))
        picks = torch.randint(len(self), (extra,), generator=generator)
        for key, value in self.pool.items():
            if key not in batch:
                raise ValueError(f"The adversarial pool holds {sorted(self.pool)} but the batch has {sorted(batch)}.")
            batch[key] = torch.cat([batch[key], value[picks].to(batch[key].device, batch[key].dtype)])
        return batch


def negative_targets(negatives: NegativeSet, targets: Sequence[str]
                     ) -> tuple[list[dict], torch.Tensor, torch.Tensor]:
    """The negatives' rows with every target defined, their (N, len(targets)) labels and their indices (N,)
    into ``negatives`` (rows with a NaN target are left out, as the DataModule leaves them out)."""
    columns = set(negatives.rows[0]) if negatives.rows else set()
    missing = [c for c in targets if c not in columns]
    if missing:
        raise ValueError(f"The negatives in {str(negatives.folder)!r} have no column(s) {missing}; they carry "
                         f"{sorted(c for c in columns if '/' in c)}. Delete the folder to label them again.")
    kept = [i for i, row in enumerate(negatives.rows)
            if not any(isinstance(row[c], float) and math.isnan(row[c]) for c in targets)]
    values = torch.tensor([[float(negatives.rows[i][c]) for c in targets] for i in kept], dtype=torch.float32)
    index = torch.tensor(kept, dtype=torch.long)
    return [negatives.rows[i] for i in kept], values.reshape(len(kept), len(targets)), index
