"""``mlclipsim calibrate``: fit ML-CLIPSim's layer weights for one backbone on a built dataset's pairs.

The photos are split exactly as :class:`~mlclipsim.data.datamodules.PreferencePairsDataModule`
splits them (same fractions and seed): weights are fitted on the PSNR-matched pairs of the train
photos, monitored on the validation photos, and the test photos are never read. Every layer of the
backbone (and the global embedding) is a candidate; :func:`mlclipsim.training.layer_weights_fit.fit_layer_weights`
prunes the ones that do not help. The result is a JSON record (weights, the command, the photos, the
pair counts, train/val 2AFC) that ships in ``mlclipsim/weights/ml_clipsim/`` and becomes the
backbone's default.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlclipsim.backbones import EMBEDDING
from mlclipsim.data.datamodules import PreferencePairsDataModule, load_pairs
from mlclipsim.data.score_images import dataset_image_pairs, score_images
from mlclipsim.metrics.functional.ml_clipsim import MLCLIPSimScorer
from mlclipsim.training.layer_weights_fit import fit_layer_weights


def all_layer_scorer(backbone: str, pretrained: str | None = None) -> MLCLIPSimScorer:
    """An ML-CLIPSim scorer over every layer of the backbone (uniform weights; components are what counts)."""
    probe = MLCLIPSimScorer(backbone, pretrained=pretrained, weights={EMBEDDING: 1.0})
    layers = probe.encoder.layer_names
    return MLCLIPSimScorer(probe.encoder, layers=layers)


def component_scores(root: Path, scorer: MLCLIPSimScorer, cache_name: str) -> dict[str, np.ndarray]:
    """Per-image components (L+1,) of every dataset image, cached under ``<root>/scores/``."""

    def components(distorted, reference):
        features = scorer.reference_features(reference)
        return scorer.components(distorted, features.expand(len(distorted)))

    return score_images(root, cache_name, components, dataset_image_pairs(root))


def calibrate_on_dataset(root: str | os.PathLike, backbone: str, out: str | os.PathLike | None = None,
                         pretrained: str | None = None, split: Sequence[float] = (0.6, 0.1, 0.3), seed: int = 0,
                         kind: str = "psnr_matched", max_epochs: int = 400, min_weight: float = 0.01) -> dict:
    """Fit and (optionally) write the calibration record; returns it."""
    root = Path(root)
    module = PreferencePairsDataModule(root, split=tuple(split), seed=seed)
    train_photos, val_photos = set(module.photos_of("train")), set(module.photos_of("val"))
    scorer = all_layer_scorer(backbone, pretrained)
    names = [*scorer.layers, EMBEDDING]
    cache_name = f"components__{backbone.replace('/', '__')}"
    components = component_scores(root, scorer, cache_name)
    rows, _ = load_pairs(root)

    def arrays(photos: set[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        chosen = [r for r in rows if r["kind"] == kind and r["photo"] in photos]
        a = np.stack([components[r["a_path"]] for r in chosen]) if chosen else np.zeros((0, len(names)))
        b = np.stack([components[r["b_path"]] for r in chosen]) if chosen else np.zeros((0, len(names)))
        return a, b, np.array([r["soft_label"] for r in chosen], dtype=np.float32)

    train, val = arrays(train_photos), arrays(val_photos)
    result = fit_layer_weights(names, train, val, max_epochs=max_epochs, min_weight=min_weight, seed=seed)
    record = {
        "backbone": backbone,
        "pretrained": pretrained,
        "weights": result.weights,
        "temperature": result.temperature,
        "command": "mlclipsim " + " ".join(sys.argv[1:]) if sys.argv and "mlclipsim" in sys.argv[0] else None,
        "fitted_on": {"dataset": str(root), "pair_kind": kind, "split": list(split), "seed": seed,
                      "train_photos": len(train_photos), "val_photos": len(val_photos),
                      "train_pairs": int(len(train[2])), "val_pairs": int(len(val[2]))},
        "train_2afc_soft": result.train_2afc, "val_2afc_soft": result.val_2afc,
        "train_bt_loss": result.train_loss, "val_bt_loss": result.val_loss,
    }
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(record, indent=2) + "\n")
    return record
