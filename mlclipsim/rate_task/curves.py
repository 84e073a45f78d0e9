"""Rate-task curves from the per-photo rows of :mod:`~mlclipsim.rate_task.study`: mean curves,
BD-rates against anchor codecs, per-photo BD-rates, plots and tables.

A codec's **mean curve** has one point per operating point: the mean bpp and the mean of each score
over the photos (every photo has every operating point: photos with a missing row are left out of
all curves and listed). **BD-rate** (:func:`mlclipsim.eval.bd_rate`) of a test codec against an
anchor, per score, on the mean curves: each curve is first made monotone by the Pareto filter of
:func:`mlclipsim.eval.pareto_filter` (along increasing bpp, a point is kept only if its score is
strictly higher than every lower-rate point's), then log10(bpp) is interpolated over the score
(``pchip`` by default) and averaged over the overlap of the two score ranges. The overlap
(intersection / union of the two ranges) is reported with every value; curves that do not overlap
are reported as such ("no overlap"), never extrapolated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlclipsim.coding.interface import Point, format_point
from mlclipsim.eval.bd_rate import bd_rate
from mlclipsim.rate_task.rows import write_csv

BASE_SCORES = ("psnr", "ms_ssim", "ml_clipsim")
SCORE_TITLES = {"psnr": "PSNR (dB)", "ms_ssim": "MS-SSIM", "ml_clipsim": "ML-CLIPSim"}


def task_columns(task_models: Sequence[str]) -> list[str]:
    return [f"consistency/{m}" for m in task_models]


def score_columns(task_models: Sequence[str]) -> list[str]:
    """Task consistencies first, then PSNR, MS-SSIM and ML-CLIPSim."""
    return task_columns(task_models) + list(BASE_SCORES)


def bd_method_statement(method: str) -> str:
    return (f"BD-rate by the bjontegaard package ({method} interpolation of log10(bpp) over the score) on the mean "
            "curves, after a Pareto filter that makes each curve monotone (along increasing bpp a point is kept "
            "only if its score is strictly higher than that of every lower-rate point); averaged over the overlap "
            "of the two score ranges; 'overlap' = intersection / union of the two ranges; curves that do not "
            "overlap are reported as 'no overlap', never extrapolated.")


def _nanmean(values: Sequence[float]) -> float:
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(np.mean(finite)) if finite else math.nan




def mean_curves(rows: Sequence[dict], codec_points: Mapping[str, Sequence[Point]],
                task_models: Sequence[str]) -> list[dict]:
    """One row per (codec, point): n photos, mean bits and bpp, mean of every score; for
    rate-controlled codecs also the fraction of photos that reached the target."""
    scores = score_columns(task_models)
    out = []
    for name, points in codec_points.items():
        for point in points:
            group = [r for r in rows if r["codec"] == name and r["point"] == format_point(point)]
            if not group:
                continue
            curve: dict[str, Any] = {"codec": name, "point": format_point(point), "n": len(group),
                                     "bits": _nanmean([r["bits"] for r in group]),
                                     "bpp": _nanmean([r["bpp"] for r in group])}
            curve.update({s: _nanmean([r.get(s, math.nan) for r in group]) for s in scores})
            if "reached" in group[0]:
                curve["reached"] = _nanmean([float(r["reached"]) for r in group])
            out.append(curve)
    return out


def rate_monotonicity(rows: Sequence[dict], codec_points: Mapping[str, Sequence[Point]]) -> list[dict]:
    """Per codec family: on how many photos the file size rises with the operating point.

    A codec lists its points from the lowest to the highest rate (:class:`~mlclipsim.coding.interface.Codec`),
    so on each photo the bits should rise along that order. Real codecs break it (a learned model whose
    0.0035 file is larger than its 0.0067 one, AVIF qualities that share a quantiser), and a curve drawn
    through such points zig-zags: the study states it per family instead of hiding it in the mean curve.

    Returns one dict per codec: ``photos`` (with every point), ``monotone`` (photos whose bits never fall
    from one point to the next), ``inversions`` (adjacent point pairs, over all photos, where they fall),
    ``pairs`` (adjacent point pairs counted) and ``photos_not_monotone`` (their names, sorted).
    """
    out = []
    for name, points in codec_points.items():
        order = [format_point(p) for p in points]
        bits_by_photo: dict[str, dict[str, float]] = {}
        for row in rows:
            if row["codec"] == name:
                bits_by_photo.setdefault(row["photo"], {})[row["point"]] = float(row["bits"])
        complete = {photo: [bits[p] for p in order] for photo, bits in bits_by_photo.items()
                    if all(p in bits for p in order)}
        falls = {photo: sum(b < a for a, b in zip(seq, seq[1:])) for photo, seq in complete.items()}
        out.append({"codec": name, "photos": len(complete), "monotone": sum(1 for f in falls.values() if f == 0),
                    "inversions": sum(falls.values()), "pairs": len(complete) * max(len(order) - 1, 0),
                    "photos_not_monotone": sorted(photo for photo, f in falls.items() if f)})
    return out


def monotonicity_markdown(entries: Sequence[dict]) -> str:
    """The per-family statement: a table of :func:`rate_monotonicity` and the photos where it fails."""
    lines = ["Rate along each codec's operating points (lowest to highest rate; a photo is monotone when its "
             "file never gets smaller at the next point):", "",
             "| codec | photos monotone | inversions / adjacent pairs | photos not monotone |",
             "| --- | ---: | ---: | --- |"]
    for e in entries:
        names = ", ".join(e["photos_not_monotone"][:8]) + (" ..." if len(e["photos_not_monotone"]) > 8 else "")
        lines.append(f"| {e['codec']} | {e['monotone']} of {e['photos']} | {e['inversions']} / {e['pairs']} | "
                     f"{names or '-'} |")
    return "\n".join(lines)


def _curve(curves: Sequence[dict], codec: str, score: str) -> tuple[np.ndarray, np.ndarray]:
    points = [(c["bpp"], c[score]) for c in curves if c["codec"] == codec and math.isfinite(c[score])
              and c["bpp"] > 0]
    return np.array([p[0] for p in points], float), np.array([p[1] for p in points], float)


def bd_entry(rate_a: np.ndarray, quality_a: np.ndarray, rate_t: np.ndarray, quality_t: np.ndarray,
             method: str) -> dict[str, Any]:
    """:func:`mlclipsim.eval.bd_rate` as a flat dict; curves with < 2 finite points give a reason."""
    if rate_a.size < 2 or rate_t.size < 2:
        return {"bd_rate": None, "overlap": math.nan, "method_used": None, "n_anchor": int(rate_a.size),
                "n_test": int(rate_t.size), "dropped_anchor": "", "dropped_test": "",
                "reason": f"too few points with a finite score (anchor {rate_a.size}, test {rate_t.size})",
                "note": None}
    result = bd_rate(rate_a, quality_a, rate_t, quality_t, method=method)
    return {"bd_rate": result.value, "overlap": result.overlap, "method_used": result.method_used,
            "n_anchor": result.n_anchor, "n_test": result.n_test,
            "dropped_anchor": " ".join(map(str, result.dropped_anchor)),
            "dropped_test": " ".join(map(str, result.dropped_test)), "reason": result.reason, "note": result.note}


def bd_rates(curves: Sequence[dict], anchors: Sequence[str], task_models: Sequence[str],
             method: str = "pchip") -> list[dict]:
    """BD-rate (percent; negative = fewer bits at equal score) of every codec against each anchor, per score."""
    codecs = list(dict.fromkeys(c["codec"] for c in curves))
    out = []
    for anchor in anchors:
        for test in codecs:
            if test == anchor:
                continue
            for score in score_columns(task_models):
                entry = bd_entry(*_curve(curves, anchor, score), *_curve(curves, test, score), method)
                out.append({"test": test, "anchor": anchor, "score": score, **entry})
    return out


def per_photo_bd_rates(rows: Sequence[dict], test: str, anchor: str, score: str,
                       method: str = "pchip") -> list[dict]:
    """BD-rate of ``test`` against ``anchor`` on each photo's own curves (for breakdowns: which photos).

    Per-photo task scores are often steps (an F1 of 0, 0.5 or 1), so many photos have too few Pareto
    points or no overlap; those are reported with their reason.
    """
    def curve(photo: str, codec: str) -> tuple[np.ndarray, np.ndarray]:
        points = [(r["bpp"], r[score]) for r in rows if r["photo"] == photo and r["codec"] == codec
                  and math.isfinite(r.get(score, math.nan))]
        return np.array([p[0] for p in points], float), np.array([p[1] for p in points], float)

    return [{"photo": photo, "test": test, "anchor": anchor, "score": score,
             **bd_entry(*curve(photo, anchor), *curve(photo, test), method)}
            for photo in sorted({r["photo"] for r in rows})]


def stage_seconds(rows: Sequence[dict]) -> dict[str, float]:
    """Total seconds per stage over the rows: ``coding`` (and ``coding/<codec>``), ``metrics`` (PSNR,
    MS-SSIM, ML-CLIPSim) and ``task/<model>`` (the model's prediction on the decoded image)."""
    totals: dict[str, float] = {}

    def add(key: str, value: Any) -> None:
        totals[key] = totals.get(key, 0.0) + float(value)

    for row in rows:
        for key, value in row.items():
            if key == "seconds/code":
                add("coding", value)
                add(f"coding/{row['codec']}", value)
            elif key == "seconds/metrics":
                add("metrics", value)
            elif key.startswith("seconds/"):
                add(f"task/{key[len('seconds/'):]}", value)
    return {k: round(v, 3) for k, v in sorted(totals.items())}


# ----------------------------------------------------------------------------- writing






def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(value)
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.{digits}g}"
    return str(value)


