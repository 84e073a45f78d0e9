"""Torch datasets and Lightning DataModules over a built dataset folder.

A dataset folder (see :mod:`mlclipsim.data.build_dataset`) holds ``manifest.csv`` (one row per
distorted image, written by ``mlclipsim build-dataset``) and, optionally, ``pairs.csv`` (one row per
preference pair, written by ``mlclipsim build-pairs``); paths in both are relative to the folder.

- :class:`MachineQualityDataset` yields ``(distorted, reference, target)`` items for regression on a
  machine-quality score (``mmos``, ``mmos/<task>`` or ``consistency/<model>``, or the continuous
  ``mmos_soft``, ``mmos_soft/<task>``, ``soft/<model>``; ``labels="soft"`` picks the continuous
  column of a target named either way: :mod:`mlclipsim.data.manifest` lists the label sets).
- :class:`PreferencePairsDataset` yields ``(reference, a, b, soft_label, majority_label)`` items for
  calibrating and checking a metric on machine-preference pairs.
- :class:`MachineQualityDataModule` and :class:`PreferencePairsDataModule` split either BY PHOTO:
  both shuffle the distinct photos of the *manifest* with :func:`~mlclipsim.data.manifest.split_by_photo`
  and the same ``split`` and ``seed``, so for one folder and seed the two modules hold out the same
  photos, and every crop, distorted image and pair of a photo lands in the split of its photo.

Rows whose target is NaN (a continuous label where its task does not apply, e.g. detection where
the detectors find nothing on the clean reference) are dropped with one warning saying how many: a
NaN never reaches a loss or a correlation. A missing or non-numeric target is an error.

Images are float tensors (3,H,W) in [0,1]. With ``image_size=S`` every image is resized (bilinear,
antialiased) to SxS so a batch stacks to (B,3,S,S); with ``image_size=None`` images keep their size
and a batch carries them as lists (:class:`ListImagesCollate`). An image that cannot be read raises
:class:`~mlclipsim.core.images.ImageReadError` naming the file: nothing is skipped silently.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset, default_collate

from mlclipsim.core.images import read_image
from mlclipsim.data.manifest import (
    parse_label_column,
    parse_pair_label_column,
    read_header,
    read_rows,
    resolve_pair_target,
    resolve_target,
    split_by_photo,
)

MANIFEST_FILE = "manifest.csv"
PAIRS_FILE = "pairs.csv"
PAIR_KINDS = ("psnr_matched", "roi_vs_background")
SPLITS = ("train", "val", "test")

Transform = Callable[..., Sequence[torch.Tensor]]
"""Called with all images of one item (``transform(distorted, reference)`` or ``transform(reference,
a, b)``) and returns them in the same order, so random parameters apply to all alike (torchvision
``transforms.v2`` objects behave this way when given several images)."""

_MANIFEST_REQUIRED = ("reference_id", "photo", "reference_path", "distorted_path")
_PAIRS_REQUIRED = ("pair_id", "kind", "photo", "reference_path", "a_path", "b_path", "soft_label",
                   "majority_label")


# --------------------------------------------------------------------------------------------- files


def load_manifest(root: str | os.PathLike) -> tuple[list[dict], list[str]]:
    """Rows and columns of ``<root>/manifest.csv``; FileNotFoundError says how to build it."""
    path = Path(root) / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"No {MANIFEST_FILE} in {str(Path(root))!r}: build the dataset first with "
                                f"`mlclipsim build-dataset` (its --out folder is the dataset root).")
    columns = read_header(path)
    _require_columns(path, columns, _MANIFEST_REQUIRED, "mlclipsim build-dataset")
    return read_rows(path), columns


def load_pairs(root: str | os.PathLike) -> tuple[list[dict], list[str]]:
    """Rows and columns of ``<root>/pairs.csv``; FileNotFoundError says how to build it.

    Read with :func:`~mlclipsim.data.manifest.read_rows`: numbers come back as numbers, the text
    columns (ids, photo, paths, distortion, mode, kind) stay strings even when they look like numbers.
    """
    path = Path(root) / PAIRS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"No {PAIRS_FILE} in {str(Path(root))!r}: make the preference pairs first with "
                                f"`mlclipsim build-pairs` on the dataset folder (after `mlclipsim build-dataset`).")
    columns = read_header(path)
    _require_columns(path, columns, _PAIRS_REQUIRED, "mlclipsim build-pairs")
    return read_rows(path), columns


def _require_columns(path: Path, columns: Sequence[str], required: Iterable[str], command: str) -> None:
    missing = [c for c in required if c not in columns]
    if missing:
        raise ValueError(f"{str(path)!r} lacks the columns {missing} (has {list(columns)}); "
                         f"rebuild it with `{command}`.")


# ------------------------------------------------------------------------------------------ datasets


def manifest_score_columns(columns: Iterable[str]) -> list[str]:
    """Columns a :class:`MachineQualityDataset` can take as target: the label columns of every label set
    (mmos, mmos/<task>, consistency/<model>; mmos_soft, mmos_soft/<task>, soft/<model>)."""
    return [c for c in columns if parse_label_column(c) is not None]


def pair_label_columns(columns: Iterable[str]) -> list[str]:
    """Columns a :class:`PreferencePairsDataset` can take as target: soft_label, soft_label/<task>,
    majority_label, and the same with a label set's suffix (soft_label@soft, ...)."""
    return [c for c in columns if parse_pair_label_column(c) is not None]


