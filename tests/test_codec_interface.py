"""The codec interface: Pillow codecs and CompressAI families behind one protocol, true file sizes, the registry."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from compressai.models import FactorizedPrior
from PIL import Image

from mlclipsim.coding import entropy
from mlclipsim.coding.bitstream import read_bitstream
from mlclipsim.coding.interface import (
    Codec,
    CodedImages,
    create_codec,
    list_codecs,
    parse_codec_spec,
    register_codec,
    resolve_points,
)
from mlclipsim.coding.learned import LearnedCodec, point_labels, register_learned_codec

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: one torch thread for this module

PIL_FORMAT = {"jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF", "jxl": "JXL"}


@pytest.fixture(scope="module")
def photo(astronaut) -> torch.Tensor:
    """(1,3,72,80) crop of the astronaut in [0,1] (odd sizes on purpose: no codec needs a multiple)."""
    return astronaut[:, :, 20:92, 30:110].contiguous()


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / (a - b).pow(2).mean()))


@pytest.mark.parametrize("name", ["jpeg", "webp", "avif", "jxl"])
def test_pillow_codecs_write_real_files_whose_size_grows_with_quality(name, photo):
    codec = create_codec(name)
    assert codec.ladder == tuple(range(1, 101)) and list(codec.points) == sorted(codec.points)
    sizes, psnrs = [], []
    for quality in (10, 50, 90):
        coded = codec.code(photo, quality)
        assert isinstance(coded, CodedImages)
        assert coded.reconstructions.shape == photo.shape and coded.reconstructions.dtype == torch.float32
        assert 0.0 <= float(coded.reconstructions.min()) and float(coded.reconstructions.max()) <= 1.0
        (data,) = coded.files
        assert coded.bits == [8 * len(data)]
        with Image.open(io.BytesIO(data)) as image:  # a whole file, container header included
            assert image.format == PIL_FORMAT[name] and image.size == (80, 72)
            decoded = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).float() / 255
        assert torch.equal(decoded[None], coded.reconstructions)
        sizes.append(len(data))
        psnrs.append(_psnr(coded.reconstructions, photo))
    assert sizes[0] < sizes[1] < sizes[2]
    assert psnrs[0] < psnrs[2]
    again = codec.code(photo, 50)
    assert again.files == codec.code(photo, 50).files  # deterministic bytes


def test_batch_codes_each_image_to_its_own_file(photo):
    batch = torch.cat([photo, photo.flip(-1)])
    coded = create_codec("webp").code(batch, 40)
    assert len(coded.files) == 2 and coded.files[0] != coded.files[1]
    single = create_codec("webp").code(photo.flip(-1), 40)
    assert coded.files[1] == single.files[0]


def test_bad_images_and_points_say_what_is_wrong(photo):
    codec = create_codec("jpeg")
    for bad, message in [(photo[0], r"\(N,3,H,W\)"), (photo * 2, r"in \[0,1\]"),
                         ((photo * 255).to(torch.uint8), "float"), (photo.clone().fill_(float("nan")), "NaN"),
                         (photo.numpy(), "torch.Tensor")]:
        with pytest.raises((ValueError, TypeError), match=message):
            codec.code(bad, 50)
    for bad in (0, 101, 50.5, True, "50"):
        with pytest.raises(ValueError, match=r"integer qualities 1\.\.100"):
            codec.code(photo, bad)
    with pytest.raises(ValueError, match=r"1\.\.100"):
        codec.parse_point("abc")
    assert codec.parse_point(" 42 ") == 42


def test_registry_lists_and_rejects_names():
    names = list_codecs()
    assert {"jpeg", "webp", "avif", "jxl", "compressai"} <= set(names)
    with pytest.raises(ValueError, match="Registered codecs: .*jpeg.*webp"):
        create_codec("png")
    with pytest.raises(ValueError, match="Unknown codec modifier 'psnr'.*@mlclipsim"):
        create_codec("webp@psnr")
    with pytest.raises(ValueError, match="already registered"):
        register_codec("jpeg", lambda: None)
    with pytest.raises(ValueError, match="without '@'"):
        register_codec("a@b", lambda: None)


def test_codec_specs_parse_and_order_points():
    assert parse_codec_spec("webp") == parse_codec_spec(" webp ")
    spec = parse_codec_spec("jpeg:50,10,30")
    assert spec.points == ("50", "10", "30")
    assert resolve_points(create_codec("jpeg"), spec) == (10, 30, 50)
    assert resolve_points(create_codec("jpeg"), parse_codec_spec("jpeg")) == create_codec("jpeg").points
    for bad in ("jpeg:", "jpeg:10,,20", "jpeg:10,10", ":10"):
        with pytest.raises(ValueError):
            parse_codec_spec(bad)
    with pytest.raises(ValueError, match="integer qualities"):
        resolve_points(create_codec("jpeg"), parse_codec_spec("jpeg:0"))


def test_jxl_without_its_plugin_fails_with_what_to_install(monkeypatch):
    from mlclipsim.distortions import compression_artifacts as pillow

    missing = dataclasses.replace(pillow.PILLOW_CODECS["jxl"], plugin="mlclipsim_no_such_jxl_plugin")
    monkeypatch.setitem(pillow.PILLOW_CODECS, "jxl", missing)
    with pytest.raises(RuntimeError, match="pillow-jxl-plugin"):
        create_codec("jxl")


# ----------------------------------------------------------------------------- learned codecs


def tiny_family(folder: Path, lambdas=("0.0130", "0.0035"), channels=(8, 8)) -> list[Path]:
    """Plain CompressAI state dicts of tiny random bmshj2018-factorized models (random weights on purpose),
    saved as the exporter does (entropy tables built), named <architecture>_<tag>_<lambda>.pth."""
    paths = []
    for seed, lam in enumerate(lambdas):
        torch.manual_seed(seed)
        model = FactorizedPrior(*channels).eval()
        with torch.no_grad():  # a larger latent scale for a larger lambda: a real spread of rates
            model.g_a[-1].weight.mul_(1.0 + 4.0 * float(lam) / 0.0130)
        model.update(force=True)
        path = folder / f"bmshj2018-factorized_tiny_{lam}.pth"
        torch.save(model.state_dict(), path)
        paths.append(path)
    return paths


def test_learned_family_codes_real_bitstreams_with_their_header(tmp_path, photo):
    paths = tiny_family(tmp_path)
    codec = LearnedCodec.from_checkpoints(str(tmp_path / "*.pth"), name="tiny")
    assert codec.points == ("0.0035", "0.0130")  # ordered by lambda, labels as written
    assert codec.parse_point("0.013") == "0.0130"
    coded = codec.code(photo, "0.0130")
    (data,) = coded.files
    stream = read_bitstream(data)
    assert stream.architecture == "bmshj2018-factorized" and (stream.height, stream.width) == (72, 80)
    header = 6 + len("bmshj2018-factorized") + 8 + 8 + 1 + 2 * 2 + 1 + 4 * 1 + 4  # bitstream.py's layout
    assert len(data) == header + stream.payload_bytes
    assert coded.bits == [8 * len(data)]
    model = codec.members["0.0130"].model
    expected = entropy.decode(model, entropy.CodedImage(stream.strings, 72, 80))
    assert torch.equal(coded.reconstructions, expected)
    assert float((coded.reconstructions - entropy.forward_reconstruction(model, photo)).abs().max()) < 1e-4
    assert codec.code(photo, "0.0035").bits[0] < coded.bits[0]

    # the file is what `mlclipsim codec decompress` reads
    from mlclipsim.cli import main

    (tmp_path / "a.bin").write_bytes(data)
    assert main(["codec", "decompress", str(tmp_path / "a.bin"), str(tmp_path / "a.png"),
                 "--checkpoint", str(paths[0])]) == 0
    with Image.open(tmp_path / "a.png") as image:
        decoded = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255
    assert float((decoded - coded.reconstructions[0]).abs().max()) <= 0.5 / 255 + 1e-6

    with pytest.raises(ValueError, match="valid points: 0.0035, 0.0130"):
        codec.code(photo, "0.5")


def test_learned_family_registry_and_bad_files(tmp_path):
    tiny_family(tmp_path)
    register_learned_codec("tiny-test", [str(tmp_path / "*.pth")])
    assert "tiny-test" in list_codecs()
    assert isinstance(create_codec("tiny-test"), Codec)
    with pytest.raises(FileNotFoundError, match="No checkpoint matches"):
        LearnedCodec.from_checkpoints(str(tmp_path / "nothing_*.pth"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LearnedCodec.from_checkpoints([tmp_path / "missing.pth"])
    plain = tmp_path / "plain"
    plain.mkdir()
    torch.save(FactorizedPrior(8, 8).state_dict(), plain / "model.pth")
    with pytest.raises(ValueError, match="name its architecture"):
        LearnedCodec.from_checkpoints(plain / "model.pth")
    (plain / "a").mkdir(), (plain / "b").mkdir()
    for path in (plain / "a" / "last.pth", plain / "b" / "best.pth", plain / "b" / "last.pth"):
        torch.save(FactorizedPrior(8, 8).state_dict(), path)
    assert point_labels([plain / "a" / "last.pth", plain / "b" / "best.pth"]) == (["last", "best"], [0, 1])
    with pytest.raises(ValueError, match="Cannot tell the checkpoints"):
        point_labels([plain / "a" / "last.pth", plain / "b" / "last.pth"])
