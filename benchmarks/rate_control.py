"""Rate control on photos it has never seen (issue 19): equal-slope allocation vs one target per image.

    OMP_NUM_THREADS=1 nice python benchmarks/rate_control.py --images ../shared/data/images \\
        [--out outputs/rate_control] [--report benchmarks/results/rate_control.md] [--quality agreement|raw] \\
        [--size 512] [--resamples 2000] [--limit N]

Two ``mlclipsim rate-task`` runs (:func:`mlclipsim.rate_task.study.run_rate_task`, resumable, cached under
``--out``), with the task models centernet, nanodet, selfie, efficientnet-lite0 and the ML-CLIPSim encoder
``torchvision/mobilenet_v2`` (the default offline encoder; not a task model):

1. **Training photos** (every photo of ``--images`` not in benchmarks/results/heldout_photos.txt): WebP and
   AVIF at the fixed qualities 5..90 (``<out>/train``). From these rows only:
   - the diagnosis: how well the per-image ML-CLIPSim score ranks photos by task consistency at one
     quality, how per-image consistency-per-bit slopes vary, and what each allocation would have done on
     the anchors' ten qualities (BD-rates with 95 % CIs over the training photos);
   - the readable scale (``--quality agreement``): the monotone 5-parameter logistic score -> mean task
     consistency (:func:`mlclipsim.metrics.agreement_scale.fit_agreement_scale`), fitted on these rows
     (no scale ships yet);
   - each codec's slopes: 8 geometric values whose simulated mean bpp on the training photos spans the
     anchor's (from its quality 5 to its quality 90).
2. **Held-out photos** (the 26 of heldout_photos.txt; no choice above saw them), ``<out>/test``: the same
   codecs at the same qualities (anchors), ``BASE@mlclipsim`` at the targets 0.85..0.99 (one target per
   image, bisection) and ``BASE@mlclipsim-slope`` at the slopes (equal-slope allocation,
   :func:`mlclipsim.coding.rate_control.allocate_slope`, with the fitted scale as ``quality``).

The report gives BD-rates (task consistency, mean curves, Pareto filter, PCHIP: the rate-task study's
method) of each rate control against the same codec at fixed quality, with percentile 95 % CIs from
``--resamples`` bootstrap resamples of the photos (each photo's choice depends only on itself and the
operating point, so resampling photos is valid), codings per image, seconds per image, and the verdict on
the issue's target (<= -10 % with the CI excluding 0, WebP and AVIF, 3 of the 4 task models).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
HELDOUT = REPO / "benchmarks/results/heldout_photos.txt"
TASK_MODELS = ("centernet", "nanodet", "selfie", "efficientnet-lite0")
BACKBONE = "torchvision/mobilenet_v2"
CODECS = ("webp", "avif")
QUALITIES = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90)
TARGETS = (0.85, 0.9, 0.94, 0.97, 0.99)
N_SLOPES = 8
GOAL = -10.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, required=True, help="folder of photos (../shared/data/images)")
    parser.add_argument("--heldout", type=Path, default=HELDOUT, help="the test photos (never tuned on)")
    parser.add_argument("--out", type=Path, default=REPO / "outputs/rate_control")
    parser.add_argument("--report", type=Path, default=REPO / "benchmarks/results/rate_control.md")
    parser.add_argument("--quality", choices=["agreement", "raw"], default="agreement",
                        help="predicted quality of the slope allocation: the logistic fitted on the training "
                             "rows (default) or the raw score")
    parser.add_argument("--train-stride", type=int, default=1,
                        help="use every k-th training photo (sorted by name; 1: all) to save time")
    parser.add_argument("--only-slope", action="store_true",
                        help="compute only the slope-controlled rows of the held-out run and stop (no report): "
                             "lets a second process fill the cache while another computes the fixed-quality rows")
    parser.add_argument("--part", default="0/1", metavar="K/N",
                        help="with --only-slope: the held-out photos K, K+N, K+2N, ... (N processes fill the cache)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--limit", type=int, default=None, help="at most this many photos per run (a trial)")
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------- rows as matrices


def photo_list(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def matrices(rows: list[dict], codec: str, points: list[str]) -> dict:
    """Photos with every point of ``codec``: bpp (P,K), ML-CLIPSim (P,K), consistency per model (P,K), rows."""
    table: dict[str, dict[str, dict]] = {}
    for row in rows:
        if row["codec"] == codec:
            table.setdefault(row["photo"], {})[row["point"]] = row
    photos = sorted(p for p, by_point in table.items() if all(q in by_point for q in points))
    grid = [[table[p][q] for q in points] for p in photos]
    return {"photos": photos, "points": points, "rows": grid,
            "bpp": np.array([[r["bpp"] for r in line] for line in grid], float),
            "score": np.array([[r["ml_clipsim"] for r in line] for line in grid], float),
            **{m: np.array([[r[f"consistency/{m}"] for r in line] for line in grid], float) for m in TASK_MODELS}}


def bd(anchor: dict, test: dict, model: str, idx: np.ndarray | None = None) -> float:
    """BD-rate (%) of the test's mean curve against the anchor's over the photos ``idx`` (NaN if undefined)."""
    from mlclipsim.eval.bd_rate import bd_rate

    a_rate, a_q, t_rate, t_q = anchor["bpp"], anchor[model], test["bpp"], test[model]
    if idx is not None:
        a_rate, a_q, t_rate, t_q = a_rate[idx], a_q[idx], t_rate[idx], t_q[idx]
    result = bd_rate(a_rate.mean(0), a_q.mean(0), t_rate.mean(0), t_q.mean(0))
    return math.nan if result.value is None else float(result.value)


def bd_ci(anchor: dict, test: dict, model: str, resamples: int, seed: int = 0) -> dict:
    """BD-rate with a percentile 95 % CI over photos (both curves from the same resampled photos)."""
    from mlclipsim.eval.bootstrap import bootstrap_ci

    if anchor["photos"] != test["photos"]:
        raise ValueError("anchor and test must hold the same photos in the same order")
    ci = bootstrap_ci(lambda idx: bd(anchor, test, model, idx), None, np.arange(len(anchor["photos"])),
                      n_resamples=resamples, seed=seed)
    return ci.to_dict()


def simulated(anchor: dict, choice: np.ndarray) -> dict:
    """A test 'codec' made of per-photo choices among the anchor's points: choice (P, L) point indices."""
    idx = np.arange(len(anchor["photos"]))[:, None]
    return {"photos": anchor["photos"], "bpp": anchor["bpp"][idx, choice],
            **{m: anchor[m][idx, choice] for m in TASK_MODELS}}


