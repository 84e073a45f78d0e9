"""The mlclipsim command: score files and folders, report what cannot be scored."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from mlclipsim.cli import main


@pytest.fixture()
def folder_pair(tmp_path, shared_dir):
    ref, dist = tmp_path / "ref", tmp_path / "dist"
    ref.mkdir(), dist.mkdir()
    for name in ("skimage_coffee", "skimage_camera", "skimage_chelsea"):
        with Image.open(shared_dir / "data" / "images" / f"{name}.png") as image:
            small = image.convert("RGB").resize((128, 96))
        small.save(ref / f"{name}.png")
        if name == "skimage_coffee":
            small.save(dist / f"{name}.jpg", quality=5)            # paired by name, suffix differs
        elif name == "skimage_camera":
            (dist / f"{name}.png").write_bytes(b"not an image")   # corrupt
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(dist / "orphan.png")  # no reference
    return ref, dist


def test_folder_pair_with_corrupt_and_missing_files(folder_pair, capsys):
    ref, dist = folder_pair
    status = main(["score", str(ref), str(dist), "--backbone", "torchvision/mobilenet_v2", "--json"])
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert status == 1
    assert [r["name"] for r in report["results"]] == ["skimage_coffee"]
    assert 0.0 < report["results"][0]["score"] < 1.0
    errors = {e["name"]: e["error"] for e in report["errors"]}
    assert "Cannot read" in errors["skimage_camera"]
    assert "no distorted image" in errors["skimage_chelsea"]
    assert "no reference" in errors["orphan"]
    assert "skimage_camera" in captured.err


def test_two_identical_files_score_one_as_a_table(folder_pair, capsys):
    ref, _ = folder_pair
    image = ref / "skimage_coffee.png"
    copy = ref.parent / "copy.png"
    shutil.copy(image, copy)
    assert main(["score", str(image), str(copy), "--backbone", "efficientnet-lite0"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.split()[-1] == "1.0000"


def test_missing_weights_is_reported_not_raised(folder_pair, capsys):
    ref, dist = folder_pair
    assert main(["score", str(ref), str(dist), "--backbone", "ViT-B-32"]) == 2
    assert "MLCLIPSIM_WEIGHTS_DIR" in capsys.readouterr().err
