"""Tables of a built machine-preference dataset: what machines make of each distortion.

    python benchmarks/dataset_report.py --dataset outputs/dataset [--out benchmarks/results/dataset.md]
        [--copy-manifests benchmarks/results/dataset]

Reads manifest.csv, pairs.csv, build_info.json and pairs_info.json of a dataset folder and writes
a Markdown report: size and wall times, MMOS by distortion type and severity (uniform mode;
overall and per task), where agreement does not fall with severity, region modes, the label
statistics of the preference pairs, and the reliability of the labels of every label set the
manifest carries (discrete ``mmos``..., continuous ``mmos_soft``...; :mod:`mlclipsim.data.manifest`)
side by side: SRCC between disjoint voters of each task and between two draws of the stochastic
types, with the Spearman-Brown reliability of the mean label and 95% CIs from resampling photos, and
the (type, label) whose mean does not fall from severity 1 to 5. With --copy-manifests the two CSVs
are copied next to the report (they are small; the images are not).
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np

from mlclipsim.data.manifest import (
    label_column,
    label_sets_of,
    parse_label_column,
    read_header,
    read_rows,
    score_columns,
)
from mlclipsim.eval.reliability import mean_voter_reliability, paired_draws, split_reliability
from mlclipsim.machine.registry import task_of


def mean_table(rows: list[dict], column: str, types: list[str]) -> dict[str, list[float]]:
    """type -> mean of ``column`` at uniform severity 1..5 (NaN labels left out; NaN where none is left)."""
    cells: dict[tuple[str, int], list[float]] = defaultdict(list)
    for row in rows:
        if row["mode"] == "uniform" and np.isfinite(row[column]):
            cells[(row["distortion"], row["roi_severity"])].append(row[column])
    return {t: [float(np.mean(cells[(t, s)])) if cells[(t, s)] else float("nan") for s in range(1, 6)] for t in types}


def markdown_table(header: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([" --- "] + [" ---: "] * (len(header) - 1)) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in body]


# ----------------------------------------------------------------------------- label reliability

DRAW_KEY = ("reference_id", "distortion", "mode", "roi_severity", "bg_severity")
"""What makes two manifest rows the same image but for the draw."""


def voter_tasks(columns: list[str], labels: str) -> dict[str, list[str]]:
    """task -> the task models with a per-model column in the label set ``labels`` (file order)."""
    prefix = label_column(labels, model="")
    out: dict[str, list[str]] = defaultdict(list)
    for column in columns:
        if column.startswith(prefix):
            model = column[len(prefix):]
            out[task_of(model)].append(model)
    return dict(out)


def person_references(rows: list[dict], columns: list[str], person_models: list[str]) -> set[str]:
    """References where the build's person models voted (:class:`~mlclipsim.data.build_dataset.BuildConfig`:
    where a COCO detector finds a person on the reference), read back from the labels: the discrete
    task label of the reference's rows is the mean over all of the task's models rather than over the
    others alone. Without person models every reference counts."""
    tasks = voter_tasks(columns, "discrete")
    involved = {t: ms for t, ms in tasks.items() if set(ms) & set(person_models)}
    if not person_models or not involved:
        return {r["reference_id"] for r in rows}
    by_reference: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_reference[row["reference_id"]].append(row)
    voted = set()
    for reference, subset in by_reference.items():
        fits = []
        for task, models in involved.items():
            others = [m for m in models if m not in person_models]
            label = np.array([r[label_column("discrete", task=task)] for r in subset], np.float64)
            every = np.mean([[r[label_column("discrete", model=m)] for m in models] for r in subset], axis=1)
            rest = np.mean([[r[label_column("discrete", model=m)] for m in others] for r in subset], axis=1)
            fits.append(np.abs(label - every).max() <= np.abs(label - rest).max())
        if all(fits):
            voted.add(reference)
    return voted


def voter_reliability(rows: list[dict], columns: list[str], labels: str, task: str, models: list[str],
                      person_models: list[str], people: set[str], n_resamples: int) -> dict:
    """SRCC between a task's voters and the Spearman-Brown reliability of their mean label, bootstrap over photos.

    Two voters: their SRCC (:func:`~mlclipsim.eval.reliability.split_reliability`); three or more: the
    mean pairwise SRCC (:func:`~mlclipsim.eval.reliability.mean_voter_reliability`). Rows: where every
    voter's score is defined (NaN rows counted in ``dropped``) and, for a task with person models, on
    the references where they voted. Returns ``{"images", "photos", "dropped", "result"}`` (result None
    when fewer than 2 photos or 3 images are left).
    """
    if any(m in person_models for m in models):
        rows = [r for r in rows if r["reference_id"] in people]
    keep = [r for r in rows if all(np.isfinite(r[label_column(labels, model=m)]) for m in models)]
    entry = {"images": len(keep), "photos": len({r["photo"] for r in keep}), "dropped": len(rows) - len(keep),
             "result": None}
    if entry["photos"] < 2 or entry["images"] < 3:
        return entry
    per_model = {m: np.array([r[label_column(labels, model=m)] for r in keep], np.float64) for m in models}
    groups = [r["photo"] for r in keep]
    if len(models) == 2:
        entry["result"] = split_reliability(per_model[models[0]], per_model[models[1]], groups,
                                            n_resamples=n_resamples)
    else:
        entry["result"] = mean_voter_reliability(per_model, groups, n_resamples=n_resamples)
    return entry


def draw_reliability(rows: list[dict], column: str, n_resamples: int) -> dict:
    """SRCC of ``column`` between draw 0 and draw 1 of the same image (same reference, type, mode and
    severities) and the Spearman-Brown reliability of the mean of two draws, bootstrap over photos;
    pairs where either draw's label is NaN are dropped (counted). Same dict as :func:`voter_reliability`."""
    keys = [tuple(r[k] for k in DRAW_KEY) for r in rows]
    photo_of = {tuple(r[k] for k in DRAW_KEY): r["photo"] for r in rows}
    a, b, paired = paired_draws(keys, [int(r.get("draw") or 0) for r in rows], [r[column] for r in rows])
    defined = np.isfinite(a) & np.isfinite(b)
    a, b = a[defined], b[defined]
    groups = [photo_of[k] for k, d in zip(paired, defined) if d]
    entry = {"images": int(defined.sum()), "photos": len(set(groups)), "dropped": int((~defined).sum()),
             "result": None}
    if entry["photos"] >= 2 and entry["images"] >= 3:
        entry["result"] = split_reliability(a, b, groups, n_resamples=n_resamples)
    return entry


