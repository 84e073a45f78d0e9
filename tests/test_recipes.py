"""Composed codec recipes: every named recipe parses to the flat recipe it replaced; one way to train; step timing."""

from __future__ import annotations

import json
import re
import runpy

import numpy as np
import pytest
from conftest import REPO
from PIL import Image

from mlclipsim.training.train_codec import parse

CODECS = REPO / "codecs"
_TABLE = runpy.run_path(str(CODECS / "recipes.py"))
RECIPES: dict[str, tuple[str, ...]] = _TABLE["RECIPES"]
FLAT = REPO / "tests" / "data" / "flat_codec_recipes"  # the flat recipe files as they were before composition


def _config_args(files) -> list[str]:
    return [item for part in files for item in ("--config", str(CODECS / part))]


@pytest.mark.parametrize("name", sorted(set(RECIPES) - set(_TABLE["FINETUNE_RECIPES"])))  # those were never flat
def test_composed_recipe_parses_to_the_flat_recipe(name):
    flat = parse(["--config", str(FLAT / f"{name}.yaml")])
    composed = parse([*_config_args(RECIPES[name]), "--trainer.logger.init_args.name", name])
    assert composed == flat


def test_timing_variant_is_the_mix_recipe_without_native_resize():
    """The step-time table's `mix (resize 224)`: base/small + architecture + the term as the full recipes run it."""
    flat = parse(["--config", str(FLAT / "bmshj2018-factorized_mix_small_resize224.yaml")])
    composed = parse([*_config_args(("base/small.yaml", "architecture/bmshj2018-factorized.yaml", "term/mix.yaml")),
                      "--trainer.logger.init_args.name", "bmshj2018-factorized_mix_small",
                      "--trainer.max_steps", "3000", "--trainer.check_val_every_n_epoch", "10"])
    assert composed == flat


def test_every_recipe_file_is_used_and_the_readme_table_matches_the_mapping():
    used = {part for files in RECIPES.values() for part in files}
    on_disk = {str(path.relative_to(CODECS)) for path in CODECS.rglob("*.yaml")}
    assert used == on_disk
    assert not list(CODECS.glob("*.yaml")), "flat recipes are composed now (codecs/README.md)"
    readme = (CODECS / "README.md").read_text()
    rows = {m.group(1): tuple(re.findall(r"`([^`]+\.yaml)`", m.group(2)))
            for m in re.finditer(r"^\| `([\w.-]+_(?:small|full))` \|([^|]*)\|", readme, re.MULTILINE)}
    assert rows == RECIPES


def test_recipes_script_prints_the_config_arguments(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.setattr("sys.argv", ["recipes.py", "bmshj2018-hyperprior_ms-ssim_full"])
    runpy.run_path(str(CODECS / "recipes.py"), run_name="__main__")
    assert capsys.readouterr().out.split() == ["--config", "codecs/base/full.yaml", "--config",
                                               "codecs/architecture/bmshj2018-hyperprior.yaml", "--config",
                                               "codecs/term/ms-ssim.yaml"]
    monkeypatch.setattr("sys.argv", ["recipes.py", "bmshj2018-factorized_mse_tiny"])
    with pytest.raises(SystemExit, match="No codec recipe named 'bmshj2018-factorized_mse_tiny'"):
        runpy.run_path(str(CODECS / "recipes.py"), run_name="__main__")


def _photos(folder):
    folder.mkdir()
    for i in range(6):
        array = (np.random.default_rng(i).random((40, 44, 3)) * 255).astype(np.uint8)
        Image.fromarray(array).save(folder / f"photo{i}.png")
    return folder


TINY = ["model.channels=[8, 8]", "data.crop_size=32", "data.batch_size=2", "data.val_fraction=0.34",
        "model.val_ml_clipsim=null"]


def test_mlclipsim_train_codec_trains_a_composed_recipe(tmp_path, monkeypatch, capsys):
    from mlclipsim.cli import main

    folder = _photos(tmp_path / "photos")
    monkeypatch.chdir(tmp_path)  # runs/ goes here
    files = [str(CODECS / part) for part in RECIPES["bmshj2018-factorized_mse_small"]]
    status = main(["train-codec", *(item for f in files for item in ("--config", f)), *TINY,
                   f"data.images={folder}", "trainer.max_steps=2", "trainer.check_val_every_n_epoch=1",
                   "trainer.enable_progress_bar=false", "trainer.logger.init_args.name=tiny", "model.lmbda=0.0067"])
    assert status == 0
    run = tmp_path / "runs" / "tiny" / "version_0"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert "lmbda: 0.0067" in (run / "config.yaml").read_text()
    capsys.readouterr()
    assert main(["train-codec", "--config", "codecs/base/tiny.yaml"]) == 2
    assert "codecs/base/<size>.yaml" in capsys.readouterr().err


def test_step_time_builds_the_recipe_through_lightning_cli(tmp_path):
    from mlclipsim.training.step_time import time_recipe

    folder = _photos(tmp_path / "photos")
    recipe = ",".join(str(CODECS / part) for part in RECIPES["bmshj2018-factorized_mse_small"])
    overrides = [tuple(item.split("=", 1)) for item in (*TINY, f"data.images={folder}")]
    memory: dict = {}
    times = time_recipe(recipe, steps=2, warmup=1, overrides=overrides, memory=memory)
    assert len(times) == 2 and all(t > 0 for t in times)
    assert memory["peak_rss_mb"] > 0 and memory["built_rss_mb"] > 0


def test_shipped_term_scales_are_the_measured_slope_ratios():
    """Every shipped scale is its committed calibration result rounded to 0.1, with the command that made it."""
    from mlclipsim.training.distortion_terms import CALIBRATED_SCALES, RA_MIQA_SCALES, calibrated_scale_records

    keys = {"ml-clipsim": (CALIBRATED_SCALES, ("backbone", "cosine_map", "resize")),
            "ra-miqa": (RA_MIQA_SCALES, ("task", "target"))}
    for term, (table, fields) in keys.items():
        records = calibrated_scale_records(term)
        assert records and {tuple(r[f] for f in fields): r["scale"] for r in records} == table
        for record in records:
            value = json.loads((REPO / record["result"]).read_text())
            for part in record["result_key"].split("/"):
                value = value[part]
            assert record["measured"] == value and record["scale"] == round(value, 1), record
            assert record["command"].startswith("MLCLIPSIM_OFFLINE=1 python -m mlclipsim.training.calibrate_lambda")
            assert record["command"].endswith(f"--out {record['result']}")
    assert calibrated_scale_records("no-such-term") == []