def slope_choice(bpp: np.ndarray, quality: np.ndarray, slopes: np.ndarray) -> np.ndarray:
    """(P, L): per photo and slope the point maximising quality - slope * bpp (ties: fewer bits)."""
    objective = quality[:, None, :] - slopes[None, :, None] * bpp[:, None, :]
    best = objective.max(-1, keepdims=True)
    masked = np.where(objective >= best - 1e-12, bpp[:, None, :], np.inf)
    return masked.argmin(-1)


def target_choice(score: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(P, T): the lowest point reaching each target (the top when none does)."""
    reach = score[:, None, :] >= targets[None, :, None]
    first = reach.argmax(-1)
    return np.where(reach.any(-1), first, score.shape[1] - 1)


# ----------------------------------------------------------------------------- training: diagnosis and fits


def fit_scale(train: dict[str, dict]) -> object:
    """The readable scale fitted on the training rows of both codecs: score -> mean task consistency."""
    from mlclipsim.metrics import MLCLIPSimScorer
    from mlclipsim.metrics.agreement_scale import fit_agreement_scale

    scores = np.concatenate([train[c]["score"].ravel() for c in CODECS])
    agreement = np.concatenate([np.mean([train[c][m] for m in TASK_MODELS], 0).ravel() for c in CODECS])
    weights = MLCLIPSimScorer(BACKBONE).weights_by_name()
    return fit_agreement_scale(scores, agreement, weights)


def predicted(scale, score: np.ndarray) -> np.ndarray:
    import torch

    return score if scale is None else scale(torch.as_tensor(score, dtype=torch.float64)).numpy()


def choose_slopes(anchor: dict, quality: np.ndarray) -> list[float]:
    """N_SLOPES geometric slopes whose simulated mean bpp spans the anchor's lowest to highest point (or, where
    the allocation cannot reach an end, 2 % short of where it saturates)."""
    grid = np.geomspace(1e-4, 1e3, 281)
    mean_bpp = simulated(anchor, slope_choice(anchor["bpp"], quality, grid))["bpp"].mean(0)  # falls with the slope
    low_target = max(anchor["bpp"][:, 0].mean(), 1.02 * mean_bpp[-1])
    high_target = min(anchor["bpp"][:, -1].mean(), 0.98 * mean_bpp[0])
    high = grid[np.nonzero(mean_bpp <= low_target)[0][0]] if np.any(mean_bpp <= low_target) else grid[-1]
    low = grid[np.nonzero(mean_bpp >= high_target)[0][-1]] if np.any(mean_bpp >= high_target) else grid[0]
    return [float(f"{v:.4g}") for v in np.geomspace(low, high, N_SLOPES)]


def diagnose(train: dict[str, dict], scale, resamples: int) -> dict:
    from scipy.stats import spearmanr

    out: dict = {}
    for codec in CODECS:
        a = train[codec]
        mean = np.mean([a[m] for m in TASK_MODELS], 0)
        entry: dict = {"photos": len(a["photos"])}
        srcc = {}
        for name, values in [("mean", mean)] + [(m, a[m]) for m in TASK_MODELS]:
            per_q = [spearmanr(a["score"][:, j], values[:, j])[0] if np.ptp(values[:, j]) > 0 else math.nan
                     for j in range(len(QUALITIES))]
            srcc[name] = per_q
        entry["srcc_score_vs_consistency"] = srcc
        entry["srcc_bpp_vs_mean_consistency"] = [float(spearmanr(a["bpp"][:, j], mean[:, j])[0])
                                                 for j in range(len(QUALITIES))]
        entry["flat_photos"] = {m: int(np.sum(np.ptp(a[m], axis=1) == 0)) for m in TASK_MODELS}
        entry["falls"] = {m: float(np.mean(np.diff(a[m], axis=1) < 0)) for m in TASK_MODELS}
        entry["binary_rows"] = {m: float(np.mean((a[m] == 0) | (a[m] == 1))) for m in TASK_MODELS}
        j10, j50 = QUALITIES.index(10), QUALITIES.index(50)
        rise = a["bpp"][:, j50] - a["bpp"][:, j10]
        true_slope = (mean[:, j50] - mean[:, j10]) / rise
        score_slope = (a["score"][:, j50] - a["score"][:, j10]) / rise
        entry["slope_q10_q50"] = {"median": float(np.median(true_slope)),
                                  "quartiles": [float(v) for v in np.percentile(true_slope, [25, 75])],
                                  "negative": int(np.sum(true_slope < 0)),
                                  "srcc_score_slope_vs_true": float(spearmanr(score_slope, true_slope)[0])}
        quality = predicted(scale, a["score"])
        slopes = np.array(choose_slopes(a, quality))
        allocations = {
            "one target per image (raw score)": target_choice(a["score"], np.array(TARGETS)),
            "equal slope, raw score": slope_choice(a["bpp"], a["score"], np.array(choose_slopes(a, a["score"]))),
            "equal slope, fitted scale": slope_choice(a["bpp"], quality, slopes),
            "equal slope, true mean consistency (oracle, in-sample)": slope_choice(
                a["bpp"], mean, np.array(choose_slopes(a, mean))),
        }
        entry["simulated"] = {name: {m: bd_ci(a, simulated(a, choice), m, resamples) for m in TASK_MODELS}
                              for name, choice in allocations.items()}
        out[codec] = entry
    return out


# ----------------------------------------------------------------------------- runs


def run_study(images: Path, out: Path, photos: list[str], codecs: list[str], size: int, limit: int | None) -> dict:
    from mlclipsim.rate_task.study import RateTaskConfig, run_rate_task

    config = RateTaskConfig(images=images, out=out, codecs=tuple(codecs), task_models=TASK_MODELS, backbone=BACKBONE,
                            anchors=tuple(c for c in CODECS if c in [s.partition(":")[0] for s in codecs]),
                            photos=tuple(photos), size=size, limit=limit, processes=1, threads=1)
    return run_rate_task(config)


def check_slope_config(out: Path, config: dict) -> None:
    """Refuse to resume a test run made with another scale or other slopes (its cached rows would not apply)."""
    path = out / "slope_config.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved != config:
            raise ValueError(f"{str(out)!r} was made with another slope allocation ({saved}); this run has {config}. "
                             "Use another --out.")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=1))


def per_image_cost(m: dict) -> dict:
    """Codings made per photo (all points together), the longest path of one point, seconds per photo.

    Distinct codings of a photo: the union of the points its searches probed (``rc_probes``); rows written
    before that column existed carry ``rc_reused`` (codings taken from the memo, one process per photo)."""
    def made_for(line: list[dict]) -> int:
        if "rc_codings" not in line[0]:
            return len(line)  # fixed quality: one coding per point
        if all(r.get("rc_probes") for r in line):
            return len({p for r in line for p in r["rc_probes"].split(";")})
        return sum(int(r["rc_codings"]) - int(r["rc_reused"]) for r in line)

    made = [made_for(line) for line in m["rows"]]
    path = [max(int(r.get("rc_codings", 1)) for r in line) for line in m["rows"]]
    seconds = [sum(float(r["seconds/code"]) for r in line) for line in m["rows"]]
    return {"codings_per_photo_mean": float(np.mean(made)), "codings_per_photo_max": int(np.max(made)),
            "path_max": int(np.max(path)), "seconds_per_photo_mean": float(np.mean(seconds)),
            "seconds_per_photo_max": float(np.max(seconds))}


# ----------------------------------------------------------------------------- report


def _ci_cell(ci: dict) -> str:
    if not math.isfinite(ci["estimate"]):
        return "undefined"
    return f"{ci['estimate']:+.1f} [{ci['low']:+.1f}, {ci['high']:+.1f}]"


def _verdict(ci: dict) -> bool:
    return math.isfinite(ci["estimate"]) and ci["estimate"] <= GOAL and ci["high"] < 0


def write_report(args: argparse.Namespace, result: dict) -> None:
    lines = ["# Rate control on held-out photos: equal-slope allocation vs one ML-CLIPSim target per image", "",
             f"Made by `python benchmarks/rate_control.py {' '.join(shlex.quote(a) for a in sys.argv[1:])}` on "
             f"{result['machine']}, {result['wall_seconds']:.0f} s this run (cached rows are reused). Encoder "
             f"`{BACKBONE}` (ML-CLIPSim, default variant); task models {', '.join(TASK_MODELS)}; photos shrunk to "
             f"{args.size} px as `mlclipsim rate-task` does; codecs at their best settings (WebP method 6, AVIF "
             "speed 2).",
             "", "BD-rate: fewer bits (negative) at equal task consistency against the same codec at the fixed "
             f"qualities {', '.join(map(str, QUALITIES))}, on the mean curves over photos (rate-task method: Pareto "
             f"filter, PCHIP over the overlap); in brackets the percentile 95 % CI over {args.resamples} bootstrap "
             "resamples of the photos. A saving counts when its CI excludes 0.", ""]
    test = result["test"]
    lines += ["## Held-out photos (" + str(test["photos"]) + ")", "",
              "| codec | rate control | " + " | ".join(TASK_MODELS) + " | codings / photo (max, longest path) | "
              "s / photo |", "| --- | --- |" + " --- |" * len(TASK_MODELS) + " --- | --- |"]
    for codec in CODECS:
        for kind in ("target", "slope"):
            entry = test["bd"][f"{codec}:{kind}"]
            cost = entry["cost"]
            lines.append(f"| {codec} | {entry['label']} | " + " | ".join(
                _ci_cell(entry["bd"][m]) + (" **met**" if _verdict(entry["bd"][m]) else "") for m in TASK_MODELS)
                + f" | {cost['codings_per_photo_mean']:.1f} ({cost['codings_per_photo_max']}, {cost['path_max']}) | "
                f"{cost['seconds_per_photo_mean']:.1f} |")
        cost = test["anchor_cost"][codec]
        lines.append(f"| {codec} | fixed quality (anchor, all {len(QUALITIES)} qualities) | " + " | ".join(
            "0" for _ in TASK_MODELS) + f" | {cost['codings_per_photo_mean']:.0f} | "
            f"{cost['seconds_per_photo_mean']:.1f} |")
    lines += ["", f"**Target** (<= {GOAL:.0f} % with the CI excluding 0 on >= 3 of 4 task models, WebP and AVIF): "
              + "; ".join(f"{codec}: {test['met'][codec]} of 4" for codec in CODECS)
              + (" - **met**." if all(test["met"][c] >= 3 for c in CODECS) else " - **missed**."), "",
              "Codings / photo: new codings of each photo for all operating points together (the memo reuses "
              "them across points); longest path: the most codings one operating point's search used (<= 5). "
              "s / photo: the rate control's wall time per photo for all its operating points (codings and "
              "ML-CLIPSim scoring; anchors: coding the fixed qualities), one thread, on a shared machine.", "",
              "Slopes (quality per bpp): " + "; ".join(f"{c}: {', '.join(map(str, result['slopes'][c]))}"
                                                       for c in CODECS) + ".",
              "Targets of the old method: " + ", ".join(map(str, TARGETS)) + ".", ""]
    lines += ["### Bounds: allocations that know the held-out labels (in-sample, not a method)", "",
              "Per photo the anchor quality maximising true consistency - slope x bpp: one allocation for all "
              "models (the mean of the four), or one per model. What a perfect predictor of each kind could "
              "save on these photos and this ladder.", "",
              "| codec | allocation | " + " | ".join(TASK_MODELS) + " |", "| --- | --- |" + " --- |" * len(TASK_MODELS)]
    for codec in CODECS:
        for name, by_model in test["bounds"][codec].items():
            lines.append(f"| {codec} | {name} | " + " | ".join(_ci_cell(by_model[m]) for m in TASK_MODELS) + " |")
    lines += ["", "### Mean curves (held-out)", "",
              "| codec | point | bpp | " + " | ".join(TASK_MODELS) + " | ML-CLIPSim |",
              "| --- | --- | --- |" + " --- |" * len(TASK_MODELS) + " --- |"]
    for curve in test["curves"]:
        lines.append(f"| {curve['codec']} | {curve['point']} | {curve['bpp']:.3f} | "
                     + " | ".join(f"{curve['consistency/' + m]:.3f}" for m in TASK_MODELS) + f" | {curve['ml_clipsim']:.4f} |")
    diag = result["diagnosis"]
    lines += ["", "## Diagnosis on the training photos", "",
              "Every photo of the folder not held out; WebP and AVIF at the anchors' qualities; no held-out photo.", ""]
    for codec in CODECS:
        d = diag[codec]
        srcc = d["srcc_score_vs_consistency"]
        lines += [f"### {codec} ({d['photos']} photos)", "",
                  "SRCC over photos, at one quality, of the ML-CLIPSim score with task consistency (does the score "
                  "rank photos by what machines keep?):", "",
                  "| consistency | " + " | ".join(f"q{q}" for q in QUALITIES) + " |",
                  "| --- |" + " --- |" * len(QUALITIES)]
        for name, values in srcc.items():
            lines.append(f"| {name} | " + " | ".join("-" if not math.isfinite(v) else f"{v:+.2f}" for v in values)
                         + " |")
        s = d["slope_q10_q50"]
        lines += ["", "- Photos whose consistency never changes over the ten qualities: "
                  + ", ".join(f"{m} {n}" for m, n in d["flat_photos"].items()) + f" of {d['photos']}.",
                  "- Labels are coarse and noisy: share of rows whose consistency is exactly 0 or 1: "
                  + ", ".join(f"{m} {v:.0%}" for m, v in d["binary_rows"].items())
                  + "; share of steps to the next higher quality where it falls: "
                  + ", ".join(f"{m} {v:.0%}" for m, v in d["falls"].items()) + ".",
                  f"- Per-photo slope of mean consistency per bpp from q10 to q50: median {s['median']:.3f}, "
                  f"quartiles {s['quartiles'][0]:.3f} .. {s['quartiles'][1]:.3f}, negative on {s['negative']} photos; "
                  f"SRCC of the ML-CLIPSim slope with it: {s['srcc_score_slope_vs_true']:+.2f}.", "",
                  "What each allocation would have done, choosing per photo among the ten anchor qualities "
                  "(training photos, BD-rate vs fixed quality, 95 % CI over photos):", "",
                  "| allocation | " + " | ".join(TASK_MODELS) + " |", "| --- |" + " --- |" * len(TASK_MODELS)]
        for name, by_model in d["simulated"].items():
            lines.append(f"| {name} | " + " | ".join(_ci_cell(by_model[m]) for m in TASK_MODELS) + " |")
        lines.append("")
    scale = result["scale"]
    lines += ["## Fitted scale", "",
              ("Predicted quality = the 5-parameter logistic of the ML-CLIPSim score fitted on the training rows of "
               f"both codecs ({scale['n']} points, score -> mean consistency of the 4 task models; parameters "
               f"{', '.join(f'{p:.4g}' for p in scale['params'])}; predicted agreement "
               + ", ".join(f"{k}: {v:.3f}" for k, v in scale["table"].items()) + ").")
              if scale else "Predicted quality = the raw ML-CLIPSim score (`--quality raw`).", ""]
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text("\n".join(lines).replace(f"{REPO}/", "") + "\n")


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from mlclipsim.coding.interface import register_codec_modifier
    from mlclipsim.coding.rate_control import SlopeControlledCodec
    from mlclipsim.core.images import list_images
    from mlclipsim.rate_task.curves import mean_curves
    from mlclipsim.rate_task.rows import collect_rows

    torch.set_num_threads(1)
    started = time.perf_counter()
    heldout = photo_list(args.heldout)
    training = sorted(p.name for p in list_images(args.images) if p.name not in set(heldout))[::args.train_stride]
    training = training[:args.limit]  # a trial run
    points = [str(q) for q in QUALITIES]
    fixed = [f"{c}:{','.join(points)}" for c in CODECS]

    if not args.only_slope:
        run_study(args.images, args.out / "train", training, fixed, args.size, args.limit)
    train_rows, incomplete = collect_rows(args.out / "train", training, {c: points for c in CODECS}, TASK_MODELS)
    if incomplete:
        raise RuntimeError(f"Training rows missing for {incomplete}: run without --only-slope first.")
    train = {c: matrices(train_rows, c, points) for c in CODECS}
    scale = fit_scale(train) if args.quality == "agreement" else None
    slopes = {c: choose_slopes(train[c], predicted(scale, train[c]["score"])) for c in CODECS}
    scale_record = None if scale is None else {
        "params": list(scale.params), "n": int(scale.record["n"]), "rss": scale.record["rss"],
        "table": {f"{s:g}": float(scale(torch.tensor(s, dtype=torch.float64))) for s in (0.8, 0.9, 0.95, 0.98, 1.0)}}

    test_out = args.out / "test"
    check_slope_config(test_out, {"quality": args.quality, "scale": None if scale is None else list(scale.params),
                                  "slopes": slopes})
    register_codec_modifier("mlclipsim-slope", partial(SlopeControlledCodec, quality=scale), overwrite=True)
    slope_codecs = [f"{c}@mlclipsim-slope:{','.join(map(str, slopes[c]))}" for c in CODECS]
    if args.only_slope:
        part, parts = (int(v) for v in args.part.split("/"))
        run_study(args.images, test_out, sorted(heldout)[part::parts], slope_codecs, args.size, args.limit)
        return 0
    codecs = fixed + [f"{c}@mlclipsim:{','.join(map(str, TARGETS))}" for c in CODECS] + slope_codecs
    summary = run_study(args.images, test_out, heldout, codecs, args.size, args.limit)
    diagnosis = diagnose(train, scale, args.resamples)
    codec_points = {c.partition(":")[0]: c.partition(":")[2].split(",") for c in codecs}
    rows = collect_rows(test_out, summary["photos"], codec_points, TASK_MODELS)[0]  # the cached rows, every key
    test: dict = {"photos": len(summary["photos"]), "bd": {}, "anchor_cost": {}, "met": {}}
    for codec in CODECS:
        anchor = matrices(rows, codec, points)
        test["anchor_cost"][codec] = per_image_cost(anchor)
        test["met"][codec] = 0
        for kind, name, labels, label in (
                ("target", f"{codec}@mlclipsim", TARGETS, "one target per image (bisection, old)"),
                ("slope", f"{codec}@mlclipsim-slope", slopes[codec], "equal slope (new)")):
            m = matrices(rows, name, [str(p) for p in labels])
            if m["photos"] != anchor["photos"]:
                raise RuntimeError(f"{name} and {codec} hold different photos")
            entry = {"label": label, "codec": name, "bd": {t: bd_ci(anchor, m, t, args.resamples) for t in TASK_MODELS},
                     "cost": per_image_cost(m),
                     "monotone_probes": float(np.mean([r.get("rc_monotone", True) for line in m["rows"]
                                                       for r in line]))}
            test["bd"][f"{codec}:{kind}"] = entry
            if kind == "slope":
                test["met"][codec] = sum(_verdict(entry["bd"][t]) for t in TASK_MODELS)
    test["bounds"] = {}
    for codec in CODECS:  # what any per-photo choice among the anchor's qualities could do, knowing the labels
        anchor = matrices(rows, codec, points)
        mean = np.mean([anchor[m] for m in TASK_MODELS], 0)
        by_mean = simulated(anchor, slope_choice(anchor["bpp"], mean, np.array(choose_slopes(anchor, mean))))
        test["bounds"][codec] = {
            "oracle on the mean consistency": {m: bd_ci(anchor, by_mean, m, args.resamples) for m in TASK_MODELS},
            "oracle on each model's own consistency": {
                m: bd_ci(anchor, simulated(anchor, slope_choice(anchor["bpp"], anchor[m],
                                                                np.array(choose_slopes(anchor, anchor[m])))),
                         m, args.resamples) for m in TASK_MODELS}}
    test["curves"] = mean_curves(rows, codec_points, TASK_MODELS)
    result = {"command": "python benchmarks/rate_control.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
              "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, 1 torch thread, Python "
                         f"{platform.python_version()}",
              "wall_seconds": time.perf_counter() - started, "training_photos": training, "heldout_photos": heldout,
              "quality": args.quality, "scale": scale_record, "slopes": slopes, "targets": list(TARGETS),
              "diagnosis": diagnosis, "test": test}
    args.report.with_suffix(".json").write_text(json.dumps(result, indent=1, default=float))
    write_report(args, result)
    print(f"wrote {args.report} and {args.report.with_suffix('.json')} ({result['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
