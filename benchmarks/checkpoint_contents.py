"""What a checkpoint of a LightningModule holding each metric contains: tensors and bytes of its state_dict.

    MLCLIPSIM_OFFLINE=1 python benchmarks/checkpoint_contents.py [--out benchmarks/results/checkpoint_contents.md]

Run with ``PYTHONPATH`` pointing at an older checkout to measure that version (the report names the
package path it imported).
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

import lightning as L

import mlclipsim
from mlclipsim import RAMIQA, MLCLIPSim, RAMIQALoss

CASES = {
    "MLCLIPSim(backbone='torchvision/mobilenet_v2')": lambda: MLCLIPSim(backbone="torchvision/mobilenet_v2"),
    "MLCLIPSim(backbone='ViT-B-32', pretrained='random')": lambda: MLCLIPSim(backbone="ViT-B-32", pretrained="random"),
    "RAMIQA()": lambda: RAMIQA(),
    "RAMIQALoss()": lambda: RAMIQALoss(),
}


class Holder(L.LightningModule):
    def __init__(self, metric) -> None:
        super().__init__()
        self.metric = metric


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    lines = [f"Package: `{Path(mlclipsim.__file__).parent}`", "", "| module holds | tensors | bytes |", "|---|---|---|"]
    for name, make in CASES.items():
        state = Holder(make()).state_dict()
        size = sum(v.numel() * v.element_size() for v in state.values())
        lines.append(f"| `{name}` | {len(state)} | {size:,} |")
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MLCLIPSIM_OFFLINE", "1")
    raise SystemExit(main())
