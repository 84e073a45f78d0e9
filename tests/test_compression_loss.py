"""Codec loss: terms, scales, gradients, bad configs."""

from __future__ import annotations

import pytest
import torch
from compressai.models import FactorizedPrior
from conftest import random_images, tiny_encoder
from torch import nn

from mlclipsim.training.codec_loss import MLRateDistortionLoss
from mlclipsim.training.distortion_terms import build_terms, list_terms
from mlclipsim.training.msssim import ms_ssim, ms_ssim_levels


class HalfL1(nn.Module):
    """A custom loss a user plugs in by import path (``test_compression_loss:HalfL1``)."""

    def forward(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 0.5 * (preds - target).abs().mean()


def _codec(seed: int = 0) -> FactorizedPrior:
    torch.manual_seed(seed)
    return FactorizedPrior(8, 8)


def test_ms_ssim_matches_compressai_reference_and_scales():
    from pytorch_msssim import ms_ssim as reference

    x = random_images(2, (176, 168), seed=1)
    y = (x + 0.05 * random_images(2, (176, 168), seed=2)).clamp(0, 1)
    assert float(ms_ssim(x, y)) == pytest.approx(float(reference(x, y, data_range=1.0)), abs=1e-5)
    assert [ms_ssim_levels(s, s) for s in (10, 11, 21, 41, 81, 160, 161)] == [0, 1, 2, 3, 4, 4, 5]
    with pytest.raises(ValueError, match="larger crops"):
        ms_ssim(x[..., :10, :10], y[..., :10, :10])


@pytest.mark.filterwarnings("ignore:.*too small for 5-scale")
def test_loss_dict_follows_compressai_convention():
    model, x = _codec(), random_images(2, (32, 32))
    criterion = MLRateDistortionLoss(0.0130, ["mse", {"name": "ms-ssim", "weight": 0.0}])
    out = {k: v.detach() for k, v in criterion(model(x), x).items()}
    assert {"loss", "bpp_loss", "distortion", "mse", "mse_loss", "ms-ssim", "ms_ssim_loss"} <= set(out)
    assert float(out["distortion"]) == pytest.approx(255**2 * float(out["mse"]), rel=1e-5)
    assert float(out["loss"]) == pytest.approx(float(out["bpp_loss"]) + 0.0130 * float(out["distortion"]), rel=1e-5)


TERM_CASES = {
    "mse": ["mse"],
    "ms-ssim": ["ms-ssim"],
    "ml-clipsim": [{"name": "ml-clipsim", "backbone": "TINY", "scale": 1000.0}],
    "mix": [{"name": "mse", "weight": 0.5}, {"name": "ml-clipsim", "weight": 0.5, "backbone": "TINY", "scale": 1000.0}],
    "import-module": [{"name": "torch.nn:L1Loss", "scale": 5000.0}],
    "import-custom": [{"name": "test_compression_loss:HalfL1", "scale": 5000.0}],
    "import-metric": [{"name": "torchmetrics.image.StructuralSimilarityIndexMeasure",
                       "init_args": {"data_range": 1.0}}],
}


def _specs(case: str, encoder) -> list:
    return [{**s, "backbone": encoder} if isinstance(s, dict) and s.get("backbone") == "TINY" else s
            for s in TERM_CASES[case]]


@pytest.fixture(scope="module")
def encoder():
    return tiny_encoder()


@pytest.mark.filterwarnings("ignore:.*too small for 5-scale")
@pytest.mark.parametrize("case", list(TERM_CASES))
def test_every_term_gives_finite_gradients_to_the_codec(case, encoder):
    model, x = _codec(), random_images(2, (64, 64))
    criterion = MLRateDistortionLoss(0.01, _specs(case, encoder))
    out = criterion(model(x), x)
    out["loss"].backward()
    grads = [p.grad for n, p in model.named_parameters() if not n.endswith("quantiles")]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    synthesis = model.g_s[0].weight.grad
    assert synthesis.abs().sum() > 0, "the distortion term must reach the decoder"
    if case in ("ml-clipsim", "mix"):
        term = criterion.terms[-1]
        assert term.scale == 1000.0 and 0.0 <= float(out[term.name]) <= 1.0


def test_ml_clipsim_term_on_real_mobilenet_uses_calibrated_scale(mobilenet):
    from mlclipsim.training.distortion_terms import CALIBRATED_SCALES

    model, x = _codec(), random_images(1, (64, 64))
    criterion = MLRateDistortionLoss(0.01, [{"name": "ml-clipsim", "backbone": "torchvision/mobilenet_v2"}])
    term = criterion.terms[0]
    assert term.scale == CALIBRATED_SCALES[("torchvision/mobilenet_v2", "rescale", "resize")]
    calls = []
    original = term.prepare
    term.prepare = lambda target: calls.append(torch.is_grad_enabled()) or original(target)
    criterion(model(x), x)["loss"].backward()
    assert calls == [False], "reference features are computed once per batch, without gradients"
    assert torch.isfinite(model.g_s[0].weight.grad).all()


@pytest.mark.parametrize("spec", ["mse", {"name": "test_compression_loss:HalfL1", "scale": 5000.0}])
def test_a_few_steps_lower_the_loss(spec):
    model, x = _codec(), random_images(2, (32, 32), seed=3)
    criterion = MLRateDistortionLoss(0.05, [spec])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    torch.manual_seed(0)
    for _ in range(30):
        optimizer.zero_grad()
        loss = criterion(model(x), x)["loss"]
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert sum(losses[-3:]) < 0.8 * sum(losses[:3])


def test_main_and_aux_gradients_touch_disjoint_parameters():
    model, x = _codec(), random_images(2, (32, 32))
    MLRateDistortionLoss(0.01)(model(x), x)["loss"].backward()
    assert all(p.grad is None or not p.grad.any() for n, p in model.named_parameters() if n.endswith("quantiles"))
    model.zero_grad(set_to_none=True)
    model.aux_loss().backward()
    touched = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.any()}
    assert touched and all(n.endswith("quantiles") for n in touched)


