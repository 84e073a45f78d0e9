"""Real coding: round trips, the .bin format and its errors, export to plain CompressAI, the codec CLI."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from compressai.models import FactorizedPrior, ScaleHyperprior
from conftest import random_images
from PIL import Image

from mlclipsim.coding import entropy
from mlclipsim.coding.bitstream import Bitstream, BitstreamError, read_bitstream, write_bitstream


def _ready(cls, seed: int = 0):
    torch.manual_seed(seed)
    model = cls(8, 8).eval()
    model.update(force=True)
    return model


@pytest.mark.parametrize("cls", [FactorizedPrior, ScaleHyperprior])
def test_round_trip_pads_and_counts_bytes(cls):
    model, image = _ready(cls), random_images(1, (40, 56), seed=4)
    (coded,) = entropy.encode(model, image)
    assert len(coded.strings) == (1 if cls is FactorizedPrior else 2)
    assert coded.bpp == pytest.approx(8 * sum(len(s) for s in coded.strings) / (40 * 56))
    decoded = entropy.decode(model, coded)
    assert decoded.shape == image.shape
    assert float((decoded - entropy.forward_reconstruction(model, image)).abs().max()) < 1e-4


def test_bitstream_round_trip_and_clear_errors():
    stream = Bitstream("bmshj2018-hyperprior", 40, 56, (8, 8), [b"\x01\x02\x03", b"\x04"], bytes(range(8)))
    data = write_bitstream(stream)
    assert len(data) == 60 + 4
    assert read_bitstream(data) == stream
    cases = {
        "truncated": data[:-1],
        "truncated header": data[:20],
        "Not an mlclipsim": b"JPEG" + data[4:],
        "version 9": data[:4] + bytes([9]) + data[5:],
        "corrupted": data[:-1] + bytes([data[-1] ^ 0xFF]),
        "trailing": data + b"\x00",
        "empty": b"",
    }
    for what, broken in cases.items():
        with pytest.raises(BitstreamError) as info:
            read_bitstream(broken)
        assert not isinstance(info.value, struct.error), what
        expected = {"truncated header": "truncated", "empty": "Not an mlclipsim", "version 9": "version 9",
                    "trailing": "trailing"}.get(what, what)
        assert expected in str(info.value), (what, str(info.value))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A Lightning checkpoint of a tiny hyperprior codec after two training steps."""
    import lightning as L

    from mlclipsim.training.codec_data import CodecDataModule
    from mlclipsim.training.codec_module import CompressionModule

    folder = tmp_path_factory.mktemp("photos")
    for i in range(3):
        array = (np.random.default_rng(i).random((70, 80, 3)) * 255).astype(np.uint8)
        Image.fromarray(array).save(folder / f"p{i}.png")
    data = CodecDataModule(str(folder), crop_size=64, batch_size=2, val_fraction=0.0)
    module = CompressionModule("bmshj2018-hyperprior", channels=[8, 8], lr=1e-3, val_ml_clipsim=None)
    trainer = L.Trainer(max_steps=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0)
    trainer.fit(module, data)
    path = tmp_path_factory.mktemp("ckpt") / "codec.ckpt"
    trainer.save_checkpoint(path)
    return path


def test_export_loads_into_the_plain_zoo_model(checkpoint, tmp_path):
    from compressai.zoo.image import model_architectures

    from mlclipsim.coding.architectures import load_codec
    from mlclipsim.coding.export import export_state_dict

    summary = export_state_dict(checkpoint, tmp_path / "codec.pth")
    assert summary["architecture"] == "bmshj2018-hyperprior" and summary["channels"] == [8, 8]
    state = torch.load(tmp_path / "codec.pth", map_location="cpu", weights_only=True)
    assert not any(k.startswith(("model.", "criterion.")) for k in state)
    plain = model_architectures["bmshj2018-hyperprior"].from_state_dict(state).eval()
    ours, _ = load_codec(checkpoint)
    image = random_images(1, (64, 64), seed=5)
    assert entropy.encode(plain, image)[0].strings == entropy.encode(ours, image)[0].strings
    direct = ScaleHyperprior(8, 8)
    direct.load_state_dict(state)  # the zoo class with explicit channels loads it too


