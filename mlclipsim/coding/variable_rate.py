"""A variable-rate mbt2018-mean: one network, a ladder of lambdas, gain units (``mbt2018-mean-vr``).

Cui et al., "Asymmetric gained deep image compression with continuous rate adaptation" (CVPR 2021),
on CompressAI's ``MeanScaleHyperprior`` (mbt2018-mean). Rate level ``l`` (0..L-1, lowest rate first)
scales the latent ``y = g_a(x)`` by a learned positive per-channel gain ``g_l = exp(log_gain[l])``
before the hyperprior, quantisation and entropy coding, and the decoded latent by an inverse gain
``g'_l = exp(log_inv_gain[l])`` before synthesis. The bitstream is mbt2018-mean's (Gaussian
conditional + entropy bottleneck, range coded, two strings); the level travels in the ``.bin`` header
(:mod:`~mlclipsim.coding.bitstream`). The model carries its ladder as the buffer ``lmbdas`` (L,):
level ``l`` was trained for ``bpp + lmbdas[l] * D``.

The weights layout is that of the codec pilot (``benchmarks/codec_pilot/models.py``,
``GainMeanScaleHyperprior``): mbt2018-mean's keys plus ``log_gain`` (L, M), ``log_inv_gain`` (L, M) and
``lmbdas`` (L,). :func:`pilot_state_dict` reads the model out of a pilot training checkpoint
(``benchmarks/codec_pilot/train_base.py``, ``{"config", "args", "model", "optimizer", ...}``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from compressai.models import MeanScaleHyperprior
from torch import nn

MAX_LEVELS = 64
"""The most rate levels a variable-rate model may have (the bitstream's bound on its level fields)."""

PILOT_ARCHITECTURES = {"mean-gain": "mbt2018-mean-vr", "mean": "mbt2018-mean", "hyperprior": "bmshj2018-hyperprior",
                       "factorized": "bmshj2018-factorized"}
"""The codec pilot's architecture names -> this package's."""


def check_lambdas(lmbdas: Sequence[float]) -> list[float]:
    """A lambda ladder as floats: 1..:data:`MAX_LEVELS` finite positive values, strictly increasing."""
    values = [float(v) for v in lmbdas]
    if not 1 <= len(values) <= MAX_LEVELS or not all(math.isfinite(v) and v > 0 for v in values) or \
            any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"A variable-rate model needs 1..{MAX_LEVELS} positive lambdas, strictly increasing (lowest "
                         f"rate first), got {list(lmbdas)}.")
    return values