def drop_nan_targets(rows: Sequence[dict], target: str, what: str = "rows") -> list[dict]:
    """``rows`` without those whose ``target`` is NaN, with one warning saying how many and why."""
    rows = list(rows)
    kept = [row for row in rows if not (isinstance(row.get(target), float) and math.isnan(row[target]))]
    dropped = len(rows) - len(kept)
    if dropped:
        warnings.warn(f"Dropped {dropped} of {len(rows)} {what} whose target {target!r} is NaN: the label is "
                      "undefined there (a continuous label whose task does not apply, e.g. detection where the "
                      f"detectors find nothing on the clean reference); {len(kept)} remain.", UserWarning,
                      stacklevel=3)
    return kept


class ListImagesCollate:
    """Collate that keeps the image keys as lists (images of different sizes) and collates the rest
    with torch's ``default_collate`` (numbers -> tensors, strings -> lists). Picklable for workers."""

    def __init__(self, image_keys: Sequence[str]) -> None:
        self.image_keys = tuple(image_keys)

    def __call__(self, batch: Sequence[dict]) -> dict:
        out = default_collate([{k: v for k, v in item.items() if k not in self.image_keys} for item in batch])
        out.update({k: [item[k] for item in batch] for k in self.image_keys})
        return out


class _ImageRowsDataset(Dataset):
    """Rows of a table whose items hold images read from paths relative to ``root``."""

    image_columns: dict[str, str] = {}  # item key -> path column, in the order given to the transform
    score_columns_of: Callable[[Iterable[str]], list[str]]
    what = "rows"

    def __init__(self, rows: Sequence[dict], root: str | os.PathLike, target: str,
                 image_size: int | None = None, transform: Transform | None = None,
                 columns: Sequence[str] | None = None) -> None:
        if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
            raise ValueError(f"image_size must be a positive int or None, got {image_size!r}")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable, got {type(transform).__name__}")
        self.rows = list(rows)
        self.root = Path(root)
        self.image_size = image_size
        self.transform = transform
        if columns is None:
            columns = list(self.rows[0]) if self.rows else None
        if columns is not None:
            valid = type(self).score_columns_of(columns)
            if target not in valid:
                raise ValueError(f"Unknown target column {target!r}; the score columns of these {self.what} "
                                 f"are {valid}.")
        self.rows = drop_nan_targets(self.rows, target, self.what)
        bad = [i for i, row in enumerate(self.rows) if not _is_number(row.get(target, ""))]
        if bad:
            raise ValueError(f"{len(bad)} of {len(self.rows)} {self.what} have no numeric {target!r} "
                             f"(first: {self._describe(self.rows[bad[0]])}); rebuild so that every row has it, "
                             "or choose another target.")
        self.target = target
        self.collate_fn = default_collate if image_size is not None else ListImagesCollate(self.image_columns)

    def __len__(self) -> int:
        return len(self.rows)

    def _describe(self, row: dict) -> str:
        return repr(row.get("reference_id", ""))

    def _images(self, row: dict) -> dict[str, torch.Tensor]:
        images = [read_image(self.root / row[column]) for column in self.image_columns.values()]
        if self.transform is not None:
            images = self.transform(*images)
            if isinstance(images, torch.Tensor) or len(images) != len(self.image_columns):
                raise TypeError(f"transform must return the {len(self.image_columns)} images it was given "
                                f"({', '.join(self.image_columns)}), in order.")
        if self.image_size is not None:
            images = [_resize(image, self.image_size) for image in images]
        return dict(zip(self.image_columns, images))


