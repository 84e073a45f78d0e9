"""Codec architectures of the pilot: CompressAI's own classes, plus a gain-unit variable-rate variant.

- ``factorized``  : compressai.models.FactorizedPrior(N, M)       (bmshj2018-factorized)
- ``hyperprior``  : compressai.models.ScaleHyperprior(N, M)       (bmshj2018-hyperprior)
- ``mean``        : compressai.models.MeanScaleHyperprior(N, M)   (mbt2018-mean)
- ``mean-gain``   : MeanScaleHyperprior with gain units (Cui et al., "Asymmetric gained deep image
  compression with continuous rate adaptation", CVPR 2021): one network for a ladder of lambdas; level
  ``l`` scales the latent y by a learned positive per-channel gain g_l before quantisation/entropy coding
  and by an inverse gain g'_l before synthesis. The bitstream is the same real one as mbt2018-mean's
  (Gaussian conditional + entropy bottleneck, range coded); the level index travels in the header.
  The model is the library's (:mod:`mlclipsim.coding.variable_rate`, ``mbt2018-mean-vr``).
"""

from __future__ import annotations

import torch
from compressai.models import FactorizedPrior, MeanScaleHyperprior, ScaleHyperprior
from torch import nn

from mlclipsim.coding.variable_rate import GainMeanScaleHyperprior  # the library's model, same weights layout

ARCHS = ("factorized", "hyperprior", "mean", "mean-gain")


def build(arch: str, N: int, M: int, lmbdas: list[float] | None = None) -> nn.Module:
    if arch == "factorized":
        return FactorizedPrior(N, M)
    if arch == "hyperprior":
        return ScaleHyperprior(N, M)
    if arch == "mean":
        return MeanScaleHyperprior(N, M)
    if arch == "mean-gain":
        if not lmbdas:
            raise ValueError("mean-gain needs the lambda ladder")
        return GainMeanScaleHyperprior(N, M, lmbdas)
    raise ValueError(f"unknown arch {arch!r}; choose from {ARCHS}")


def param_groups(model: nn.Module):
    """(main parameters, aux parameters = the entropy bottleneck quantiles), as CompressAI's examples."""
    main = [p for n, p in model.named_parameters() if not n.endswith(".quantiles") and p.requires_grad]
    aux = [p for n, p in model.named_parameters() if n.endswith(".quantiles") and p.requires_grad]
    return main, aux


def rd_loss(out: dict, x: torch.Tensor, lmbda) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """bpp + lambda * 255^2 * MSE (CompressAI's convention); lambda a float or a (B,) tensor.
    Returns (loss, bpp (B,), mse (B,))."""
    B, _, H, W = x.shape
    bits = sum(torch.log(lk).flatten(1).sum(1) for lk in out["likelihoods"].values()) / (-torch.log(torch.tensor(2.0)))
    bpp = bits / (H * W)
    mse = (out["x_hat"] - x).pow(2).flatten(1).mean(1)
    loss = (bpp + lmbda * (255.0 ** 2) * mse).mean()
    return loss, bpp, mse


def optimizer_step(model: nn.Module, loss: torch.Tensor, opt: torch.optim.Optimizer, aopt: torch.optim.Optimizer,
                   clip_params: list | None = None, clip: float = 1.0) -> torch.Tensor:
    """One CompressAI-example step: backward of ``loss``, optional gradient clipping of ``clip_params``,
    the main Adam step, then the aux loss's own backward and step. Returns the aux loss."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip_params is not None:
        torch.nn.utils.clip_grad_norm_(clip_params, clip)
    opt.step()
    aux_loss = model.aux_loss()
    aopt.zero_grad(set_to_none=True)
    aux_loss.backward()
    aopt.step()
    return aux_loss

