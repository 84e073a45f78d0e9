"""Named ML-CLIPSim presets, the shipped default variant, and the readable agreement scale."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import random_images

import mlclipsim.metrics.layer_weights as layer_weights
from mlclipsim import MLCLIPSim, MLCLIPSimLoss, ml_clipsim
from mlclipsim.metrics.agreement_scale import AgreementScale, fit_agreement_scale
from mlclipsim.metrics.functional.ml_clipsim import MLCLIPSimScorer, augmented_cosine

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def images():
    reference = random_images(2, (64, 64), seed=1)
    return reference, (reference + 0.1 * torch.randn_like(reference)).clamp(0, 1)


def test_uniform_preset_is_the_default_layers_and_the_embedding_with_equal_weights(mobilenet):
    scorer = MLCLIPSimScorer(mobilenet, weights="uniform")
    assert scorer.layers == tuple(mobilenet.default_layers)
    assert scorer.weights_by_name() == pytest.approx({k: 0.2 for k in (*mobilenet.default_layers, "embedding")})
    chosen = MLCLIPSimScorer(mobilenet, weights="uniform", layers=["features.2"])
    assert chosen.weights_by_name() == pytest.approx({"features.2": 0.5, "embedding": 0.5})


def test_embedding_preset_compares_the_global_embeddings_only(mobilenet, images):
    reference, distorted = images
    scorer = MLCLIPSimScorer(mobilenet, weights="embedding")
    assert scorer.layers == () and scorer.weights_by_name() == {"embedding": 1.0}
    with torch.no_grad():
        expected = augmented_cosine(mobilenet(distorted, ()).embedding, mobilenet(reference, ()).embedding)
        assert torch.allclose(scorer(distorted, reference), expected.clamp(0, 1), atol=1e-6)


def test_calibrated_preset_is_the_shipped_file(mobilenet):
    record = layer_weights.load_calibrated_weights("torchvision/mobilenet_v2")
    scorer = MLCLIPSimScorer(mobilenet, weights="calibrated")
    expected = {k: v / sum(record["weights"].values()) for k, v in record["weights"].items()}
    assert {k: v for k, v in scorer.weights_by_name().items() if v > 0} == pytest.approx(expected)


def test_presets_reach_every_entry_point(mobilenet, images):
    reference, distorted = images
    direct = MLCLIPSimScorer(mobilenet, weights="embedding")(distorted, reference)
    assert ml_clipsim(distorted, reference, backbone=mobilenet, weights="embedding", reduction="none") \
        == pytest.approx(direct.tolist())
    metric = MLCLIPSim(backbone=mobilenet, weights="embedding")
    metric.update(distorted, reference)
    assert float(metric.compute()) == pytest.approx(float(direct.mean()), abs=1e-6)
    loss = MLCLIPSimLoss(backbone=mobilenet, weights="uniform")
    assert loss.scorer.weights_by_name()["embedding"] == pytest.approx(0.2)


def test_bad_presets_say_what_to_do(mobilenet):
    with pytest.raises(ValueError, match="Unknown ML-CLIPSim weights preset 'uniformly'.*calibrated"):
        MLCLIPSimScorer(mobilenet, weights="uniformly")
    with pytest.raises(ValueError, match="chooses its own layers"):
        MLCLIPSimScorer(mobilenet, weights="embedding", layers=["features.3"])
    with pytest.raises(ValueError, match="No calibrated weights ship for backbone 'efficientnet-lite0'"):
        MLCLIPSimScorer("efficientnet-lite0", weights="calibrated")


def test_the_default_is_the_variant_the_weight_file_names(mobilenet, monkeypatch):
    record = dict(layer_weights.load_calibrated_weights("torchvision/mobilenet_v2"))
    record["default"] = {"weights": "embedding", "magnitude": True}
    monkeypatch.setattr(layer_weights, "load_calibrated_weights", lambda name: record)
    scorer = MLCLIPSimScorer(mobilenet)
    assert scorer.weights_by_name() == pytest.approx({"embedding": 0.5, "magnitude": 0.5}) and scorer.magnitude
    explicit = MLCLIPSimScorer(mobilenet, weights="uniform")  # asking for a preset overrides the default
    assert not explicit.magnitude and len(explicit.layers) == 4


def test_cli_score_takes_a_preset_and_names_the_encoder(tmp_path, capsys, astronaut):
    from PIL import Image

    from mlclipsim.cli import main

    array = (astronaut[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(array).save(tmp_path / "ref.png")
    Image.fromarray(array // 2).save(tmp_path / "dist.png")
    assert main(["score", str(tmp_path / "ref.png"), str(tmp_path / "dist.png"), "--backbone",
                 "torchvision/mobilenet_v2", "--weights", "embedding", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["weights"] == {"embedding": 1.0} and out["backbone"] == "torchvision/mobilenet_v2"


# ----------------------------------------------------------------------------- the agreement scale


def test_agreement_scale_is_monotone_invertible_and_differentiable():
    rng = np.random.default_rng(0)
    scores = rng.uniform(0.3, 1.0, 400)
    agreement = np.clip(1 / (1 + np.exp(-12 * (scores - 0.7))) + rng.normal(0, 0.03, 400), 0, 1)
    scale = fit_agreement_scale(scores, agreement, {"embedding": 1.0})
    low, high = scale.range
    assert 0 <= low < 0.2 and 0.9 < high <= 1
    x = torch.linspace(0, 1, 101, requires_grad=True)
    mapped = scale(x)
    assert torch.all(mapped[1:] >= mapped[:-1]) and float(mapped[70]) == pytest.approx(0.5, abs=0.1)
    mapped.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.sum() > 0
    threshold = scale.score_for(0.8)
    assert float(scale(torch.tensor(threshold))) >= 0.8 > float(scale(torch.tensor(threshold - 1e-3)))
    with pytest.raises(ValueError, match="out of reach"):
        scale.score_for(high + 0.01)
    with pytest.raises(ValueError, match="not non-decreasing"):
        AgreementScale((1.0, -10.0, 0.5, 0.0, 0.5), {}, {})


def test_agreement_scale_applies_to_its_own_variant_only(mobilenet, images, monkeypatch):
    reference, distorted = images
    record = dict(layer_weights.load_calibrated_weights("torchvision/mobilenet_v2"))
    record["default"] = {"weights": "embedding", "magnitude": False}
    record["agreement_scale"] = {"weights": {"embedding": 1.0}, "params": [1.0, 10.0, 0.8, 0.0, 0.5]}
    monkeypatch.setattr(layer_weights, "load_calibrated_weights", lambda name: record)
    raw = MLCLIPSimScorer(mobilenet)(distorted, reference)
    mapped = MLCLIPSimScorer(mobilenet, scale="agreement")(distorted, reference)
    expected = (1.0 * (0.5 - torch.sigmoid(-10.0 * (raw - 0.8))) + 0.5).clamp(0, 1)
    assert torch.allclose(mapped, expected, atol=1e-6)
    with pytest.raises(ValueError, match="fitted for the weights"):
        MLCLIPSimScorer(mobilenet, weights="uniform", scale="agreement")
    with pytest.raises(ValueError, match="Unknown scale"):
        MLCLIPSimScorer(mobilenet, scale="percent")