def reliability_table(rows: list[dict], columns: list[str], person_models: list[str] = (),
                      n_resamples: int = 1000) -> tuple[list[str], dict]:
    """The "Label reliability" table: per task (voters) and per label column (draws), every label set of
    the manifest side by side. Returns (Markdown lines, {label set: {row name: entry}})."""
    sets = label_sets_of(columns)
    people = person_references(rows, columns, list(person_models))
    results: dict[str, dict[str, dict]] = {labels: {} for labels in sets}
    names: list[tuple[str, str, str]] = []  # (row key, task, comparison)
    tasks = voter_tasks(columns, sets[0]) if sets else {}
    for task, models in tasks.items():  # the models every label set has a column for
        models = [m for m in models if all(label_column(labels, model=m) in columns for labels in sets)]
        if len(models) < 2:
            continue
        where = (f"; references where {', '.join(m for m in models if m in person_models)} voted ({len(people)})"
                 if set(models) & set(person_models) else "")
        key = f"voters/{task}"
        names.append((key, task, f"voters: {' ~ '.join(models)}" + (" (mean pairwise)" if len(models) > 2 else "")
                      + where))
        for labels in sets:
            results[labels][key] = voter_reliability(rows, columns, labels, task, models, list(person_models),
                                                     people, n_resamples)
    if "draw" in columns and len({int(r.get("draw") or 0) for r in rows}) > 1:
        for task in [*tasks, None]:
            key = f"draws/{task or 'overall'}"
            names.append((key, task or "overall (mean over tasks)", "draws: 0 ~ 1"))
            for labels in sets:
                results[labels][key] = draw_reliability(rows, label_column(labels, task=task), n_resamples)
    header = ["task", "comparison"]
    for labels in sets:
        header += [f"{labels}: images (NaN dropped)", f"{labels}: SRCC [95% CI]",
                   f"{labels}: reliability of the mean (SB) [95% CI]"]
    body = []
    for key, task, text in names:
        cells = [task, text]
        for labels in sets:
            entry = results[labels][key]
            result = entry["result"]
            cells.append(f"{entry['images']} ({entry['dropped']})")
            if result is None:
                cells += ["too few photos", "-"]
            else:
                cells += [_ci(result.srcc), f"{_ci(result.corrected)} (k={result.factor:g})"]
        body.append(cells)
    lines = markdown_table(header, body)
    return lines, results


