"""RA-MIQA training data: frozen-encoder features of a dataset's images, cached once, and the DataModule.

Training the hybrid RA-MIQA (:mod:`mlclipsim.models.ra_miqa`) only moves its small Transformer;
the frozen CNN's output for an image is the same in every epoch. :func:`cache_features` therefore
runs the frozen encoders once over every distorted image of a manifest, on the *training view*
(``view="resize"``: the whole image at 224 px; ``view="center_crop"``: short side 288, centre 288 x
288), and stores the patch grid and region map (float16) per reference in
``<cache_dir>/<spec>/<reference_id>.npz``; the folder name hashes every setting that changes the
features, and ``cache_info.json`` records them. A killed run resumes (finished references are skipped);
``processes > 1`` shards the references over CPU processes with Lightning ``Trainer.predict``
(:func:`~mlclipsim.machine.labelling.run_labelling`).

Augmentations then act on the cached maps: horizontal flips flip both maps (a CNN is nearly, not
exactly, flip-equivariant: the flipped map approximates the map of the flipped image), and random
``view_size`` crops of the larger 288 view are windows of the maps at offsets that are whole region
cells (32 px), so patch and region windows stay aligned. The validation and test splits use the
centre window, which is the scored view. ``from_images=True`` reads the images instead (a timm ViT
patch encoder trains end to end and cannot be cached): views, crops and flips in pixels.

The split is the one of :class:`~mlclipsim.data.datamodules.MachineQualityDataModule` with the same
``split`` and ``seed`` (by photo), so train, val and test photos equal those of the evaluation benchmark.
Targets: head ``task/consistency`` reads the task's label in the chosen label set (``labels``,
:data:`~mlclipsim.data.manifest.LABEL_SETS`): ``mmos/<task>`` (default ``"discrete"``: the mean
consistency of the task's models) or ``mmos_soft/<task>`` (``"soft"``: the continuous one; rows where
it is NaN, a task that does not apply, are left out with one warning); ``accuracy`` and ``composite``
read ``accuracy/<task>`` and ``composite/<task>``, which the offline data engine does not write (it
has no ground-truth annotations). The clean references join each split with label 1
(``include_references``, default on): a task model's output on the reference agrees with itself, so
consistency is exactly 1 there, and without them the model never sees the top of its scale (the
dataset holds distorted images only); NaN where the label is NaN on every image of the reference.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import warnings
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from mlclipsim.core.images import read_image
from mlclipsim.data.datamodules import MachineQualityDataModule, load_manifest
from mlclipsim.data.manifest import DEFAULT_LABELS, label_column, label_set, parse_label_column
from mlclipsim.machine.labelling import run_labelling
from mlclipsim.models.ra_miqa import (
    build_frozen_stage,
    centre_crop,
    get_view,
    model_config,
    parse_heads,
    train_view_size,
)
from mlclipsim.training.ra_miqa_negatives import NegativesConfig, NegativeSet, negative_targets, prepare_negatives

CACHE_INFO = "cache_info.json"
FROZEN_KEYS = ("patch_encoder", "patch_layers", "region_encoder", "region_layer", "grid_stride", "pretrained",
               "region_pretrained", "view", "view_size", "train_view_size", "vit_options")
"""Model options that decide the frozen features (the ``encoder`` section of a training config)."""

REFERENCE_SUFFIX = "__reference"
TARGET_COLUMNS = {"consistency": None, "accuracy": "accuracy/{task}", "composite": "composite/{task}"}
"""Per head target, the manifest column (None: the task's label of the chosen label set, :func:`target_column`)."""


def target_column(head: str, labels: str = DEFAULT_LABELS) -> str:
    """Manifest column that labels a head in the label set ``labels``: ``detection/consistency`` ->
    ``mmos/detection`` (``"discrete"``) or ``mmos_soft/detection`` (``"soft"``); ``accuracy`` and
    ``composite`` heads read ``accuracy/<task>`` / ``composite/<task>`` whatever the label set."""
    label_set(labels)  # an unknown label set fails here, with the closest name
    task, target = parse_heads(head)[0].split("/")
    column = TARGET_COLUMNS[target]
    return label_column(labels, task=task) if column is None else column.format(task=task)


def frozen_spec(encoder: Mapping[str, Any] | None) -> dict[str, Any]:
    """The full frozen-feature settings (defaults filled in, train view size resolved)."""
    encoder = dict(encoder or {})
    unknown = sorted(set(encoder) - set(FROZEN_KEYS))
    if unknown:
        raise ValueError(f"Unknown encoder option(s) {unknown}; the encoder section takes {list(FROZEN_KEYS)}.")
    config = model_config(**encoder)
    spec = {key: config[key] for key in FROZEN_KEYS}
    spec["train_view_size"] = train_view_size(config)
    return spec


def cache_folder(cache_dir: str | os.PathLike, spec: Mapping[str, Any], root: str | os.PathLike) -> Path:
    """``<cache_dir>/<encoder>_<view><size>_<hash>``; the hash covers the spec and the dataset folder."""
    text = json.dumps({"spec": dict(spec), "root": str(Path(root).resolve())}, sort_keys=True)
    digest = hashlib.sha1(text.encode()).hexdigest()[:10]
    encoder = str(spec["patch_encoder"]).split("/")[-1]
    return Path(cache_dir) / f"{encoder}_{spec['view']}{spec['train_view_size']}_{digest}"


def _file_name(reference_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", reference_id) + ".npz"


@dataclass(frozen=True)
class CacheJob:
    """Everything a caching process needs (picklable)."""

    root: str
    folder: str
    spec: dict = field(default_factory=dict)
    batch_size: int = 16
    threads: int = 1


class FeatureCacheWorker:
    """Builds the frozen encoders once per process; :meth:`process` caches one reference's images."""

    def __init__(self, job: CacheJob) -> None:
        torch.set_num_threads(job.threads)
        self.job = job
        self.root, self.folder = Path(job.root), Path(job.folder)
        self.stage = build_frozen_stage(model_config(**job.spec))
        self.view = get_view(job.spec["view"])
        self.size = int(job.spec["train_view_size"])

    def process(self, item: tuple[str, list[str]]) -> dict:
        reference_id, paths = item
        out = self.folder / _file_name(reference_id)
        if out.is_file():
            return {"reference_id": reference_id, "images": len(paths), "cached": True}
        patches, regions = [], []
        for start in range(0, len(paths), self.job.batch_size):
            chunk = paths[start:start + self.job.batch_size]
            views = torch.cat([self.view.train(read_image(self.root / p)[None], self.size) for p in chunk])
            with torch.no_grad():
                features = self.stage(views)
            if features.patch is None:
                raise ValueError("A timm ViT patch encoder trains from images and cannot be cached; "
                                 "set from_images: true.")
            patches.append(features.patch.half().numpy())
            regions.append(features.region.half().numpy())
        temporary = out.with_name(out.stem + ".tmp.npz")
        np.savez(temporary, paths=np.array(paths), patch=np.concatenate(patches), region=np.concatenate(regions))
        os.replace(temporary, out)
        return {"reference_id": reference_id, "images": len(paths), "cached": False}


def cache_features(root: str | os.PathLike, encoder: Mapping[str, Any] | None = None,
                   cache_dir: str | os.PathLike = "outputs/ra_miqa_cache", photos: Sequence[str] | None = None,
                   processes: int = 1, threads: int = 1, batch_size: int = 16, progress: bool = True) -> Path:
    """Cache the frozen features of every manifest image (of ``photos``, if given); returns the folder."""
    root = Path(root)
    spec = frozen_spec(encoder)
    folder = cache_folder(cache_dir, spec, root)
    folder.mkdir(parents=True, exist_ok=True)
    info = folder / CACHE_INFO
    if not info.is_file():
        info.write_text(json.dumps({"spec": spec, "root": str(root)}, indent=2) + "\n")
    rows, _ = load_manifest(root)
    wanted = None if photos is None else set(photos)
    by_reference: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        if wanted is None or str(row["photo"]) in wanted:
            by_reference[str(row["reference_id"])].append(str(row["distorted_path"]))
            # the clean reference itself, in its own file (see RAMIQADataModule's include_references)
            by_reference[f"{row['reference_id']}{REFERENCE_SUFFIX}"] = [str(row["reference_path"])]
    items = [(ref, paths) for ref, paths in sorted(by_reference.items()) if not (folder / _file_name(ref)).is_file()]
    if not items:
        return folder
    job = CacheJob(str(root), str(folder), spec, batch_size, threads)
    if processes > 1:
        run_labelling(FeatureCacheWorker, job, items, processes=processes, threads=threads)
    else:
        worker = FeatureCacheWorker(job)
        from tqdm import tqdm

        for item in tqdm(items, desc=f"caching RA-MIQA features in {folder.name}", disable=not progress):
            worker.process(item)
    return folder


def load_cached(folder: str | os.PathLike, paths: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Cached (patch, region) float16 tensors of ``paths`` (manifest distorted paths), in that order."""
    folder = Path(folder)
    index: dict[str, tuple[Path, int]] = {}
    files = sorted(folder.glob("*.npz"))
    arrays: dict[Path, Any] = {}
    for file in files:
        if file.name.endswith(".tmp.npz"):
            continue
        with np.load(file) as data:
            arrays[file] = (data["patch"], data["region"])
            for i, path in enumerate(data["paths"].tolist()):
                index[path] = (file, i)
    missing = [p for p in paths if p not in index]
    if missing:
        raise FileNotFoundError(f"{len(missing)} image(s) have no cached features in {str(folder)!r} (first: "
                                f"{missing[0]!r}); run cache_features (or the training, whose prepare_data does).")
    if not paths:
        return torch.zeros(0), torch.zeros(0)
    patch = np.stack([arrays[index[p][0]][0][index[p][1]] for p in paths])
    region = np.stack([arrays[index[p][0]][1][index[p][1]] for p in paths])
    return torch.from_numpy(patch), torch.from_numpy(region)


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


def reference_rows(rows: Sequence[dict], targets: Sequence[str]) -> list[dict]:
    """One row per clean reference of ``rows`` with label 1 for each target (a model's output on the
    reference agrees with itself), or NaN where the label is NaN on every distorted image of that
    reference (a continuous label whose task does not apply there, e.g. no box on the reference)."""
    by_reference: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_reference[str(row["reference_path"])].append(row)
    out = []
    for path, group in sorted(by_reference.items()):
        labels = {c: 1.0 if any(not _is_nan(r[c]) for r in group) else math.nan for c in targets}
        out.append({**group[-1], "distorted_path": path, "distortion": "none", "mode": "reference", **labels})
    return out


# ------------------------------------------------------------------------------------------ datasets


def _window(grid: int, region_grid: int, size: int, offset: int) -> tuple[slice, slice]:
    scale = max(1, grid // region_grid)
    region_size = max(1, size // scale) if region_grid > 1 else 1
    region_offset = offset // scale if region_grid > 1 else 0
    return slice(offset, offset + size), slice(region_offset, region_offset + region_size)


class CachedFeatureDataset(Dataset):
    """Items ``{"patch": (C,g,g), "region": (Cr,h,w), "target": (H,), "index"}`` from cached maps.

    ``train=True``: random horizontal flips (``flip``) and random ``grid``-sized windows at whole
    region-cell offsets (``crop``, when the cached grid is larger); else the centre window.
    """

    def __init__(self, patch: torch.Tensor, region: torch.Tensor, targets: torch.Tensor, grid: int,
                 train: bool = False, flip: bool = True, crop: bool = True) -> None:
        self.patch, self.region, self.targets = patch, region, targets
        self.grid, self.train, self.flip, self.crop = grid, train, flip, crop
        full = patch.shape[-1] if len(patch) else grid
        self.full, self.region_grid = full, (region.shape[-1] if len(region) else 1)
        self.scale = max(1, full // self.region_grid)
        if full > grid and self.region_grid > 1 and (full % self.region_grid or grid % self.scale
                                                     or (full - grid) % self.scale):
            raise ValueError(f"Cannot crop a {grid}-cell window aligned with the region map from a {full}-cell "
                             f"grid and a {self.region_grid}-cell region map; use view 'resize' or other sizes.")
        self.offsets = list(range(0, full - grid + 1, self.scale)) if full > grid else [0]
        centre = (full - grid) // 2
        self.centre = min(self.offsets, key=lambda o: abs(o - centre))

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> dict:
        if self.train and self.crop and len(self.offsets) > 1:
            top = self.offsets[int(torch.randint(len(self.offsets), ()))]
            left = self.offsets[int(torch.randint(len(self.offsets), ()))]
        else:
            top = left = self.centre
        rows, region_rows = _window(self.full, self.region_grid, self.grid, top)
        cols, region_cols = _window(self.full, self.region_grid, self.grid, left)
        patch = self.patch[index][:, rows, cols]
        region = self.region[index][:, region_rows, region_cols]
        if self.train and self.flip and bool(torch.rand(()) < 0.5):
            patch, region = patch.flip(-1), region.flip(-1)
        return {"patch": patch, "region": region, "target": self.targets[index], "index": index}


class ImageViewDataset(Dataset):
    """Items ``{"images": (3,S,S), "target", "index"}`` read from files: training view, random S crop
    and flip when ``train``, else the centre crop (the scored view)."""

    def __init__(self, root: Path, paths: Sequence[str], targets: torch.Tensor, view: str, size: int,
                 train_size: int, train: bool = False, flip: bool = True, crop: bool = True) -> None:
        self.root, self.paths, self.targets = root, list(paths), targets
        self.view, self.size, self.train_size = get_view(view), size, train_size
        self.train, self.flip, self.crop = train, flip, crop

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        image = self.view.train(read_image(self.root / self.paths[index])[None], self.train_size)[0]
        spare = self.train_size - self.size
        if self.train and self.crop and spare > 0:
            top, left = (int(torch.randint(spare + 1, ())) for _ in range(2))
            image = image[:, top:top + self.size, left:left + self.size]
        else:
            image = centre_crop(image, self.size)
        if self.train and self.flip and bool(torch.rand(()) < 0.5):
            image = image.flip(-1)
        return {"images": image.clamp(0.0, 1.0), "target": self.targets[index], "index": index}


class RAMIQADataModule(L.LightningDataModule):
    """Train/val/test RA-MIQA data of a dataset folder, split by photo (the benchmark's split).

    Args:
        root: the dataset folder (``manifest.csv`` + images, from ``mlclipsim build-dataset``).
        heads: the model's heads; each reads :func:`target_column` unless ``targets`` names the columns.
        targets: manifest columns, one per head (e.g. ``consistency/centernet``), overriding the default.
        labels: the label set the consistency heads read (``"discrete"``, default: ``mmos/<task>``;
            ``"soft"``: ``mmos_soft/<task>``). Rows where a target is NaN are dropped (one warning).
        encoder: the frozen-feature settings (:data:`FROZEN_KEYS`; linked from the model in the CLI).
        cache_dir: where :func:`cache_features` keeps the features (``prepare_data`` fills it).
        split, seed: photo split fractions and seed (default: the benchmark's 0.6/0.1/0.3, seed 0).
        batch_size, num_workers: loaders.
        flip, crop: training augmentations (see the module docstring).
        from_images: read images instead of cached features (timm ViT patch encoders).
        cache_processes, threads: CPU processes / threads for the caching.
        include_references: add every split's clean references with label 1 for each head (exact for
            consistency: a model's output on the reference agrees with itself), so the top of the scale is
            anchored; only for consistency targets.
        splits: the splits to cache and load (default all three; e.g. ``[train, val]`` when the test photos
            are scored elsewhere, from the image files).
        negatives: hard negatives added to the training split
            (:class:`~mlclipsim.training.ra_miqa_negatives.NegativesConfig`, e.g. ``{kinds: [flat_grey, carpet],
            count: 256}``): made, labelled by the task models and encoded once (``prepare_data``), kept under
            ``cache_dir``; their rows are ``rows["negatives"]``. None (default): none.
    """

    def __init__(self, root: str = "outputs/dataset", heads: Sequence[str] = ("detection/consistency",),
                 targets: Sequence[str] | None = None, encoder: dict | None = None,
                 cache_dir: str = "outputs/ra_miqa_cache", split: Sequence[float] = (0.6, 0.1, 0.3), seed: int = 0,
                 batch_size: int = 32, num_workers: int = 0, flip: bool = True, crop: bool = True,
                 from_images: bool = False, cache_processes: int = 1, threads: int = 1,
                 splits: Sequence[str] = ("train", "val", "test"), include_references: bool = True,
                 labels: str = DEFAULT_LABELS, negatives: dict | None = None) -> None:
        super().__init__()
        self.root = Path(root)
        self.heads = parse_heads(heads)
        if targets is not None and len(targets) != len(self.heads):
            raise ValueError(f"targets names {len(targets)} column(s) for {len(self.heads)} head(s); "
                             "give one per head.")
        self.labels = label_set(labels).name
        self.targets = list(targets) if targets is not None else [target_column(h, labels) for h in self.heads]
        self.spec = frozen_spec(encoder)
        self.cache_dir, self.split, self.seed = cache_dir, tuple(split), seed
        self.batch_size, self.num_workers = batch_size, num_workers
        self.flip, self.crop, self.from_images = flip, crop, from_images
        self.cache_processes, self.threads = cache_processes, threads
        unknown = sorted(set(splits) - {"train", "val", "test"})
        if unknown or "train" not in splits:
            raise ValueError(f"splits must include 'train' and name only train, val, test; got {list(splits)}.")
        self.splits = tuple(splits)
        self.include_references = include_references
        self.negatives = NegativesConfig.parse(negatives)
        if include_references and not all(parse_label_column(c) is not None for c in self.targets):
            raise ValueError(f"include_references gives clean references the label 1, which holds for consistency "
                             f"targets only, not for {self.targets}; set include_references: false.")
        self.grid = self.spec["view_size"] // self.spec["grid_stride"]
        self.datasets: dict[str, Dataset] = {}
        self.rows: dict[str, list[dict]] = {}
        self.photos: dict[str, list[str]] = {}

    def split_photos(self) -> dict[str, list[str]]:
        module = MachineQualityDataModule(self.root, split=self.split, seed=self.seed)
        return {name: module.photos_of(name) for name in ("train", "val", "test")}

    def prepare_data(self) -> None:
        if not self.from_images:
            photos = self.split_photos()
            chosen = [photo for name in self.splits for photo in photos[name]]
            cache_features(self.root, self.spec, self.cache_dir, photos=chosen, processes=self.cache_processes,
                           threads=self.threads)
        if self.negatives is not None:
            self._negative_set(load_manifest(self.root)[0])

    def _negative_set(self, rows: Sequence[dict]) -> NegativeSet:
        """The hard negatives of the training photos' references (made and labelled on first use)."""
        train = set(self.split_photos()["train"])
        return prepare_negatives(self.root, [r for r in rows if str(r["photo"]) in train], self.negatives,
                                 self.cache_dir, None if self.from_images else self.spec)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        rows, columns = load_manifest(self.root)
        missing = [c for c in self.targets if c not in columns]
        if missing:
            raise ValueError(f"The manifest of {str(self.root)!r} has no column(s) {missing} for heads "
                             f"{list(self.heads)}; its score columns are "
                             f"{[c for c in columns if '/' in c or c == 'mmos']}. The offline data engine labels "
                             "consistency only: accuracy and composite heads need ground-truth annotations.")
        self.photos = self.split_photos()
        folder = None if self.from_images else cache_folder(self.cache_dir, self.spec, self.root)
        dropped: dict[str, int] = {}
        for name, photos in self.photos.items():
            if name not in self.splits:
                continue
            chosen = set(photos)
            split_rows = [r for r in rows if str(r["photo"]) in chosen]
            if self.include_references:
                split_rows = split_rows + reference_rows(split_rows, self.targets)
            kept = [r for r in split_rows if not any(_is_nan(r[c]) for c in self.targets)]
            if len(kept) < len(split_rows):
                dropped[name] = len(split_rows) - len(kept)
            split_rows = kept
            self.rows[name] = split_rows
            targets = torch.tensor([[float(r[c]) for c in self.targets] for r in split_rows],
                                   dtype=torch.float32).reshape(len(split_rows), len(self.targets))
            paths = [str(r["distorted_path"]) for r in split_rows]
            train = name == "train"
            if self.from_images:
                self.datasets[name] = ImageViewDataset(self.root, paths, targets, self.spec["view"],
                                                       self.spec["view_size"], self.spec["train_view_size"], train,
                                                       self.flip, self.crop)
            else:
                patch, region = load_cached(folder, paths)
                self.datasets[name] = CachedFeatureDataset(patch, region, targets, self.grid, train, self.flip,
                                                           self.crop)

        if self.negatives is not None and "train" in self.datasets:
            negatives = self._negative_set(rows)
            self.rows["negatives"], targets, index = negative_targets(negatives, self.targets)
            paths = [str(r["distorted_path"]) for r in self.rows["negatives"]]
            extra = (ImageViewDataset(negatives.folder, paths, targets, self.spec["view"], self.spec["view_size"],
                                      self.spec["train_view_size"], True, self.flip, self.crop) if self.from_images
                     else CachedFeatureDataset(negatives.patch[index], negatives.region[index], targets, self.grid,
                                               True, self.flip, self.crop))
            self.datasets["train"] = ConcatDataset([self.datasets["train"], extra])

        if dropped:
            warnings.warn(f"Dropped {sum(dropped.values())} rows whose target ({', '.join(self.targets)}) is NaN "
                          f"({', '.join(f'{k} {v}' for k, v in dropped.items())}): the label is undefined there (a "
                          "continuous label whose task does not apply, e.g. detection where the detectors find "
                          "nothing on the clean reference).", UserWarning, stacklevel=2)

    def _loader(self, name: str, shuffle: bool = False) -> DataLoader:
        self.setup()
        if name not in self.datasets:
            raise ValueError(f"The {name} split is not loaded (splits={list(self.splits)}).")
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(self.datasets[name], batch_size=self.batch_size, shuffle=shuffle, generator=generator,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")
