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


# ----------------------------------------------------------------------------- errors, files, lazy imports


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_help_imports_no_torch_and_resize_choices_match():
    import subprocess
    import sys

    from mlclipsim.backbones.preprocessing import RESIZE_POLICIES
    from mlclipsim.cli import RESIZE_CHOICES

    assert sorted(RESIZE_CHOICES) == sorted(RESIZE_POLICIES)
    code = ("import sys, contextlib, io\nfrom mlclipsim.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try: main(['--help'])\n"
            "    except SystemExit: pass\n"
            "heavy = [m for m in ('torch', 'lightning', 'compressai', 'numpy') if m in sys.modules]\n"
            "assert not heavy, heavy")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_user_errors_are_one_line_and_debug_shows_the_traceback(folder_pair, tmp_path, capsys):
    ref, dist = folder_pair
    image = ref / "skimage_coffee.png"
    assert main(["scor", str(image), str(image)]) == 2
    assert "Did you mean 'score'" in _one_error_line(capsys.readouterr().err)
    assert main(["score", str(image), str(image), "--device", "meta"]) == 2
    assert "meta device holds no data" in _one_error_line(capsys.readouterr().err)
    assert main(["score", str(image), str(dist), "--backbone", "torchvision/mobilenet_v2"]) == 2  # file vs folder
    _one_error_line(capsys.readouterr().err)
    garbage = tmp_path / "weights.pth"
    garbage.write_bytes(b"not a checkpoint")
    assert main(["score", str(image), str(image), "--backbone", "torchvision/mobilenet_v2",
                 "--pretrained", str(garbage)]) == 2
    _one_error_line(capsys.readouterr().err)
    assert main(["score", str(image), str(image), "--device", "meta", "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_on_a_cpu_machine_is_one_line(folder_pair, capsys):
    image = folder_pair[0] / "skimage_coffee.png"
    assert main(["score", str(image), str(image), "--device", "cuda"]) == 2
    assert "no usable CUDA GPU" in _one_error_line(capsys.readouterr().err)


@pytest.fixture()
def two_exported_codecs(tmp_path):
    """Two tiny bmshj2018-factorized models of the same shape (different weights), exported by mlclipsim."""
    import torch
    from compressai.models import FactorizedPrior

    from mlclipsim.coding.export import export_state_dict

    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = FactorizedPrior(8, 8).eval()
        model.update(force=True)
        torch.save(model.state_dict(), tmp_path / f"plain{seed}.pth")
        export_state_dict(tmp_path / f"plain{seed}.pth", tmp_path / f"codec{seed}.pth",
                          architecture="bmshj2018-factorized")
        paths.append(tmp_path / f"codec{seed}.pth")
    return paths


def test_codec_files_carry_the_model_and_nothing_is_overwritten(two_exported_codecs, tmp_path, capsys):
    first, second = two_exported_codecs
    photo = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)).save(photo)
    original = photo.read_bytes()
    # no --architecture: the exported file says what it is
    assert main(["codec", "compress", str(photo), str(tmp_path / "a.bin"), "--checkpoint", str(first)]) == 0
    fingerprint = json.loads(capsys.readouterr().out)["fingerprint"]
    # another model of the same shape: an error naming both fingerprints, not garbage with exit 0
    assert main(["codec", "decompress", str(tmp_path / "a.bin"), str(tmp_path / "out.png"),
                 "--checkpoint", str(second)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    from mlclipsim.coding.architectures import load_codec, model_fingerprint

    assert fingerprint in line and model_fingerprint(load_codec(second)[0]) in line
    assert not (tmp_path / "out.png").exists()
    assert main(["codec", "decompress", str(tmp_path / "a.bin"), str(tmp_path / "out.png"),
                 "--checkpoint", str(first)]) == 0
    capsys.readouterr()
    # never over an input, never over an existing output without --overwrite
    assert main(["codec", "compress", str(photo), str(photo), "--checkpoint", str(first)]) == 2
    assert "write over an input" in _one_error_line(capsys.readouterr().err)
    assert photo.read_bytes() == original
    before = (tmp_path / "a.bin").read_bytes()
    assert main(["codec", "compress", str(photo), str(tmp_path / "a.bin"), "--checkpoint", str(second)]) == 2
    assert "--overwrite" in _one_error_line(capsys.readouterr().err)
    assert (tmp_path / "a.bin").read_bytes() == before
    assert main(["codec", "compress", str(photo), str(tmp_path / "a.bin"), "--checkpoint", str(second),
                 "--overwrite"]) == 0
    assert (tmp_path / "a.bin").read_bytes() != before
    assert not list(tmp_path.glob(".*part*"))  # no temporary file left behind
    capsys.readouterr()
    # folder where a file is expected, output path that is a folder, unreadable checkpoint
    assert main(["codec", "compress", str(tmp_path), str(tmp_path / "b.bin"), "--checkpoint", str(first)]) == 2
    assert "is a folder" in _one_error_line(capsys.readouterr().err)
    assert main(["codec", "compress", str(photo), str(tmp_path), "--checkpoint", str(first)]) == 2
    assert "is a folder" in _one_error_line(capsys.readouterr().err)
    assert main(["codec", "compress", str(photo), str(tmp_path / "c.bin"), "--checkpoint", str(photo)]) == 2
    assert "torch checkpoint" in _one_error_line(capsys.readouterr().err)


def test_export_record_detects_a_changed_file(two_exported_codecs):
    import torch

    from mlclipsim.coding.architectures import export_metadata, load_codec, model_fingerprint

    state = torch.load(two_exported_codecs[0], weights_only=True)
    record = export_metadata(state)
    assert record["architecture"] == "bmshj2018-factorized" and record["channels"] == [8, 8]
    assert record["fingerprint"] == model_fingerprint(load_codec(two_exported_codecs[0])[0])
    state["g_s.0.weight"] += 0.01
    torch.save(state, two_exported_codecs[0])
    with pytest.raises(ValueError, match="changed after export"):
        load_codec(two_exported_codecs[0])


def test_compress_refuses_stem_clashes_and_existing_outputs(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    array = (np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8)
    Image.fromarray(array).save(photos / "a.png")
    Image.fromarray(array).save(photos / "a.jpg")
    Image.fromarray(array).save(photos / "b.webp", lossless=True)
    original = (photos / "b.webp").read_bytes()
    common = ["--codec", "webp:5,50", "--target-mlclipsim", "0.5", "--backbone", "torchvision/mobilenet_v2"]
    assert main(["compress", str(photos), str(tmp_path / "out"), *common]) == 2
    assert "a.jpg, a.png" in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()
    (photos / "a.jpg").unlink()
    assert main(["compress", str(photos), str(photos), *common]) == 2  # b.webp would replace b.webp
    assert "write over an input" in _one_error_line(capsys.readouterr().err)
    assert (photos / "b.webp").read_bytes() == original
    out = tmp_path / "out"
    assert main(["compress", str(photos), str(out), *common]) == 0
    captured = capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["a.webp", "b.webp", "rate_control.csv"]
    assert "wrote 2 file(s)" in captured.out
    assert "reached already at webp's lowest quality 5" in captured.err  # a target that does not constrain
    assert main(["compress", str(photos), str(out), *common]) == 2
    assert "--overwrite" in _one_error_line(capsys.readouterr().err)
    assert main(["compress", str(photos), str(out), *common, "--overwrite"]) == 0


def test_models_dir_falls_back_to_shared_models_or_fails_in_one_line(tmp_path, monkeypatch):
    from mlclipsim.core.weights import models_dir

    monkeypatch.delenv("MLCLIPSIM_MODELS_DIR", raising=False)
    monkeypatch.setenv("MLCLIPSIM_SHARED_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="MLCLIPSIM_MODELS_DIR is not set and no models folder"):
        models_dir()
    (tmp_path / "models").mkdir()
    assert models_dir() == tmp_path / "models"


def test_build_dataset_refuses_stem_clashes_and_missing_models_before_spawning(tmp_path, monkeypatch, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    array = (np.random.default_rng(2).random((64, 64, 3)) * 255).astype(np.uint8)
    Image.fromarray(array).save(photos / "p.png")
    Image.fromarray(array).save(photos / "p.jpg")
    args = ["build-dataset", "--images", str(photos), "--out", str(tmp_path / "ds"), "--task-models", "centernet"]
    assert main(args) == 2
    assert "p.jpg, p.png" in _one_error_line(capsys.readouterr().err)
    (photos / "p.jpg").unlink()
    monkeypatch.setenv("MLCLIPSIM_MODELS_DIR", str(tmp_path / "no-models"))
    monkeypatch.delenv("MLCLIPSIM_WEIGHTS_DIR", raising=False)
    assert main([*args, "--processes", "2"]) == 2
    err = capsys.readouterr().err
    assert "MLCLIPSIM_MODELS_DIR" in err and "Traceback" not in err and "centernet.onnx" in err
