"""ML-CLIPSim: values, gradients, batching, determinism, Metric behaviour, reference caching."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_RESNET, TINY_VIT, random_images, tiny_encoder

from mlclipsim import MLCLIPSim, MLCLIPSimLoss, ReferenceFeatures, ml_clipsim
from mlclipsim.metrics import MLCLIPSimScorer
from mlclipsim.metrics.functional.ml_clipsim import augmented_cosine


@pytest.mark.parametrize("name", [TINY_VIT, TINY_RESNET])
@pytest.mark.parametrize("resize", ["resize", "center_crop", "tile"])
def test_identical_images_score_one(name, resize):
    images = random_images(2, (80, 96))
    scores = ml_clipsim(images, images.clone(), backbone=tiny_encoder(name, resize=resize), reduction="none")
    assert torch.allclose(scores, torch.ones(2), atol=1e-5)


def test_identical_images_score_one_on_real_encoder(mobilenet, astronaut):
    assert ml_clipsim(astronaut, astronaut.clone(), backbone=mobilenet).item() == pytest.approx(1.0, abs=1e-5)


def test_augmented_cosine_is_one_for_zero_tokens_and_has_finite_gradients():
    zeros = torch.zeros(3, 8, requires_grad=True)
    value = augmented_cosine(zeros, torch.zeros(3, 8))
    assert torch.allclose(value, torch.ones(3))
    value.sum().backward()
    assert torch.isfinite(zeros.grad).all()
    assert augmented_cosine(torch.ones(1, 4), -torch.ones(1, 4)).item() == pytest.approx(-1.0, abs=1e-5)


@pytest.mark.parametrize("encoder_name", ["efficientnet-lite0", "torchvision/mobilenet_v2"])
def test_score_falls_monotonically_with_gaussian_noise_on_a_real_photo(encoder_name, astronaut):
    metric = MLCLIPSimScorer(encoder_name)
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(astronaut.shape, generator=generator)
    strengths = [0.0, 0.02, 0.05, 0.1, 0.2, 0.4]
    batch = torch.cat([(astronaut + s * noise).clamp(0, 1) for s in strengths])
    with torch.no_grad():
        scores = metric(batch, astronaut.expand_as(batch)).tolist()
    assert scores[0] == pytest.approx(1.0, abs=1e-5)
    assert all(a > b for a, b in zip(scores, scores[1:])), scores
    assert scores[-1] < 0.8


@pytest.mark.parametrize("name", [TINY_VIT, TINY_RESNET, "mobilenet"])
@pytest.mark.parametrize("resize", ["resize", "tile"])
def test_gradients_reach_the_distorted_image_and_are_finite(name, resize, mobilenet):
    if name == "mobilenet":
        encoder = mobilenet if resize == "resize" else None
        if encoder is None:
            from mlclipsim.backbones import create_backbone
            encoder = create_backbone("torchvision/mobilenet_v2", resize="tile")
    else:
        encoder = tiny_encoder(name, resize=resize)
    loss_fn = MLCLIPSimLoss(encoder)
    reference = random_images(2, (72, 88), seed=1)
    distorted = (reference + 0.1 * random_images(2, (72, 88), seed=2)).clamp(0, 1).requires_grad_()
    loss_fn(distorted, reference).backward()
    assert torch.isfinite(distorted.grad).all() and distorted.grad.abs().sum() > 0
    identical = reference.clone().requires_grad_()
    loss_fn(identical, reference).backward()
    assert torch.isfinite(identical.grad).all()


def test_batch_gives_per_image_results():
    encoder = tiny_encoder(TINY_VIT)
    reference, distorted = random_images(3, seed=1), random_images(3, seed=2)
    batch = ml_clipsim(distorted, reference, backbone=encoder, reduction="none")
    assert batch.shape == (3,)
    single = torch.stack([ml_clipsim(distorted[i:i + 1], reference[i:i + 1], backbone=encoder) for i in range(3)])
    assert torch.allclose(batch, single, atol=1e-5)
    summed = ml_clipsim(distorted, reference, backbone=encoder, reduction="sum")
    assert summed.item() == pytest.approx(batch.sum().item(), abs=1e-5)


def test_results_are_deterministic(mobilenet, astronaut):
    distorted = (astronaut * 0.7).clamp(0, 1)
    first = ml_clipsim(distorted, astronaut, backbone=mobilenet).item()
    second = ml_clipsim(distorted, astronaut, backbone=mobilenet).item()
    assert first == second


def test_functional_by_name_caches_the_backbone(astronaut):
    distorted = (astronaut * 0.8).clamp(0, 1)
    first = ml_clipsim(distorted, astronaut, backbone="torchvision/mobilenet_v2")
    second = ml_clipsim(distorted, astronaut, backbone="torchvision/mobilenet_v2")
    from mlclipsim.metrics.functional.ml_clipsim import _cached_scorer

    assert _cached_scorer.cache_info().hits >= 1
    assert first.item() == second.item() < 1.0


def test_metric_accumulates_over_updates_and_resets():
    metric = MLCLIPSim(tiny_encoder(TINY_VIT))
    reference, distorted = random_images(4, seed=1), random_images(4, seed=2)
    per_image = metric.scorer(distorted, reference).detach()
    metric.update(distorted[:1], reference[:1])
    metric.update(distorted[1:], reference[1:])
    assert metric.compute().item() == pytest.approx(per_image.mean().item(), abs=1e-6)
    metric.reset()
    metric.update(distorted[2:], reference[2:])
    assert metric.compute().item() == pytest.approx(per_image[2:].mean().item(), abs=1e-6)
    metric.reset()
    with pytest.warns(UserWarning, match="before the ``update``"):  # as torchmetrics: a warning and NaN
        assert torch.isnan(metric.compute())


def test_metric_forward_returns_batch_value_with_graph_and_accumulates():
    metric = MLCLIPSim(tiny_encoder(TINY_RESNET))
    reference = random_images(2, seed=1)
    distorted = random_images(2, seed=2).requires_grad_()
    batch_value = metric(distorted, reference)
    assert batch_value.requires_grad
    batch_value.backward()
    assert torch.isfinite(distorted.grad).all() and distorted.grad.abs().sum() > 0
    second = metric(reference.clone(), reference)
    assert second.item() == pytest.approx(1.0, abs=1e-5)
    assert metric.compute().item() == pytest.approx((batch_value.item() + 1.0) / 2, abs=1e-5)
    assert not metric.score_sum.requires_grad


def test_metric_attributes():
    assert MLCLIPSim.is_differentiable and MLCLIPSim.higher_is_better and not MLCLIPSim.full_state_update


def test_reference_features_give_the_same_score_and_are_checked():
    loss_fn = MLCLIPSimLoss(tiny_encoder(TINY_VIT), reduction="none")
    reference, distorted = random_images(3, seed=1), random_images(3, seed=2)
    features = loss_fn.reference_features(reference)
    assert isinstance(features, ReferenceFeatures)
    assert not features.features.embedding.requires_grad
    assert torch.allclose(loss_fn(distorted, features), loss_fn(distorted, reference), atol=1e-6)
    assert torch.allclose(loss_fn(distorted[1:], features.select(slice(1, 3))), loss_fn(distorted[1:], reference[1:]),
                          atol=1e-6)
    with pytest.raises(ValueError, match="pair each distorted image"):
        loss_fn(distorted[:2], features)
    other = MLCLIPSimLoss(tiny_encoder(TINY_VIT), reduction="none")
    with pytest.raises(ValueError, match="another ML-CLIPSim configuration"):
        other(distorted, features)


def test_loss_is_one_minus_similarity_with_reductions():
    encoder = tiny_encoder(TINY_VIT)
    reference, distorted = random_images(2, seed=1), random_images(2, seed=2)
    similarity = ml_clipsim(distorted, reference, backbone=encoder, reduction="none")
    assert torch.allclose(MLCLIPSimLoss(encoder, reduction="none")(distorted, reference), 1 - similarity)
    mean_loss = MLCLIPSimLoss(encoder)(distorted, reference)
    assert mean_loss.item() == pytest.approx((1 - similarity).mean().item(), abs=1e-6)
    assert MLCLIPSimLoss(encoder, reduction="sum")(distorted, reference).item() == pytest.approx(
        (1 - similarity).sum().item(), abs=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        MLCLIPSimLoss(encoder, reduction="max")


def test_loss_accepts_slightly_out_of_range_reconstructions():
    encoder = tiny_encoder(TINY_VIT)
    reference = random_images(1, seed=1)
    assert torch.isfinite(MLCLIPSimLoss(encoder)(reference * 1.2 - 0.1, reference))
    with pytest.raises(ValueError, match="0..255"):
        MLCLIPSimLoss(encoder)(reference * 255, reference)


def test_weights_are_normalised_validated_and_shape_the_score():
    encoder = tiny_encoder(TINY_VIT)
    scorer = MLCLIPSimScorer(encoder, weights={"blocks.1": 3.0, "embedding": 1.0})
    assert scorer.layers == ("blocks.1",)
    assert scorer.weights_by_name() == pytest.approx({"blocks.1": 0.75, "embedding": 0.25})
    default = MLCLIPSimScorer(encoder)
    assert default.weights_by_name() == pytest.approx({k: 0.2 for k in (*encoder.default_layers, "embedding")})
    reference, distorted = random_images(2, seed=1), random_images(2, seed=2)
    parts = default.components(distorted, reference)
    assert parts.shape == (2, 5) and (parts >= 0).all() and (parts <= 1).all()
    embedding_only = MLCLIPSimScorer(encoder, layers=[], weights={"embedding": 1.0})
    assert torch.allclose(embedding_only(distorted, reference), parts[:, -1], atol=1e-6)
    with pytest.raises(ValueError, match="non-negative"):
        MLCLIPSimScorer(encoder, weights={"blocks.1": -1.0, "embedding": 1.0})
    with pytest.raises(ValueError, match="unknown layer"):
        MLCLIPSimScorer(encoder, weights={"blocks.9": 1.0})
    with pytest.raises(ValueError, match="sum to 0"):
        MLCLIPSimScorer(encoder, weights={"blocks.1": 0.0, "embedding": 0.0})


def test_rescale_cosine_map_keeps_identical_at_one_and_lifts_unrelated_scores():
    encoder = tiny_encoder(TINY_VIT)
    reference, distorted = random_images(2, seed=1), random_images(2, seed=2)
    clamp = ml_clipsim(distorted, reference, backbone=encoder, reduction="none")
    rescale = ml_clipsim(distorted, reference, backbone=encoder, cosine_map="rescale", reduction="none")
    assert (rescale >= clamp - 1e-6).all()
    assert ml_clipsim(reference, reference, backbone=encoder, cosine_map="rescale").item() == pytest.approx(1, abs=1e-5)


def test_state_dict_leaves_the_frozen_encoder_out_and_loads_strictly():
    metric = MLCLIPSim(tiny_encoder(TINY_VIT))
    state = metric.state_dict()
    assert list(state) == []  # the layer weights come from the arguments, the encoder from its weights
    fresh = MLCLIPSim(tiny_encoder(TINY_VIT))
    fresh.load_state_dict(state, strict=True)
    wrapped = torch.nn.ModuleDict({"loss": MLCLIPSimLoss(tiny_encoder(TINY_VIT))})
    wrapped.load_state_dict(wrapped.state_dict(), strict=True)
