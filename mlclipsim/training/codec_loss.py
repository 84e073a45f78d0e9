"""The rate-distortion loss of a learned codec, in CompressAI's convention, with pluggable distortion terms.

``loss = bpp + lambda * D`` with ``bpp`` the rate estimated from the likelihoods (bits per pixel of
the input) and ``D = sum_i w_i * D_i`` a weighted sum of distortion terms, each on the scale of
CompressAI's MSE term (``D_mse = 255**2 * MSE``), so that the published lambda ladders keep their
meaning; see :mod:`mlclipsim.training.distortion_terms` for the terms, their scales and how to add one.

It is CompressAI's ``RateDistortionLoss`` (``compressai.losses``) generalised from one fixed metric to
a list of terms: same rate term, same ``forward(output, target) -> dict`` interface, same MSE and
MS-SSIM distortions. It is also registered in CompressAI's criterion registry as
``"MLRateDistortionLoss"``, so CompressAI's own training scripts can build it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from compressai.registry import register_criterion
from torch import nn

from mlclipsim.training.distortion_terms import DistortionTerm, TermSpec, build_terms

COMPRESSAI_ALIASES = {"mse": "mse_loss", "ms-ssim": "ms_ssim_loss"}
"""Raw values also returned under CompressAI's own keys, for scripts written against its loss."""


def bpp_from_likelihoods(likelihoods: Mapping[str, torch.Tensor], num_pixels: int) -> torch.Tensor:
    """Estimated rate in bits per pixel: ``sum -log2(likelihood) / num_pixels`` over all latents."""
    total = sum(torch.log(l).sum() for l in likelihoods.values())  # noqa: E741
    return total / (-math.log(2) * num_pixels)


@register_criterion("MLRateDistortionLoss")
class MLRateDistortionLoss(nn.Module):
    """``bpp + lmbda * sum_i w_i * D_i`` over named distortion terms.

    Args:
        lmbda: the Lagrange multiplier (CompressAI's spelling). With the MSE scale, CompressAI's ladder
            is 0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483 (qualities 1..6).
        terms: term specs (names, mappings or built :class:`DistortionTerm`s); default ``["mse"]``.
        return_type: ``"all"`` (the dict) or one key of it, as in CompressAI.

    ``forward(output, target)`` takes a CompressAI model's output (``x_hat`` and ``likelihoods``) and
    the input batch (N,3,H,W) in [0,1], and returns ``loss``, ``bpp_loss``, ``distortion`` (``D``), each
    term's raw value under its name (``mse`` = MSE, ``ms-ssim`` = MS-SSIM, ``ml-clipsim`` = ML-CLIPSim,
    imported terms: their value), and CompressAI's ``mse_loss`` / ``ms_ssim_loss`` when those terms
    are present. Reference-side features (e.g. ML-CLIPSim's) are computed once per call without
    gradients; no-reference terms see the reconstructions only.
    """

    def __init__(self, lmbda: float = 0.0130, terms: Sequence[TermSpec | DistortionTerm] | None = None,
                 return_type: str = "all") -> None:
        super().__init__()
        if isinstance(lmbda, bool) or not isinstance(lmbda, int | float) or not math.isfinite(lmbda) or lmbda < 0:
            raise ValueError(f"lmbda must be a non-negative number, got {lmbda!r}.")
        self.lmbda = float(lmbda)
        self.terms = nn.ModuleList(build_terms(list(terms) if terms is not None else ["mse"]))
        self.return_type = return_type

    @property
    def term_names(self) -> list[str]:
        return [term.name for term in self.terms]

    def forward(self, output: Mapping[str, Any], target: torch.Tensor) -> dict[str, torch.Tensor] | torch.Tensor:
        if "x_hat" not in output or "likelihoods" not in output:
            raise ValueError(f"output must be a CompressAI model's output with 'x_hat' and 'likelihoods', got keys "
                             f"{sorted(output)}.")
        x_hat = output["x_hat"]
        if x_hat.shape != target.shape:
            raise ValueError(f"x_hat has shape {tuple(x_hat.shape)} but the target {tuple(target.shape)}; crop "
                             "sizes must be multiples of the architecture's downsampling factor for training.")
        n, _, h, w = target.shape
        out: dict[str, torch.Tensor] = {"bpp_loss": bpp_from_likelihoods(output["likelihoods"], n * h * w)}
        distortion = x_hat.new_zeros(())
        for term in self.terms:
            if term.needs_reference:
                with torch.no_grad():
                    reference = term.prepare(target)
            else:
                reference = None
            raw = term(x_hat, reference)
            out[term.name] = raw
            if term.name in COMPRESSAI_ALIASES:
                out[COMPRESSAI_ALIASES[term.name]] = raw
            distortion = distortion + term.weight * term.distortion(raw)
        out["distortion"] = distortion
        out["loss"] = out["bpp_loss"] + self.lmbda * distortion
        if self.return_type == "all":
            return out
        if self.return_type not in out:
            raise ValueError(f"Unknown return_type {self.return_type!r}; choose 'all' or one of {sorted(out)}.")
        return out[self.return_type]

    def extra_repr(self) -> str:
        return f"lmbda={self.lmbda}"
