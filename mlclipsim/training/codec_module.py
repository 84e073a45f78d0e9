"""A LightningModule that trains any CompressAI zoo architecture with a pluggable distortion term.

Training follows CompressAI's example training script (``examples/train.py``):

- two optimisers: Adam on the network parameters (``lr``, default 1e-4) and Adam on the entropy
  bottlenecks' ``quantiles`` (``aux_lr``, default 1e-3) for the auxiliary loss ``model.aux_loss()``.
  Lightning 2 manual optimisation. One backward pass of ``loss + aux_loss`` gives both: the rate-
  distortion loss does not depend on the quantiles and the aux loss depends on nothing else (CompressAI
  stops its gradient), so the gradients are exactly those of CompressAI's two passes, and DDP sees
  every parameter used once per step. ``trainer.global_step`` counts training steps (the aux optimiser
  steps outside Lightning's step counter);
- gradient clipping of the network parameters to ``clip_max_norm`` (default 1.0; 0 switches it off);
- learning-rate schedule, ``lr_scheduler``: ``"plateau"`` (default, as CompressAI's script:
  ``ReduceLROnPlateau`` on the validation loss, factor ``plateau_factor`` 0.1, patience
  ``plateau_patience`` 10 validation epochs), ``"multistep"`` (multiply by ``gamma`` at the training
  steps listed in ``milestones``) or ``"none"``;
- exact resumption: optimiser and scheduler states are in Lightning's checkpoints, the batch of step t
  is a function of (seed, t) (:class:`~mlclipsim.training.codec_data.StepSampler`) and the
  quantisation noise of step t is drawn after seeding torch with (seed, t, rank). A run resumed from a
  checkpoint, at an epoch boundary or mid-epoch, ends with the parameters of an uninterrupted run
  (tested on CPU with the multistep schedule; on GPU, cuDNN's non-deterministic kernels can break
  bit-exactness unless ``Trainer(deterministic=True)``). The plateau schedule steps on validations,
  which Lightning schedules by its own epoch counter; after a resume under ``max_steps`` that counter
  can be one epoch off the uninterrupted run's, so validations (and a plateau step) may fall on other
  steps. Use ``multistep`` or ``none`` where a resumed run must be bit-identical.

Validation logs, under ``val/``: ``loss``, ``bpp_loss`` (likelihood estimate), ``distortion`` and every
term's raw value (as the loss names them), ``psnr`` (dB, on the clamped reconstruction), ``ms_ssim``
(at as many of the 5 scales as the crop allows: 5 from 161 px, 4 at 81-160, 3 at 41-80, 2 at 21-40;
``val/ms_ssim_scales`` says how many), ``ml_clipsim_metric`` (ML-CLIPSim as the metric scores it, clamp
map; backbone and options from ``val_ml_clipsim``, default
``torchvision/mobilenet_v2``; None switches it off) and, for the first ``val_coding_images`` images of
every validation epoch on each process (-1: all), real entropy coding: ``model.update()``, ``compress()``
to byte strings, ``decompress()`` (padding to the architecture's multiple), ``bpp_real`` from the byte
lengths next to ``bpp_est`` (the likelihood estimate of the same images) and ``decode_max_abs_diff``,
the largest absolute difference between the decoded image and the forward reconstruction.

**Variable-rate models** (``architecture="mbt2018-mean-vr"``, :mod:`~mlclipsim.coding.variable_rate`):
one network for a ladder ``lmbdas`` (lowest rate first). Every training step draws one rate level
``l`` uniformly from the step's seeded RNG (the one that also draws the quantisation noise, so a
resumed run draws the same levels) and trains the whole batch for ``bpp + lmbdas[l] * D`` (``lmbda``
is not used). ``lmbdas`` is the ladder the loss uses and the model carries; left None, it is the
``init`` checkpoint's (e.g. the codec pilot's base, ``benchmarks/codec_pilot``, which ``init`` reads
directly, or its export). Giving it replaces the init's ladder (same number of levels), as a
fine-tune for another distortion does (MS-SSIM's ladder). Validation runs every level: ``val/*``
are the means over the levels (``val/loss`` is the mean of ``bpp + lmbdas[l] * D``), with
``val/level<l>/psnr`` and ``val/level<l>/bpp_loss`` per level; real coding codes every level.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.models import CompressionModel
from compressai.models.utils import update_registered_buffers
from torch import nn
from torchmetrics import MaxMetric, MeanMetric

from mlclipsim.coding import entropy
from mlclipsim.coding.architectures import (
    VARIABLE_RATE_ARCHITECTURES,
    build_codec,
    codec_state_dict,
    read_checkpoint,
    resolve_channels,
)
from mlclipsim.coding.variable_rate import check_lambdas, is_variable_rate
from mlclipsim.metrics import MLCLIPSimScorer
from mlclipsim.metrics.baselines import psnr
from mlclipsim.training.codec_loss import MLRateDistortionLoss, bpp_from_likelihoods
from mlclipsim.training.msssim import ms_ssim, ms_ssim_levels

LR_SCHEDULERS = ("plateau", "multistep", "none")
DEFAULT_VAL_ML_CLIPSIM: dict[str, Any] = {"backbone": "torchvision/mobilenet_v2"}
_INIT_CHOICES = "'random', 'pretrained' (CompressAI's zoo weights, needs a network) or a checkpoint path"


def _metric_key(name: str) -> str:
    return name.replace(".", "_").replace("/", "_")


class CompressionModule(L.LightningModule):
    """Train a CompressAI zoo codec for ``bpp + lmbda * D`` (see :class:`MLRateDistortionLoss`).

    Args:
        architecture: a zoo name: ``bmshj2018-factorized``, ``bmshj2018-hyperprior``, ``mbt2018-mean``,
            ``mbt2018``, ``cheng2020-anchor``, ``cheng2020-attn``.
        quality: the zoo quality index (channel counts of CompressAI's models for that quality), or
        channels: explicit ``[N, M]`` (``[N]`` for cheng2020-*). Exactly one of the two.
        lmbda: the Lagrange multiplier; see the ladders in codecs/README.md.
        lmbdas: the ladder of a variable-rate architecture (``mbt2018-mean-vr``), lowest rate first; None
            takes the ``init`` checkpoint's. See the module docstring.
        terms: distortion term specs (default ``[{"name": "mse"}]``); see
            :mod:`mlclipsim.training.distortion_terms`.
        init: ``"random"`` (default), ``"pretrained"`` (CompressAI's zoo weights for ``quality`` and
            ``pretrained_metric``; needs a network, raises MissingWeightsError offline) or the path of a
            checkpoint of this module, a plain CompressAI state dict or a codec-pilot training checkpoint
            to start from (fine-tuning; its weights only).
        lr, aux_lr, clip_max_norm, lr_scheduler, plateau_factor, plateau_patience, milestones, gamma:
            optimisation, see the module docstring.
        val_ml_clipsim: options of the validation ML-CLIPSim (``backbone``, ``pretrained``, ...), or None.
        val_coding_images: images per validation epoch and process that are entropy-coded for real
            (-1 all, 0 none).
        seed: seeds the per-step quantisation noise.
    """

    def __init__(
        self,
        architecture: str = "bmshj2018-factorized",
        quality: int | None = None,
        channels: list[int] | None = None,
        lmbda: float = 0.0130,
        lmbdas: list[float] | None = None,
        terms: list[str | dict[str, Any]] | None = None,
        init: str = "random",
        pretrained_metric: str = "mse",
        lr: float = 1e-4,
        aux_lr: float = 1e-3,
        clip_max_norm: float = 1.0,
        lr_scheduler: str = "plateau",
        plateau_factor: float = 0.1,
        plateau_patience: int = 10,
        milestones: list[int] | None = None,
        gamma: float = 0.1,
        val_ml_clipsim: dict[str, Any] | None = DEFAULT_VAL_ML_CLIPSIM,
        val_coding_images: int = 8,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if lr_scheduler not in LR_SCHEDULERS:
            raise ValueError(f"Unknown lr_scheduler {lr_scheduler!r}; choose one of {list(LR_SCHEDULERS)}.")
        if lr_scheduler == "multistep" and not milestones:
            raise ValueError("lr_scheduler 'multistep' needs milestones (training steps), e.g. [800000, 900000].")
        if clip_max_norm < 0:
            raise ValueError(f"clip_max_norm must be >= 0 (0 switches clipping off), got {clip_max_norm!r}")
        resolve_channels(architecture, quality, channels)  # validates architecture / quality / channels early
        if lmbdas is not None:
            if architecture not in VARIABLE_RATE_ARCHITECTURES:
                raise ValueError(f"lmbdas (a ladder) is for variable-rate architectures "
                                 f"({list(VARIABLE_RATE_ARCHITECTURES)}); {architecture} trains at lmbda.")
            lmbdas = check_lambdas(lmbdas)
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.model: CompressionModel = self._initial_model(architecture, quality, channels, init, pretrained_metric,
                                                           lmbdas)
        self.criterion = MLRateDistortionLoss(lmbda, terms if terms is not None else [{"name": "mse"}])
        self.val_scorer = self._build_val_scorer(val_ml_clipsim)
        names = ["loss", "bpp_loss", "distortion", *self.criterion.term_names, "psnr", "ms_ssim", "ms_ssim_scales",
                 "bpp_est", "bpp_real"]
        if self.val_scorer is not None:
            names.append("ml_clipsim_metric")
        names += [f"level{level}/{name}" for level in self._levels() if level is not None
                  for name in ("psnr", "bpp_loss")]
        self.val_means = nn.ModuleDict({_metric_key(n): MeanMetric() for n in names})
        self.val_max_diff = MaxMetric()
        self._val_names = {_metric_key(n): n for n in names}
        self._coded_this_epoch = 0

    # ------------------------------------------------------------------------------------ building

    @staticmethod
    def _initial_model(architecture: str, quality: int | None, channels: Sequence[int] | None, init: str,
                       pretrained_metric: str, lmbdas: Sequence[float] | None = None) -> CompressionModel:
        variable = architecture in VARIABLE_RATE_ARCHITECTURES
        if init == "random":
            return build_codec(architecture, quality, channels, lmbdas=lmbdas)
        if init == "pretrained":
            return build_codec(architecture, quality, channels, pretrained=True, pretrained_metric=pretrained_metric,
                               lmbdas=lmbdas)
        if not isinstance(init, str | os.PathLike) or not os.path.isfile(init):
            raise ValueError(f"init must be {_INIT_CHOICES}; {init!r} is none of these (no such file).")
        state = codec_state_dict(read_checkpoint(init))
        saved = None
        if variable:
            if "lmbdas" not in state:
                raise ValueError(f"init checkpoint {init!r} is not a variable-rate model (it has no lambda ladder); "
                                 f"{architecture} starts from one of its own checkpoints or from random weights.")
            saved = [float(v) for v in state["lmbdas"].tolist()]
            if lmbdas is not None and len(lmbdas) != len(saved):
                raise ValueError(f"lmbdas has {len(lmbdas)} levels but the init checkpoint {init!r} has {len(saved)} "
                                 f"({saved}); give as many lambdas as it has levels.")
        model = build_codec(architecture, quality, channels, lmbdas=saved)
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(f"init checkpoint {init!r} does not fit {architecture} with channels "
                             f"{list(resolve_channels(architecture, quality, channels))}: {err}") from None
        if variable and lmbdas is not None:  # the fine-tune's ladder (e.g. another distortion's) replaces the init's
            model.lmbdas.copy_(torch.tensor(lmbdas, dtype=model.lmbdas.dtype))
        return model

    @staticmethod
    def _build_val_scorer(options: Mapping[str, Any] | None) -> nn.Module | None:
        if options is None:
            return None
        options = dict(options)
        backbone = options.pop("backbone", DEFAULT_VAL_ML_CLIPSIM["backbone"])
        return MLCLIPSimScorer(backbone, **options)

    def forward(self, images: torch.Tensor, level: int | None = None) -> dict[str, Any]:
        """The model's output for (N,3,H,W) images in [0,1] (at ``level`` for a variable-rate model)."""
        entropy.check_level(self.model, level)
        return self.model(images) if level is None else self.model(images, level)

    def _levels(self) -> list[int | None]:
        """The rate levels that validation runs: every level of a variable-rate model, else ``[None]``."""
        return list(range(self.model.num_levels)) if is_variable_rate(self.model) else [None]

    def _losses(self, output: Mapping[str, Any], target: torch.Tensor, level: int | None) -> dict[str, torch.Tensor]:
        """The criterion's losses; at a rate level, ``loss = bpp + lmbdas[level] * D``."""
        losses = self.criterion(output, target)
        if level is not None:
            losses["loss"] = losses["bpp_loss"] + self.model.lmbdas[level] * losses["distortion"]
        return losses

    def _draw_level(self) -> int | None:
        """This step's rate level (uniform, from the step's seeded torch RNG), or None for a one-rate model."""
        if not is_variable_rate(self.model):
            return None
        return int(torch.randint(self.model.num_levels, (1,)).item())

    # ------------------------------------------------------------------------------------ optimisation

    def configure_optimizers(self):
        main_params = [p for n, p in self.model.named_parameters() if not n.endswith(".quantiles") and p.requires_grad]
        aux_params = [p for n, p in self.model.named_parameters() if n.endswith(".quantiles") and p.requires_grad]
        main = torch.optim.Adam(main_params, lr=self.hparams.lr)
        aux = torch.optim.Adam(aux_params, lr=self.hparams.aux_lr)
        kind = self.hparams.lr_scheduler
        if kind == "none":
            return [main, aux]
        if kind == "plateau":
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(main, "min", factor=self.hparams.plateau_factor,
                                                                   patience=self.hparams.plateau_patience)
        else:
            scheduler = torch.optim.lr_scheduler.MultiStepLR(main, milestones=list(self.hparams.milestones),
                                                             gamma=self.hparams.gamma)
        return [main, aux], [scheduler]

    def _seed_step(self) -> None:
        state = np.random.SeedSequence([int(self.hparams.seed), int(self.global_step), int(self.global_rank)])
        torch.manual_seed(int(state.generate_state(1, dtype=np.uint64)[0] % (2**63)))

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        factor = entropy.downsampling_factor(self.model)
        if batch.shape[-2] % factor or batch.shape[-1] % factor:
            raise ValueError(f"Training crops are {batch.shape[-2]}x{batch.shape[-1]} px; "
                             f"{self.hparams.architecture} needs multiples of {factor} (set the data's crop_size).")
        self._seed_step()
        level = self._draw_level()
        main, aux = self.optimizers()
        output = self(batch, level)
        losses = self._losses(output, batch, level)
        aux_loss = self.model.aux_loss()
        main.zero_grad()
        aux.optimizer.zero_grad()
        self.manual_backward(losses["loss"] + aux_loss)
        if self.hparams.clip_max_norm > 0:
            self.clip_gradients(main, gradient_clip_val=self.hparams.clip_max_norm, gradient_clip_algorithm="norm")
        self._aux_step(aux.optimizer)
        main.step()
        if self.hparams.lr_scheduler == "multistep":
            self.lr_schedulers().step()
        size = batch.shape[0]
        self.log("train/loss", losses["loss"].detach(), prog_bar=True, batch_size=size)
        self.log("train/bpp_loss", losses["bpp_loss"].detach(), prog_bar=True, batch_size=size)
        self.log("train/distortion", losses["distortion"].detach(), batch_size=size)
        self.log("train/aux_loss", aux_loss.detach(), batch_size=size)
        if level is not None:
            self.log("train/level", float(level), batch_size=size)
        for name in self.criterion.term_names:
            self.log(f"train/{name}", losses[name].detach(), batch_size=size)
        return losses["loss"].detach()

    def _aux_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Step the aux optimiser directly (so that global_step counts training steps), unscaling under AMP."""
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        if scaler is not None:
            scaler.unscale_(optimizer)
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if all(bool(torch.isfinite(g).all()) for g in grads):
            optimizer.step()

    # ------------------------------------------------------------------------------------ validation

    def on_validation_epoch_start(self) -> None:
        self.model.update(force=True)
        self._coded_this_epoch = 0

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        size = batch.shape[0]
        limit = self.hparams.val_coding_images
        count = size if limit < 0 else max(0, min(size, limit - self._coded_this_epoch))
        updated: set[str] = set()
        for level in self._levels():
            updated |= self._validate(batch, level, count)
        self._coded_this_epoch += count
        if count:
            self.log("val/decode_max_abs_diff", self.val_max_diff, on_step=False, on_epoch=True, batch_size=size)
        for key in sorted(updated):
            self.log(f"val/{self._val_names[key]}", self.val_means[key], on_step=False, on_epoch=True,
                     batch_size=size)

    def _validate(self, batch: torch.Tensor, level: int | None, count: int) -> set[str]:
        """Update the validation means at one rate level; returns the keys updated."""
        size = batch.shape[0]
        padded, unpadding = entropy.pad(batch, self.model)  # a no-op for crops of the architecture's multiple
        output = dict(self(padded, level))
        output["x_hat"] = entropy.unpad(output["x_hat"], unpadding)
        losses = self._losses(output, batch, level)
        x_hat = output["x_hat"].clamp(0.0, 1.0)
        values: dict[str, torch.Tensor] = {k: v for k, v in losses.items() if _metric_key(k) in self.val_means}
        values["psnr"] = psnr(x_hat, batch).mean()
        levels = ms_ssim_levels(*batch.shape[-2:])
        if levels:
            values["ms_ssim"] = ms_ssim(x_hat, batch, levels=levels)
            values["ms_ssim_scales"] = torch.tensor(float(levels))
        if self.val_scorer is not None:
            values["ml_clipsim_metric"] = self.val_scorer(x_hat, batch).mean()
        if level is not None:
            values[f"level{level}/psnr"] = values["psnr"]
            values[f"level{level}/bpp_loss"] = losses["bpp_loss"]
        for name, value in values.items():
            self.val_means[_metric_key(name)].update(value.detach().float(), size)
        updated = {_metric_key(name) for name in values}
        if self._real_coding(batch, output, level, count):
            updated |= {"bpp_real", "bpp_est"}
        return updated

    def _real_coding(self, batch: torch.Tensor, output: Mapping[str, Any], level: int | None, count: int) -> bool:
        """Entropy-code the batch's first ``count`` images (at ``level``); True if any were coded."""
        if count <= 0:
            return False
        images = batch[:count]
        height, width = images.shape[-2:]
        coded = entropy.encode(self.model, images, level=level)
        forward = output["x_hat"][:count].clamp(0.0, 1.0)
        for i, item in enumerate(coded):
            decoded = entropy.decode(self.model, item)
            self.val_max_diff.update((decoded - forward[i:i + 1]).abs().max())
            self.val_means["bpp_real"].update(torch.tensor(item.bpp))
        likelihoods = {k: v[:count] for k, v in output["likelihoods"].items()}  # of the padded images
        self.val_means["bpp_est"].update(bpp_from_likelihoods(likelihoods, count * height * width).detach(), count)
        return True

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or self.hparams.lr_scheduler != "plateau" or self.trainer.state.fn != "fit":
            return
        if self.val_means["loss"].update_count == 0:
            return
        self.lr_schedulers().step(self.val_means["loss"].compute())

    # ------------------------------------------------------------------------------------ checkpoints

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """Resize the entropy coders' table buffers to the saved ones first (CompressAI's own loader does this)."""
        _resize_entropy_buffers(self.model, state_dict, "model.")
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def _resize_entropy_buffers(model: nn.Module, state_dict: Mapping[str, Any], prefix: str) -> None:
    for name, module in model.named_modules():
        if isinstance(module, EntropyBottleneck):
            buffers = ["_quantized_cdf", "_offset", "_cdf_length"]
        elif isinstance(module, GaussianConditional):
            buffers = ["_quantized_cdf", "_offset", "_cdf_length", "scale_table"]
        else:
            continue
        full = f"{prefix}{name}"
        if any(f"{full}.{b}" in state_dict for b in buffers):
            update_registered_buffers(module, full, buffers, dict(state_dict))
