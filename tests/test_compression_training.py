"""Codec training: data, exact resumption, validation logs with real coding, DDP, recipes and the train entry point."""

from __future__ import annotations

import inspect
import runpy
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from conftest import REPO, TINY_VIT
from PIL import Image

from mlclipsim.coding import entropy
from mlclipsim.training.codec_data import CodecDataModule, default_image_folder
from mlclipsim.training.codec_module import CompressionModule


def _photos(folder: Path, sizes=((48, 40), (44, 52), (40, 40), (60, 50), (20, 24), (50, 45))) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, (h, w) in enumerate(sizes):
        array = (np.random.default_rng(i).random((h, w, 3)) * 255).astype(np.uint8)
        Image.fromarray(array).save(folder / f"photo{i}.png")
    return folder


def _trainer(max_steps: int, **options) -> L.Trainer:
    settings = dict(max_steps=max_steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    settings.update(options)
    return L.Trainer(**settings)


def test_datamodule_excludes_held_out_photos_from_a_list_file(tmp_path):
    folder = _photos(tmp_path / "photos")
    names = sorted(p.name for p in folder.iterdir())
    held_out = tmp_path / "held_out.txt"
    held_out.write_text(f"# held out for a study\n{names[0]}\n{names[1].rsplit('.', 1)[0]}  # a stem works too\n")
    data = CodecDataModule(str(folder), crop_size=32, batch_size=2, val_fraction=0.25, exclude=str(held_out))
    data.setup()
    kept = {p.name for p in (*data.train_dataset.paths, *data.val_dataset.paths)}
    assert kept == set(names[2:])
    assert CodecDataModule(str(folder), exclude=[names[0]]).exclude == {names[0]}
    with pytest.raises(FileNotFoundError, match="one photo file name per line"):
        CodecDataModule(str(folder), exclude=str(tmp_path / "missing.txt"))


def test_datamodule_splits_by_photo_and_is_seeded(tmp_path, monkeypatch):
    folder = _photos(tmp_path / "photos")
    data = CodecDataModule(str(folder), crop_size=32, batch_size=2, val_fraction=0.34, seed=3)
    data.setup()
    train, val = data.train_dataset, data.val_dataset
    assert len(train.paths) == 4 and len(val.paths) == 2 and not set(train.paths) & set(val.paths)
    assert all(item.shape == (3, 32, 32) for item in (*[train[i] for i in range(4)], val[0], val[1]))
    assert torch.equal(train[1], train[1]) and not torch.equal(train[1], train[1 + len(train)])  # epoch 1 differs
    again = CodecDataModule(str(folder), crop_size=32, batch_size=2, val_fraction=0.34, seed=3)
    again.setup()
    assert again.train_dataset.paths == train.paths and torch.equal(again.train_dataset[5], train[5])
    loader = data.train_dataloader()
    loader.sampler.set_epoch(2)
    assert min(loader.sampler) >= 2 * len(train)
    monkeypatch.setenv("MLCLIPSIM_SHARED_DIR", str(tmp_path))
    assert default_image_folder() == tmp_path / "data" / "images"


def _resume_setup(folder: Path, seed: int):
    data = CodecDataModule(str(folder), crop_size=32, batch_size=2, val_fraction=0.34, seed=0)
    torch.manual_seed(seed)
    module = CompressionModule("bmshj2018-factorized", channels=[8, 8], lr=1e-3, lr_scheduler="multistep",
                               milestones=[3], val_ml_clipsim=None)
    return data, module


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Photos (4 for training, batch 2: 2 steps per epoch) and the parameters after 4 uninterrupted steps."""
    folder = _photos(tmp_path_factory.mktemp("resume") / "photos")
    data, straight = _resume_setup(folder, seed=0)
    _trainer(4, limit_val_batches=0).fit(straight, data)
    return folder, dict(straight.model.named_parameters())


@pytest.mark.parametrize("k", [2, 3])  # an epoch-end and a mid-epoch checkpoint
def test_checkpoint_resumes_to_the_uninterrupted_state(tmp_path, uninterrupted, k):
    folder, expected = uninterrupted
    data, first = _resume_setup(folder, seed=0)
    trainer = _trainer(k, limit_val_batches=0)
    trainer.fit(first, data)
    trainer.save_checkpoint(tmp_path / "part.ckpt")
    data, resumed = _resume_setup(folder, seed=123)  # other initial weights: all must come from the checkpoint
    trainer = _trainer(4, limit_val_batches=0)
    trainer.fit(resumed, data, ckpt_path=tmp_path / "part.ckpt")

    assert trainer.global_step == 4
    for name, parameter in resumed.model.named_parameters():
        assert torch.equal(parameter, expected[name]), name
    assert resumed.optimizers()[0].param_groups[0]["lr"] == pytest.approx(1e-4)  # the milestone at step 3 passed


def test_validation_logs_distortions_and_real_bitstream_bpp(tmp_path):
    folder = _photos(tmp_path / "photos")
    data = CodecDataModule(str(folder), crop_size=32, batch_size=2, val_fraction=0.34, seed=0)
    module = CompressionModule("bmshj2018-factorized", channels=[8, 8], lr=1e-3, val_coding_images=-1,
                               terms=[{"name": "mse", "weight": 0.5}, {"name": "torch.nn:L1Loss", "weight": 0.5,
                                                                       "scale": 5000.0}],
                               val_ml_clipsim={"backbone": TINY_VIT, "pretrained": "random"})
    trainer = _trainer(2)
    trainer.fit(module, data)  # validation runs after the last step (end of epoch 0)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    for key in ("loss", "bpp_loss", "distortion", "mse", "l1loss", "psnr", "ms_ssim", "ml_clipsim_metric", "bpp_est",
                "bpp_real", "decode_max_abs_diff"):
        assert np.isfinite(metrics[f"val/{key}"]), key
    assert metrics["val/ms_ssim_scales"] == 2.0  # 32-px crops: 2 of the 5 scales
    assert metrics["val/decode_max_abs_diff"] < 1e-3

    module.model.eval()
    module.model.update(force=True)
    val = torch.stack([data.val_dataset[i] for i in range(len(data.val_dataset))])
    coded = entropy.encode(module.model, val)
    own_bpp = np.mean([8 * sum(len(s) for s in c.strings) / (32 * 32) for c in coded])
    assert metrics["val/bpp_real"] == pytest.approx(own_bpp, rel=1e-6)


def test_init_from_a_local_checkpoint_copies_the_weights(tmp_path):
    source = CompressionModule("bmshj2018-factorized", channels=[8, 8], val_ml_clipsim=None)
    torch.save(source.model.state_dict(), tmp_path / "plain.pth")
    started = CompressionModule("bmshj2018-factorized", channels=[8, 8], init=str(tmp_path / "plain.pth"),
                                val_ml_clipsim=None)
    assert all(torch.equal(a, b) for a, b in zip(source.model.parameters(), started.model.parameters()))
    with pytest.raises(ValueError, match="does not fit"):
        CompressionModule("bmshj2018-factorized", channels=[8, 16], init=str(tmp_path / "plain.pth"),
                          val_ml_clipsim=None)


@pytest.mark.slow
def test_two_process_gloo_ddp_fits(tmp_path):
    folder = _photos(tmp_path / "photos")
    data = CodecDataModule(str(folder), crop_size=32, batch_size=1, val_fraction=0.34, seed=0)
    module = CompressionModule("bmshj2018-factorized", channels=[8, 8], lr=1e-3, val_ml_clipsim=None)
    trainer = L.Trainer(max_steps=2, accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, limit_val_batches=1)
    before = [p.detach().clone() for p in module.model.parameters()]
    trainer.fit(module, data)  # ddp_spawn sends rank 0's weights and logged metrics back to this process
    assert {"train/loss", "val/loss", "val/bpp_real", "val/decode_max_abs_diff"} <= set(trainer.callback_metrics)
    after = list(module.model.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(before, after))


# ----------------------------------------------------------------------------------------- recipes


RECIPE_FILES = runpy.run_path(str(REPO / "codecs" / "recipes.py"))["RECIPES"]  # name -> files under codecs/


def _config_args(files) -> list[str]:
    return [item for part in files for item in ("--config", str(REPO / "codecs" / part))]


def test_recipes_are_complete_and_valid():
    from mlclipsim.coding.architectures import resolve_channels
    from mlclipsim.training.distortion_terms import CALIBRATED_SCALES, list_terms
    from mlclipsim.training.train_codec import parse

    names = set(RECIPE_FILES)
    for arch in ("bmshj2018-factorized", "bmshj2018-hyperprior"):
        for term in ("mse", "ms-ssim", "ml-clipsim", "mix"):
            for size in ("small", "full"):
                assert f"{arch}_{term}_{size}" in names
    readme = (REPO / "codecs" / "README.md").read_text()
    for name, files in RECIPE_FILES.items():
        text = "".join((REPO / "codecs" / part).read_text() for part in files)
        assert "lambda ladder" in text.lower() and name in readme, name
        config = parse(_config_args(files))
        model, data = config["model"], config["data"]
        inspect.signature(CompressionModule).bind(**model)
        inspect.signature(CodecDataModule).bind(**data)
        inspect.signature(L.Trainer).bind(**config["trainer"])
        resolve_channels(model["architecture"], model.get("quality"), model.get("channels"))
        for term in model["terms"]:
            assert term["name"] in list_terms()
            if term["name"] == "ml-clipsim":
                assert (term["backbone"], term.get("cosine_map", "rescale"), term.get("resize", "resize")) \
                    in CALIBRATED_SCALES
        assert sum(t.get("weight", 1.0) for t in model["terms"]) == pytest.approx(1.0)


def test_train_entry_point_reads_a_recipe_with_overrides(tmp_path):
    from mlclipsim.training.train_codec import cli_arguments, train

    folder = _photos(tmp_path / "photos")
    recipe = [str(REPO / "codecs" / part) for part in RECIPE_FILES["bmshj2018-factorized_mse_small"]]
    overrides = ["model.lmbda=0.0067", "model.channels=[8, 8]", f"data.images={folder}", "data.crop_size=32",
                 "data.batch_size=2", "data.val_fraction=0.34", "data.cache_images=false", "model.val_ml_clipsim=null",
                 "trainer.max_steps=1", "trainer.logger=false", "trainer.enable_checkpointing=false",
                 "trainer.callbacks=[]", "trainer.limit_val_batches=0", "trainer.enable_progress_bar=false",
                 f"trainer.default_root_dir={tmp_path}"]  # LightningCLI writes config.yaml there
    trainer = train(cli_arguments(recipe, overrides)).trainer
    assert trainer.global_step == 1 and trainer.lightning_module.criterion.lmbda == 0.0067
    with pytest.raises(SystemExit):  # LightningCLI refuses an unknown key
        train(cli_arguments(recipe, ["modle.lmbda=1"]))


def test_lightning_cli_entry_point(tmp_path):
    pytest.importorskip("jsonargparse", reason="LightningCLI needs jsonargparse[signatures]")
    from mlclipsim.training.train_codec import train

    folder = _photos(tmp_path / "photos")
    cli = train([
        *_config_args(RECIPE_FILES["bmshj2018-factorized_mse_small"]), "--model.lmbda", "0.0067",
        "--model.channels", "[8, 8]", "--data.images", str(folder), "--data.crop_size", "32",
        "--data.batch_size", "2", "--data.val_fraction", "0.34", "--model.val_ml_clipsim", "null",
        "--trainer.max_steps", "1", "--trainer.logger", "false", "--trainer.enable_checkpointing", "false",
        "--trainer.callbacks", "[]", "--trainer.limit_val_batches", "0", "--trainer.default_root_dir", str(tmp_path)])
    assert cli.trainer.global_step == 1 and cli.model.criterion.lmbda == 0.0067
