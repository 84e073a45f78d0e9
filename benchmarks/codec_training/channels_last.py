"""The codec loss's ML-CLIPSim term (MobileNetV2 at the crops' size) with and without channels-last.

One training-like call per turn: reference features without gradients, the term on a conv's output,
backward; the two layouts take turns in one process on one thread; medians after the first round.

    OMP_NUM_THREADS=1 python benchmarks/codec_training/channels_last.py --rounds 6 \
        --out benchmarks/results/codecs/channels_last.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from mlclipsim.training.distortion_terms import build_term


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    terms = {layout: build_term({"name": "ml-clipsim", "backbone": "torchvision/mobilenet_v2", "resize": "native",
                                 "backbone_options": {"channels_last": layout == "channels_last"}})
             for layout in ("default", "channels_last")}
    conv = torch.nn.Conv2d(3, 3, 3, padding=1)
    images = torch.rand(args.batch, 3, args.crop, args.crop)
    times: dict[str, list[float]] = {layout: [] for layout in terms}
    for _ in range(args.rounds):
        for layout, term in terms.items():
            start = time.perf_counter()
            term(conv(images), term.prepare(images)).backward()
            times[layout].append(time.perf_counter() - start)
    median = {layout: statistics.median(values[1:]) for layout, values in times.items()}
    report = {"command": "OMP_NUM_THREADS=1 python benchmarks/codec_training/channels_last.py "
                         f"--batch {args.batch} --crop {args.crop} --rounds {args.rounds}",
              "median_s": median, "channels_last_over_default": median["channels_last"] / median["default"]}
    text = json.dumps(report, indent=1)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
