"""ML-CLIPSim on a folder of photos against Gaussian-noise copies of rising strength.

    python benchmarks/noise_sweep.py --images ../shared/data/images [--backbone torchvision/mobilenet_v2]
        [--levels 0 0.02 0.05 0.1 0.2 0.4] [--max-side 512] [--out outputs/noise_sweep.csv]

Every photo (shrunk so that its long side is at most --max-side) is scored against copies with
additive Gaussian noise of each standard deviation in --levels (pixel values in [0,1], clamped;
the noise is seeded per photo, so runs are deterministic). Prints the mean, min and max score per
level and how many photos score strictly lower at every step up, and writes one CSV row per photo
and level. Unreadable files are reported and skipped. Runs offline with the default backbone.
A progress bar goes to stderr (on a terminal, or with MLCLIPSIM_PROGRESS=1); stdout keeps the table.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
import zlib
from pathlib import Path

import torch
import torch.nn.functional as F

from mlclipsim.core.progress import progress
from mlclipsim.data import ImageReadError, list_images, read_image
from mlclipsim.metrics import MLCLIPSimScorer


def shrink(image: torch.Tensor, max_side: int) -> torch.Tensor:
    """(3,H,W) -> (3,h,w) with max(h,w) <= max_side, aspect kept."""
    height, width = image.shape[-2:]
    scale = max_side / max(height, width)
    if scale >= 1:
        return image
    size = (max(32, round(height * scale)), max(32, round(width * scale)))
    return F.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True, type=Path)
    parser.add_argument("--backbone", default="torchvision/mobilenet_v2")
    parser.add_argument("--pretrained", default=None)
    parser.add_argument("--levels", type=float, nargs="+", default=[0.0, 0.02, 0.05, 0.1, 0.2, 0.4])
    parser.add_argument("--max-side", type=int, default=512)
    parser.add_argument("--out", type=Path, default=Path("outputs/noise_sweep.csv"))
    args = parser.parse_args()

    start = time.perf_counter()
    scorer = MLCLIPSimScorer(args.backbone, pretrained=args.pretrained)
    rows, failures = [], []
    for path in progress(list_images(args.images), desc="noise sweep", unit="photo"):
        try:
            reference = shrink(read_image(path), args.max_side)[None]
        except ImageReadError as err:
            failures.append(str(err))
            continue
        generator = torch.Generator().manual_seed(zlib.crc32(path.name.encode()))
        noise = torch.randn(reference.shape, generator=generator)
        distorted = torch.cat([(reference + level * noise).clamp(0, 1) for level in args.levels])
        with torch.no_grad():
            scores = scorer(distorted, reference.expand_as(distorted)).tolist()
        rows += [{"image": path.name, "noise_std": level, "ml_clipsim": score}
                 for level, score in zip(args.levels, scores)]

    if not rows:
        print(f"error: no readable images in {args.images}", file=sys.stderr)
        return 2
    by_image: dict[str, list[float]] = {}
    for row in rows:
        by_image.setdefault(row["image"], []).append(row["ml_clipsim"])
    monotone = sum(all(a > b for a, b in zip(s, s[1:])) for s in by_image.values())
    print(f"ML-CLIPSim ({args.backbone}) vs Gaussian noise, {len(by_image)} photos from {args.images}")
    print(f"{'noise std':>9}  {'mean':>6}  {'min':>6}  {'max':>6}")
    for index, level in enumerate(args.levels):
        values = [scores[index] for scores in by_image.values()]
        print(f"{level:>9.3f}  {statistics.mean(values):6.4f}  {min(values):6.4f}  {max(values):6.4f}")
    print(f"strictly falling at every step on {monotone} of {len(by_image)} photos; "
          f"{time.perf_counter() - start:.1f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["image", "noise_std", "ml_clipsim"])
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {args.out}")
    for failure in failures:
        print(f"skipped: {failure}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
