"""Compare two dataset manifests (e.g. a rebuilt dataset against the committed one): rows, and per column
how many values differ and by how much at most.

    python benchmarks/compare_manifests.py outputs/dataset/manifest.csv benchmarks/results/dataset/manifest.csv \\
        [--out benchmarks/results/dataset_rebuild.md]
"""

from __future__ import annotations

import argparse
import csv
import platform
import sys
from pathlib import Path


def compare(first: Path, second: Path) -> tuple[int, int, dict[str, tuple[int, float]]]:
    """(rows of first, rows of second, {column: (values that differ, largest numeric difference)})."""
    with first.open(newline="") as a, second.open(newline="") as b:
        rows_a, rows_b = list(csv.DictReader(a)), list(csv.DictReader(b))
    columns = [c for c in rows_a[0] if c in rows_b[0]] if rows_a and rows_b else []
    differences: dict[str, tuple[int, float]] = {}
    for x, y in zip(rows_a, rows_b):
        for column in columns:
            if x[column] == y[column]:
                continue
            try:
                gap = abs(float(x[column]) - float(y[column]))
            except ValueError:
                gap = float("inf")
            count, largest = differences.get(column, (0, 0.0))
            differences[column] = (count + 1, max(largest, gap))
    return len(rows_a), len(rows_b), differences


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="write the result as Markdown")
    args = parser.parse_args(argv)
    n_first, n_second, differences = compare(args.first, args.second)
    lines = ["# Manifest comparison", "",
             f"`python benchmarks/compare_manifests.py {' '.join(sys.argv[1:])}` on {platform.machine()}.", "",
             f"Rows: {n_first} in `{args.first}`, {n_second} in `{args.second}` (compared in order).", ""]
    if differences:
        lines += ["| column | values that differ | largest difference |", "| --- | ---: | ---: |"]
        lines += [f"| {c} | {n} | {g:.3g} |" for c, (n, g) in sorted(differences.items())]
    else:
        lines.append("Every value of every shared column is identical.")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