@pytest.mark.parametrize("spec, message", [
    ("psnr", "Unknown distortion term 'psnr'; choose one of 'ml-clipsim', 'ms-ssim', 'mse'"),
    ({"name": "mse", "weight": -1}, "weights must be non-negative"),
    ({"name": "os.path:join"}, "not a differentiable loss"),
    ({"name": "torchmetrics.classification.BinaryAccuracy"}, "is_differentiable=False"),
    ({"name": "mlclipsim.nothing_here:Loss"}, "Cannot import module"),
    ({"name": "mse", "backbone": "x"}, "has no option"),
    ({"name": "ml-clipsim", "backbone": "efficientnet-lite0"}, "calibrate_lambda --backbone efficientnet-lite0"),
    ({"name": "ml-clipsim", "scale": -3.0, "backbone": "efficientnet-lite0"}, "positive"),
])
def test_bad_term_configs_name_the_valid_choices(spec, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_terms([spec])


def test_term_registry_and_empty_configs():
    assert {"mse", "ms-ssim", "ml-clipsim", "ra-miqa"} <= set(list_terms())
    with pytest.raises(ValueError, match="non-empty list"):
        build_terms([])
    with pytest.raises(ValueError, match="positive weight"):
        build_terms([{"name": "mse", "weight": 0}])
    with pytest.raises(ValueError, match="lmbda"):
        MLRateDistortionLoss(-1.0)


def test_bad_architecture_configs_name_the_valid_choices():
    from mlclipsim.backbones import MissingWeightsError
    from mlclipsim.coding.architectures import build_codec
    from mlclipsim.training.codec_module import CompressionModule

    with pytest.raises(ValueError, match="choose one of.*bmshj2018-factorized.*cheng2020-attn"):
        build_codec("bmshj2019", quality=1)
    with pytest.raises(ValueError, match=r"no quality 9; choose one of \[1, 2, 3, 4, 5, 6\]"):
        build_codec("cheng2020-anchor", quality=9)
    with pytest.raises(ValueError, match="not both"):
        build_codec("mbt2018", quality=1, channels=[8, 8])
    with pytest.raises(ValueError, match=r"channels \[N\]"):
        build_codec("cheng2020-attn", channels=[8, 8])
    with pytest.raises(MissingWeightsError, match="MLCLIPSIM_OFFLINE"):
        build_codec("bmshj2018-factorized", quality=1, pretrained=True)
    with pytest.raises(ValueError, match="lr_scheduler"):
        CompressionModule(channels=[8, 8], lr_scheduler="cosine", val_ml_clipsim=None)
    with pytest.raises(ValueError, match="init must be 'random', 'pretrained'"):
        CompressionModule(channels=[8, 8], init="/no/such/file.ckpt", val_ml_clipsim=None)
