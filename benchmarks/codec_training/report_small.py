"""Table of the small codecs trained by benchmarks/codec_training/train_small.sh (last validation of each run).

    python benchmarks/codec_training/report_small.py [--runs benchmarks/results/codecs/small]
        [--out benchmarks/results/codecs/small_codecs.md]

Reads every ``<recipe>_<lambda>.metrics.csv`` (Lightning's CSV log copied next to the exported
weights) and ``wall_times.txt``, and writes one row per run: the last validation's real bitstream
bpp (byte lengths), likelihood bpp, PSNR, MS-SSIM, ML-CLIPSim (MobileNetV2), the RA-MIQA term's raw
value where the recipe has one (1 - predicted quality on the validation crops), the largest
difference between the decoded image and the forward reconstruction, and the range of RA-MIQA's
predicted quality over the last 10 logged training steps (128-px training crops).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

COLUMNS = [("val/bpp_real", "bpp (bytes)"), ("val/bpp_loss", "bpp (likelihood)"), ("val/psnr", "PSNR"),
           ("val/ms_ssim", "MS-SSIM"), ("val/ml_clipsim_metric", "ML-CLIPSim"),
           ("val/ra-miqa", "1 - RA-MIQA (term)"), ("val/decode_max_abs_diff", "max abs(decoded - forward)")]


def last_validation(path: Path) -> dict[str, str]:
    with path.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("val/loss")]
    return rows[-1] if rows else {}


def training_quality(path: Path, last: int = 10) -> str:
    """Range of RA-MIQA's predicted quality (1 - train/ra-miqa) over the last ``last`` logged training
    steps (the 128-px training crops), or "-" for a recipe without the term."""
    with path.open(newline="") as handle:
        values = [1.0 - float(row["train/ra-miqa"]) for row in csv.DictReader(handle) if row.get("train/ra-miqa")]
    return f"{min(values[-last:]):.2f}-{max(values[-last:]):.2f}" if values else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("benchmarks/results/codecs/small"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/codecs/small_codecs.md"))
    args = parser.parse_args()
    times = {}
    if (args.runs / "wall_times.txt").is_file():
        for line in (args.runs / "wall_times.txt").read_text().splitlines():
            recipe, lmbda, steps, _, seconds, _ = line.split()
            times[(recipe, lmbda)] = (steps, seconds)
    steps_run = "/".join(sorted({steps for steps, _ in times.values()})) or "?"
    lines = ["# Small codecs (bmshj2018-factorized, N=64, M=96), trained on the shared photos", "",
             f"Trained by `STEPS={steps_run} bash benchmarks/codec_training/train_small.sh` (two runs side by side, one CPU "
             "thread each, this 2-core machine; the photos of `benchmarks/results/heldout_photos.txt` excluded); "
             "table by `python benchmarks/codec_training/report_small.py`. Values: the last validation (the recipes' "
             "validation photos, 256-px centre crops). The exported codecs (plain CompressAI state dicts) are "
             "`benchmarks/results/codecs/small/<recipe>_<lambda>.pth`.", "",
             "| recipe | lambda | steps | wall s | " + " | ".join(label for _, label in COLUMNS)
             + " | RA-MIQA quality, last 10 training logs |",
             "| --- | ---: | ---: | ---: |" + " ---: |" * (len(COLUMNS) + 1)]
    for path in sorted(args.runs.glob("*.metrics.csv")):
        recipe, _, lmbda = path.name[: -len(".metrics.csv")].rpartition("_")
        row = last_validation(path)
        steps, seconds = times.get((recipe, lmbda), ("?", "?"))
        cells = [f"{float(row[key]):.4f}" if row.get(key) else "-" for key, _ in COLUMNS]
        lines.append(f"| {recipe} | {lmbda} | {steps} | {seconds} | " + " | ".join(cells)
                     + f" | {training_quality(path)} |")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
