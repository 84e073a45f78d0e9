"""Region-weighted ML-CLIPSim on a built dataset, stored so that any background floor alpha is a formula.

For a compared layer with mapped per-token cosines c_t and a region map m_t in [0,1] on the reference's
tokens, the library's weighted mean with w_t = alpha + (1 - alpha) m_t is::

    S(alpha) = (alpha * mean(c) + (1 - alpha) * mean(c m)) / (alpha + (1 - alpha) * mean(m))

(the normalisation of the weights to mean 1 cancels). So one encoder pass per image stores, per layer,
``[mean c, mean c*m, mean m]`` for each region source, and a sweep over alpha costs nothing.

ROI masks: the union of the labelling task models' own predictions on the reference (boxes of the
detectors, masks of the segmenters), rebuilt with :func:`mlclipsim.data.roi.roi_mask` from the
predictions the data engine cached (``predictions/<model>/<reference_id>/reference.npz``), exactly
as the engine drew its ROI- and background-dominated distortions. Privileged information: it is
what a user passing task-model boxes would have.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from mlclipsim.data.roi import roi_mask
from mlclipsim.data.score_images import score_images
from mlclipsim.machine.predictions import load_predictions
from mlclipsim.metrics.functional.ml_clipsim import MLCLIPSimScorer, augmented_cosine, get_cosine_map
from mlclipsim.metrics.functional.region_weights import RegionWeighting, prefix_tokens

SOURCES = ("mask", "saliency")
STATS = 3  # mean c, mean c*m, mean m


def reference_roi_mask(root: str | os.PathLike, reference_id: str, roi_models: Sequence[str], height: int,
                       width: int) -> np.ndarray:
    """The data engine's ROI of one reference, (H, W) float32 of 0 and 1, from its cached predictions."""
    predictions = []
    for model in roi_models:
        path = Path(root) / "predictions" / model / reference_id / "reference.npz"
        if not path.is_file():
            raise FileNotFoundError(f"No cached prediction of {model!r} on reference {reference_id!r} at {path}; "
                                    "rebuild the dataset with `mlclipsim build-dataset` (it caches them).")
        predictions.append(load_predictions(path)[0])
    return roi_mask(predictions, height, width)


def region_components(root: str | os.PathLike, scorer: MLCLIPSimScorer, roi_models: Sequence[str],
                      pairs: Iterable[tuple[str, str]], cache_name: str) -> dict[str, np.ndarray]:
    """Per image: ``[S stats (L, 3) for "mask", the same for "saliency", embedding term]`` flattened to (6L+1,).

    ``scorer``: an unweighted scorer whose layers are the ones to weight. ``pairs``: (distorted path,
    reference path) relative to ``root``. Cached in ``<root>/scores/<cache_name>.npz``.
    """
    if prefix_tokens(scorer.encoder):
        raise ValueError("region_components stores spatial-token statistics; encoders with a class token are not "
                         "supported here (use include_class_token=False).")
    root = Path(root)
    mapping = get_cosine_map(scorer.cosine_map)
    sources = {name: RegionWeighting.create(name, 1.0) for name in SOURCES}
    by_reference: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for distorted, reference in pairs:
        by_reference[reference].append((distorted, reference))
    out: dict[str, np.ndarray] = {}
    for reference_path, chunk in sorted(by_reference.items()):
        reference_id = Path(reference_path).stem
        state: dict = {}

        def components(distorted: torch.Tensor, reference: torch.Tensor, state: dict = state,
                       reference_id: str = reference_id) -> torch.Tensor:
            if "maps" not in state:  # once per reference
                size = tuple(reference.shape[-2:])
                mask = torch.from_numpy(reference_roi_mask(root, reference_id, roi_models, *size))[None, None]
                features = scorer.reference_features(reference).features
                state["features"] = features
                state["maps"] = {name: source.token_maps(scorer.encoder, features, scorer.layers, size,
                                                         mask if source.needs_mask else None)
                                 for name, source in sources.items()}
            features = state["features"]
            pred = scorer.encoder(distorted.to(scorer.layer_weights.dtype), scorer.layers)
            columns = []
            for name in SOURCES:
                for layer in scorer.layers:
                    cosines = mapping(augmented_cosine(pred.tokens[layer], features.tokens[layer]))  # (B, T)
                    region = state["maps"][name][layer].to(cosines)  # (1, T)
                    columns += [cosines.mean(-1), (cosines * region).mean(-1), region.mean(-1).expand(len(cosines))]
            columns.append(mapping(augmented_cosine(pred.embedding, features.embedding.expand_as(pred.embedding))))
            return torch.stack(columns, dim=-1)

        out.update(score_images(root, cache_name, components, chunk, progress=False))
    return out


def region_weighted_scores(components: dict[str, np.ndarray], source: str, layer_count: int,
                           layer_weights: np.ndarray, alpha: float) -> dict[str, float]:
    """ML-CLIPSim with region weighting of ``source`` at floor ``alpha`` from :func:`region_components`.

    ``layer_weights``: (L+1,) the scorer's normalised weights, the last one the embedding's.
    """
    offset = SOURCES.index(source) * layer_count * STATS
    scores = {}
    for path, values in components.items():
        stats = values[offset:offset + layer_count * STATS].reshape(layer_count, STATS)
        mean_c, mean_cm, mean_m = stats[:, 0], stats[:, 1], stats[:, 2]
        layers = (alpha * mean_c + (1 - alpha) * mean_cm) / (alpha + (1 - alpha) * mean_m)
        scores[path] = float(np.append(layers, values[-1]) @ layer_weights)
    return scores