def test_export_of_a_quality_model_loads_into_the_zoo_builder(tmp_path):
    from compressai.zoo import bmshj2018_factorized

    from mlclipsim.coding.export import export_state_dict
    from mlclipsim.training.codec_module import CompressionModule

    module = CompressionModule("bmshj2018-factorized", quality=1, val_ml_clipsim=None)
    # the layout of a Lightning checkpoint: the module's state dict and its hyper-parameters
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, tmp_path / "q1.ckpt")
    export_state_dict(tmp_path / "q1.ckpt", tmp_path / "q1.pth")
    zoo_model = bmshj2018_factorized(quality=1)
    zoo_model.load_state_dict(torch.load(tmp_path / "q1.pth", weights_only=True))
    assert torch.equal(zoo_model.g_a[0].weight, module.model.g_a[0].weight)


def test_codec_cli_round_trip_and_errors(checkpoint, tmp_path, capsys):
    import json

    from mlclipsim.cli import main
    from mlclipsim.coding.export import export_state_dict

    image = (random_images(1, (45, 70), seed=6)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "in.png")
    assert main(["codec", "compress", str(tmp_path / "in.png"), str(tmp_path / "a.bin"),
                 "--checkpoint", str(checkpoint)]) == 0
    summary = json.loads(capsys.readouterr().out)
    size = (tmp_path / "a.bin").stat().st_size
    stream = read_bitstream((tmp_path / "a.bin").read_bytes())
    assert summary["file_bpp"] == pytest.approx(8 * size / (45 * 70))
    assert summary["bpp"] == pytest.approx(8 * sum(len(s) for s in stream.strings) / (45 * 70))
    assert (stream.architecture, stream.height, stream.width) == ("bmshj2018-hyperprior", 45, 70)

    export_state_dict(checkpoint, tmp_path / "codec.pth")
    assert main(["codec", "decompress", str(tmp_path / "a.bin"), str(tmp_path / "out.png"),
                 "--checkpoint", str(tmp_path / "codec.pth")]) == 0
    capsys.readouterr()
    with Image.open(tmp_path / "out.png") as decoded:
        assert decoded.size == (70, 45)

    # a plain state dict without mlclipsim's export record needs the architecture; the message lists them
    torch.save(dict(torch.load(tmp_path / "codec.pth", weights_only=True)), tmp_path / "plain.pth")
    assert main(["codec", "compress", str(tmp_path / "in.png"), str(tmp_path / "b.bin"),
                 "--checkpoint", str(tmp_path / "plain.pth")]) == 2
    assert "--architecture, one of" in capsys.readouterr().err
    assert main(["codec", "compress", str(tmp_path / "in.png"), str(tmp_path / "b.bin"), "--checkpoint",
                 str(tmp_path / "plain.pth"), "--architecture", "bmshj2018-hyperprior", "--quality", "1"]) == 2
    assert "channels [8, 8]" in capsys.readouterr().err
    assert main(["codec", "compress", str(tmp_path / "in.png"), str(tmp_path / "b.bin"), "--checkpoint",
                 str(tmp_path / "plain.pth"), "--architecture", "bmshj2018-hyperprior", "--channels", "8", "8"]) == 0
    capsys.readouterr()
    assert (tmp_path / "b.bin").read_bytes() == (tmp_path / "a.bin").read_bytes()

    data = (tmp_path / "a.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[: len(data) // 2])
    assert main(["codec", "decompress", str(tmp_path / "cut.bin"), str(tmp_path / "x.png"),
                 "--checkpoint", str(checkpoint)]) == 2
    err = capsys.readouterr().err
    assert "truncated" in err and "Traceback" not in err
