"""Which resize policy should ML-CLIPSim use? Compared on the VALIDATION photos only.

    python benchmarks/resize_policy.py --dataset outputs/dataset [--encoder torchvision/mobilenet_v2]
        [--split 0.6 0.1 0.3] [--seed 0] [--out benchmarks/results/resize_policy.md]

Scores the validation photos' images (the split of ``mlclipsim calibrate`` and of the headline
benchmark; test photos are not read, so the choice cannot leak into the headline numbers) with
ML-CLIPSim under each resize policy ("resize", "center_crop", "tile") and reports SRCC with the mean
MMOS and each task's MMOS, plus the time per image.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from mlclipsim.backbones.preprocessing import RESIZE_POLICIES
from mlclipsim.data.datamodules import MachineQualityDataModule, load_manifest
from mlclipsim.data.score_images import score_images
from mlclipsim.eval import srcc
from mlclipsim.metrics.functional.ml_clipsim import MLCLIPSimScorer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--encoder", default="torchvision/mobilenet_v2")
    parser.add_argument("--split", type=float, nargs=3, default=[0.6, 0.1, 0.3])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/resize_policy.md"))
    args = parser.parse_args()

    rows, columns = load_manifest(args.dataset)
    val_photos = set(MachineQualityDataModule(args.dataset, split=tuple(args.split), seed=args.seed).photos_of("val"))
    val_rows = [r for r in rows if r["photo"] in val_photos]
    targets = ["mmos"] + [c for c in columns if c.startswith("mmos/")]
    pairs = sorted({(r["distorted_path"], r["reference_path"]) for r in val_rows})
    table = {}
    for policy in RESIZE_POLICIES:
        scorer = MLCLIPSimScorer(args.encoder, resize=policy)
        start = time.perf_counter()
        values = score_images(args.dataset, f"resize_policy__{args.encoder.replace('/', '__')}__{policy}",
                              lambda d, r, s=scorer: s(d, s.reference_features(r).expand(len(d))), pairs)
        seconds = time.perf_counter() - start
        x = np.array([float(values[r["distorted_path"]]) for r in val_rows])
        table[policy] = ({t: srcc(x, [r[t] for r in val_rows]) for t in targets}, seconds / len(pairs))

    command = "python benchmarks/resize_policy.py " + " ".join(sys.argv[1:])
    lines = ["# ML-CLIPSim resize policy, validation photos", "", f"Command: `{command}`  ",
             f"Encoder: {args.encoder} (shipped weights); {len(val_photos)} validation photos, {len(val_rows)} images "
             "(never the test photos). Seconds per image include reading the PNGs; a cached re-run reports ~0.", "",
             "| policy | " + " | ".join(f"SRCC {t}" for t in targets) + " | s / image |",
             "| --- |" + " ---: |" * (len(targets) + 1)]
    for policy, (values, per_image) in table.items():
        lines.append(f"| {policy} | " + " | ".join(f"{values[t]:.3f}" for t in targets) + f" | {per_image:.3f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
