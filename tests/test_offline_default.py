"""Offline, the default encoder is the best installed one (said in every output); the hub is never contacted."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import torch

import mlclipsim.core.weights as weights
from mlclipsim.backbones import MissingWeightsError
from mlclipsim.backbones.registry import DefaultBackboneWarning
from mlclipsim.metrics.functional.ml_clipsim import MLCLIPSimScorer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def no_network(monkeypatch):
    """No offline switch is set, every connection fails, and any download attempt fails the test."""
    monkeypatch.delenv(weights.OFFLINE_ENV, raising=False)
    monkeypatch.delenv(weights.HF_OFFLINE_ENV, raising=False)
    monkeypatch.setattr(weights, "_PROBES", {})
    probed = []

    def refuse(address, *args, **kwargs):
        probed.append(address[0])
        raise socket.gaierror(-2, "Name or service not known")

    def contacted(*args, **kwargs):
        raise AssertionError(f"a hub was contacted: {args} {kwargs}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    import huggingface_hub
    import open_clip.pretrained
    import torch.hub

    monkeypatch.setattr(open_clip.pretrained, "download_pretrained", contacted)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", contacted)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", contacted)
    return probed


def test_default_encoder_offline_is_the_best_installed_one_and_says_so(no_network):
    with pytest.warns(DefaultBackboneWarning, match="scoring with torchvision/mobilenet_v2"):
        scorer = MLCLIPSimScorer()
    assert scorer.encoder.name == "torchvision/mobilenet_v2"
    assert no_network == ["huggingface.co"]  # one probe, answered without any download


def test_a_named_encoder_offline_fails_at_once_naming_why(no_network):
    with pytest.raises(MissingWeightsError, match=r"offline: no network \(huggingface.co"):
        MLCLIPSimScorer("ViT-B-32")
    with pytest.raises(MissingWeightsError, match="offline"):
        MLCLIPSimScorer("ViT-B-32")  # the probe's answer is remembered
    assert no_network == ["huggingface.co"]


def test_hf_hub_offline_switches_other_downloads_off_without_a_probe(no_network, monkeypatch):
    monkeypatch.setenv(weights.HF_OFFLINE_ENV, "1")
    spec = weights.WeightSpec("torchvision/x", "imagenet", "x.pth", download_hosts=("download.pytorch.org",))
    tried = []
    with pytest.raises(MissingWeightsError, match="HF_HUB_OFFLINE=1"):
        weights.load_weights(spec, None, load_file=lambda p: p, load_upstream=lambda: tried.append(1))
    assert tried == [] and no_network == []


def test_rate_control_and_the_cli_use_the_offline_default(no_network, astronaut, tmp_path, capsys):
    from PIL import Image

    from mlclipsim.cli import main
    from mlclipsim.coding import create_codec

    codec = create_codec("webp@mlclipsim")
    with pytest.warns(DefaultBackboneWarning):
        assert codec.scorer.encoder.name == "torchvision/mobilenet_v2"
    image = torch.nn.functional.interpolate(astronaut, size=(64, 64), mode="area").clamp(0, 1)
    assert codec.code(image, 0.9).details[0]["codings"] <= 5

    array = (image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(array).save(tmp_path / "a.png")
    with pytest.warns(DefaultBackboneWarning):
        assert main(["score", str(tmp_path / "a.png"), str(tmp_path / "a.png"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["backbone"] == "torchvision/mobilenet_v2"
