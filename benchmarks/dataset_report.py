"""Tables of a built machine-preference dataset: what machines make of each distortion.

    python benchmarks/dataset_report.py --dataset outputs/dataset [--out benchmarks/results/dataset.md]
        [--copy-manifests benchmarks/results/dataset]

Reads manifest.csv, pairs.csv, build_info.json and pairs_info.json of a dataset folder and writes
a Markdown report: size and wall times, MMOS by distortion type and severity (uniform mode;
overall and per task), where agreement does not fall with severity, region modes, and the label
statistics of the preference pairs. With --copy-manifests the two CSVs are copied next to the
report (they are small; the images are not).
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np

from mlclipsim.data.manifest import read_rows, score_columns


def mean_table(rows: list[dict], column: str, types: list[str]) -> dict[str, list[float]]:
    """type -> mean of ``column`` at uniform severity 1..5."""
    cells: dict[tuple[str, int], list[float]] = defaultdict(list)
    for row in rows:
        if row["mode"] == "uniform":
            cells[(row["distortion"], row["roi_severity"])].append(row[column])
    return {t: [float(np.mean(cells[(t, s)])) if cells[(t, s)] else float("nan") for s in range(1, 6)] for t in types}


def markdown_table(header: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([" --- "] + [" ---: "] * (len(header) - 1)) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in body]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/dataset.md"))
    parser.add_argument("--copy-manifests", type=Path, default=None)
    args = parser.parse_args()

    rows = read_rows(args.dataset / "manifest.csv")
    build = json.loads((args.dataset / "build_info.json").read_text())
    pairs_path = args.dataset / "pairs.csv"
    pairs = read_rows(pairs_path) if pairs_path.is_file() else []
    pairs_info = json.loads((args.dataset / "pairs_info.json").read_text()) if pairs else None
    types = list(build["config"]["distortions"])
    tasks = [c.split("/", 1)[1] for c in score_columns(rows[0], "mmos")]
    models = [c.split("/", 1)[1] for c in score_columns(rows[0], "consistency")]

    lines = ["# The machine-preference dataset built offline", ""]
    lines += [
        "Built from every photo in `../shared/data/images` with:", "",
        "```bash",
        "mlclipsim build-dataset --images ../shared/data/images --out outputs/dataset --processes 2 --threads 1 \\",
        "    [--distortions contrast pixelate jpeg motion_blur defocus_blur glass_blur fog snow darkness \\",
        "     gaussian_noise jpeg_quality webp_quality]   # a second, resumed run added the two codec types",
        "mlclipsim build-pairs --dataset outputs/dataset --processes 2 --threads 1",
        f"python benchmarks/dataset_report.py --dataset outputs/dataset --copy-manifests {args.copy_manifests}",
        "```", "",
        f"Task models (labels): {', '.join(models)} (tasks: {', '.join(tasks)}). ROI from: "
        f"{', '.join(build['config']['roi_models'])}. Reference size: long side {build['config']['size']} px, "
        f"{build['config']['crops_per_image']} crop(s) per photo. Distortions: {len(types)} types x 5 uniform "
        f"severities, plus {build['config']['region_pairs']} ROI-dominated severity pair(s) per type and their "
        "mirrored background-dominated pairs (sampled; `mlclipsim/data/plan.py` says why and how).", "",
        f"- references: {build['references']} from {build['photos']} photos; distorted images: {build['rows']}; "
        f"unreadable photos skipped: {build['failures'] or 'none'}",
    ]
    history_path = args.dataset / "build_history.jsonl"
    runs = [json.loads(line) for line in history_path.read_text().splitlines()] if history_path.is_file() else [build]
    for run in runs:
        lines.append(f"- build run: {run['photos_processed_this_run']} photos with {len(run['config']['distortions'])} "
                     f"distortion types, {run['seconds_this_run']:.0f} s ({run['machine']}, "
                     f"{run['config']['processes']} processes; a resumed run computes only what is new)")
    modes = defaultdict(int)
    for row in rows:
        modes[row["mode"]] += 1
    lines.append(f"- images per region mode: {dict(modes)}; references with a usable ROI: "
                 f"{len({r['reference_id'] for r in rows if r['mode'] != 'uniform'})}")
    if pairs_info:
        lines.append(f"- pairs: {pairs_info['pairs']}; wall time {pairs_info['seconds_this_run']:.0f} s")
    lines.append("")

    lines += ["## MMOS by distortion type and severity (uniform mode, mean over references)", ""]
    for column, title in [("mmos", "mean over tasks")] + [(f"mmos/{t}", t) for t in tasks] + [("psnr", "PSNR (dB)")]:
        table = mean_table(rows, column, types)
        lines += [f"### {title}", ""]
        lines += markdown_table(["type", "s1", "s2", "s3", "s4", "s5"],
                                [[t] + [f"{v:.3f}" if column != "psnr" else f"{v:.1f}" for v in table[t]]
                                 for t in types])
        lines.append("")

    lines += ["## Where machine agreement does not fall with severity", ""]
    notes = []
    for column in ["mmos"] + [f"mmos/{t}" for t in tasks]:
        for t, values in mean_table(rows, column, types).items():
            rises = [f"s{s}->s{s + 1} (+{values[s] - values[s - 1]:.3f})" for s in range(1, 5)
                     if values[s] > values[s - 1] + 1e-9]
            if rises:
                notes.append(f"- {column}, {t}: rises at {', '.join(rises)}")
    lines += notes or ["- none: every type's mean MMOS falls at every step, overall and per task."]
    lines.append("")

    per_reference_falls = defaultdict(lambda: [0, 0])
    by_ref_type = defaultdict(dict)
    for row in rows:
        if row["mode"] == "uniform":
            by_ref_type[(row["reference_id"], row["distortion"])][row["roi_severity"]] = row["mmos"]
    for (_reference, t), scores in by_ref_type.items():
        if len(scores) == 5:
            per_reference_falls[t][0] += scores[5] < scores[1]
            per_reference_falls[t][1] += 1
    lines += ["Per reference: share of references whose MMOS at severity 5 is below severity 1:", ""]
    lines += markdown_table(["type", "share"], [[t, f"{v[0]}/{v[1]}"] for t, v in sorted(per_reference_falls.items())])
    lines.append("")

    region_rows = [r for r in rows if r["mode"] != "uniform"]
    if region_rows:
        lines += ["## Region modes (references with a usable ROI)", "",
                  "Mean MMOS of the same severity pairs applied ROI-dominated (ROI worse) and background-dominated "
                  "(background worse):", ""]
        body = []
        for column in ["mmos"] + [f"mmos/{t}" for t in tasks] + ["psnr"]:
            roi = np.mean([r[column] for r in region_rows if r["mode"] == "roi"])
            bg = np.mean([r[column] for r in region_rows if r["mode"] == "background"])
            body.append([column, f"{roi:.3f}", f"{bg:.3f}"])
        lines += markdown_table(["score", "ROI-dominated", "background-dominated"], body)
        lines.append("")

    if pairs:
        lines += ["## Preference pairs", ""]
        body = []
        for kind in sorted({p["kind"] for p in pairs}):
            subset = [p for p in pairs if p["kind"] == kind]
            soft = np.array([p["soft_label"] for p in subset])
            psnr_gap = np.abs(np.array([p["a_psnr"] - p["b_psnr"] for p in subset]))
            body.append([kind, str(len(subset)), f"{np.mean(soft > 0.5):.2f}", f"{np.mean(soft < 0.5):.2f}",
                         f"{np.mean(soft == 0.5):.2f}", f"{np.median(psnr_gap):.2f}"])
        lines += markdown_table(["kind", "pairs", "A preferred", "B preferred", "tie", "median abs PSNR gap (dB)"],
                                body)
        lines += ["", "For `roi_vs_background`, A is the background-dominated image (the cleaner ROI)."
                  " Ties are pairs on which the task models split evenly or all agree exactly.", ""]

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    if args.copy_manifests:
        args.copy_manifests.mkdir(parents=True, exist_ok=True)
        for name in ("manifest.csv", "pairs.csv", "build_info.json", "pairs_info.json", "build_history.jsonl"):
            if (args.dataset / name).is_file():
                shutil.copy(args.dataset / name, args.copy_manifests / name)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