class MachineQualityDataset(_ImageRowsDataset):
    """Distorted images of a manifest with their reference and a machine-quality target.

    Args:
        rows: manifest rows (e.g. one split), as read by :func:`load_manifest`.
        root: the dataset folder the row paths are relative to.
        target: the score column to predict: ``"mmos"`` (default), ``"mmos/<task>"`` or
            ``"consistency/<model>"``, a continuous one (``"mmos_soft"``, ...), or a bare task name; an
            unknown column raises ValueError listing the valid ones. Rows where it is NaN are dropped
            (one warning).
        image_size: resize both images to image_size x image_size (bilinear, antialiased) so that
            items stack; None keeps the sizes and ``collate_fn`` then returns lists for the images.
        transform: applied as ``transform(distorted, reference)`` before resizing (see :data:`Transform`).
        columns: the columns of the whole manifest (to validate ``target`` when ``rows`` is empty).
        labels: the label set (``"discrete"``, ``"soft"``; :data:`~mlclipsim.data.manifest.LABEL_SETS`)
            that ``target`` is read in: ``target="mmos/detection", labels="soft"`` reads
            ``mmos_soft/detection``. None (default) takes ``target`` as the column name.

    Items: ``distorted`` and ``reference`` (3,H,W) float in [0,1]; ``target`` float32 scalar tensor;
    ``index`` (position in ``rows``); ``reference_id``, ``photo``, ``distortion``, ``mode`` (str);
    ``crop``, ``roi_severity``, ``bg_severity`` (int); ``psnr`` (float). Use ``dataset.collate_fn``.
    """

    image_columns = {"distorted": "distorted_path", "reference": "reference_path"}
    score_columns_of = staticmethod(manifest_score_columns)
    what = "manifest rows"

    def __init__(self, rows: Sequence[dict], root: str | os.PathLike, target: str = "mmos",
                 image_size: int | None = None, transform: Transform | None = None,
                 columns: Sequence[str] | None = None, labels: str | None = None) -> None:
        self.labels = labels
        super().__init__(rows, root, resolve_target(target, labels), image_size, transform, columns)

    def _describe(self, row: dict) -> str:
        return f"{row.get('distorted_path', '')!r}"

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        item = self._images(row)
        item.update({
            "target": torch.tensor(float(row[self.target]), dtype=torch.float32),
            "index": int(index),
            "reference_id": str(row["reference_id"]),
            "photo": str(row["photo"]),
            "distortion": str(row.get("distortion", "")),
            "mode": str(row.get("mode", "")),
            "crop": _int(row.get("crop", 0)),
            "roi_severity": _int(row.get("roi_severity", 0)),
            "bg_severity": _int(row.get("bg_severity", 0)),
            "psnr": _float(row.get("psnr", math.nan)),
        })
        return item