def _ci(ci) -> str:
    return f"{ci.estimate:.3f} [{ci.low:.2f}, {ci.high:.2f}]"


def severity_exceptions(rows: list[dict], columns: list[str], types: list[str]) -> tuple[list[str], dict]:
    """Per label set, the (type, label) whose mean (uniform mode, over references and draws; NaN labels
    left out) does not fall at every step from severity 1 to 5: the steps where it rises, and whether
    severity 5 is not even below severity 1. Returns (Markdown lines, {label set: {(type, label): text}})."""
    sets = label_sets_of(columns)
    tasks = sorted({parse_label_column(c)[2] for c in columns
                    if parse_label_column(c) is not None and parse_label_column(c)[1] == "task"})
    found: dict[str, dict[tuple[str, str], str]] = {labels: {} for labels in sets}
    checked = dict.fromkeys(sets, 0)
    for labels in sets:
        for task in [None, *tasks]:
            column = label_column(labels, task=task)
            if column not in columns:
                continue
            for t, values in mean_table(rows, column, types).items():
                checked[labels] += 1
                rises = [f"s{s}->s{s + 1} (+{values[s] - values[s - 1]:.3f})" for s in range(1, 5)
                         if values[s] > values[s - 1] + 1e-9]
                if values[4] >= values[0]:
                    rises.append("**s5 >= s1**")
                if rises or not np.all(np.isfinite(values)):
                    found[labels][(t, task or "overall")] = ", ".join(rises) or "undefined at some severity"
    keys = sorted({k for f in found.values() for k in f})
    lines = [f"{len(found[labels])} of {checked[labels]} (type, label) pairs for {labels}" for labels in sets]
    lines = ["Exceptions: " + "; ".join(lines) + ".", ""]
    if keys:
        lines += markdown_table(["type", "label", *sets], [[t, task, *(found[labels].get((t, task), "falls")
                                                                      for labels in sets)] for t, task in keys])
    return lines, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/dataset.md"))
    parser.add_argument("--copy-manifests", type=Path, default=None)
    parser.add_argument("--n-resamples", type=int, default=1000, help="bootstrap resamples of the reliability CIs")
    args = parser.parse_args()

    rows = read_rows(args.dataset / "manifest.csv")
    columns = read_header(args.dataset / "manifest.csv")
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

    sets = label_sets_of(columns)
    person_models = list(build["config"].get("person_models") or [])
    lines += ["## Label reliability", "",
              f"Label sets: {', '.join(sets)} ({', '.join(label_column(s) for s in sets)}; "
              "`mlclipsim/data/manifest.py`). Voters: SRCC between the task's models (two: their SRCC; three: "
              "the mean pairwise SRCC) on the images where every voter's label is defined, and the Spearman-Brown "
              "reliability of the mean of k voters; draws: SRCC of the task's label between two independent draws "
              "of the same stochastic type, severity and reference, and the reliability of the mean of two draws. "
              f"95% CIs: {args.n_resamples} bootstrap resamples of photos. Images (NaN dropped): the images "
              "(draw pairs) compared, and how many were left out because a label was NaN (a continuous label "
              "whose task does not apply, e.g. detection where a detector finds nothing on the clean reference)."
              + (f" Person models ({', '.join(person_models)}) vote on references with a person only; their task "
                 "is compared there." if person_models else ""), ""]
    table, _ = reliability_table(rows, columns, person_models, args.n_resamples)
    lines += table
    lines += ["", "### Labels fall with severity for every type?", "",
              "Per label set, the (type, label) whose mean (uniform mode, over references and draws) does not fall "
              "at every step from severity 1 to 5 (the rising steps; bold: severity 5 not below severity 1).", ""]
    lines += severity_exceptions(rows, columns, types)[0]
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
