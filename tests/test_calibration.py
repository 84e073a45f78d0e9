"""Layer-weight calibration (Bradley-Terry on pairs), dataset scoring cache, and the baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_images

from mlclipsim.metrics.baselines import BaselineUnavailable, create_baseline
from mlclipsim.training.layer_weights_fit import fit_layer_weights


def synthetic_pairs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three terms; machines prefer the image whose term 1 is higher: the fit must weight term 1."""
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(0.3, 1.0, (n, 3)), rng.uniform(0.3, 1.0, (n, 3))
    soft = (a[:, 1] > b[:, 1]).astype(np.float32)
    return a, b, soft


def test_calibration_recovers_the_informative_term_and_prunes_the_rest():
    result = fit_layer_weights(["x", "informative", "embedding"], synthetic_pairs(300, 0), synthetic_pairs(100, 1),
                               max_epochs=150)
    assert max(result.weights, key=result.weights.get) == "informative"
    assert result.weights["informative"] > 0.6
    assert sum(result.weights.values()) == pytest.approx(1.0)
    assert all(w >= 0 for w in result.weights.values())
    assert result.val_2afc > 0.9 and result.train_2afc > 0.9


def test_calibration_is_deterministic_and_validates_shapes():
    first = fit_layer_weights(["a", "b", "embedding"], synthetic_pairs(50, 0), max_epochs=20, seed=1)
    second = fit_layer_weights(["a", "b", "embedding"], synthetic_pairs(50, 0), max_epochs=20, seed=1)
    assert first.weights == second.weights
    with pytest.raises(ValueError, match=r"\(pairs, 2\)"):
        fit_layer_weights(["a", "embedding"], synthetic_pairs(10, 0), max_epochs=1)


def test_baselines_score_identical_images_best_and_unavailable_ones_explain_why():
    reference = random_images(2, (176, 176), seed=1)
    distorted = (reference + 0.1 * random_images(2, (176, 176), seed=2)).clamp(0, 1)
    for name in ("psnr", "ssim", "ms-ssim"):
        scorer = create_baseline(name)
        assert (scorer(reference, reference) > scorer(distorted, reference)).all(), name
        assert scorer(distorted, reference).shape == (2,)
    for name in ("lpips", "dists"):
        with pytest.raises(BaselineUnavailable, match="weights"):
            create_baseline(name)
    with pytest.raises(ValueError, match="ms-ssim"):
        create_baseline("vif")


def test_score_images_caches_per_image(tmp_path):
    from PIL import Image

    from mlclipsim.data.score_images import score_images

    for seed, name in enumerate(("ref", "d1", "d2")):
        array = (random_images(1, (40, 48), seed=seed)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        Image.fromarray(array).save(tmp_path / f"{name}.png")
    calls = []

    def scorer(distorted: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        calls.append(len(distorted))
        return (distorted - reference).abs().flatten(1).mean(1)

    first = score_images(tmp_path, "mad", scorer, [("d1.png", "ref.png"), ("d2.png", "ref.png")], progress=False)
    again = score_images(tmp_path, "mad", scorer, [("d1.png", "ref.png"), ("d2.png", "ref.png")], progress=False)
    assert calls == [2] and set(first) == {"d1.png", "d2.png"}
    assert all(np.array_equal(first[k], again[k]) for k in first)
