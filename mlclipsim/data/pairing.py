"""Pairing reference and distorted images given as two files or two folders."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mlclipsim.core.images import list_images


@dataclass(frozen=True)
class ImagePair:
    name: str
    reference: Path
    distorted: Path


@dataclass
class Pairing:
    """Pairs found, and the names that could not be paired (with the reason)."""

    pairs: list[ImagePair]
    unpaired: list[tuple[str, str]]


def pair_images(reference: str | os.PathLike, distorted: str | os.PathLike) -> Pairing:
    """Pair two files, or two folders by file name.

    Folders pair by the file name without its suffix, so ``ref/cat.png`` pairs with ``dist/cat.jpg``
    (codecs change suffixes); two files with one stem in one folder make that stem ambiguous.
    """
    reference, distorted = Path(reference), Path(distorted)
    if reference.is_dir() != distorted.is_dir():
        raise ValueError(f"REF and DIST must both be files or both be folders: {str(reference)!r}, {str(distorted)!r}.")
    if not reference.is_dir():
        return Pairing([ImagePair(distorted.name, reference, distorted)], [])
    refs, dists = _by_stem(list_images(reference)), _by_stem(list_images(distorted))
    pairs, unpaired = [], []
    for stem in sorted(set(refs) | set(dists)):
        ref_files, dist_files = refs.get(stem, []), dists.get(stem, [])
        if len(ref_files) > 1 or len(dist_files) > 1:
            names = [p.name for p in ref_files + dist_files]
            unpaired.append((stem, f"ambiguous: several files share the name {stem!r}: {names}"))
        elif not ref_files:
            unpaired.append((stem, f"no reference for {dist_files[0]} in {reference}"))
        elif not dist_files:
            unpaired.append((stem, f"no distorted image for {ref_files[0]} in {distorted}"))
        else:
            pairs.append(ImagePair(stem, ref_files[0], dist_files[0]))
    return Pairing(pairs, unpaired)


def _by_stem(paths: list[Path]) -> dict[str, list[Path]]:
    grouped: dict[str, list[Path]] = {}
    for path in paths:
        grouped.setdefault(path.stem, []).append(path)
    return grouped
