"""Score the images of a built dataset with any full-reference scorer, cached on disk.

A scorer here is ``fn(distorted, reference) -> (B,) or (B, K)`` with ``distorted`` a batch
(B,3,H,W) of versions of one reference (1,3,H,W), all in [0,1]. Values are cached per scorer name
in ``<dataset>/scores/<name>.npz`` (image path -> value), so re-running scores only new images.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mlclipsim.core.images import read_image
from mlclipsim.data.manifest import read_rows
from mlclipsim.metrics.baselines import BaselineUnavailable, create_baseline

PairScorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def dataset_image_pairs(root: str | os.PathLike) -> list[tuple[str, str]]:
    """Every (distorted path, reference path) of the manifest and of pairs.csv, relative to ``root``."""
    root = Path(root)
    pairs = {(r["distorted_path"], r["reference_path"]) for r in read_rows(root / "manifest.csv")}
    if (root / "pairs.csv").is_file():
        for row in read_rows(root / "pairs.csv"):
            pairs.add((row["a_path"], row["reference_path"]))
            pairs.add((row["b_path"], row["reference_path"]))
    return sorted(pairs)


def score_images(root: str | os.PathLike, name: str, scorer: PairScorer, pairs: Iterable[tuple[str, str]],
                 batch_size: int = 16, progress: bool = True, checkpoint_every: int = 10) -> dict[str, np.ndarray]:
    """Scores of every distorted image in ``pairs`` (cached in ``<root>/scores/<name>.npz``, saved every
    ``checkpoint_every`` references, so a killed run resumes)."""
    root = Path(root)
    cache_path = root / "scores" / f"{name}.npz"
    cache: dict[str, np.ndarray] = {}
    if cache_path.is_file():
        with np.load(cache_path) as data:
            cache = dict(zip(data["paths"].tolist(), data["values"]))
    by_reference: dict[str, list[str]] = defaultdict(list)
    for distorted, reference in pairs:
        if distorted not in cache:
            by_reference[reference].append(distorted)
    for done, (reference_path, distorted_paths) in enumerate(
            tqdm(sorted(by_reference.items()), desc=f"scoring {name}", disable=not progress or not by_reference), 1):
        reference = read_image(root / reference_path)[None]
        for start in range(0, len(distorted_paths), batch_size):
            chunk = distorted_paths[start:start + batch_size]
            batch = torch.stack([read_image(root / p) for p in chunk])
            with torch.no_grad():
                values = scorer(batch, reference).detach().cpu().numpy()
            cache.update(zip(chunk, values))
        if done % checkpoint_every == 0 or done == len(by_reference):
            _save(cache_path, cache)
    return cache


def score_baselines(root: str | os.PathLike, names: Iterable[str], pairs: Iterable[tuple[str, str]],
                    ) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Score ``pairs`` with each named baseline (``psnr``, ``ssim``, ...), cached like :func:`score_images`.

    Returns ``({NAME: {distorted path: score}}, notes)``: a baseline whose weights are not available is
    left out, with a note saying why.
    """
    pairs = list(pairs)
    scores: dict[str, dict[str, float]] = {}
    notes: list[str] = []
    for name in names:
        try:
            scorer = create_baseline(name)
        except BaselineUnavailable as err:
            notes.append(f"{name.upper()}: not run: {err}.")
            continue
        values = score_images(root, name, lambda d, r, s=scorer: s(d, r.expand_as(d)), pairs)
        scores[name.upper()] = {k: float(v) for k, v in values.items()}
    return scores, notes


def _save(path: Path, cache: dict[str, np.ndarray]) -> None:
    """Write the cache atomically (a killed run keeps the previous checkpoint)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    paths = sorted(cache)
    temporary = path.with_name(path.stem + ".tmp.npz")
    np.savez(temporary, paths=np.array(paths), values=np.stack([cache[p] for p in paths]))
    os.replace(temporary, path)
