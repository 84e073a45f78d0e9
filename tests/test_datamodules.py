"""Datasets and DataModules over a tiny hand-made dataset folder (no task models, no build run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mlclipsim.core.images import ImageReadError
from mlclipsim.data import (
    MachineQualityDataModule,
    MachineQualityDataset,
    PreferencePairsDataModule,
    PreferencePairsDataset,
    load_manifest,
    load_pairs,
)
from mlclipsim.data.manifest import write_rows

MODELS = ("det_a", "seg_b")
TASKS = ("detection", "segmentation")
SPLIT = (0.5, 0.25, 0.25)  # 4 photos -> 2 / 1 / 1


def _png(path: Path, height: int, width: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(array).save(path)


def make_dataset(root: Path, photos: int = 4, crops_of: tuple[int, ...] = (0, 1), distorted: int = 2,
                 images: bool = True) -> Path:
    """``photos`` photos (p0, p1, ...); those in ``crops_of`` have 2 crops; ``distorted`` images per
    reference; one psnr_matched and one roi_vs_background pair per reference. Sizes differ per reference."""
    rows, pairs = [], []
    for p in range(photos):
        photo = f"p{p}"
        for crop in range(2 if p in crops_of else 1):
            ref_id = photo if crop == 0 else f"{photo}__c{crop}"
            height, width = 20 + 2 * p, 24 + crop
            ref_path = f"references/{ref_id}.png"
            if images:
                _png(root / ref_path, height, width, seed=100 * p + crop)
            paths = []
            for d in range(distorted):
                path = f"images/{ref_id}/noise_{d}.png"
                paths.append(path)
                if images:
                    _png(root / path, height, width, seed=100 * p + 10 * crop + d + 1)
                row = {"reference_id": ref_id, "photo": photo, "crop": crop, "reference_path": ref_path,
                       "distorted_path": path, "distortion": "noise", "mode": "uniform" if d == 0 else "roi",
                       "roi_severity": d + 1, "bg_severity": 1, "roi_fraction": 0.3, "psnr": 30.0 - d}
                row.update({f"consistency/{m}": 0.9 - 0.1 * d - 0.01 * i for i, m in enumerate(MODELS)})
                row.update({f"mmos/{t}": 0.8 - 0.1 * d for t in TASKS})
                row["mmos"] = 0.8 - 0.1 * d
                rows.append(row)
            for k, kind in enumerate(("psnr_matched", "roi_vs_background")):
                pair = {"pair_id": f"{ref_id}-{k}", "kind": kind, "reference_id": ref_id, "photo": photo,
                        "reference_path": ref_path, "a_path": paths[0], "b_path": paths[-1],
                        "a_distortion": "noise", "b_distortion": "noise", "a_mode": "uniform", "b_mode": "roi",
                        "a_psnr": 30.0, "b_psnr": 29.5}
                for m in MODELS:
                    pair[f"a_consistency/{m}"], pair[f"b_consistency/{m}"] = 0.9, 0.8
                pair.update({"soft_label": 0.75 if k else 1.0, "majority_label": 1.0})
                pair.update({f"soft_label/{t}": 1.0 for t in TASKS})
                pairs.append(pair)
    write_rows(root / "manifest.csv", rows)
    write_rows(root / "pairs.csv", pairs, columns=list(pairs[0]))
    return root


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "ds")


def test_lengths_and_items(dataset_dir: Path) -> None:
    rows, columns = load_manifest(dataset_dir)
    assert len(rows) == 6 * 2  # 6 references (4 photos, 2 with a second crop) x 2 distorted images
    dataset = MachineQualityDataset(rows, dataset_dir, target="consistency/seg_b", columns=columns)
    assert len(dataset) == 12
    item = dataset[1]
    assert item["distorted"].shape == item["reference"].shape == (3, 20, 24)
    assert item["distorted"].dtype == torch.float32 and 0 <= item["distorted"].min() <= item["distorted"].max() <= 1
    assert item["target"].dtype == torch.float32 and item["target"].shape == ()
    assert item["target"].item() == pytest.approx(0.79)
    assert (item["index"], item["photo"], item["reference_id"], item["mode"]) == (1, "p0", "p0", "roi")
    assert (item["roi_severity"], item["bg_severity"], item["distortion"]) == (2, 1, "noise")

    pairs, pair_columns = load_pairs(dataset_dir)
    pair_dataset = PreferencePairsDataset(pairs, dataset_dir, columns=pair_columns)
    assert len(pair_dataset) == 12
    pair = pair_dataset[1]
    assert pair["a"].shape == pair["b"].shape == pair["reference"].shape == (3, 20, 24)
    assert pair["soft_label"].item() == 0.75 and pair["majority_label"].item() == 1.0
    assert pair["target"].item() == 0.75 and pair["kind"] == "roi_vs_background" and pair["pair_id"] == "p0-1"
    assert PreferencePairsDataset(pairs, dataset_dir, target="soft_label/detection")[1]["target"].item() == 1.0


def test_batches_with_and_without_image_size(dataset_dir: Path) -> None:
    module = MachineQualityDataModule(dataset_dir, image_size=16, batch_size=3, split=SPLIT)
    module.setup("fit")
    batch = next(iter(module.train_dataloader()))
    assert batch["distorted"].shape == batch["reference"].shape == (3, 3, 16, 16)
    assert batch["target"].dtype == torch.float32 and batch["target"].shape == (3,)
    assert isinstance(batch["photo"], list) and isinstance(batch["photo"][0], str)

    pairs = PreferencePairsDataModule(dataset_dir, image_size=16, batch_size=2, split=SPLIT)
    pair_batch = next(iter(pairs.val_dataloader()))
    assert all(pair_batch[k].shape == (2, 3, 16, 16) for k in ("reference", "a", "b"))
    assert pair_batch["soft_label"].dtype == torch.float32

    variable = MachineQualityDataModule(dataset_dir, image_size=None, batch_size=4, split=SPLIT)
    whole = next(iter(variable.test_dataloader()))
    assert isinstance(whole["distorted"], list) and isinstance(whole["reference"], list)
    assert all(image.dim() == 3 for image in whole["distorted"])
    assert whole["target"].shape == (len(whole["distorted"]),)
    rows, _ = load_manifest(dataset_dir)
    sizes = {tuple(MachineQualityDataset(rows, dataset_dir)[i]["distorted"].shape) for i in range(len(rows))}
    assert len(sizes) > 1  # the folder really has several sizes


def test_transform_is_applied_to_all_images_alike(dataset_dir: Path) -> None:
    rows, _ = load_manifest(dataset_dir)
    calls = []

    def flip(*images):
        calls.append(len(images))
        return tuple(image.flip(-1) for image in images)

    plain, flipped = MachineQualityDataset(rows, dataset_dir), MachineQualityDataset(rows, dataset_dir, transform=flip)
    assert torch.equal(flipped[0]["reference"], plain[0]["reference"].flip(-1))
    assert torch.equal(flipped[0]["distorted"], plain[0]["distorted"].flip(-1))
    pairs, _ = load_pairs(dataset_dir)
    PreferencePairsDataset(pairs, dataset_dir, transform=flip)[0]
    assert calls == [2, 2, 3]  # (distorted, reference) per item, (reference, a, b) per pair


def test_split_is_by_photo_and_pairs_follow_images(dataset_dir: Path) -> None:
    images = MachineQualityDataModule(dataset_dir, split=SPLIT, seed=3)
    pairs = PreferencePairsDataModule(dataset_dir, split=SPLIT, seed=3)
    images.setup()
    pairs.setup()
    photos = {name: set(images.photos_of(name)) for name in ("train", "val", "test")}
    assert [len(photos[n]) for n in ("train", "val", "test")] == [2, 1, 1]
    assert set.union(*photos.values()) == {"p0", "p1", "p2", "p3"}
    assert not (photos["train"] & photos["val"] or photos["train"] & photos["test"] or photos["val"] & photos["test"])
    for name in ("train", "val", "test"):
        assert pairs.photos_of(name) == images.photos_of(name)
        dataset = getattr(images, f"{name}_dataset")
        pair_dataset = getattr(pairs, f"{name}_dataset")
        assert {row["photo"] for row in dataset.rows} == photos[name]
        assert {row["photo"] for row in pair_dataset.rows} == photos[name]
    all_rows, _ = load_manifest(dataset_dir)
    for photo in ("p0", "p1"):  # both crops of a photo, with all their distorted images, in one split
        name = next(n for n in photos if photo in photos[n])
        expected = {r["distorted_path"] for r in all_rows if r["photo"] == photo}
        got = {r["distorted_path"] for r in getattr(images, f"{name}_dataset").rows if r["photo"] == photo}
        assert got == expected and {r["crop"] for r in all_rows if r["photo"] == photo} == {0, 1}
    assert sum(len(getattr(images, f"{n}_dataset")) for n in photos) == len(all_rows)


def test_split_deterministic_per_seed(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "many", photos=20, crops_of=(), distorted=1, images=False)

    def split(seed: int, module=MachineQualityDataModule) -> list[list[str]]:
        dm = module(root, seed=seed)
        dm.setup()
        return [dm.photos_of(n) for n in ("train", "val", "test")]

    assert split(0) == split(0) == split(0, PreferencePairsDataModule)
    assert split(0) != split(1)
    assert [len(names) for names in split(0)] == [14, 3, 3]


@pytest.mark.filterwarnings("ignore:The (val|test) split")
def test_train_loader_seeded_shuffle(dataset_dir: Path) -> None:
    def order(seed: int) -> list[int]:
        dm = MachineQualityDataModule(dataset_dir, image_size=8, batch_size=2, split=(1.0, 0.0, 0.0), seed=seed)
        return [i for batch in dm.train_dataloader() for i in batch["index"].tolist()]

    assert order(0) == order(0) and sorted(order(0)) == list(range(12))
    dm = MachineQualityDataModule(dataset_dir, image_size=8, batch_size=5, split=(1.0, 0.0, 0.0))
    assert [i for b in dm.predict_dataloader() for i in b["index"].tolist()] == []  # predict: test split
    dm = MachineQualityDataModule(dataset_dir, image_size=8, batch_size=5, split=(1.0, 0.0, 0.0), predict_split="all")
    assert [i for b in dm.predict_dataloader() for i in b["index"].tolist()] == list(range(12))


def test_unknown_target_lists_columns(dataset_dir: Path) -> None:
    with pytest.raises(ValueError, match="mmos/detection") as info:
        MachineQualityDataModule(dataset_dir, target="accuracy", split=SPLIT).setup()
    assert "consistency/det_a" in str(info.value) and "'mmos'" in str(info.value)
    with pytest.raises(ValueError, match="soft_label/segmentation"):
        PreferencePairsDataModule(dataset_dir, target="mmos", split=SPLIT).setup()


def test_missing_files_name_the_command(tmp_path: Path, dataset_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match="mlclipsim build-dataset"):
        MachineQualityDataModule(tmp_path / "nothing").setup()
    (dataset_dir / "pairs.csv").unlink()
    with pytest.raises(FileNotFoundError, match="mlclipsim build-pairs"):
        PreferencePairsDataModule(dataset_dir, split=SPLIT).setup()


def test_unreadable_image_raises(dataset_dir: Path) -> None:
    rows, _ = load_manifest(dataset_dir)
    (dataset_dir / rows[0]["distorted_path"]).write_bytes(b"not a png")
    with pytest.raises(ImageReadError, match="noise_0.png"):
        MachineQualityDataset(rows, dataset_dir)[0]


def test_kind_filter(dataset_dir: Path) -> None:
    pairs, _ = load_pairs(dataset_dir)
    matched = PreferencePairsDataset(pairs, dataset_dir, kind="psnr_matched")
    assert len(matched) == 6 and {row["kind"] for row in matched.rows} == {"psnr_matched"}
    assert len(PreferencePairsDataset(pairs, dataset_dir, kind=["psnr_matched", "roi_vs_background"])) == 12
    with pytest.raises(ValueError, match="roi_vs_background"):
        PreferencePairsDataset(pairs, dataset_dir, kind="roi")
    dm = PreferencePairsDataModule(dataset_dir, kind="roi_vs_background", split=SPLIT)
    dm.setup()
    total = sum(len(getattr(dm, f"{n}_dataset")) for n in ("train", "val", "test"))
    assert total == 6 and all(row["kind"] == "roi_vs_background" for row in dm.train_dataset.rows)
