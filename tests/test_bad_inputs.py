"""Every bad input raises a ValueError/TypeError whose message says what to do."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_VIT, random_images, tiny_encoder

from mlclipsim import MLCLIPSim, MLCLIPSimLoss, ml_clipsim


@pytest.fixture(scope="module")
def metric():
    return MLCLIPSim(tiny_encoder(TINY_VIT))


GOOD = random_images(2, (64, 64), seed=5)


@pytest.mark.parametrize(
    ("preds", "target", "error", "hint"),
    [
        (random_images(2, (64, 64)), random_images(2, (64, 80)), ValueError, "same shape.*Resize or crop"),
        (random_images(3, (64, 64)), GOOD, ValueError, "same shape"),
        (GOOD[:, :1], GOOD[:, :1], ValueError, r"grayscale.*expand\(-1, 3, -1, -1\)"),
        (torch.cat([GOOD, GOOD[:, :1]], 1), GOOD, ValueError, r"RGBA.*\[:, :3\]"),
        (GOOD.permute(0, 2, 3, 1), GOOD, ValueError, "channels-last"),
        (GOOD[0], GOOD[0], ValueError, r"unsqueeze\(0\)"),
        (GOOD * 255, GOOD, ValueError, "0..255.*divide by 255"),
        (GOOD * 2 - 1, GOOD, ValueError, r"\[-1,1\]"),
        (GOOD + 5000, GOOD, ValueError, "clamp"),
        (GOOD.masked_fill(GOOD > 0.9, float("nan")), GOOD, ValueError, "NaN or infinite"),
        (GOOD.masked_fill(GOOD > 0.9, float("inf")), GOOD, ValueError, "NaN or infinite"),
        ((GOOD * 255).to(torch.uint8), GOOD, TypeError, r"integer dtype.*float\(\) / 255"),
        (GOOD.numpy(), GOOD, TypeError, "torch.Tensor"),
        (random_images(2, (16, 64)), random_images(2, (16, 64)), ValueError, "minimum is 32x32"),
        (GOOD, GOOD * 255, ValueError, "target.*0..255"),
    ],
)
def test_bad_input_messages(metric, preds, target, error, hint):
    with pytest.raises(error, match=hint):
        metric.update(preds, target)


def test_bad_inputs_raise_in_functional_and_loss_too():
    encoder = tiny_encoder(TINY_VIT)
    with pytest.raises(ValueError, match="NaN"):
        ml_clipsim(GOOD * float("nan"), GOOD, backbone=encoder)
    with pytest.raises(ValueError, match="same shape"):
        MLCLIPSimLoss(encoder)(GOOD, GOOD[:1])


def test_metric_and_input_on_different_devices(metric):
    fake = torch.empty(2, 3, 64, 64, device="meta")
    with pytest.raises(ValueError, match="metric is on cpu"):
        metric.update(fake, GOOD)


def test_unknown_options_list_valid_choices():
    with pytest.raises(ValueError, match="resize policy.*center_crop"):
        tiny_encoder(TINY_VIT, resize="stretch")
    with pytest.raises(ValueError, match="cosine_map.*clamp"):
        MLCLIPSim(tiny_encoder(TINY_VIT), cosine_map="abs")
    with pytest.raises(TypeError, match="backbone must be"):
        MLCLIPSim(backbone=3)
    with pytest.raises(ValueError, match="keeps its own"):
        MLCLIPSim(tiny_encoder(TINY_VIT), resize="tile")
