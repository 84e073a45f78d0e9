"""The rate-task study: do codecs trained or tuned with ML-CLIPSim keep more of what machines need per bit?

    python benchmarks/rate_task.py --images ../shared/data/images \\
        [--photos benchmarks/results/heldout_photos.txt] [--codecs-dir benchmarks/results/codecs/small] \\
        [--learned mse=GLOB --learned mix=GLOB] [--out outputs/rate_task] [--report benchmarks/results/rate_task.md] \\
        [--size 512] [--processes 1] [--threads 1] [--limit N] [--import-rows benchmarks/results/rate_task]

Runs ``mlclipsim rate-task`` (resumable: re-running computes only what is missing) with

- the learned codecs: ``mse``, ``mix``, ``mse-ra-miqa`` and ``ra-miqa`` = the families
  ``<codecs-dir>/bmshj2018-factorized_<name>_small_*.pth`` (plain CompressAI state dicts, one per lambda;
  a family without a file is left out; ``--learned NAME=GLOB`` replaces them);
- JPEG, WebP, AVIF, JPEG XL at ``--qualities``; WebP and AVIF under ML-CLIPSim rate control
  (``webp@mlclipsim``, ``avif@mlclipsim``) at ``--targets``;
- the task models ``--task-models`` (default: centernet, nanodet, selfie, efficientnet-lite0) and the
  ML-CLIPSim encoder ``--backbone`` (default MobileNetV2, the encoder of the mix codecs' training
  term; the command refuses an encoder that is also a task model);
- anchors mse, jpeg, webp, avif: every codec's BD-rate against each;

``--import-rows DIR`` first seeds ``--out`` with the rows of a finished run (the committed
``benchmarks/results/rate_task/``), so that adding a family computes only its rows.

Then it writes the report (``--report``) from the CSVs: the issue's targets (met, missed, or not
computable, with the overlap), all BD-rates, the mean curves, the plots, per-photo BD-rates where a
target is missed, the photos, encoder and task models, and wall times of the study and each stage.
The plots and CSVs are copied next to the report (``<report stem>/``).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HELDOUT = REPO / "benchmarks/results/heldout_photos.txt"
DEFAULT_TASK_MODELS = ("centernet", "nanodet", "selfie", "efficientnet-lite0")
DEFAULT_QUALITIES = "5,10,20,30,40,50,60,70,80,90"
DEFAULT_TARGETS = "0.85,0.9,0.94,0.97,0.99"
ANCHORS = ("mse", "jpeg", "webp", "avif")

# The targets: (test, anchor, task kind, BD-rate threshold in %).
TARGETS = (("mix", "mse", "detection", -20.0), ("mix", "mse", "classification", -20.0),
           ("mix", "mse", "segmentation", -15.0), ("webp@mlclipsim", "webp", "detection", -10.0))
# Comparisons the report lists first (every codec against every anchor is in the full tables).
HEADLINE = (("mix", "mse"), ("mix", "jpeg"), ("mix", "webp"), ("mse", "jpeg"), ("mse", "webp"),
            ("mse-ra-miqa", "mse"), ("mse-ra-miqa", "jpeg"), ("mse-ra-miqa", "webp"),
            ("webp@mlclipsim", "webp"), ("avif@mlclipsim", "avif"))
LEARNED = ("mse", "mix", "mse-ra-miqa", "ra-miqa")  # families bmshj2018-factorized_<name>_small_*.pth


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, required=True, help="folder of photos (../shared/data/images)")
    parser.add_argument("--photos", type=Path, default=HELDOUT,
                        help="list of photo file names none of the codecs was trained on")
    parser.add_argument("--codecs-dir", type=Path, default=REPO / "benchmarks/results/codecs/small")
    parser.add_argument("--learned", action="append", default=None, metavar="NAME=GLOB",
                        help="learned families (default: " + ", ".join(LEARNED) + " from --codecs-dir)")
    parser.add_argument("--import-rows", type=Path, default=None, metavar="RUN_DIR",
                        help="seed --out from a finished run's rows.csv + summary.json first")
    parser.add_argument("--out", type=Path, default=REPO / "outputs/rate_task")
    parser.add_argument("--report", type=Path, default=REPO / "benchmarks/results/rate_task.md")
    parser.add_argument("--task-models", nargs="+", default=list(DEFAULT_TASK_MODELS))
    parser.add_argument("--backbone", default="torchvision/mobilenet_v2")
    parser.add_argument("--qualities", default=DEFAULT_QUALITIES, help="points of JPEG, WebP, AVIF, JPEG XL")
    parser.add_argument("--targets", default=DEFAULT_TARGETS, help="ML-CLIPSim targets of the rate-controlled codecs")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--limit", type=int, default=None, help="at most this many photos (a trial run)")
    return parser.parse_args(argv)


def study_command(args: argparse.Namespace) -> list[str]:
    learned = args.learned or [f"{name}={args.codecs_dir}/bmshj2018-factorized_{name}_small_*.pth" for name in LEARNED
                               if any(args.codecs_dir.glob(f"bmshj2018-factorized_{name}_small_*.pth"))]
    names = [text.partition("=")[0] for text in learned]
    codecs = names + [f"{c}:{args.qualities}" for c in ("jpeg", "webp", "avif", "jxl")] + [
        f"webp@mlclipsim:{args.targets}", f"avif@mlclipsim:{args.targets}"]
    anchors = [a for a in ANCHORS if a in names or a in ("jpeg", "webp", "avif")]
    command = ["rate-task", "--images", str(args.images), "--out", str(args.out), "--codec", *codecs,
               "--task-model", *args.task_models, "--anchor", *anchors, "--backbone", args.backbone,
               "--size", str(args.size), "--processes", str(args.processes), "--threads", str(args.threads),
               "--accelerator", args.accelerator]
    for text in learned:
        command += ["--learned", text]
    if args.photos is not None:
        command += ["--photos", str(args.photos)]
    if args.limit is not None:
        command += ["--limit", str(args.limit)]
    if args.import_rows is not None:
        command += ["--import-rows", str(args.import_rows)]
    return command


# ----------------------------------------------------------------------------- report


def _read_csv(path: Path) -> list[dict]:
    import csv

    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _number(text: str | None) -> float | None:
    if text in (None, ""):
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _cell(entry: dict | None) -> str:
    if entry is None:
        return "not run"
    value, overlap = _number(entry["bd_rate"]), _number(entry["overlap"])
    if value is None:
        reason = entry["reason"]
        if reason.startswith("too few points"):
            reason = f"too few points ({entry['n_anchor']}, {entry['n_test']})"
        return reason + (f" (overlap {overlap:.2f})" if overlap is not None and not math.isnan(overlap) else "")
    return f"{value:+.1f} % (overlap {overlap:.2f})"


def _task_models_of(task_models: list[str]) -> dict[str, str]:
    from mlclipsim.machine.registry import task_of

    return {m: task_of(m) for m in task_models}


def _rows_by(bd: list[dict], test: str, anchor: str, score: str) -> dict | None:
    return next((b for b in bd if b["test"] == test and b["anchor"] == anchor and b["score"] == score), None)


def write_report(args: argparse.Namespace, command: list[str], summary: dict, wall_seconds: float,
                 imported: dict | None = None) -> str:
    from mlclipsim.rate_task.curves import per_photo_bd_rates
    from mlclipsim.rate_task.rows import read_rows_csv

    out, report = args.out, args.report
    assets = report.with_suffix("")
    assets.mkdir(parents=True, exist_ok=True)
    for name in ("rate_task.png", "rate_task.svg", "curves.csv", "bd_rate.csv", "rows.csv", "summary.json",
                 "rate_monotonicity.csv"):
        if (out / name).is_file():
            shutil.copyfile(out / name, assets / name)
    bd = _read_csv(out / "bd_rate.csv") if (out / "bd_rate.csv").is_file() else []
    tasks = _task_models_of(args.task_models)
    config = summary["config"]
    link = assets.name
    lines = ["# Rate-task study: codecs scored by the machines that consume their images", "",
             f"Made by `python benchmarks/rate_task.py {' '.join(shlex.quote(a) for a in sys.argv[1:])}`, i.e. "
             f"`mlclipsim {' '.join(shlex.quote(c) for c in command)}`, on {summary['machine']} "
             f"({platform.python_implementation()} {platform.python_version()}).", ""]
    lines += ["## Setup", "",
              f"- **Photos** ({len(summary['photos'])}): "
              + (f"the list `{args.photos}`" + (
                  " (benchmarks/codec_training/train_small.sh excludes this same list from the learned codecs' training "
                  "data)" if args.photos.resolve() == HELDOUT.resolve() else
                  " (not the held-out list that train_small.sh excludes: check the codecs were not trained on them)")
                 if args.photos else "every photo of the folder (no held-out list: the codecs may have been "
                 "trained on them)")
              + f", shrunk to at most {config['size']} px on the long side: "
              + ", ".join(f"`{p}`" for p in summary["photos"]) + ".",
              f"- **ML-CLIPSim encoder**: `{config['backbone']}` (rate control and the ML-CLIPSim column). It is not "
              "one of the task models (the command refuses that).",
              "- **Task models** (consistency = agreement of the prediction on the decoded image with the prediction "
              "on the original; no ground truth): " + ", ".join(f"`{m}` ({t})" for m, t in tasks.items()) + ".",
              "- **Codecs and operating points**: " + "; ".join(f"`{c}`: {', '.join(p)}"
                                                                  for c, p in summary["codecs"].items()) + ".",
              "- **Learned families**: " + "; ".join(f"`{f['name']}` = {', '.join(f['checkpoints'])}"
                                                     for f in config["learned"]) + ".",
              f"- **BD-rate method**: {summary['bd_method']}", ""]
    if summary["failures"] or summary["incomplete"]:
        lines += [f"Skipped photos: unreadable {sorted(summary['failures'])}, incomplete {summary['incomplete']}.", ""]

    lines += ["## Targets of the issue", "",
              "| comparison | score | BD-rate | target | verdict |", "| --- | --- | --- | --- | --- |"]
    missed = []
    for test, anchor, kind, threshold in TARGETS:
        models = [m for m, t in tasks.items() if t == kind]
        if not models:
            lines.append(f"| {test} vs {anchor} | {kind}: no task model | - | <= {threshold:.0f} % | not run |")
        for model in models:
            entry = _rows_by(bd, test, anchor, f"consistency/{model}")
            value = None if entry is None else _number(entry["bd_rate"])
            verdict = "not computable" if value is None else ("met" if value <= threshold else "missed")
            if verdict != "met":
                missed.append((test, anchor, model))
            lines.append(f"| {test} vs {anchor} | {model} ({kind}) | {_cell(entry)} | <= {threshold:.0f} % "
                         f"| {verdict} |")
    lines.append("")

    scores = [f"consistency/{m}" for m in args.task_models] + ["psnr", "ms_ssim", "ml_clipsim"]
    lines += ["## Headline BD-rates", "", "Negative: fewer bits at equal score. PSNR shows the price in pixel "
              "fidelity. 'too few points (a, t)': the anchor / test curve kept a / t points after the Pareto filter; "
              "BD needs >= 2 on each.", "", "| test vs anchor | " + " | ".join(s.split("/")[-1] for s in scores) + " |",
              "| --- |" + " --- |" * len(scores)]
    for test, anchor in HEADLINE:
        if _rows_by(bd, test, anchor, scores[0]) is None:
            continue
        lines.append(f"| {test} vs {anchor} | " + " | ".join(_cell(_rows_by(bd, test, anchor, s)) for s in scores)
                     + " |")
    lines += ["", "## All BD-rates", ""]
    lines += [(out / "bd_rate.md").read_text() if (out / "bd_rate.md").is_file() else "(none)", ""]
    lines += ["## Mean curves", "", f"![rate-task curves]({link}/rate_task.png) ([SVG]({link}/rate_task.svg))", "",
              (out / "curves.md").read_text() if (out / "curves.md").is_file() else "(none)", ""]
    lines += ["## Rate monotonicity per codec family", "",
              (out / "rate_monotonicity.md").read_text() if (out / "rate_monotonicity.md").is_file() else "(none)", ""]

    if missed and (out / "rows.csv").is_file():
        rows = read_rows_csv(out / "rows.csv")
        lines += ["## Where targets are missed: per-photo BD-rates", "",
                  "BD-rate on each photo's own curves (same method). Per-photo task scores are often steps, so many "
                  "photos have too few Pareto points or no overlap; those are counted, not guessed.", ""]
        for test, anchor, model in missed:
            entries = per_photo_bd_rates(rows, test, anchor, f"consistency/{model}")
            values = sorted((e["bd_rate"], e["photo"]) for e in entries if e["bd_rate"] is not None)
            lines.append(f"- **{test} vs {anchor}, {model}**: computable on {len(values)} of {len(entries)} photos"
                         + (f"; median {values[len(values) // 2][0]:+.1f} %; worst: "
                            + ", ".join(f"`{p}` {v:+.1f} %" for v, p in values[-3:][::-1])
                            + "; best: " + ", ".join(f"`{p}` {v:+.1f} %" for v, p in values[:3]) if values else "")
                         + ".")
        lines.append("")

    stages = summary["stage_seconds_all_rows"]
    lines += ["## Wall times", "",
              f"- This run of the study: {wall_seconds:.0f} s ({summary['photos_processed_this_run']} photo(s) "
              f"computed, the rest read from the cache {config['out']}).",
              "- Every run so far (`history.jsonl`): " + ", ".join(f"{h['seconds_this_run']:.0f} s "
                                                                   f"({h['photos_processed_this_run']} photos)"
                                                                   for h in _history(out)) + ".",
              *([f"- {imported.get('rows', '?')} rows were imported first from `{args.import_rows}` "
                 "(`--import-rows`): earlier runs computed them; their seconds of work are in the sums below."]
                if imported is not None else []),
              "- Summed over all rows (seconds of work, whichever run did it): "
              + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items()) + ".", ""]
    text = "\n".join(lines).replace(f"{REPO}/", "") + "\n"  # paths relative to the repository root: same on every clone
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(text)
    return text


def _history(out: Path) -> list[dict]:
    path = out / "history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def main(argv: list[str] | None = None) -> int:
    from mlclipsim.cli import main as mlclipsim

    args = parse_args(argv)
    command = study_command(args)
    imported = None
    if args.import_rows is not None and (args.import_rows / "summary.json").is_file():
        imported = json.loads((args.import_rows / "summary.json").read_text())  # read before the report replaces it
    print("mlclipsim " + " ".join(shlex.quote(c) for c in command), flush=True)
    start = time.perf_counter()
    status = mlclipsim(command)
    wall = time.perf_counter() - start
    if status != 0:
        print(f"the study command failed (exit status {status}); no report written", file=sys.stderr)
        return status
    summary = json.loads((args.out / "summary.json").read_text())
    write_report(args, command, summary, wall, imported)
    print(f"wrote {args.report} ({wall:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