class GainMeanScaleHyperprior(MeanScaleHyperprior):
    """mbt2018-mean with gain units: ``forward(x, level)``, ``compress(x, level)``,
    ``decompress(strings, shape, level)``.

    Args:
        N, M: channel counts, as mbt2018-mean's.
        lmbdas: the lambda ladder, lowest rate first (L values); level ``l`` codes at ``lmbdas[l]``.

    ``level`` is an int in 0..L-1 (every image of the batch) or, in ``forward``, a (B,) long tensor (one
    level per image). Images are (B,3,H,W) in [0,1] with H, W multiples of 64.
    """

    def __init__(self, N: int, M: int, lmbdas: Sequence[float]) -> None:
        super().__init__(N=N, M=M)
        values = check_lambdas(lmbdas)
        self.register_buffer("lmbdas", torch.tensor(values, dtype=torch.float32))
        # log-parameterised gains (as the pilot): a higher level (more bits) starts with a larger gain
        init = torch.linspace(-0.5, 0.5, len(values))[:, None].repeat(1, M)
        self.log_gain = nn.Parameter(init.clone())
        self.log_inv_gain = nn.Parameter(-init.clone())

    @property
    def num_levels(self) -> int:
        return int(self.lmbdas.numel())

    def check_level(self, level: int) -> int:
        """``level`` as an int in 0..L-1; ValueError naming the ladder otherwise."""
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level < self.num_levels:
            ladder = ", ".join(f"{i}: {v:g}" for i, v in enumerate(self.lmbdas.tolist()))
            raise ValueError(f"Rate level {level!r} is not one of this model's {self.num_levels} levels "
                             f"(level: lambda, lowest rate first: {ladder}).")
        return level

    def _levels(self, level: int | torch.Tensor, batch: int) -> torch.Tensor:
        if isinstance(level, torch.Tensor):
            if level.shape != (batch,) or level.dtype != torch.long:
                raise ValueError(f"level must be an int or a ({batch},) long tensor, got {level.dtype} "
                                 f"{tuple(level.shape)}.")
            if bool((level < 0).any()) or bool((level >= self.num_levels).any()):
                raise ValueError(f"levels must lie in 0..{self.num_levels - 1}, got {level.tolist()}.")
            return level.to(self.log_gain.device)
        return torch.full((batch,), self.check_level(level), dtype=torch.long, device=self.log_gain.device)

    def gains(self, level: int | torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(gain, inverse gain), each (B, M, 1, 1), of the level(s)."""
        levels = self._levels(level, batch)
        return (torch.exp(self.log_gain[levels])[:, :, None, None],
                torch.exp(self.log_inv_gain[levels])[:, :, None, None])

    def forward(self, x: torch.Tensor, level: int | torch.Tensor) -> dict[str, Any]:  # type: ignore[override]
        gain, inverse_gain = self.gains(level, x.shape[0])
        y = self.g_a(x) * gain
        z = self.h_a(y)
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        scales_hat, means_hat = self.h_s(z_hat).chunk(2, 1)
        y_hat, y_likelihoods = self.gaussian_conditional(y, scales_hat, means=means_hat)
        x_hat = self.g_s(y_hat * inverse_gain)
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    def compress(self, x: torch.Tensor, level: int) -> dict[str, Any]:  # type: ignore[override]
        gain, _ = self.gains(level, x.shape[0])
        y = self.g_a(x) * gain
        z = self.h_a(y)
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.size()[-2:])
        scales_hat, means_hat = self.h_s(z_hat).chunk(2, 1)
        indexes = self.gaussian_conditional.build_indexes(scales_hat)
        y_strings = self.gaussian_conditional.compress(y, indexes, means=means_hat)
        return {"strings": [y_strings, z_strings], "shape": z.size()[-2:]}

    def decompress(self, strings: list, shape: Sequence[int], level: int) -> dict[str, Any]:  # type: ignore[override]
        if not isinstance(strings, list) or len(strings) != 2:
            raise ValueError("An mbt2018-mean-vr bitstream holds 2 strings (y, z).")
        z_hat = self.entropy_bottleneck.decompress(strings[1], shape)
        scales_hat, means_hat = self.h_s(z_hat).chunk(2, 1)
        indexes = self.gaussian_conditional.build_indexes(scales_hat)
        y_hat = self.gaussian_conditional.decompress(strings[0], indexes, means=means_hat)
        _, inverse_gain = self.gains(level, y_hat.shape[0])
        return {"x_hat": self.g_s(y_hat * inverse_gain).clamp_(0, 1)}

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> GainMeanScaleHyperprior:
        """A model of the state dict's channel counts and ladder, with its weights."""
        net = cls(*channels_and_lambdas(state_dict))
        net.load_state_dict(dict(state_dict))
        return net


def is_variable_rate(model: nn.Module) -> bool:
    """True for a model whose ``forward``/``compress``/``decompress`` take a rate level."""
    return isinstance(model, GainMeanScaleHyperprior)


def channels_and_lambdas(state_dict: Mapping[str, torch.Tensor]) -> tuple[int, int, list[float]]:
    """(N, M, lambda ladder) read off an ``mbt2018-mean-vr`` state dict."""
    try:
        return (int(state_dict["g_a.0.weight"].size(0)), int(state_dict["g_a.6.weight"].size(0)),
                [float(v) for v in state_dict["lmbdas"].reshape(-1).tolist()])
    except KeyError as err:
        raise ValueError(f"This state dict is not an mbt2018-mean-vr model (it has no {err.args[0]!r}).") from None


# ------------------------------------------------------------------------------------- pilot checkpoints


def is_pilot_checkpoint(data: Mapping[str, Any]) -> bool:
    """True for a training checkpoint of the codec pilot (``benchmarks/codec_pilot/train_base.py``)."""
    config = data.get("config")
    return isinstance(config, Mapping) and isinstance(data.get("model"), Mapping) and "arch" in config \
        and "optimizer" in data


def pilot_architecture(data: Mapping[str, Any]) -> str:
    """This package's architecture name of a pilot checkpoint's model."""
    arch = data["config"]["arch"]
    if arch not in PILOT_ARCHITECTURES:
        raise ValueError(f"The pilot checkpoint holds an unknown architecture {arch!r} (known: "
                         f"{sorted(PILOT_ARCHITECTURES)}).")
    return PILOT_ARCHITECTURES[arch]


def pilot_state_dict(data: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The model's state dict inside a pilot checkpoint (its weights only: no optimiser or RNG state).

    For a variable-rate model the ladder in the weights (``lmbdas``) must be the one in the checkpoint's
    config, which the pilot wrote from the same list."""
    state = {k: v for k, v in data["model"].items() if isinstance(v, torch.Tensor)}
    config = data["config"]
    if pilot_architecture(data) == "mbt2018-mean-vr":
        saved = [float(v) for v in state["lmbdas"].tolist()] if "lmbdas" in state else None
        expected = torch.tensor(config.get("lmbdas") or [], dtype=torch.float32).tolist()
        if saved != expected:
            raise ValueError(f"The pilot checkpoint's weights carry the ladder {saved}, its config {expected}; the "
                             "file is inconsistent.")
    return state


def pilot_settings(data: Mapping[str, Any]) -> dict[str, Any]:
    """What a pilot checkpoint says about its training: its options, step, wall and CPU seconds."""
    args = {k: v for k, v in dict(data.get("args", {})).items() if isinstance(v, str | int | float | bool | list)}
    return {**args, "trainer": "benchmarks/codec_pilot/train_base.py", "step": int(data.get("step", 0)),
            "wall_s": float(data.get("wall_s", 0.0)), "cpu_s": float(data.get("cpu_s", 0.0))}
