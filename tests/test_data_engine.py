"""The data engine: references, plans, ROI, build-dataset and build-pairs (resumable, deterministic, DDP)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlclipsim.cli import main
from mlclipsim.data.build_dataset import BuildConfig, build_dataset
from mlclipsim.data.build_pairs import PairsConfig, build_pairs, majority, preference
from mlclipsim.data.manifest import read_rows, split_by_photo
from mlclipsim.data.plan import plan_distortions
from mlclipsim.data.references import reference_crops
from mlclipsim.data.roi import roi_mask, usable_roi
from mlclipsim.machine.predictions import Detections, SegmentationMask

MODELS = ("nanodet", "selfie")          # one detector, one segmenter: fast, offline
TYPES = ("gaussian_noise", "defocus_blur")


@pytest.fixture()
def photos(tmp_path, shared_dir) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("skimage_astronaut.png", "skimage_motorcycle_left.png"):
        with Image.open(shared_dir / "data" / "images" / name) as image:
            image.convert("RGB").resize((192, 160)).save(folder / name)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    return folder


def config(photos: Path, out: Path, **overrides) -> BuildConfig:
    settings = dict(images=photos, out=out, task_models=MODELS, distortions=TYPES, region_pairs=1, size=160,
                    batch_size=4)
    settings.update(overrides)
    return BuildConfig(**settings)


def test_reference_crops_are_deterministic_and_keep_the_photo_as_split_key(shared_dir):
    path = shared_dir / "data" / "images" / "skimage_astronaut.png"
    first = reference_crops(path, crops_per_image=3, size=128, seed=1)
    again = reference_crops(path, crops_per_image=3, size=128, seed=1)
    assert [c.reference_id for c in first] == ["skimage_astronaut", "skimage_astronaut__c1", "skimage_astronaut__c2"]
    assert {c.photo for c in first} == {"skimage_astronaut"}
    assert max(first[0].image.shape[:2]) == 128 and first[1].image.shape[:2] == (128, 128)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(first, again))


def test_plan_counts_and_mirrored_region_pairs():
    specs = plan_distortions("ref", TYPES, region_pairs=2, seed=0)
    assert len(specs) == 2 * (5 + 2 + 2)
    rois = {(s.distortion, s.roi_severity, s.bg_severity) for s in specs if s.mode == "roi"}
    backgrounds = {(s.distortion, s.bg_severity, s.roi_severity) for s in specs if s.mode == "background"}
    assert rois == backgrounds and all(r > b for _, r, b in rois)
    assert plan_distortions("ref", TYPES, region_pairs=2, seed=0) == specs
    assert len(plan_distortions("ref", TYPES, with_regions=False)) == 10
    assert len(plan_distortions("ref", TYPES, region_pairs=10)) == 2 * 25


def test_roi_mask_unites_boxes_and_masks():
    boxes = Detections(np.array([[0, 0, 10, 10]], float), np.array([0.9]), np.array([0]), label_space="coco80")
    probs = np.zeros((40, 40), np.float32)
    probs[30:, 30:] = 0.9
    mask = roi_mask([boxes, SegmentationMask(probs=probs)], 40, 40)
    assert mask.sum() == 100 + 100 and usable_roi(mask)
    assert not usable_roi(np.zeros((40, 40))) and not usable_roi(np.ones((40, 40)))


def test_build_dataset_writes_labelled_manifest_and_skips_corrupt_photos(photos, tmp_path):
    summary = build_dataset(config(photos, tmp_path / "ds"))
    rows = read_rows(tmp_path / "ds" / "manifest.csv")
    assert summary["failures"] == ["broken"] and summary["references"] == 2
    assert "Cannot read" in (tmp_path / "ds" / "failures" / "broken.txt").read_text()
    assert {r["distortion"] for r in rows} == set(TYPES)
    for row in rows:
        assert (tmp_path / "ds" / row["distorted_path"]).is_file()
        for key in ("consistency/nanodet", "consistency/selfie", "mmos/detection", "mmos/segmentation", "mmos"):
            assert 0.0 <= row[key] <= 1.0
        assert row["mmos"] == pytest.approx((row["mmos/detection"] + row["mmos/segmentation"]) / 2, abs=1e-5)
    astronaut = [r for r in rows if r["reference_id"] == "skimage_astronaut"]
    assert {r["mode"] for r in astronaut} == {"uniform", "roi", "background"}  # the astronaut has a ROI
    noise = sorted((r["roi_severity"], r["psnr"]) for r in astronaut
                   if r["mode"] == "uniform" and r["distortion"] == "gaussian_noise")
    assert [p for _, p in noise] == sorted((p for _, p in noise), reverse=True)  # PSNR falls with severity


def test_build_dataset_resumes_and_adds_a_model_without_redoing_the_others(photos, tmp_path, monkeypatch):
    out = tmp_path / "ds"
    build_dataset(config(photos, out, task_models=("selfie",)))
    images_before = {p: p.stat().st_mtime_ns for p in (out / "images").rglob("*.png")}
    # finished photos are skipped; the unreadable one is tried again (it may have been repaired)
    assert build_dataset(config(photos, out, task_models=("selfie",)))["photos_processed_this_run"] == 1
    summary = build_dataset(config(photos, out, task_models=("selfie", "nanodet")))
    assert summary["photos_processed_this_run"] == 3
    assert {p: p.stat().st_mtime_ns for p in (out / "images").rglob("*.png")} == images_before
    assert "consistency/nanodet" in read_rows(out / "manifest.csv")[0]


@pytest.mark.slow
def test_two_processes_give_the_same_manifest_as_one(photos, tmp_path):
    shutil.move(str(photos / "broken.jpg"), str(tmp_path / "broken.jpg"))
    build_dataset(config(photos, tmp_path / "one", region_pairs=0))
    build_dataset(config(photos, tmp_path / "two", region_pairs=0, processes=2))
    one = (tmp_path / "one" / "manifest.csv").read_text()
    assert one == (tmp_path / "two" / "manifest.csv").read_text() and len(one.splitlines()) == 1 + 2 * 10


def test_pairs_are_psnr_matched_and_labelled(photos, tmp_path):
    out = tmp_path / "ds"
    build_dataset(config(photos, out))
    summary = build_pairs(PairsConfig(dataset=out, pairs_per_reference=2))
    rows = read_rows(out / "pairs.csv")
    matched = [r for r in rows if r["kind"] == "psnr_matched"]
    assert summary["pairs"]["psnr_matched"] == len(matched) >= 2
    for row in matched:
        assert abs(row["a_psnr"] - row["b_psnr"]) <= 0.25 + 0.02  # uint8 rounding of the saved PNGs
        assert row["a_distortion"] != row["b_distortion"]
        assert 0 <= row["soft_label"] <= 1 and row["majority_label"] == majority(row["soft_label"])
        assert (out / row["a_path"]).is_file() and (out / row["b_path"]).is_file()
    mirrored = [r for r in rows if r["kind"] == "roi_vs_background"]
    assert mirrored and all(r["a_roi_severity"] < r["b_roi_severity"] for r in mirrored)
    assert (out / "pairs.csv").read_text() == (build_pairs(PairsConfig(dataset=out, pairs_per_reference=2)) and
                                                (out / "pairs.csv").read_text())
    # a pair image lost since (an interrupted run, a deleted file) redoes its reference's part, identically
    before = (out / "pairs.csv").read_text()
    (out / matched[0]["a_path"]).unlink()
    assert build_pairs(PairsConfig(dataset=out, pairs_per_reference=2))["references_processed_this_run"] == 1
    assert (out / matched[0]["a_path"]).is_file() and (out / "pairs.csv").read_text() == before
    # resuming with other settings would mix two designs in one pairs.csv: refused, naming the difference
    with pytest.raises(ValueError, match=r"pairs_per_reference: 2 -> 3.*delete"):
        build_pairs(PairsConfig(dataset=out, pairs_per_reference=3))
    # calibration end to end (both photos for training: two photos are too few to hold one out)
    weights_file = tmp_path / "weights.json"
    assert main(["calibrate", "--dataset", str(out), "--backbone", "torchvision/mobilenet_v2", "--split", "1", "0",
                 "0", "--max-epochs", "5", "--out", str(weights_file)]) == 0
    record = json.loads(weights_file.read_text())
    assert sum(record["weights"].values()) == pytest.approx(1.0)
    assert record["fitted_on"]["train_photos"] == 2 and record["fitted_on"]["train_pairs"] == len(matched)


def test_preference_and_majority():
    assert preference({"a": 0.9, "b": 0.5}, {"a": 0.1, "b": 0.5}) == 0.75
    assert majority(0.75) == 1.0 and majority(0.25) == 0.0 and majority(0.5) == 0.5


def test_split_by_photo_is_a_seeded_partition():
    photos = [f"p{i}" for i in range(20)]
    train, test = split_by_photo(photos, (0.75, 0.25), seed=3)
    assert train | test == set(photos) and not train & test and len(test) == 5
    assert split_by_photo(photos, (0.75, 0.25), seed=3) == [train, test]
    with pytest.raises(ValueError, match="sum to 1"):
        split_by_photo(photos, (0.5, 0.2))


def test_cli_build_dataset_reports_bad_model_names(photos, tmp_path, capsys):
    assert main(["build-dataset", "--images", str(photos), "--out", str(tmp_path / "x"), "--task-models",
                 "no-such"]) == 2
    assert "nanodet" in capsys.readouterr().err