class PreferencePairsDataset(_ImageRowsDataset):
    """Preference pairs: a reference and two distorted versions A and B, with machine labels.

    Args:
        rows: pairs rows, as read by :func:`load_pairs`.
        root: the dataset folder the row paths are relative to.
        target: the label copied to ``target``: ``"soft_label"`` (default), ``"soft_label/<task>"`` or
            ``"majority_label"`` (with a label set's suffix, e.g. ``"soft_label@soft"``, for the others).
            Pairs where it is NaN are dropped (one warning).
        image_size: as for :class:`MachineQualityDataset`.
        transform: applied as ``transform(reference, a, b)`` before resizing.
        kind: keep only pairs of this kind (or these kinds): ``"psnr_matched"``, ``"roi_vs_background"``.
        columns: the columns of the whole pairs file.
        labels: the label set of ``target`` and of the ``soft_label`` / ``majority_label`` items
            (``"soft"``: ``soft_label@soft``, ...); None (default): ``target`` as given, items discrete.

    Items: ``reference``, ``a``, ``b`` (3,H,W) float in [0,1]; ``soft_label`` (share of task models for
    which A keeps more of the reference than B), ``majority_label`` (1, 0 or 0.5 for a tie) and
    ``target``, float32 scalar tensors; ``index``; ``pair_id``, ``kind``, ``reference_id``, ``photo``,
    ``a_distortion``, ``b_distortion``, ``a_mode``, ``b_mode`` (str); ``a_psnr``, ``b_psnr`` (float).
    """

    image_columns = {"reference": "reference_path", "a": "a_path", "b": "b_path"}
    score_columns_of = staticmethod(pair_label_columns)
    what = "pairs"

    def __init__(self, rows: Sequence[dict], root: str | os.PathLike, target: str = "soft_label",
                 image_size: int | None = None, transform: Transform | None = None,
                 kind: str | Sequence[str] | None = None, columns: Sequence[str] | None = None,
                 labels: str | None = None) -> None:
        rows = list(rows)
        self.labels = labels
        self.soft_column = resolve_pair_target("soft_label", labels)
        self.majority_column = resolve_pair_target("majority_label", labels)
        if kind is not None:
            kinds = {kind} if isinstance(kind, str) else set(kind)
            known = set(PAIR_KINDS) | {str(row.get("kind", "")) for row in rows}
            unknown = sorted(kinds - known)
            if unknown:
                raise ValueError(f"Unknown pair kind(s) {unknown}; pair kinds are {sorted(known)}.")
            rows = [row for row in rows if row.get("kind") in kinds]
        self.kind = kind
        super().__init__(rows, root, resolve_pair_target(target, labels), image_size, transform, columns)

    def _describe(self, row: dict) -> str:
        return f"pair {row.get('pair_id', '')!r}"

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        item = self._images(row)
        item.update({
            "soft_label": torch.tensor(float(row[self.soft_column]), dtype=torch.float32),
            "majority_label": torch.tensor(float(row[self.majority_column]), dtype=torch.float32),
            "target": torch.tensor(float(row[self.target]), dtype=torch.float32),
            "index": int(index),
            "pair_id": _text(row["pair_id"]),
            "kind": str(row["kind"]),
            "reference_id": _text(row.get("reference_id", "")),
            "photo": _text(row["photo"]),
            "a_distortion": str(row.get("a_distortion", "")),
            "b_distortion": str(row.get("b_distortion", "")),
            "a_mode": str(row.get("a_mode", "")),
            "b_mode": str(row.get("b_mode", "")),
            "a_psnr": _float(row.get("a_psnr", math.nan)),
            "b_psnr": _float(row.get("b_psnr", math.nan)),
        })
        return item


