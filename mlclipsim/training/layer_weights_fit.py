"""Calibrate ML-CLIPSim's layer weights on machine-preference pairs (Bradley-Terry / 2AFC loss).

Input: for each pair, the per-layer similarity components of image A and of image B against their
reference (``MLCLIPSimScorer.components``: (P, L+1) each, columns = layers then the embedding) and
the soft label (share of task models preferring A). Model::

    P(A preferred) = sigmoid(k * (w . c_A - w . c_B)),   w = softmax(theta) (non-negative, sums to 1)

fitted by binary cross-entropy against the soft label with Adam, full batch, under Lightning.
Weights under ``min_weight`` are then set to 0 and the rest renormalised, so layers that do not
help are not computed at all. Works on arrays: which pairs and which photos is the caller's choice
(split by reference photo; see the ``mlclipsim calibrate`` command).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


@dataclass
class CalibrationResult:
    """Fitted weights keyed by term name (layers and ``"embedding"``), pruned and normalised."""

    weights: dict[str, float]
    temperature: float
    train_loss: float
    train_2afc: float
    val_loss: float | None
    val_2afc: float | None


class BradleyTerryWeights(L.LightningModule):
    """Softmax-parametrised non-negative weights and a temperature, trained with a 2AFC loss."""

    def __init__(self, num_terms: int, lr: float = 0.05, init_temperature: float = 20.0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.logits = nn.Parameter(torch.zeros(num_terms))
        self.log_temperature = nn.Parameter(torch.tensor(math.log(init_temperature)))

    def weights(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=0)

    def forward(self, components_a: torch.Tensor, components_b: torch.Tensor) -> torch.Tensor:
        """Logit of P(A preferred), (P,)."""
        return (components_a - components_b) @ self.weights() * self.log_temperature.exp()

    def _step(self, batch: Sequence[torch.Tensor], stage: str) -> torch.Tensor:
        components_a, components_b, soft = batch
        logits = self(components_a, components_b)
        loss = F.binary_cross_entropy_with_logits(logits, soft)
        self.log(f"{stage}_loss", loss, prog_bar=True)
        self.log(f"{stage}_2afc", two_afc_agreement(logits, soft))
        return loss

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def two_afc_agreement(logits: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """Mean of p*s + (1-p)*(1-s), p = 1 if the score prefers A, 0 if B, 1/2 on a tie."""
    choice = (logits > 0).float() + 0.5 * (logits == 0).float()
    return (choice * soft + (1 - choice) * (1 - soft)).mean()


def _loader(components_a: np.ndarray, components_b: np.ndarray, soft: np.ndarray) -> DataLoader:
    tensors = [torch.as_tensor(np.asarray(x), dtype=torch.float32) for x in (components_a, components_b, soft)]
    return DataLoader(TensorDataset(*tensors), batch_size=len(tensors[0]), shuffle=False)


def fit_layer_weights(
    names: Sequence[str],
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    max_epochs: int = 400,
    lr: float = 0.05,
    min_weight: float = 0.01,
    seed: int = 0,
) -> CalibrationResult:
    """Fit the weights of the terms ``names`` on (components_a, components_b, soft_label) arrays.

    Args:
        names: the term names, in the column order of the component arrays.
        train, val: (P, len(names)), (P, len(names)), (P,) arrays; val is only monitored.
        max_epochs: full-batch Adam steps.
        min_weight: fitted weights below this are pruned to 0 before renormalising.
    """
    components_a = np.asarray(train[0])
    if components_a.ndim != 2 or components_a.shape[1] != len(names):
        raise ValueError(f"train components must be (pairs, {len(names)}), got {components_a.shape}")
    if len(components_a) < 2:
        raise ValueError("Need at least 2 training pairs to calibrate.")
    L.seed_everything(seed, verbose=False)
    model = BradleyTerryWeights(len(names), lr=lr)
    trainer = L.Trainer(max_epochs=max_epochs, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        check_val_every_n_epoch=max(1, max_epochs // 10))
    val_loader = _loader(*val) if val is not None and len(val[0]) else None
    trainer.fit(model, _loader(*train), val_loader)
    fitted = model.weights().detach().numpy()
    pruned = np.where(fitted >= min_weight, fitted, 0.0)
    if pruned.sum() <= 0:
        pruned = fitted
    pruned = pruned / pruned.sum()
    weights = {name: float(w) for name, w in zip(names, pruned) if w > 0}

    def evaluate(data: tuple[np.ndarray, np.ndarray, np.ndarray] | None) -> tuple[float | None, float | None]:
        if data is None or not len(data[0]):
            return None, None
        a, b, soft = (torch.as_tensor(np.asarray(x), dtype=torch.float32) for x in data)
        logits = (a - b) @ torch.as_tensor(pruned, dtype=torch.float32) * model.log_temperature.exp().detach()
        return float(F.binary_cross_entropy_with_logits(logits, soft)), float(two_afc_agreement(logits, soft))

    train_loss, train_2afc = evaluate(train)
    val_loss, val_2afc = evaluate(val)
    temperature = float(model.log_temperature.detach().exp())
    return CalibrationResult(weights, temperature, train_loss, train_2afc, val_loss, val_2afc)
