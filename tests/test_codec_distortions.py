"""Codecs as graded distortion types of the data engine (data/codec_distortions.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from test_codec_interface import tiny_family

from mlclipsim.coding import create_codec
from mlclipsim.core.images import array_to_tensor
from mlclipsim.data.codec_distortions import (
    parse_codec_distortions,
    register_codec_distortions,
    severity_indices,
)
from mlclipsim.distortions import distort, get_distortion, psnr


def _image(seed: int = 0, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 1, size, dtype=np.float32)
    smooth = np.stack([np.add.outer(base, base) / 2, np.outer(base, base), 1 - np.add.outer(base, base) / 2], -1)
    return np.clip(smooth + 0.05 * rng.standard_normal(smooth.shape).astype(np.float32), 0, 1)


def test_severity_indices_span_the_ladder_highest_rate_first():
    assert severity_indices(5) == (4, 3, 2, 1, 0)
    assert severity_indices(100) == (99, 74, 50, 25, 0)
    with pytest.raises(ValueError, match="at least 5 operating points"):
        severity_indices(3)


def test_a_pillow_codec_distortion_goes_through_the_real_file_and_degrades_with_severity():
    (name,) = register_codec_distortions({"webp": None})
    assert name == "codec_webp" and register_codec_distortions({"webp": None}) == [name]   # idempotent
    distortion = get_distortion(name)
    points = create_codec("webp").points                      # its default ladder, lowest rate first
    assert distortion.integer_param and distortion.severity_params == tuple(map(float, severity_indices(len(points))))
    image = _image()
    out = [distort(image, name, s, seed=0) for s in range(1, 6)]
    assert all(o.dtype == np.float32 and o.shape == image.shape for o in out)
    psnrs = [psnr(image, o) for o in out]
    assert all(a > b for a, b in zip(psnrs, psnrs[1:])), psnrs
    # severity 3 = the middle point, exactly what the codec interface decodes from its file
    coded = create_codec("webp").code(array_to_tensor(image).unsqueeze(0), points[severity_indices(len(points))[2]])
    expected = np.round(coded.reconstructions[0].permute(1, 2, 0).numpy() * 255) / 255
    np.testing.assert_allclose(out[2], expected, atol=1e-6)


def test_a_learned_family_with_five_rates_becomes_a_distortion(tmp_path):
    lambdas = ("0.0018", "0.0035", "0.0067", "0.0130", "0.0250")
    tiny_family(tmp_path, lambdas=lambdas)
    (name,) = register_codec_distortions({"tiny-five": str(tmp_path / "*.pth")})
    assert name == "codec_tiny-five"
    image = _image(1)
    out = distort(image, name, 1, seed=0)          # severity 1 = the largest lambda, the highest rate
    coded = create_codec("tiny-five").code(torch.from_numpy(image).permute(2, 0, 1)[None], "0.0250")
    np.testing.assert_allclose(out, np.round(coded.reconstructions[0].permute(1, 2, 0).numpy() * 255) / 255,
                               atol=1e-6)
    tiny_family(tmp_path / "..", lambdas=("0.1", "0.2"))
    with pytest.raises(ValueError, match="at least 5 operating points"):
        register_codec_distortions({"tiny-two": str(tmp_path / ".." / "*_0.[12].pth")})


def test_command_line_specs_and_unknown_codecs():
    assert parse_codec_distortions(["webp", "vr=runs/a.pth"]) == {"webp": None, "vr": "runs/a.pth"}
    with pytest.raises(ValueError, match="NAME=CHECKPOINTS"):
        parse_codec_distortions(["=x.pth"])
    with pytest.raises(ValueError, match="Unknown codec 'nope'"):
        register_codec_distortions({"nope": None})


def test_build_dataset_labels_codec_outputs(tmp_path, shared_dir):
    from mlclipsim.data.build_dataset import BuildConfig, build_dataset
    from mlclipsim.data.manifest import read_rows

    folder = tmp_path / "photos"
    folder.mkdir()
    with Image.open(shared_dir / "data" / "images" / "skimage_astronaut.png") as image:
        image.convert("RGB").resize((160, 128)).save(folder / "astronaut.png")
    out = tmp_path / "ds"
    summary = build_dataset(BuildConfig(images=folder, out=out, task_models=("selfie",), distortions=("jpeg",),
                                        region_pairs=0, size=128, codec_distortions={"webp": None}))
    assert list(summary["config"]["distortions"]) == ["jpeg", "codec_webp"]
    assert summary["config"]["codec_distortions"] == {"webp": None}
    rows = [r for r in read_rows(out / "manifest.csv") if r["distortion"] == "codec_webp"]
    assert sorted(r["roi_severity"] for r in rows) == [1, 2, 3, 4, 5]
    by_severity = {r["roi_severity"]: r["psnr"] for r in rows}
    assert by_severity[1] > by_severity[3] > by_severity[5]