def markdown_table(rows: Sequence[dict], columns: Sequence[str], headers: Sequence[str] | None = None,
                   digits: int = 4) -> str:
    headers = list(headers or columns)
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c), digits) for c in columns) + " |")
    return "\n".join(lines)


def short_score(score: str) -> str:
    return score.split("/", 1)[1] if score.startswith("consistency/") else score


def curves_markdown(curves: Sequence[dict], task_models: Sequence[str]) -> str:
    scores = score_columns(task_models)
    columns = ["codec", "point", "n", "bpp", *scores] + (["reached"] if any("reached" in c for c in curves) else [])
    headers = ["codec", "point", "photos", "bpp", *[short_score(s) for s in scores]] + (
        ["target reached"] if "reached" in columns else [])
    return markdown_table(curves, columns, headers)


def bd_markdown(entries: Sequence[dict], method: str) -> str:
    """One table per anchor: rows = test codecs, columns = scores; then the details (overlap, points)."""
    lines = [bd_method_statement(method), ""]
    for anchor in dict.fromkeys(e["anchor"] for e in entries):
        group = [e for e in entries if e["anchor"] == anchor]
        scores = list(dict.fromkeys(e["score"] for e in group))
        lines += [f"BD-rate (%) against **{anchor}** (negative: fewer bits at equal score; in brackets the overlap "
                  "of the score ranges):", ""]
        lines.append("| codec | " + " | ".join(short_score(s) for s in scores) + " |")
        lines.append("| --- | " + " | ".join("---" for _ in scores) + " |")
        for test in dict.fromkeys(e["test"] for e in group):
            cells = []
            for score in scores:
                entry = next(e for e in group if e["test"] == test and e["score"] == score)
                if entry["bd_rate"] is None:
                    cells.append(_short_reason(entry))
                else:
                    cells.append(f"{entry['bd_rate']:+.1f} ({entry['overlap']:.2f})")
            lines.append(f"| {test} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append("'too few points (a, t)': the anchor / test curve kept a / t points after the Pareto filter (or "
                 "had fewer finite scores); BD needs >= 2 on each. Details: bd_rate.csv.")
    return "\n".join(lines)


def _short_reason(entry: dict) -> str:
    reason = str(entry["reason"])
    if reason.startswith("too few points"):
        return f"too few points ({entry['n_anchor']}, {entry['n_test']})"
    if reason == "no overlap":
        return "no overlap"
    return reason


def plot_curves(curves: Sequence[dict], task_models: Sequence[str], stem: Path) -> list[Path]:
    """Score vs bpp, one panel per task model (then PSNR, MS-SSIM, ML-CLIPSim), every codec; PNG and SVG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = [s for s in score_columns(task_models) if any(math.isfinite(c[s]) for c in curves)]
    ncols = min(3, len(scores))
    nrows = math.ceil(len(scores) / ncols)
    codecs = list(dict.fromkeys(c["codec"] for c in curves))
    with matplotlib.rc_context({"svg.hashsalt": "mlclipsim-rate-task", "font.size": 9}):
        fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False)
        markers = "osD^v<>pPhX*"
        for ax, score in zip(axes.flat, scores):
            for i, codec in enumerate(codecs):
                points = sorted((c["bpp"], c[score]) for c in curves if c["codec"] == codec
                                and math.isfinite(c[score]))
                if points:
                    ax.plot([p[0] for p in points], [p[1] for p in points], marker=markers[i % len(markers)],
                            markersize=4, linewidth=1.2, label=codec)
            title = SCORE_TITLES.get(score, f"{short_score(score)} consistency")
            ax.set_title(title)
            ax.set_xlabel("bits per pixel")
            ax.grid(True, alpha=0.3)
        for ax in list(axes.flat)[len(scores):]:
            ax.axis("off")
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), frameon=False)
        fig.tight_layout(rect=(0, 0.06 + 0.02 * (len(labels) > 6), 1, 1))
        stem.parent.mkdir(parents=True, exist_ok=True)
        paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
        fig.savefig(paths[0], dpi=120, metadata={"Software": None})
        fig.savefig(paths[1], metadata={"Date": None})
        plt.close(fig)
    return paths


def write_outputs(out: Path, rows: Sequence[dict], codec_points: Mapping[str, Sequence[Point]],
                  task_models: Sequence[str], anchors: Sequence[str], method: str = "pchip") -> dict[str, str]:
    """rows.csv, curves.csv/.md, bd_rate.csv/.md, rate_monotonicity.csv/.md and the plots; returns their
    paths by kind."""
    scores = score_columns(task_models)
    base = ["photo", "codec", "point", "height", "width", "bits", "bytes", "bpp", *scores]
    extra = ["chosen_point", "rc_score", "reached", "rc_monotone", "rc_codings", "rc_probes"]
    seconds = ["seconds/code", "seconds/metrics", *[f"seconds/{m}" for m in task_models]]
    written = {"rows": str(write_csv(out / "rows.csv", rows, base + extra + seconds))}
    if not rows:
        return written
    curves = mean_curves(rows, codec_points, task_models)
    written["curves_csv"] = str(write_csv(out / "curves.csv", curves))
    (out / "curves.md").write_text(curves_markdown(curves, task_models) + "\n")
    written["curves_md"] = str(out / "curves.md")
    entries = bd_rates(curves, anchors, task_models, method)
    written["bd_rate_csv"] = str(write_csv(out / "bd_rate.csv", entries))
    (out / "bd_rate.md").write_text(bd_markdown(entries, method) + "\n")
    written["bd_rate_md"] = str(out / "bd_rate.md")
    monotonicity = rate_monotonicity(rows, codec_points)
    written["monotonicity_csv"] = str(write_csv(out / "rate_monotonicity.csv", [
        {**e, "photos_not_monotone": " ".join(e["photos_not_monotone"])} for e in monotonicity]))
    (out / "rate_monotonicity.md").write_text(monotonicity_markdown(monotonicity) + "\n")
    written["monotonicity_md"] = str(out / "rate_monotonicity.md")
    png, svg = plot_curves(curves, task_models, out / "rate_task")
    written.update(plot_png=str(png), plot_svg=str(svg))
    return written
