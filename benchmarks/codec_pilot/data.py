"""Training photos decoded once into memory, and random crop + flip batches with no loader wait.

Every training photo (the shared photos minus the held-out list) is decoded once to a uint8 CHW tensor
and kept in RAM (~190 MB for the 60 training photos at native size plus a half-size copy). A batch is
drawn in the training loop itself: pick photos, pick offsets, slice, flip, stack, convert to float.
For a batch of 8 crops of 256 px this takes ~1 ms, against a training step of seconds on one CPU
thread, so no DataLoader (and no worker process competing for the second core) is needed.

A half-size copy of each photo (antialiased) is kept too: it removes part of the source JPEG noise
and matches the scale of the "whole photo shrunk to <= 768 px" evaluation. Crops are sampled from the
native and the half-size copies in proportion to the number of crop positions each offers.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGES = Path(os.environ.get("CODEC_PILOT_IMAGES", "/work/shared/data/images"))
HELDOUT = Path(__file__).resolve().parents[1] / "results" / "heldout_photos.txt"
EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def read_list(path: Path = HELDOUT) -> list[str]:
    return [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def all_photos(images: Path = IMAGES) -> list[str]:
    return sorted(f for f in os.listdir(images) if Path(f).suffix.lower() in EXTS)


def split(images: Path = IMAGES, n_val: int = 0, seed: int = 0) -> tuple[list[str], list[str], list[str]]:
    """(train, val, heldout) file names. ``val`` is drawn (seeded) from the non-held-out photos and is
    used by the pilot for model selection, so that the held-out photos are never used to choose anything."""
    held = read_list()
    photos = all_photos(images)
    missing = [h for h in held if h not in photos]
    if missing:
        raise FileNotFoundError(f"held-out photos not found in {images}: {missing}")
    rest = [p for p in photos if p not in set(held)]
    rng = np.random.default_rng(seed)
    val = sorted(rng.choice(rest, size=n_val, replace=False).tolist()) if n_val else []
    train = [p for p in rest if p not in set(val)]
    return train, val, held


def load_rgb(path: Path) -> Image.Image:
    return Image.open(path).convert("RGB")


def to_chw_uint8(im: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


class CropSampler:
    """Random ``crop`` x ``crop`` crops (+ horizontal flip) from photos held in memory as uint8 tensors."""

    def __init__(self, names: list[str], crop: int, images: Path = IMAGES, half_scale: bool = True,
                 seed: int = 0):
        self.crop = crop
        self.imgs: list[torch.Tensor] = []
        for n in names:
            im = load_rgb(images / n)
            self.imgs.append(to_chw_uint8(im))
            if half_scale:
                w, h = im.size
                self.imgs.append(to_chw_uint8(im.resize((max(1, w // 2), max(1, h // 2)), Image.LANCZOS)))
        # photos smaller than the crop are padded by reflection once, here
        for i, t in enumerate(self.imgs):
            _, h, w = t.shape
            if h < crop or w < crop:
                ph, pw = max(0, crop - h), max(0, crop - w)
                t = torch.nn.functional.pad(t[None].float(), (0, pw, 0, ph), mode="replicate")[0].to(torch.uint8)
                self.imgs[i] = t
        positions = np.array([(t.shape[1] - crop + 1) * (t.shape[2] - crop + 1) for t in self.imgs], dtype=np.float64)
        self.p = positions / positions.sum()
        self.gen = np.random.default_rng(seed)
        self.nbytes = sum(t.numel() for t in self.imgs)

    # RNG state is a plain dict: it goes into the training checkpoint so that resuming is exact
    def state_dict(self) -> dict:
        return {"bit_generator": self.gen.bit_generator.state}

    def load_state_dict(self, s: dict) -> None:
        self.gen.bit_generator.state = s["bit_generator"]

    def batch(self, n: int, channels_last: bool = False) -> torch.Tensor:
        c = self.crop
        idx = self.gen.choice(len(self.imgs), size=n, p=self.p)
        out = torch.empty((n, 3, c, c), dtype=torch.uint8)
        for j, i in enumerate(idx):
            t = self.imgs[i]
            y = int(self.gen.integers(0, t.shape[1] - c + 1))
            x = int(self.gen.integers(0, t.shape[2] - c + 1))
            patch = t[:, y:y + c, x:x + c]
            if self.gen.random() < 0.5:
                patch = patch.flip(2)
            out[j] = patch
        x = out.float().div_(255.0)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


if __name__ == "__main__":
    import time

    tr, va, he = split(n_val=8)
    print(f"train {len(tr)} val {len(va)} heldout {len(he)}; val: {va}")
    t0 = time.perf_counter()
    s = CropSampler(tr, 256)
    print(f"decoded {len(tr)} photos (+ half-size copies) in {time.perf_counter() - t0:.1f} s, {s.nbytes / 1e6:.0f} MB")
    t0 = time.perf_counter()
    for _ in range(100):
        b = s.batch(8)
    print(f"batch 8x256: {(time.perf_counter() - t0) * 10:.2f} ms", b.shape, b.dtype)
