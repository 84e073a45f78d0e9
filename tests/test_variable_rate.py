"""The variable-rate codec (mbt2018-mean-vr): the pilot's weights, real bitstreams per level, the CLI, the
codec interface, export, and fine-tuning through Lightning and ``mlclipsim train-codec``."""

from __future__ import annotations

import importlib.util
import json
import runpy
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import REPO
from PIL import Image

from mlclipsim.coding import create_codec, entropy
from mlclipsim.coding.architectures import export_metadata, load_codec, model_fingerprint, read_checkpoint
from mlclipsim.coding.bitstream import Bitstream, BitstreamError, read_bitstream, write_bitstream
from mlclipsim.coding.export import export_state_dict
from mlclipsim.coding.variable_rate import GainMeanScaleHyperprior
from mlclipsim.training.codec_data import CodecDataModule
from mlclipsim.training.codec_module import CompressionModule

LADDER = [0.0035, 0.013, 0.0483]
N, M = 8, 12


def _pilot_models():
    """benchmarks/codec_pilot/models.py, the module the pilot's long training imports (read, not changed)."""
    spec = importlib.util.spec_from_file_location("codec_pilot_models", REPO / "benchmarks/codec_pilot/models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pilot(tmp_path_factory):
    """A tiny pilot model with distinct gains per level, and its training checkpoint as train_base.py writes it."""
    torch.manual_seed(0)
    model = _pilot_models().build("mean-gain", N, M, LADDER)
    with torch.no_grad():
        model.log_gain.add_(torch.randn_like(model.log_gain) * 0.3 + torch.tensor([0.0, 2.0, 4.0])[:, None])
        model.log_inv_gain.add_(torch.randn_like(model.log_inv_gain) * 0.3)
    path = tmp_path_factory.mktemp("pilot") / "checkpoint.pth"
    optimizer = torch.optim.Adam(model.parameters())
    torch.save({"config": {"arch": "mean-gain", "N": N, "M": M, "lmbda": None, "lmbdas": LADDER},
                "args": {"lmbda": LADDER, "lr": 1e-3, "crop": 128}, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "aux_optimizer": {}, "scheduler": {}, "step": 7,
                "torch_rng": torch.get_rng_state(), "wall_s": 1.5, "cpu_s": 1.0}, path)
    model.eval()
    model.update(force=True)
    return model, path


@pytest.fixture(scope="module")
def photo(astronaut) -> torch.Tensor:
    """The astronaut photo at 128 x 128 (1,3,128,128) in [0,1]."""
    return F.interpolate(astronaut, size=(128, 128), mode="area")


@pytest.fixture(scope="module")
def exported(pilot, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "vr.pth"
    summary = export_state_dict(pilot[1], path)
    return path, summary


def test_library_model_matches_the_pilot_model_at_every_level(pilot, photo):
    reference, path = pilot
    model, architecture = load_codec(path)  # the pilot's training checkpoint: no --architecture needed
    assert architecture == "mbt2018-mean-vr" and isinstance(model, GainMeanScaleHyperprior)
    assert model.lmbdas.tolist() == torch.tensor(LADDER).tolist()
    streams = set()
    with torch.no_grad():
        for level in range(len(LADDER)):
            ours, theirs = model(photo, level), reference(photo, torch.full((1,), level))
            assert torch.equal(ours["x_hat"], theirs["x_hat"])
            assert all(torch.equal(ours["likelihoods"][k], theirs["likelihoods"][k]) for k in ("y", "z"))
            expected = reference.compress(photo, level)["strings"]
            assert model.compress(photo, level)["strings"] == expected
            (coded,) = entropy.encode(model, photo, level=level)
            assert coded.strings == [bytes(s[0]) for s in expected] and coded.level == level
            decoded = entropy.decode(model, coded)
            assert torch.equal(decoded, reference.decompress(expected, (2, 2), level)["x_hat"])
            assert float((decoded - entropy.forward_reconstruction(model, photo, level)).abs().max()) < 1e-4
            streams.add(b"".join(coded.strings))
    assert len(streams) == len(LADDER)  # the levels code differently (no rate order asserted: the model is untrained)
    with pytest.raises(ValueError, match="give a rate level"):
        entropy.encode(model, photo)
    with pytest.raises(ValueError, match="not one of this model's 3 levels"):
        entropy.encode(model, photo, level=3)


def test_bitstream_carries_a_bounded_level():
    stream = Bitstream("mbt2018-mean-vr", 40, 56, (8, 12), [b"\x01\x02\x03", b"\x04"], bytes(range(8)), 2, 3)
    data = write_bitstream(stream)
    assert data[4] == 3 and len(data) == 57 + 4  # the header of version 3: two bytes more than version 2
    assert read_bitstream(data) == stream
    one_rate = write_bitstream(Bitstream("mbt2018-mean-vr", 40, 56, (8, 12), [b"\x01\x02\x03", b"\x04"],
                                         bytes(range(8))))
    assert one_rate[4] == 2 and len(one_rate) == len(data) - 2 and read_bitstream(one_rate).level is None
    level_at = 4 + 1 + 1 + len("mbt2018-mean-vr") + 8 + 8 + 1 + 4 + 1  # after the channel counts: L, level
    assert data[level_at - 1:level_at + 1] == bytes([3, 2])
    for broken, message in ((data[:level_at] + bytes([3]) + data[level_at + 1:], "rate level 3 of 3 levels"),
                            (data[:level_at - 1] + bytes([0]) + data[level_at:], "rate level 2 of 0 levels"),
                            (data[:level_at - 1] + bytes([200]) + data[level_at:], "rate level 2 of 200 levels"),
                            (data[:level_at - 1] + bytes([3, 1]) + data[level_at + 1:], "CRC-32")):
        with pytest.raises(BitstreamError, match=message):
            read_bitstream(broken)
    for level, levels in ((3, 3), (None, 3), (1, None), (0, 65)):
        with pytest.raises(ValueError, match="level"):
            write_bitstream(Bitstream("mbt2018-mean-vr", 40, 56, (8, 12), [b"\x01", b"\x02"], bytes(8), level,
                                      levels))


def test_codec_cli_compresses_at_a_level_and_checks_the_model(pilot, exported, photo, tmp_path, capsys):
    from mlclipsim.cli import main

    image = tmp_path / "photo.png"
    Image.fromarray((photo[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(image)
    checkpoint = str(exported[0])
    assert main(["codec", "compress", str(image), str(tmp_path / "a.bin"), "--checkpoint", checkpoint]) == 2
    assert "give a rate level" in capsys.readouterr().err and not (tmp_path / "a.bin").exists()
    decoded = {}
    for level in range(len(LADDER)):
        out = tmp_path / f"l{level}.bin"
        assert main(["codec", "compress", str(image), str(out), "--checkpoint", checkpoint, "--level",
                     str(level)]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["level"] == level and summary["file_bytes"] == out.stat().st_size
        assert read_bitstream(out.read_bytes()).level == level
        assert main(["codec", "decompress", str(out), str(tmp_path / f"l{level}.png"), "--checkpoint",
                     checkpoint]) == 0
        assert json.loads(capsys.readouterr().out)["level"] == level
        decoded[level] = np.asarray(Image.open(tmp_path / f"l{level}.png"), dtype=np.float32) / 255
        model = load_codec(exported[0])[0]
        x = torch.from_numpy(np.asarray(Image.open(image), dtype=np.float32) / 255).permute(2, 0, 1)[None]
        forward = entropy.forward_reconstruction(model, x, level)[0].permute(1, 2, 0).numpy()
        assert np.abs(decoded[level] - forward).max() <= 0.5 / 255 + 1e-4  # 8-bit rounding of the same image
    assert not np.array_equal(decoded[0], decoded[2])
    # the level is the model's: a one-rate model refuses --level, a 3-level stream refuses a 2-level model
    assert main(["codec", "compress", str(image), str(tmp_path / "b.bin"), "--checkpoint", checkpoint, "--level",
                 "7"]) == 2
    assert "not one of this model's 3 levels" in capsys.readouterr().err
    torch.manual_seed(1)
    other = GainMeanScaleHyperprior(N, M, LADDER[:2]).eval()
    other.update(force=True)
    torch.save(other.state_dict(), tmp_path / "other.pth")
    export_state_dict(tmp_path / "other.pth", tmp_path / "other_export.pth", architecture="mbt2018-mean-vr")
    assert main(["codec", "decompress", str(tmp_path / "l1.bin"), str(tmp_path / "x.png"), "--checkpoint",
                 str(tmp_path / "other_export.pth")]) == 2
    assert model_fingerprint(load_codec(exported[0])[0]) in capsys.readouterr().err
    stream = read_bitstream((tmp_path / "l1.bin").read_bytes())
    stream.fingerprint = bytes.fromhex(model_fingerprint(load_codec(tmp_path / "other_export.pth")[0]))
    (tmp_path / "forged.bin").write_bytes(write_bitstream(stream))
    assert main(["codec", "decompress", str(tmp_path / "forged.bin"), str(tmp_path / "x.png"), "--checkpoint",
                 str(tmp_path / "other_export.pth")]) == 2
    assert "rate level 1 of 3, but the checkpoint's mbt2018-mean-vr has 2 rate levels" in capsys.readouterr().err


def test_export_records_the_ladder_and_loads_without_an_architecture(pilot, exported):
    path, summary = exported
    record = export_metadata(read_checkpoint(path))
    assert record["architecture"] == "mbt2018-mean-vr" and record["channels"] == [N, M]
    assert record["lmbdas"] == pytest.approx(LADDER) and summary["lmbdas"] == record["lmbdas"]
    assert record["settings"]["step"] == 7 and record["settings"]["crop"] == 128
    model, architecture = load_codec(path)
    assert architecture == "mbt2018-mean-vr" and model_fingerprint(model) == record["fingerprint"]
    assert record["fingerprint"] == model_fingerprint(load_codec(pilot[1])[0])  # the pilot's own tables
    assert not any(key.startswith(("optimizer", "torch_rng")) for key in torch.load(path, weights_only=True))


def test_learned_codec_gives_one_point_per_level(pilot, exported, photo):
    for source in (exported[0], pilot[1]):
        codec = create_codec("compressai", checkpoints=[str(source)])
        assert codec.points == ("0.0035", "0.013", "0.0483")
        assert codec.parse_point("1.3e-2") == "0.013"
        model = codec.members["0.013"].model
        assert all(member.model is model for member in codec.members.values())
        for level, point in enumerate(codec.points):
            result = codec.code(photo, point)
            (data,) = result.files
            assert result.bits == [8 * len(data)]
            assert read_bitstream(data).level == level
            forward = entropy.forward_reconstruction(model, photo, level)
            assert float((result.reconstructions - forward).abs().max()) < 1e-4
    with pytest.raises(ValueError, match="share lambdas"):
        create_codec("compressai", checkpoints=[str(exported[0]), str(pilot[1])])


# ------------------------------------------------------------------------------------------ training


def _photos(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(6):
        array = (np.random.default_rng(i).random((70, 76, 3)) * 255).astype(np.uint8)
        Image.fromarray(array).save(folder / f"photo{i}.png")
    return folder


def _trainer(max_steps: int, **options) -> L.Trainer:
    settings = dict(max_steps=max_steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    return L.Trainer(**{**settings, **options})


def _finetune(folder: Path, init: Path, seed: int = 0, **options):
    data = CodecDataModule(str(folder), crop_size=64, batch_size=2, val_fraction=0.34, seed=0)
    torch.manual_seed(seed)
    module = CompressionModule("mbt2018-mean-vr", channels=[N, M], init=str(init), lr=1e-3, lr_scheduler="none",
                               val_ml_clipsim=None, **options)
    return data, module


def test_finetune_draws_a_level_per_step_and_resumes_exactly(pilot, tmp_path):
    folder = _photos(tmp_path / "photos")
    data, straight = _finetune(folder, pilot[1])
    assert straight.model.lmbdas.tolist() == torch.tensor(LADDER).tolist()  # the init's ladder
    levels = []
    original = straight._draw_level
    straight._draw_level = lambda: levels.append(original()) or levels[-1]
    _trainer(4, limit_val_batches=0).fit(straight, data)
    assert len(levels) == 4 and all(0 <= level < 3 for level in levels)
    expected = {name: p.detach().clone() for name, p in straight.model.named_parameters()}

    data, first = _finetune(folder, pilot[1])
    trainer = _trainer(2, limit_val_batches=0)
    trainer.fit(first, data)
    trainer.save_checkpoint(tmp_path / "part.ckpt")
    data, resumed = _finetune(folder, pilot[1])
    with torch.no_grad():
        for parameter in resumed.model.parameters():  # all must come from the checkpoint
            parameter.add_(1.0)
    trainer = _trainer(4, limit_val_batches=0)
    trainer.fit(resumed, data, ckpt_path=tmp_path / "part.ckpt")
    assert trainer.global_step == 4
    for name, parameter in resumed.model.named_parameters():
        assert torch.equal(parameter, expected[name]), name
    assert not torch.equal(expected["log_gain"], pilot[0].log_gain)  # the gains trained too

    # the loss of a level is bpp + lmbdas[level] * D
    batch = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    resumed.eval()
    output = resumed(batch, 2)
    losses = resumed._losses(output, batch, 2)
    expected_loss = losses["bpp_loss"] + 0.0483 * losses["distortion"]
    assert float(losses["loss"].detach()) == pytest.approx(float(expected_loss.detach()), rel=1e-6)


def test_finetune_validates_every_level_and_a_ladder_replaces_the_inits(pilot, tmp_path):
    folder = _photos(tmp_path / "photos")
    data, module = _finetune(folder, pilot[1], lmbdas=[4.58, 16.64, 60.5], val_coding_images=-1)
    assert module.model.lmbdas.tolist() == torch.tensor([4.58, 16.64, 60.5]).tolist()
    trainer = _trainer(2)
    trainer.fit(module, data)  # validation runs after the last step (end of epoch 0)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    for key in ("loss", "bpp_loss", "psnr", "bpp_real", "bpp_est", *(f"level{k}/{name}" for k in range(3)
                                                                      for name in ("psnr", "bpp_loss"))):
        assert np.isfinite(metrics[f"val/{key}"]), key
    assert metrics["val/psnr"] == pytest.approx(np.mean([metrics[f"val/level{k}/psnr"] for k in range(3)]), rel=1e-5)
    assert metrics["val/decode_max_abs_diff"] < 1e-3
    with pytest.raises(ValueError, match="has 3"):
        _finetune(folder, pilot[1], lmbdas=[4.58, 60.5])
    with pytest.raises(ValueError, match="variable-rate architectures"):
        CompressionModule("mbt2018-mean", channels=[N, M], lmbdas=LADDER, val_ml_clipsim=None)
    with pytest.raises(ValueError, match="give its lambda ladder"):
        CompressionModule("mbt2018-mean-vr", channels=[N, M], val_ml_clipsim=None)


def test_train_codec_finetunes_the_base_with_a_composed_recipe(exported, tmp_path, monkeypatch, capsys):
    from mlclipsim.cli import main

    recipes = runpy.run_path(str(REPO / "codecs" / "recipes.py"))["RECIPES"]
    folder = _photos(tmp_path / "photos")
    monkeypatch.chdir(tmp_path)  # runs/ goes here
    files = [str(REPO / "codecs" / part) for part in recipes["mbt2018-mean-vr_mix_finetune_small"]]
    mse_only = "model.terms=[{name: mse, weight: 1.0}]"  # the recipe's ML-CLIPSim term needs MobileNetV2 weights
    status = main(["train-codec", *(item for f in files for item in ("--config", f)), f"model.init={exported[0]}",
                   f"model.channels=[{N}, {M}]", mse_only, "model.val_ml_clipsim=null", f"data.images={folder}",
                   "data.exclude=null", "data.crop_size=64", "data.val_crop_size=64", "data.batch_size=2",
                   "data.val_fraction=0.34", "trainer.max_steps=2", "trainer.check_val_every_n_epoch=1",
                   "trainer.enable_progress_bar=false", "trainer.logger.init_args.name=vr"])
    assert status == 0
    run = tmp_path / "runs" / "vr" / "version_0"
    assert "architecture: mbt2018-mean-vr" in (run / "config.yaml").read_text()
    export_state_dict(run / "checkpoints" / "last.ckpt", tmp_path / "finetuned.pth")
    codec = create_codec("compressai", checkpoints=[str(tmp_path / "finetuned.pth")])
    assert codec.points == ("0.0035", "0.013", "0.0483")
    assert export_metadata(read_checkpoint(tmp_path / "finetuned.pth"))["settings"]["init"] == str(exported[0])