def _resize(image: torch.Tensor, size: int) -> torch.Tensor:
    if image.shape[-2:] == (size, size):
        return image
    resized = F.interpolate(image[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return resized[0].clamp_(0.0, 1.0)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _int(value: object) -> int:
    return int(value) if _is_number(value) else 0


def _float(value: object) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


def _text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# ---------------------------------------------------------------------------------------- datamodules


class _PhotoSplitDataModule(L.LightningDataModule):
    """Shared split logic: the distinct photos of the manifest are split with ``split_by_photo``."""

    def __init__(self, root: str | os.PathLike, target: str, image_size: int | None, batch_size: int,
                 num_workers: int, split: Sequence[float], seed: int, predict_split: str,
                 train_transform: Transform | None) -> None:
        super().__init__()
        split = tuple(float(f) for f in split)
        if len(split) != 3:
            raise ValueError(f"split must give three fractions (train, val, test), got {split}")
        if batch_size < 1 or num_workers < 0:
            raise ValueError(f"batch_size must be >= 1 and num_workers >= 0, got {batch_size}, {num_workers}")
        if predict_split not in (*SPLITS, "all"):
            raise ValueError(f"predict_split must be one of {[*SPLITS, 'all']}, got {predict_split!r}")
        self.root = Path(root)
        self.target = target
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.split = split
        self.seed = seed
        self.predict_split = predict_split
        self.train_transform = train_transform
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        self.test_dataset: Dataset | None = None
        self.all_dataset: Dataset | None = None
        self._photos: dict[str, list[str]] | None = None

    def _split_photos(self, manifest_rows: list[dict]) -> dict[str, list[str]]:
        groups = split_by_photo((str(row["photo"]) for row in manifest_rows), self.split, self.seed)
        photos = {name: sorted(group) for name, group in zip(SPLITS, groups)}
        for name in SPLITS:
            if not photos[name]:
                rank_zero_warn(f"The {name} split of {str(self.root)!r} is empty ({sum(map(len, groups))} photos, "
                               f"split {self.split}).")
        return photos

    def photos_of(self, split: str) -> list[str]:
        """Sorted photo names of ``"train"``, ``"val"`` or ``"test"`` (set up on first use)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
        if self._photos is None:
            self.setup()
        assert self._photos is not None
        return list(self._photos[split])

    def setup(self, stage: str | None = None) -> None:
        if self._photos is not None:
            return  # every stage gets every split; reading the files once is enough
        manifest_rows, manifest_columns = load_manifest(self.root)
        photos = self._split_photos(manifest_rows)
        rows, columns = self._load(manifest_rows, manifest_columns)
        split_of = {photo: name for name, names in photos.items() for photo in names}
        strays = sorted({str(row["photo"]) for row in rows} - set(split_of))
        if strays:
            raise ValueError(f"Rows of {str(self.root)!r} name {len(strays)} photo(s) that its {MANIFEST_FILE} lacks "
                             f"(first: {strays[:3]}); were the pairs built from another dataset? Rerun "
                             "`mlclipsim build-pairs` on this folder.")
        rows = drop_nan_targets(rows, self.target, "pairs" if "pair_id" in columns else "manifest rows")
        by_split: dict[str, list[dict]] = {name: [] for name in SPLITS}
        for row in rows:
            by_split[split_of[str(row["photo"])]].append(row)
        self.train_dataset = self._dataset(by_split["train"], columns, self.train_transform)
        self.val_dataset = self._dataset(by_split["val"], columns, None)
        self.test_dataset = self._dataset(by_split["test"], columns, None)
        self.all_dataset = self._dataset(rows, columns, None)
        self._photos = photos

    def _load(self, manifest_rows: list[dict], manifest_columns: list[str]) -> tuple[list[dict], list[str]]:
        raise NotImplementedError

    def _dataset(self, rows: list[dict], columns: list[str], transform: Transform | None) -> Dataset:
        raise NotImplementedError

    def _loader_of(self, name: str, shuffle: bool = False) -> DataLoader:
        if self._photos is None:
            self.setup()
        dataset = getattr(self, f"{name}_dataset")
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, generator=generator,
                          num_workers=self.num_workers, collate_fn=dataset.collate_fn,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        """The train split, shuffled by a generator seeded with ``seed``."""
        return self._loader_of("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader_of("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader_of("test")

    def predict_dataloader(self) -> DataLoader:
        """``predict_split`` (default the test split; ``"all"`` for every row), in file order."""
        return self._loader_of(self.predict_split)


class MachineQualityDataModule(_PhotoSplitDataModule):
    """Train/val/test :class:`MachineQualityDataset` of a dataset folder, split by photo.

    The distinct photos of ``<root>/manifest.csv`` are split with
    :func:`~mlclipsim.data.manifest.split_by_photo` (``split`` = train, val, test fractions; ``seed``),
    so every crop and distorted image of a photo is in one split; the same root, split and seed give
    the same photos as :class:`PreferencePairsDataModule`. ``photos_of("test")`` names the held-out
    photos. ``train_transform`` applies to the train split only. ``kind`` is accepted for a signature
    common with :class:`PreferencePairsDataModule` and must be None here. ``labels`` picks the label set
    ``target`` is read in (``target="detection", labels="soft"``: ``mmos_soft/detection``; see
    :class:`MachineQualityDataset`); rows whose target is NaN are dropped before the split, with one warning.
    """

    def __init__(self, root: str | os.PathLike, target: str = "mmos", image_size: int | None = None,
                 batch_size: int = 8, num_workers: int = 0, split: Sequence[float] = (0.7, 0.15, 0.15),
                 seed: int = 0, kind: str | None = None, predict_split: str = "test",
                 train_transform: Transform | None = None, labels: str | None = None) -> None:
        if kind is not None:
            raise ValueError("kind filters preference pairs; use PreferencePairsDataModule, or kind=None.")
        super().__init__(root, resolve_target(target, labels), image_size, batch_size, num_workers, split, seed,
                         predict_split, train_transform)
        self.labels = labels
        self.save_hyperparameters(ignore=["train_transform"])

    def _load(self, manifest_rows: list[dict], manifest_columns: list[str]) -> tuple[list[dict], list[str]]:
        return manifest_rows, manifest_columns

    def _dataset(self, rows: list[dict], columns: list[str], transform: Transform | None) -> Dataset:
        return MachineQualityDataset(rows, self.root, self.target, self.image_size, transform, columns=columns)


class PreferencePairsDataModule(_PhotoSplitDataModule):
    """Train/val/test :class:`PreferencePairsDataset` of a dataset folder, split by photo.

    Reads ``<root>/pairs.csv`` and also ``<root>/manifest.csv``: the split is made on the photos of the
    manifest exactly as :class:`MachineQualityDataModule` makes it, so a pair lands in the split where
    the images of its photo are (a photo without pairs still takes its place in the shuffle). A pair
    whose photo is not in the manifest is an error (pairs from another dataset). ``kind`` keeps only
    pairs of that kind; ``target`` picks the label copied to ``target`` (default ``soft_label``) and
    ``labels`` its label set (``"soft"``: ``soft_label@soft``; see :class:`PreferencePairsDataset`).
    """

    def __init__(self, root: str | os.PathLike, target: str = "soft_label", image_size: int | None = None,
                 batch_size: int = 8, num_workers: int = 0, split: Sequence[float] = (0.7, 0.15, 0.15),
                 seed: int = 0, kind: str | Sequence[str] | None = None, predict_split: str = "test",
                 train_transform: Transform | None = None, labels: str | None = None) -> None:
        super().__init__(root, resolve_pair_target(target, labels), image_size, batch_size, num_workers, split,
                         seed, predict_split, train_transform)
        self.kind = kind
        self.labels = labels
        self.save_hyperparameters(ignore=["train_transform"])

    def _load(self, manifest_rows: list[dict], manifest_columns: list[str]) -> tuple[list[dict], list[str]]:
        return load_pairs(self.root)

    def _dataset(self, rows: list[dict], columns: list[str], transform: Transform | None) -> Dataset:
        return PreferencePairsDataset(rows, self.root, self.target, self.image_size, transform, kind=self.kind,
                                      columns=columns, labels=self.labels)
