"""The magnitude-aware term: sees brightness and contrast changes, 1 and a finite gradient at identical inputs."""

from __future__ import annotations

import pytest
import torch
from conftest import random_images

from mlclipsim.metrics.functional.ml_clipsim import MLCLIPSimScorer, magnitude_similarity

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_norm_comparison_is_luminance_like():
    a = torch.randn(5, 16)
    assert torch.allclose(magnitude_similarity(a, a), torch.ones(5))
    assert torch.allclose(magnitude_similarity(a, 2 * a), torch.full((5,), 0.8), atol=1e-5)  # 2*2/(1+4)
    assert torch.allclose(magnitude_similarity(a, -a), torch.ones(5))  # direction is the cosine's job
    zero = torch.zeros(3, 16, requires_grad=True)
    value = magnitude_similarity(zero, torch.zeros(3, 16))
    value.sum().backward()
    assert torch.allclose(value, torch.ones(3)) and torch.isfinite(zero.grad).all()


def test_identical_images_score_one_with_finite_gradients(mobilenet):
    scorer = MLCLIPSimScorer(mobilenet, weights="uniform", magnitude=True)
    assert scorer.weights_by_name()["magnitude"] == pytest.approx(1 / 6)
    for reference in (random_images(2, (64, 64), seed=3), torch.zeros(1, 3, 64, 64)):
        x = reference.clone().requires_grad_()
        score = scorer(x, reference)
        score.sum().backward()
        assert torch.allclose(score, torch.ones_like(score), atol=1e-5)
        assert torch.isfinite(x.grad).all()


def test_the_term_sees_a_darkening_that_falls_with_its_strength_and_passes_gradients(mobilenet, astronaut):
    scorer = MLCLIPSimScorer(mobilenet, weights="uniform", magnitude=True)
    reference = torch.nn.functional.interpolate(astronaut, size=(96, 96), mode="area").clamp(0, 1)
    with torch.no_grad():
        terms = [float(scorer.components(reference * f, reference)[0, -1]) for f in (1.0, 0.7, 0.4, 0.15)]
    assert terms[0] == pytest.approx(1.0, abs=1e-5)
    assert terms[0] > terms[1] > terms[2] > terms[3]
    dark = (reference * 0.4).requires_grad_()
    scorer(dark, reference).sum().backward()
    assert torch.isfinite(dark.grad).all() and dark.grad.abs().sum() > 0
    plain = MLCLIPSimScorer(mobilenet, weights="uniform")
    assert plain.components(reference, reference).shape[-1] == 5  # off by default: no extra column


def test_magnitude_weights_need_the_term(mobilenet):
    with pytest.raises(ValueError, match="magnitude=True"):
        MLCLIPSimScorer(mobilenet, weights={"embedding": 1.0, "magnitude": 1.0})
    embedding_only = MLCLIPSimScorer(mobilenet, weights="embedding", magnitude=True)
    assert embedding_only.weights_by_name() == pytest.approx({"embedding": 0.5, "magnitude": 0.5})
