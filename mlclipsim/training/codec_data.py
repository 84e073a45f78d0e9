"""Image crops for codec training: random crops from image folders, fixed centre crops for validation.

:class:`CodecDataModule` takes one or more folders of photos (default: the shared photos,
``$MLCLIPSIM_SHARED_DIR/data/images``, else ``<repo>/../shared/data/images``), splits the photos BY
PHOTO with :func:`~mlclipsim.data.manifest.split_by_photo` (seeded), and serves

- training: ``crops_per_photo`` random ``crop_size`` crops of every training photo per epoch, in a
  seeded order; the batch of training step t is a function of (seed, t) only (:class:`StepSampler`),
  so a run resumed from any checkpoint sees exactly the crops of an uninterrupted run, on one process
  or many (the sampler is a ``DistributedSampler`` built for the trainer's world size; Lightning keeps
  it). This assumes one optimizer step per batch, as :class:`CompressionModule` takes;
- validation: one centre crop of ``val_crop_size`` (default ``crop_size``) per validation photo.

Photos smaller than a crop are first resized up (bicubic, aspect kept) so that their shorter side
equals the crop size. Items are float tensors (3,S,S) in [0,1]; a batch is (B,3,S,S).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from mlclipsim.core.images import list_images, read_image_array
from mlclipsim.data.manifest import split_by_photo

SHARED_DIR_ENV = "MLCLIPSIM_SHARED_DIR"


def default_image_folder() -> Path:
    """``$MLCLIPSIM_SHARED_DIR/data/images``, else ``<repo>/../shared/data/images``."""
    shared = os.environ.get(SHARED_DIR_ENV)
    root = Path(shared) if shared else Path(__file__).resolve().parents[2].parent / "shared"
    return root / "data" / "images"


def find_photos(folders: str | os.PathLike | Sequence[str | os.PathLike] | None) -> list[Path]:
    """Image files directly inside each folder (sorted); an empty result is an error naming the folders."""
    if folders is None:
        folders = [default_image_folder()]
    elif isinstance(folders, str | os.PathLike):
        folders = [folders]
    paths: list[Path] = []
    for folder in folders:
        if not Path(folder).is_dir():
            hint = f" (set {SHARED_DIR_ENV} to the shared folder)" if Path(folder) == default_image_folder() else ""
            raise FileNotFoundError(f"Image folder {str(folder)!r} does not exist{hint}.")
        paths += list_images(folder)
    if not paths:
        raise FileNotFoundError(f"No images in {[str(f) for f in folders]}.")
    return paths


def read_photo_list(photos: str | os.PathLike | Sequence[str] | None) -> frozenset[str]:
    """Photo names from a list, or from a text file with one name per line (``#`` comments); None: empty."""
    if photos is None:
        return frozenset()
    if isinstance(photos, str | os.PathLike):
        path = Path(photos)
        if not path.is_file():
            raise FileNotFoundError(f"Photo list {str(path)!r} does not exist: give a text file with one photo file "
                                    "name per line, or a list of names.")
        lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
        return frozenset(line for line in lines if line)
    return frozenset(str(name) for name in photos)


def photo_key(path: Path) -> str:
    """The split key of a photo: its folder name and file stem."""
    return f"{path.parent.name}/{path.stem}"


def ensure_min_side(array: np.ndarray, size: int) -> np.ndarray:
    """Resize (H,W,3) uint8 up, aspect kept, so that min(H, W) >= size; unchanged if already large enough."""
    height, width = array.shape[:2]
    if min(height, width) >= size:
        return array
    factor = size / min(height, width)
    new = (max(size, round(width * factor)), max(size, round(height * factor)))
    return np.asarray(Image.fromarray(array).resize(new, Image.BICUBIC))


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float().div_(255.0)


class _Photos(Dataset):
    def __init__(self, paths: Sequence[Path], crop_size: int, cache: bool) -> None:
        if not isinstance(crop_size, int) or crop_size < 1:
            raise ValueError(f"crop size must be a positive int, got {crop_size!r}")
        self.paths = list(paths)
        self.crop_size = crop_size
        self.cache = cache
        self._arrays: dict[int, np.ndarray] = {}

    def photo(self, index: int) -> np.ndarray:
        if index in self._arrays:
            return self._arrays[index]
        array = ensure_min_side(read_image_array(self.paths[index]), self.crop_size)
        if self.cache:
            self._arrays[index] = array
        return array


class RandomCropDataset(_Photos):
    """``crops_per_photo`` random crops per photo and epoch; item ``v`` is crop ``v % len`` of epoch ``v // len``.

    Plain indices 0..len-1 are the crops of epoch 0; :class:`StepSampler` adds the epoch. The crop
    position is drawn from ``numpy.random.default_rng((seed, v))``.
    """

    def __init__(self, paths: Sequence[Path], crop_size: int, crops_per_photo: int = 1, seed: int = 0,
                 cache: bool = False) -> None:
        super().__init__(paths, crop_size, cache)
        if not isinstance(crops_per_photo, int) or crops_per_photo < 1:
            raise ValueError(f"crops_per_photo must be a positive int, got {crops_per_photo!r}")
        self.crops_per_photo = crops_per_photo
        self.seed = seed

    def __len__(self) -> int:
        return len(self.paths) * self.crops_per_photo

    def __getitem__(self, item: int) -> torch.Tensor:
        array = self.photo(int(item) % len(self.paths))
        rng = np.random.default_rng((self.seed, int(item)))
        height, width = array.shape[:2]
        top = int(rng.integers(0, height - self.crop_size + 1))
        left = int(rng.integers(0, width - self.crop_size + 1))
        return _to_tensor(array[top:top + self.crop_size, left:left + self.crop_size])


class CenterCropDataset(_Photos):
    """One centre crop per photo."""

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        array = self.photo(index)
        height, width = array.shape[:2]
        top, left = (height - self.crop_size) // 2, (width - self.crop_size) // 2
        return _to_tensor(array[top:top + self.crop_size, left:left + self.crop_size])


class StepSampler(DistributedSampler):
    """A seeded ``DistributedSampler`` whose order and crops are functions of the training step.

    It yields ``epoch * len(dataset) + i`` (so :class:`RandomCropDataset` draws the crops of that epoch).
    With ``step_source`` (a callable returning the number of optimizer steps taken, e.g. the trainer's
    ``global_step``) each new iteration starts at the position of that step: step ``t`` reads batch
    ``t % steps_per_epoch`` of epoch ``t // steps_per_epoch``, whatever Lightning's own epoch counter
    says after a resume (from an epoch-end or a mid-epoch checkpoint alike). Without it, it follows
    ``set_epoch`` like any ``DistributedSampler``. Lightning keeps a ``DistributedSampler`` it is given,
    so each process reads its own share.
    """

    def __init__(self, dataset: Dataset, batch_size: int, num_replicas: int = 1, rank: int = 0, seed: int = 0,
                 step_source: Callable[[], int] | None = None) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.batch_size = batch_size
        self.step_source = step_source

    def __iter__(self):
        per_epoch = len(self) // self.batch_size
        start = 0
        if self.step_source is not None and per_epoch > 0:
            epoch, position = divmod(int(self.step_source()), per_epoch)
            self.set_epoch(epoch)
            start = position * self.batch_size
        offset = self.epoch * len(self.dataset)  # type: ignore[arg-type]
        return iter([offset + int(i) for i in list(super().__iter__())[start:]])


class _TrainerStep:
    """The attached trainer's ``global_step`` (picklable, unlike a lambda)."""

    def __init__(self, datamodule: L.LightningDataModule) -> None:
        self.datamodule = datamodule

    def __call__(self) -> int:
        return int(self.datamodule.trainer.global_step)


class StepDataLoader(DataLoader):
    """A DataLoader over a :class:`StepSampler`: resumable by construction, which it tells Lightning.

    Its position follows the trainer's step, so there is no iterator state to save; ``state_dict`` and
    ``load_state_dict`` only mark it as resumable (Lightning otherwise warns about mid-epoch resumes).
    """

    def state_dict(self) -> dict[str, bool]:
        return {"step_indexed": True}

    def load_state_dict(self, state_dict: dict[str, bool]) -> None:
        return None


class CodecDataModule(L.LightningDataModule):
    """Random training crops and centre validation crops from image folders, split by photo.

    Args:
        images: a folder or list of folders of photos (default: the shared photos, see
            :func:`default_image_folder`).
        crop_size: side of the square training crops (default 256, CompressAI's); a multiple of the
            architecture's downsampling factor (16 or 64) avoids padding.
        val_crop_size: side of the validation centre crops (default: ``crop_size``).
        batch_size, val_batch_size: batch sizes (default 16; validation default: ``batch_size``).
        val_fraction: share of the photos held out for validation (by photo, seeded).
        crops_per_photo: random crops drawn from each training photo per epoch (epoch length).
        seed: seeds the split, the order and the crop positions.
        num_workers: DataLoader workers.
        cache_images: keep decoded photos in memory (per process) instead of decoding them per crop.
        exclude: photos kept out of training and validation altogether (held out for a study): a list
            of file names or stems, or the path of a text file with one per line (``#`` starts a comment).
    """

    def __init__(self, images: str | list[str] | None = None, crop_size: int = 256, val_crop_size: int | None = None,
                 batch_size: int = 16, val_batch_size: int | None = None, val_fraction: float = 0.1,
                 crops_per_photo: int = 1, seed: int = 0, num_workers: int = 0, cache_images: bool = False,
                 exclude: str | list[str] | None = None) -> None:
        super().__init__()
        if not 0 <= val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
        for name, value in (("batch_size", batch_size), ("val_batch_size", val_batch_size)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.save_hyperparameters()
        self.images = images
        self.crop_size = crop_size
        self.val_crop_size = val_crop_size or crop_size
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.val_fraction = val_fraction
        self.crops_per_photo = crops_per_photo
        self.seed = seed
        self.num_workers = num_workers
        self.cache_images = cache_images
        self.exclude = read_photo_list(exclude)
        self.train_dataset: RandomCropDataset | None = None
        self.val_dataset: CenterCropDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        paths = find_photos(self.images)
        if self.exclude:
            paths = [p for p in paths if p.name not in self.exclude and p.stem not in self.exclude]
        by_key = {photo_key(p): p for p in paths}
        train_keys, val_keys = split_by_photo(by_key, (1.0 - self.val_fraction, self.val_fraction), seed=self.seed)
        if not train_keys:
            raise ValueError(f"No training photos left: {len(paths)} photo(s) with val_fraction {self.val_fraction}.")
        self.train_dataset = RandomCropDataset([by_key[k] for k in sorted(train_keys)], self.crop_size,
                                               self.crops_per_photo, seed=self.seed, cache=self.cache_images)
        self.val_dataset = CenterCropDataset([by_key[k] for k in sorted(val_keys)], self.val_crop_size,
                                             cache=self.cache_images)

    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        return int(trainer.world_size), int(trainer.global_rank)

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        assert self.train_dataset is not None
        world_size, rank = self._world()
        attached = getattr(self, "trainer", None) is not None
        sampler = StepSampler(self.train_dataset, self.batch_size, num_replicas=world_size, rank=rank, seed=self.seed,
                              step_source=_TrainerStep(self) if attached else None)
        drop_last = len(sampler) >= self.batch_size
        return StepDataLoader(self.train_dataset, batch_size=self.batch_size, sampler=sampler, drop_last=drop_last,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        self.setup("validate")
        assert self.val_dataset is not None
        return DataLoader(self.val_dataset, batch_size=self.val_batch_size, shuffle=False,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)
