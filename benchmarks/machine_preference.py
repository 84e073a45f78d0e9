"""Does a metric predict what machines prefer? The headline benchmark.

    python benchmarks/machine_preference.py --dataset outputs/dataset [--encoder torchvision/mobilenet_v2]
        [--split 0.6 0.1 0.3] [--seed 0] [--clip ViT-B-32:openai ...] [--n-resamples 1000]
        [--labels discrete soft] [--out benchmarks/results]

Scores every image of a dataset built by ``mlclipsim build-dataset`` / ``build-pairs`` with PSNR, SSIM,
MS-SSIM (LPIPS and DISTS when their weights exist), ML-CLIPSim on an offline encoder (calibrated, the
uncalibrated default, and ablations: global embedding only, best single layer, uniform weights over
all layers) and, when their weights are present, CLIP backbones. The photos are split exactly as
``mlclipsim calibrate`` split them (same fractions and seed): calibration and the choice of the single
layer use the train photos only; every number reported is on the test photos.

Reported (benchmarks/results/machine_preference.md, .json, and plots): SRCC and KRCC with 95%
bootstrap CIs over test photos, PLCC and RMSE after the 5-parameter logistic fitted on the test
split, for the mean MMOS and each task's MMOS; 2AFC on PSNR-matched pairs
(overall and per task) and on ROI-vs-background pairs; SRCC per distortion type, per region mode and
on the codec distortions. The encoder must not be one of the task models that made the labels.

Label sets (``--labels``; default: every set the manifest carries, :mod:`mlclipsim.data.manifest`):
every SRCC and 2AFC above is measured against the labels of each set (discrete ``mmos``,
``mmos/<task>``, ``soft_label``...; continuous ``mmos_soft``, ``mmos_soft/<task>``,
``soft_label@soft``...), and a table puts the sets side by side. Images and pairs whose label is NaN
(a continuous label where its task does not apply) are dropped per target, with the counts shown.
The breakdowns (per type, mode, severity, codec), the single-layer ablation and the region alpha
use the overall label of the first set given.

Region-weighted ML-CLIPSim (``region_weights="mask"`` with the ROI of the labelling task models'
predictions on the reference, and ``"saliency"`` from the reference's own features, no labels) is
calibrated ML-CLIPSim with per-token weights; its background floor alpha is chosen on the validation
photos (best mean of SRCC with the MMOS and ROI-vs-background 2AFC accuracy), never on the test photos.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mlclipsim.backbones import EMBEDDING, MissingWeightsError
from mlclipsim.core.images import read_image
from mlclipsim.data.datamodules import MachineQualityDataModule, load_manifest, load_pairs
from mlclipsim.data.manifest import (
    LABEL_SETS,
    label_column,
    label_sets_of,
    pair_label_column,
    parse_label_column,
    parse_pair_label_column,
)
from mlclipsim.data.region_scores import reference_roi_mask, region_components, region_weighted_scores
from mlclipsim.data.score_images import dataset_image_pairs, score_baselines
from mlclipsim.eval import bootstrap_ci, breakdown, evaluate, krcc, srcc, two_afc
from mlclipsim.metrics.functional.ml_clipsim import MLCLIPSimScorer
from mlclipsim.metrics.layer_weights import load_calibrated_weights
from mlclipsim.training.calibrate_layer_weights import all_layer_scorer, component_scores

PIXEL_METRICS = ("psnr", "ssim", "ms-ssim")
CODEC_TYPES = ("jpeg", "jpeg_quality", "webp_quality")
REGION_ALPHAS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
REGION_ROWS = {"mask": "ML-CLIPSim region-weighted (ROI mask)", "saliency": "ML-CLIPSim region-weighted (saliency)"}
ENCODER_AS_TASK_MODEL = {"torchvision/mobilenet_v2": "mobilenet_v2", "efficientnet-lite0": "efficientnet-lite0"}


def weighted(components: dict[str, np.ndarray], index: list[int], weights: np.ndarray) -> dict[str, float]:
    return {path: float(values[index] @ weights) for path, values in components.items()}


def label_targets(columns: list[str], labels: list[str]) -> list[str]:
    """Per label set, its overall label then its task labels (manifest order)."""
    out = []
    for name in labels:
        out.append(label_column(name))
        out += [c for c in columns if (parse_label_column(c) or ("", "", ""))[:2] == (name, "task")]
    return out


def finite_rows(rows: list[dict], column: str) -> list[int]:
    """Indices of the rows whose ``column`` is a finite number (NaN: the label does not apply there)."""
    return [i for i, r in enumerate(rows) if isinstance(r.get(column), int | float) and np.isfinite(r[column])]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--encoder", default="torchvision/mobilenet_v2")
    parser.add_argument("--calibrated", type=Path, default=None,
                        help="calibration JSON (default: the one shipped for --encoder)")
    parser.add_argument("--split", type=float, nargs=3, default=[0.6, 0.1, 0.3])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clip", nargs="*", default=["ViT-B-32:openai", "RN50:openai"],
                        help="CLIP backbones NAME:TAG, run when their weights are present")
    parser.add_argument("--n-resamples", type=int, default=1000)
    parser.add_argument("--labels", nargs="+", choices=list(LABEL_SETS), default=None,
                        help="label sets to measure against (default: every set the manifest carries)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    start = time.perf_counter()
    root = args.dataset

    build = json.loads((root / "build_info.json").read_text())
    task_models = build["config"]["task_models"]
    if ENCODER_AS_TASK_MODEL.get(args.encoder) in task_models:
        print(f"error: {args.encoder} is also the task model {ENCODER_AS_TASK_MODEL[args.encoder]} that labelled "
              "this dataset; choose another encoder", file=sys.stderr)
        return 2
    rows, columns = load_manifest(root)
    pairs, pair_columns = load_pairs(root)
    present = label_sets_of(columns)
    args.labels = list(dict.fromkeys(args.labels or present))
    missing = [name for name in args.labels if name not in present]
    if missing:
        print(f"error: the manifest of {root} has no {missing} labels (it has {present}); rebuild it with "
              "`mlclipsim build-dataset` to add them", file=sys.stderr)
        return 2
    primary = label_column(args.labels[0])          # breakdowns, single-layer choice, region alpha
    module = MachineQualityDataModule(root, split=tuple(args.split), seed=args.seed)
    train_photos, test_photos = set(module.photos_of("train")), set(module.photos_of("test"))
    test_rows = [r for r in rows if r["photo"] in test_photos]
    train_rows = [r for r in rows if r["photo"] in train_photos]
    targets = label_targets(columns, args.labels)
    # baselines are only ever evaluated on test photos: score those (ML-CLIPSim scores every image, the
    # single-layer ablation picks its layer on the train photos)
    test_references = {r["reference_path"] for r in test_rows}
    image_pairs = [(d, r) for d, r in dataset_image_pairs(root) if r in test_references]

    # ------------------------------------------------------------------ scores of every image
    scores, notes = score_baselines(root, ("psnr", "ssim", "ms-ssim", "lpips", "dists"), image_pairs)

    encoder_scorer = all_layer_scorer(args.encoder)
    names = [*encoder_scorer.layers, EMBEDDING]
    components = component_scores(root, encoder_scorer, f"components__{args.encoder.replace('/', '__')}")
    short = args.encoder.split("/")[-1]
    record = (json.loads(args.calibrated.read_text()) if args.calibrated else load_calibrated_weights(args.encoder))
    if record is None:
        notes.append(f"No calibrated weights for {args.encoder}: run `mlclipsim calibrate` first.")
    else:
        index = [names.index(k) for k in record["weights"]]
        scores[f"ML-CLIPSim {short}, calibrated"] = weighted(components, index,
                                                             np.array(list(record["weights"].values())))
    default_layers = [*encoder_scorer.encoder.default_layers, EMBEDDING]
    index = [names.index(k) for k in default_layers]
    scores[f"ML-CLIPSim {short}, uncalibrated (4 stages + embedding, uniform)"] = weighted(
        components, index, np.full(len(index), 1 / len(index)))
    scores[f"ablation: global embedding only ({short})"] = weighted(components, [names.index(EMBEDDING)],
                                                                   np.ones(1))
    scores[f"ablation: uniform weights over all {len(names)} terms ({short})"] = weighted(
        components, list(range(len(names))), np.full(len(names), 1 / len(names)))
    layer_rows = [train_rows[i] for i in finite_rows(train_rows, primary)]
    train_mmos = np.array([r[primary] for r in layer_rows])
    best = max(encoder_scorer.layers, key=lambda layer: srcc(
        [components[r["distorted_path"]][names.index(layer)] for r in layer_rows], train_mmos))
    scores[f"ablation: single layer {best} (best on train photos, {short})"] = weighted(
        components, [names.index(best)], np.ones(1))
    region = None
    if record is not None:
        region = region_weighting(root, encoder_scorer.encoder, record["weights"], build, rows, pairs,
                                  set(module.photos_of("val")), test_photos, primary,
                                  pair_label_column(args.labels[0]))
        scores.update(region.pop("scores"))
        notes.extend(region.pop("notes"))

    for spec in args.clip:
        backbone, _, tag = spec.partition(":")
        try:
            clip_scorer = all_layer_scorer(backbone, tag or None)
        except (MissingWeightsError, ValueError) as err:
            notes.append(f"ML-CLIPSim on CLIP {spec}: not measurable here: {str(err).splitlines()[0]}")
            continue
        clip_names = [*clip_scorer.layers, EMBEDDING]
        clip_components = component_scores(root, clip_scorer, f"components__{backbone}__{tag}")
        index = [clip_names.index(k) for k in (*clip_scorer.encoder.default_layers, EMBEDDING)]
        scores[f"ML-CLIPSim {spec}, uncalibrated"] = weighted(clip_components, index,
                                                             np.full(len(index), 1 / len(index)))

    # ------------------------------------------------------------------ correlation with MMOS (test photos)
    defined = {t: finite_rows(test_rows, t) for t in targets}   # NaN labels dropped per target
    results: dict = {"correlation": {}, "two_afc": {}, "by_type": {}, "by_mode": {}, "by_severity": {}, "codec": {},
                     "labels": args.labels,
                     "label_counts": {t: {"images": len(defined[t]), "dropped": len(test_rows) - len(defined[t])}
                                      for t in targets}}
    for metric, values in scores.items():
        results["correlation"][metric] = {}
        for t in targets:
            subset = [test_rows[i] for i in defined[t]]
            x = np.array([values[r["distorted_path"]] for r in subset])
            results["correlation"][metric][t] = correlation(x, np.array([r[t] for r in subset]),
                                                            [r["photo"] for r in subset], args.n_resamples)
    kept = [test_rows[i] for i in defined[primary]]   # the breakdowns: the first label set's overall label
    for metric, values in scores.items():
        x = np.array([values[r["distorted_path"]] for r in kept])
        mmos = [r[primary] for r in kept]
        results["by_type"][metric] = {k: (e.result.srcc if e.result else None) for k, e in breakdown(
            x, mmos, [r["distortion"] for r in kept], min_count=20).items()}
        results["by_mode"][metric] = {k: (e.result.srcc if e.result else None) for k, e in breakdown(
            x, mmos, [r["mode"] for r in kept], min_count=20).items()}
        uniform = [i for i, r in enumerate(kept) if r["mode"] == "uniform"]
        results["by_severity"][metric] = {k: (e.result.srcc if e.result else None) for k, e in breakdown(
            x[uniform], np.array(mmos)[uniform], [kept[i]["roi_severity"] for i in uniform], min_count=20).items()}
        codec_rows = [i for i, r in enumerate(kept) if r["distortion"] in CODEC_TYPES]
        if len(codec_rows) >= 20:
            results["codec"][metric] = srcc(x[codec_rows], np.array(mmos)[codec_rows])

    # ------------------------------------------------------------------ 2AFC on pairs (test photos)
    for kind in ("psnr_matched", "roi_vs_background"):
        subset = [p for p in pairs if p["kind"] == kind and p["photo"] in test_photos]
        if not subset:
            continue
        label_columns = []
        for name in args.labels:   # per label set: the overall soft label, then per task
            overall = pair_label_column(name)
            if overall not in pair_columns:
                notes.append(f"The pairs carry no {name} labels ({overall}); rerun `mlclipsim build-pairs` on the "
                             "dataset to add them.")
                continue
            label_columns += [overall] + sorted(c for c in pair_columns if c.startswith("soft_label/")
                                                and c.endswith(LABEL_SETS[name].pair_suffix)
                                                and "@" not in c[:len(c) - len(LABEL_SETS[name].pair_suffix)])
        if not label_columns:
            continue
        results["two_afc"][kind] = {}
        results.setdefault("pair_counts", {})[kind] = {}
        for column in label_columns:
            keep = finite_rows(subset, column)
            results["pair_counts"][kind][column] = {"pairs": len(keep), "dropped": len(subset) - len(keep)}
        for metric, values in scores.items():
            results["two_afc"][kind][metric] = {}
            for column in label_columns:
                chosen = [subset[i] for i in finite_rows(subset, column)]
                if not chosen:
                    continue
                results["two_afc"][kind][metric][column] = two_afc(
                    [values[p["a_path"]] for p in chosen], [values[p["b_path"]] for p in chosen],
                    [p[column] for p in chosen], groups=[p["photo"] for p in chosen],
                    n_resamples=args.n_resamples).to_dict()

    # how well do the task models agree with each other? (a ceiling for any metric of one task's MMOS)
    results["label_agreement"] = {}
    for name in args.labels:
        model_columns = [c for c in columns if (parse_label_column(c) or ("", "", ""))[:2] == (name, "model")]
        task_columns = [c for c in targets if (parse_label_column(c) or ("", "", ""))[:2] == (name, "task")]
        prefix = "" if name == "discrete" else f"{name}: "
        for i, a in enumerate(model_columns + task_columns):
            for b in (model_columns + task_columns)[i + 1:]:
                if a.split("/")[0] != b.split("/")[0]:
                    continue
                both = [r for r in test_rows if np.isfinite(r[a]) and np.isfinite(r[b])]
                results["label_agreement"][f"{prefix}{a.split('/', 1)[1]} ~ {b.split('/', 1)[1]}"] = srcc(
                    [r[a] for r in both], [r[b] for r in both])

    if region is not None:
        results["region_weighting"] = region
    seconds = time.perf_counter() - start
    write_report(args, results, scores, notes, build, targets, train_photos, test_photos, test_rows, seconds)
    return 0


def region_weighting(root: Path, encoder, layer_weights: dict[str, float], build: dict, rows: list[dict],
                     pairs: list[dict], val_photos: set[str], test_photos: set[str], target: str = "mmos",
                     pair_label: str = "soft_label") -> dict:
    """Region-weighted calibrated ML-CLIPSim: alpha chosen on the validation photos (SRCC with ``target``,
    2AFC against ``pair_label``; NaN labels left out), scores of val + test images.

    Returns ``{"scores": {row name: {path: score}}, "notes": [...], "sweep": ..., "alpha": ..., "check": ...}``.
    """
    scorer = MLCLIPSimScorer(encoder, layers=[k for k in layer_weights if k != EMBEDDING], weights=layer_weights)
    roi_models = build["config"]["roi_models"]
    used = {r["reference_path"] for r in rows if r["photo"] in val_photos | test_photos}
    image_pairs = [(d, r) for d, r in dataset_image_pairs(root) if r in used]
    cache = f"region__{encoder.name.replace('/', '__')}__{'+'.join(scorer.layers)}"
    stats = region_components(root, scorer, roi_models, image_pairs, cache)
    weights, count = scorer.layer_weights.numpy(), len(scorer.layers)

    # the ROI masks rebuilt from the cached predictions are the data engine's own (same ROI fraction)
    fractions = {r["reference_path"]: float(r["roi_fraction"]) for r in rows if r["reference_path"] in used
                 and float(r["roi_fraction"]) > 0}
    mismatch = max((abs(float(reference_roi_mask(root, Path(path).stem, roi_models,
                                                 *read_image(root / path).shape[-2:]).mean()) - fraction)
                    for path, fraction in fractions.items()), default=0.0)
    if mismatch > 1e-4:
        raise RuntimeError(f"ROI masks rebuilt from the cached predictions differ from the manifest's ROI fractions "
                           f"(max difference {mismatch:.4g}); is the dataset complete?")

    val_rows = [r for r in rows if r["photo"] in val_photos]
    val_rows = [val_rows[i] for i in finite_rows(val_rows, target)]
    val_pairs = [p for p in pairs if p["kind"] == "roi_vs_background" and p["photo"] in val_photos]
    val_pairs = [val_pairs[i] for i in finite_rows(val_pairs, pair_label)]
    sweep: dict = {}
    chosen: dict = {}
    for source in REGION_ROWS:
        sweep[source] = {}
        for alpha in REGION_ALPHAS:
            values = region_weighted_scores(stats, source, count, weights, alpha)
            val_srcc = srcc([values[r["distorted_path"]] for r in val_rows], [r[target] for r in val_rows])
            val_acc = two_afc([values[p["a_path"]] for p in val_pairs], [values[p["b_path"]] for p in val_pairs],
                              [p[pair_label] for p in val_pairs]).accuracy if val_pairs else None
            sweep[source][alpha] = {"val_srcc": val_srcc, "val_roi_bg_accuracy": val_acc}
        chosen[source] = max(REGION_ALPHAS, key=lambda a, e=sweep[source]: (
            e[a]["val_srcc"] + (e[a]["val_roi_bg_accuracy"] or 0.0)) / 2)

    # the stored decomposition is the library's own score: check it on one test reference
    reference_path = sorted(r["reference_path"] for r in rows if r["photo"] in test_photos)[0]
    sample = [r for r in rows if r["reference_path"] == reference_path][:8]
    reference = read_image(root / reference_path)[None]
    distorted = torch.stack([read_image(root / r["distorted_path"]) for r in sample])
    mask = torch.from_numpy(reference_roi_mask(root, Path(reference_path).stem, roi_models, *reference.shape[-2:]))
    check = 0.0
    for source, alpha in chosen.items():
        library = MLCLIPSimScorer(encoder, layers=scorer.layers, weights=layer_weights, region_weights=source,
                                  region_alpha=alpha)
        options = {"mask": mask.expand(len(sample), -1, -1)} if source == "mask" else {}
        with torch.no_grad():
            direct = library(distorted, reference.expand(len(sample), -1, -1, -1), **options).numpy()
        decomposed = region_weighted_scores({r["distorted_path"]: stats[r["distorted_path"]] for r in sample},
                                            source, count, weights, alpha)
        check = max(check, float(np.abs(direct - np.array([decomposed[r["distorted_path"]] for r in sample])).max()))
    if check > 1e-4:
        raise RuntimeError(f"Region-weighted scores from the cache differ from the library by {check:.3g}")
    notes = [f"Region-weighted ML-CLIPSim: calibrated layer weights ({', '.join(scorer.layers)}); alpha chosen on "
             f"{len(val_photos)} validation photos ({len(val_rows)} images, {len(val_pairs)} ROI-vs-background pairs): "
             f"ROI mask {chosen['mask']}, saliency {chosen['saliency']}. The ROI mask is the union of the labelling "
             f"task models' predictions on the reference ({', '.join(roi_models)}): privileged information, like a "
             "user passing task-model boxes; the saliency row uses no labels (norm of the reference's "
             f"{max(scorer.layers, key=encoder.layer_names.index)} tokens). Library vs stored decomposition on "
             f"{len(sample)} test images: max difference {check:.1e}."]
    scores = {REGION_ROWS[s]: region_weighted_scores(stats, s, count, weights, a) for s, a in chosen.items()}
    return {"scores": scores, "notes": notes, "sweep": sweep, "alpha": chosen, "library_check": check}


def correlation(x: np.ndarray, y: np.ndarray, groups: list[str], n_resamples: int) -> dict:
    """SRCC and KRCC with photo-bootstrap CIs; PLCC and RMSE after the 5-parameter logistic fitted on
    the scored (test) split, as point estimates (refitting the logistic in every resample costs minutes
    per metric on thousands of points, and SRCC, the headline, does not depend on the fit)."""
    point = evaluate(x, y)
    return {"srcc": bootstrap_ci(srcc, groups, x, y, n_resamples=n_resamples).to_dict(),
            "krcc": bootstrap_ci(krcc, groups, x, y, n_resamples=n_resamples).to_dict(),
            "plcc": {"estimate": point.plcc}, "rmse": {"estimate": point.rmse}, "fit": point.fit.method}


def fmt_ci(entry: dict) -> str:
    return f"{entry['estimate']:.3f} [{entry['low']:.2f}, {entry['high']:.2f}]"


def write_report(args, results, scores, notes, build, targets, train_photos, test_photos, test_rows, seconds) -> None:
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    metrics = list(scores)
    command = "python benchmarks/machine_preference.py " + " ".join(sys.argv[1:])
    lines = ["# Does it predict what machines prefer?", "",
             f"Command: `{command}`  ",
             f"Machine: {platform.machine()}, CPU; wall time {seconds:.0f} s (scores cached in the dataset folder).  ",
             f"Dataset: {args.dataset} ({build['rows']} distorted images of {build['references']} references); "
             f"labels from the task models {', '.join(build['config']['task_models'])}.  ",
             f"ML-CLIPSim encoder: `{args.encoder}` (ImageNet weights from the offline package; not one of the task "
             "models).  ",
             f"Split by photo (fractions {args.split}, seed {args.seed}, as `mlclipsim calibrate`): "
             f"{len(train_photos)} train photos (calibration, choice of the single layer), {len(test_photos)} test "
             f"photos ({len(test_rows)} distorted images) on which every number below is measured. "
             f"95% CIs: {args.n_resamples} bootstrap resamples of test photos. PLCC/RMSE: after the 5-parameter "
             "logistic fitted on the test split (the MIQA protocol).", ""]
    lines += [f"- {note}" for note in notes] + [""]

    pixel_best = {t: max(results["correlation"][m.upper()][t]["srcc"]["estimate"]
                         for m in PIXEL_METRICS if m.upper() in results["correlation"]) for t in targets}
    calibrated = next((m for m in metrics if m.endswith("calibrated") and "uncalibrated" not in m), None)
    # the pair label of the first label set the pairs carry (soft_label unless --labels puts another first)
    lead = {kind: next((pair_label_column(name) for name in results["labels"]
                        if pair_label_column(name) in next(iter(entries.values()))), None)
            for kind, entries in results["two_afc"].items()}
    lines += ["## Targets", ""]
    if calibrated:
        for t in targets:
            value = results["correlation"][calibrated][t]["srcc"]["estimate"]
            gap = value - pixel_best[t]
            lines.append(f"- SRCC on {t}: calibrated {value:.3f} vs best pixel metric {pixel_best[t]:.3f}: "
                         f"{gap:+.3f} (target >= +0.25: {'met' if gap >= 0.25 else 'MISSED'})")
        if "psnr_matched" in results["two_afc"]:
            acc = results["two_afc"]["psnr_matched"][calibrated][lead["psnr_matched"]]["accuracy"]
            lines.append(f"- 2AFC accuracy on PSNR-matched pairs ({lead['psnr_matched']}): {acc:.3f} (target >= 0.80: "
                         f"{'met' if acc >= 0.8 else 'MISSED'})")
    if "roi_vs_background" in results["two_afc"] and "region_weighting" in results:
        for m in (calibrated, *REGION_ROWS.values()):
            acc = results["two_afc"]["roi_vs_background"][m][lead["roi_vs_background"]]["accuracy"]
            lines.append(f"- 2AFC accuracy on ROI-vs-background pairs, {m}: {acc:.3f} (target for region-weighted "
                         f"ML-CLIPSim >= 0.80: {'met' if acc >= 0.8 else 'MISSED'})")
    lines.append("")
    lines += side_by_side(results, metrics, targets)

    if "region_weighting" in results:
        sweep = results["region_weighting"]["sweep"]
        lines += ["## Region weighting: the background floor alpha on the validation photos", "",
                  "w = alpha + (1 - alpha) * region map per token (alpha = 1: unweighted). Chosen: the best mean of "
                  "SRCC with the mean MMOS and ROI-vs-background 2AFC accuracy, on validation photos only.", "",
                  "| alpha | " + " | ".join(f"{s} SRCC | {s} ROI-bg 2AFC" for s in sweep) + " |",
                  "| ---: |" + " ---: | ---: |" * len(sweep)]
        for alpha in REGION_ALPHAS:
            cells = []
            for source in sweep:
                e = sweep[source][alpha]
                mark = " *" if results["region_weighting"]["alpha"][source] == alpha else ""
                acc = "-" if e["val_roi_bg_accuracy"] is None else f"{e['val_roi_bg_accuracy']:.3f}"
                cells += [f"{e['val_srcc']:.3f}{mark}", acc]
            lines.append(f"| {alpha} | " + " | ".join(cells) + " |")
        lines += ["", "(* = chosen)", ""]

    if calibrated:
        pixel = {m: results["by_type"][m.upper()] for m in PIXEL_METRICS if m.upper() in results["by_type"]}
        losses = []
        for t, value in results["by_type"][calibrated].items():
            rivals = {m: v[t] for m, v in pixel.items() if v.get(t) is not None}
            if value is not None and rivals and max(rivals.values()) >= value:
                best = max(rivals, key=rivals.get)
                losses.append(f"{t} ({best} {rivals[best]:.2f} vs {value:.2f})")
        lines += ["Where: distortion types on which a pixel metric ranks the test images at least as well as "
                  f"calibrated ML-CLIPSim: {', '.join(losses) if losses else 'none'}.", "",
                  "Label agreement between the task models (SRCC on the test images): how far one machine's opinion "
                  "predicts another's, a rough ceiling for any metric of a task's MMOS:", "",
                  "| pair | SRCC |", "| --- | ---: |"]
        lines += [f"| {pair} | {value:.3f} |" for pair, value in results["label_agreement"].items()]
        lines.append("")

    for t in targets:
        count = results["label_counts"][t]
        lines += [f"## Correlation with {t} (test photos)", "",
                  f"{count['images']} test images ({count['dropped']} with a NaN label left out).", "",
                  "| metric | SRCC [95% CI] | KRCC [95% CI] | PLCC | RMSE |", "| --- | ---: | ---: | ---: | ---: |"]
        for m in metrics:
            e = results["correlation"][m][t]
            lines.append(f"| {m} | {fmt_ci(e['srcc'])} | {fmt_ci(e['krcc'])} | {e['plcc']['estimate']:.3f} | "
                         f"{e['rmse']['estimate']:.3f} |")
        lines.append("")

    for kind, title in (("psnr_matched", "2AFC on PSNR-matched pairs (PSNR is at chance by construction)"),
                        ("roi_vs_background", "2AFC on ROI-vs-background pairs (A = cleaner ROI)")):
        if kind not in results["two_afc"]:
            continue
        first = next(iter(results["two_afc"][kind].values()))
        main_label = lead[kind]
        columns = [c for c in first if c != main_label]
        n = first[main_label]["n"]
        counts = results["pair_counts"][kind]
        lines += [f"## {title}", "", f"{n} pairs on test photos with a defined {main_label}. Accuracy against the "
                  f"majority of {main_label} (ties left out), then agreement with it; the other columns: accuracy "
                  "against each other pair label (per task: that task's models; `@soft`: the continuous labels), "
                  "pairs with a NaN label left out (pairs per column: "
                  + ", ".join(f"{c} {v['pairs']}" for c, v in counts.items()) + ").", "",
                  "| metric | accuracy [95% CI] | soft agreement | " + " | ".join(c.replace("soft_label/", "")
                                                                              for c in columns)
                  + " |", "| --- | ---: | ---: |" + " ---: |" * len(columns)]
        for m in metrics:
            e = results["two_afc"][kind][m]
            ci = e[main_label]["accuracy_ci"]
            acc = f"{e[main_label]['accuracy']:.3f}" + (f" [{ci['low']:.2f}, {ci['high']:.2f}]" if ci else "")
            lines.append(f"| {m} | {acc} | {e[main_label]['soft_agreement']:.3f} | "
                         + " | ".join(f"{e[c]['accuracy']:.3f}" for c in columns) + " |")
        lines.append("")

    types = sorted({r["distortion"] for r in test_rows})
    lines += [f"Breakdowns below: SRCC with {label_column(results['labels'][0])} (the first label set's overall "
              "label; rows where it is NaN left out).", ""]
    lines += ["## SRCC with the mean MMOS per distortion type (test photos)", "",
              "| metric | " + " | ".join(types) + " |", "| --- |" + " ---: |" * len(types)]
    for m in metrics:
        cells = [results["by_type"][m].get(t) for t in types]
        lines.append(f"| {m} | " + " | ".join("-" if c is None else f"{c:.2f}" for c in cells) + " |")
    lines += ["", f"Codec distortions ({', '.join(CODEC_TYPES)}) together:", "",
              "| metric | SRCC |", "| --- | ---: |"]
    lines += [f"| {m} | {results['codec'][m]:.3f} |" for m in metrics if m in results["codec"]]
    modes = ["uniform", "roi", "background"]
    lines += ["", "## SRCC with the mean MMOS per region mode (test photos)", "",
              "| metric | " + " | ".join(modes) + " |", "| --- |" + " ---: |" * len(modes)]
    for m in metrics:
        cells = [results["by_mode"][m].get(k) for k in modes]
        lines.append(f"| {m} | " + " | ".join("-" if c is None else f"{c:.2f}" for c in cells) + " |")
    severities = [1, 2, 3, 4, 5]
    lines += ["", "## SRCC with the mean MMOS per severity (uniform mode, all types mixed, test photos)", "",
              "| metric | " + " | ".join(f"s{k}" for k in severities) + " |", "| --- |" + " ---: |" * len(severities)]
    for m in metrics:
        cells = [results["by_severity"][m].get(k) for k in severities]
        lines.append(f"| {m} | " + " | ".join("-" if c is None else f"{c:.2f}" for c in cells) + " |")
    lines += ["", "Plots: `machine_preference_scatter.png` (metric vs mean MMOS, test photos), "
              "`machine_preference_srcc.png` (SRCC with 95% CIs per target).", ""]
    (out / "machine_preference.md").write_text("\n".join(lines))
    (out / "machine_preference.json").write_text(json.dumps({"command": command, "results": results}, indent=2,
                                                            default=str))
    plot(out, results, scores, metrics, targets, test_rows)
    print("\n".join(lines))


def side_by_side(results: dict, metrics: list[str], targets: list[str]) -> list[str]:
    """The label sets side by side: SRCC with the overall and each task's label, and 2AFC accuracy against
    each pair label, per label set, with the images / pairs left for each (NaN labels dropped)."""
    labels = results["labels"]
    groups: dict[tuple[str, str | None], list[str]] = {}
    for t in targets:
        name, kind, what = parse_label_column(t)
        groups.setdefault((kind, what), []).append(t)
    order = [t for group in groups.values() for t in group]
    counts = results["label_counts"]
    lines = [f"## Label sets side by side ({', '.join(labels)}; test photos)", "",
             "SRCC with the overall label and each task's label of every label set; the first row gives the test "
             "images each label is defined on (NaN labels dropped, their count in brackets).", "",
             "| metric | " + " | ".join(order) + " |", "| --- |" + " ---: |" * len(order),
             "| images (NaN dropped) | " + " | ".join(f"{counts[t]['images']} ({counts[t]['dropped']})" for t in order)
             + " |"]
    for m in metrics:
        lines.append(f"| {m} | " + " | ".join(f"{results['correlation'][m][t]['srcc']['estimate']:.3f}"
                                              for t in order) + " |")
    lines.append("")
    for kind, entries in results["two_afc"].items():
        first = next(iter(entries.values()))
        columns = sorted(first, key=lambda c: (c.split("@")[0] != "soft_label", c.split("@")[0],
                                               labels.index(parse_pair_set(c)) if parse_pair_set(c) in labels else 0))
        pair_counts = results["pair_counts"][kind]
        lines += [f"2AFC accuracy on {kind} pairs (test photos) against each label set's pair labels:", "",
                  "| metric | " + " | ".join(columns) + " |", "| --- |" + " ---: |" * len(columns),
                  "| pairs (NaN dropped) | " + " | ".join(f"{pair_counts[c]['pairs']} ({pair_counts[c]['dropped']})"
                                                         for c in columns) + " |"]
        for m in metrics:
            lines.append(f"| {m} | " + " | ".join(f"{entries[m][c]['accuracy']:.3f}" for c in columns) + " |")
        lines.append("")
    return lines


def parse_pair_set(column: str) -> str:
    """The label set of a pairs.csv label column (``soft_label/detection@soft`` -> ``soft``)."""
    parsed = parse_pair_label_column(column)
    return parsed[0] if parsed else ""


def plot(out: Path, results, scores, metrics, targets, test_rows) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = 3
    rows_count = int(np.ceil(len(metrics) / columns))
    figure, axes = plt.subplots(rows_count, columns, figsize=(4.2 * columns, 3.6 * rows_count), squeeze=False)
    primary = targets[0]   # the first label set's overall label
    shown = [r for r in test_rows if np.isfinite(r[primary])]
    mmos = np.array([r[primary] for r in shown])
    for ax, m in zip(axes.flat, metrics):
        x = np.array([scores[m][r["distorted_path"]] for r in shown])
        ax.scatter(x, mmos, s=3, alpha=0.3)
        ax.set_title(f"{m[:48]}\nSRCC {results['correlation'][m][primary]['srcc']['estimate']:.3f}", fontsize=8)
        ax.set_xlabel("metric", fontsize=7)
        ax.set_ylabel(primary, fontsize=7)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    figure.tight_layout()
    figure.savefig(out / "machine_preference_scatter.png", dpi=110)
    plt.close(figure)

    figure, ax = plt.subplots(figsize=(max(8, 1.6 * len(targets) * len(metrics) / 4), 4.5))
    width = 0.8 / len(metrics)
    for i, m in enumerate(metrics):
        est = [results["correlation"][m][t]["srcc"]["estimate"] for t in targets]
        low = [e - results["correlation"][m][t]["srcc"]["low"] for e, t in zip(est, targets)]
        high = [results["correlation"][m][t]["srcc"]["high"] - e for e, t in zip(est, targets)]
        ax.bar(np.arange(len(targets)) + i * width, est, width, yerr=[low, high], label=m[:60], capsize=2)
    ax.set_xticks(np.arange(len(targets)) + 0.4 - width / 2, targets)
    ax.set_ylabel("SRCC (test photos)")
    ax.legend(fontsize=6, loc="lower left")
    figure.tight_layout()
    figure.savefig(out / "machine_preference_srcc.png", dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    sys.exit(main())
