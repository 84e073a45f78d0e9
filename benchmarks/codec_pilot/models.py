"""Codec architectures of the pilot: CompressAI's own classes, plus a gain-unit variable-rate variant.

- ``factorized``  : compressai.models.FactorizedPrior(N, M)       (bmshj2018-factorized)
- ``hyperprior``  : compressai.models.ScaleHyperprior(N, M)       (bmshj2018-hyperprior)
- ``mean``        : compressai.models.MeanScaleHyperprior(N, M)   (mbt2018-mean)
- ``mean-gain``   : MeanScaleHyperprior with gain units (Cui et al., "Asymmetric gained deep image
  compression with continuous rate adaptation", CVPR 2021): one network for a ladder of lambdas; level
  ``l`` scales the latent y by a learned positive per-channel gain g_l before quantisation/entropy coding
  and by an inverse gain g'_l before synthesis. The bitstream is the same real one as mbt2018-mean's
  (Gaussian conditional + entropy bottleneck, range coded); the level index travels in the header.
"""

from __future__ import annotations

import torch
from compressai.models import FactorizedPrior, MeanScaleHyperprior, ScaleHyperprior
from torch import nn

ARCHS = ("factorized", "hyperprior", "mean", "mean-gain")


class GainMeanScaleHyperprior(MeanScaleHyperprior):
    def __init__(self, N: int, M: int, lmbdas: list[float]):
        super().__init__(N=N, M=M)
        self.register_buffer("lmbdas", torch.tensor(lmbdas, dtype=torch.float32))
        L = len(lmbdas)
        # log-parameterised gains, initialised so that higher lambda (more bits) gets a larger gain
        init = torch.linspace(-0.5, 0.5, L)[:, None].repeat(1, M)
        self.log_gain = nn.Parameter(init.clone())
        self.log_inv_gain = nn.Parameter(-init.clone())

    def _gains(self, level: torch.Tensor):
        g = torch.exp(self.log_gain[level])[:, :, None, None]
        gi = torch.exp(self.log_inv_gain[level])[:, :, None, None]
        return g, gi

    def forward(self, x, level: torch.Tensor):
        g, gi = self._gains(level)
        y = self.g_a(x) * g
        z = self.h_a(y)
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        scales_hat, means_hat = self.h_s(z_hat).chunk(2, 1)
        y_hat, y_likelihoods = self.gaussian_conditional(y, scales_hat, means=means_hat)
        x_hat = self.g_s(y_hat * gi)
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    def compress(self, x, level: int):
        lv = torch.full((x.shape[0],), level, dtype=torch.long)
        g, _ = self._gains(lv)
        y = self.g_a(x) * g
        z = self.h_a(y)
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.size()[-2:])
        scales_hat, means_hat = self.h_s(z_hat).chunk(2, 1)
        indexes = self.gaussian_conditional.build_indexes(scales_hat)
        y_strings = self.gaussian_conditional.compress(y, indexes, means=means_hat)
        return {"strings": [y_strings, z_strings], "shape": z.size()[-2:]}

    def decompress(self, strings, shape, level: int):
        z_hat = self.entropy_bottleneck.decompress(strings[1], shape)
        scales_hat, means_hat = self.h_s(z_hat).chunk(2, 1)
        indexes = self.gaussian_conditional.build_indexes(scales_hat)
        y_hat = self.gaussian_conditional.decompress(strings[0], indexes, means=means_hat)
        lv = torch.full((y_hat.shape[0],), level, dtype=torch.long)
        _, gi = self._gains(lv)
        return {"x_hat": self.g_s(y_hat * gi).clamp_(0, 1)}


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
