"""RA-MIQA against machine opinion on held-out photos (issue 8's deliverable).

    python benchmarks/ra_miqa.py --dataset outputs/dataset [--train] [--paper-view] [--n-resamples 1000]
        [--runs outputs/ra_miqa] [--cache-dir outputs/ra_miqa_cache] [--out benchmarks/results]

``--train`` first trains what is missing, with the shipped recipe (``mlclipsim/configs/ra_miqa.yaml``,
through the same function as ``mlclipsim train-ramiqa``), one model per task on that task's
consistency label (``mmos/<task>``): RA-MIQA and the two ablations, no region token and the CNN
regressor on the same frozen encoder, into ``outputs/ra_miqa/<architecture>_<task>.pt``. The report says
which of them hold the very weights (tensor for tensor) shipped in ``mlclipsim/weights/ra_miqa/``. ``--paper-view``
also trains and scores RA-MIQA on the paper's view (short side 288, random 224 crops; detection only: it
needs a second feature cache).

Everything reported is on the TEST photos of the benchmark's split (fractions 0.6/0.1/0.3, seed 0, by
photo, as ``benchmarks/machine_preference.py`` and ``mlclipsim calibrate``); training used the train
photos and chose its checkpoint on the validation photos. SRCC/PLCC/KRCC/RMSE follow the protocol of
:func:`mlclipsim.eval.evaluate` (PLCC and RMSE after the 5-parameter logistic fitted on the scored
points); SRCC has a 95% bootstrap CI over test photos. Baselines: PSNR, SSIM, MS-SSIM and calibrated
ML-CLIPSim on MobileNetV2 (full-reference; scored through the dataset's shared score cache,
``<dataset>/scores/``). ROI-vs-background pairs: :func:`mlclipsim.eval.two_afc` on the test photos' pairs.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics as stats
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mlclipsim.backbones import EMBEDDING
from mlclipsim.core.images import read_image
from mlclipsim.data.datamodules import MachineQualityDataModule, load_manifest, load_pairs
from mlclipsim.data.score_images import score_baselines, score_images
from mlclipsim.eval import bootstrap_ci, breakdown, evaluate, srcc, two_afc
from mlclipsim.metrics.functional.ra_miqa import shipped_path
from mlclipsim.metrics.layer_weights import load_calibrated_weights
from mlclipsim.models.ra_miqa import FrozenFeatures, RAMIQAModel, read_trained
from mlclipsim.training.calibrate_layer_weights import all_layer_scorer
from mlclipsim.training.ra_miqa_data import FROZEN_KEYS, cache_features, frozen_spec, load_cached
from mlclipsim.training.train_ra_miqa import cli_arguments, train

TASKS = ("classification", "detection", "segmentation")
ARCHITECTURES = {"ra-miqa": "RA-MIQA", "no-region": "ablation: no region token",
                 "cnn": "ablation: CNN regressor (pooled features -> MLP)"}
MODES = ("all", "uniform", "roi", "background")
ENCODER = "torchvision/mobilenet_v2"
PAPER_VIEW = "RA-MIQA, paper view (short side 288, 224 crops)"


def model_path(runs: Path, architecture: str, task: str) -> Path:
    return runs / f"{architecture}_{task}.pt"


def is_shipped(path: Path, task: str) -> bool:
    """True when ``path`` holds the model the package ships for ``task``: the same config and the same
    weights, tensor for tensor (the files' ``meta`` differ: it records wall times and paths)."""
    shipped = shipped_path(task)
    if not (shipped.is_file() and path.is_file()):
        return False
    ours, theirs = read_trained(path), read_trained(shipped)
    if ours["config"] != theirs["config"] or ours["state_dict"].keys() != theirs["state_dict"].keys():
        return False
    return all(torch.equal(ours["state_dict"][k], theirs["state_dict"][k]) for k in ours["state_dict"])


def train_missing(args: argparse.Namespace) -> list[str]:
    """Train every model that has no file yet; returns the commands run."""
    jobs = [(a, t, model_path(args.runs, a, t), []) for t in TASKS for a in ARCHITECTURES]
    if args.paper_view:
        jobs.append(("ra-miqa", "detection", args.runs / "ra-miqa-paper-view_detection.pt",
                     ["model.encoder={view: center_crop}", "data.splits=[train, val]"]))
    done = []
    for architecture, task, path, extra in jobs:
        if path.is_file() and not args.retrain:
            continue
        name = path.stem
        overrides = [f"model.heads=[{task}/consistency]", f"model.architecture={architecture}",
                     f"data.root={args.dataset}", f"data.cache_dir={args.cache_dir}",
                     f"trainer.logger.init_args.name={name}", f"export={path}", *extra, *args.override]
        print(f"training {name}: mlclipsim train-ramiqa --config ra_miqa.yaml {' '.join(overrides)}", flush=True)
        summary = train(cli_arguments(["ra_miqa.yaml"], overrides))
        print(f"  best val SRCC {summary['best_val_srcc']}, {summary['wall_time_s']} s", flush=True)
        done.append(summary["command"])
    return done


def ra_miqa_scores(model: RAMIQAModel, paths: list[str], root: Path, cache_dir: Path,
                   photos: list[str]) -> np.ndarray:
    """Predictions of ``model``'s first head for ``paths``: from the feature cache when the scored view is
    the cached view (``view: resize``), else through the model from the image files."""
    spec = frozen_spec({k: model.config[k] for k in FROZEN_KEYS})
    with torch.no_grad():
        if spec["view"] == "resize":
            folder = cache_features(root, spec, cache_dir, photos=photos, progress=False)
            patch, region = load_cached(folder, paths)
            out = [model.predict(FrozenFeatures(patch[i:i + 256].float(), region[i:i + 256].float()))[:, 0]
                   for i in range(0, len(paths), 256)]
        else:
            out = [model(read_image(root / p)[None])[:, 0] for p in paths]  # references differ in size
    return torch.cat(out).numpy()


def check_cached_path(model: RAMIQAModel, paths: list[str], root: Path, cache_dir: Path, photos: list[str]) -> float:
    """Largest |cached-feature score - full model from the image file| over ``paths`` (float16 cache)."""
    cached = ra_miqa_scores(model, paths, root, cache_dir, photos)
    with torch.no_grad():
        direct = torch.cat([model(read_image(root / p)[None])[:, 0] for p in paths]).numpy()
    return float(np.abs(cached - direct).max())


def baseline_scores(root: Path, test_rows: list[dict], notes: list[str]) -> dict[str, dict[str, float]]:
    """PSNR, SSIM, MS-SSIM and calibrated ML-CLIPSim of the test images (shared score cache)."""
    pairs = sorted({(r["distorted_path"], r["reference_path"]) for r in test_rows})
    scores, baseline_notes = score_baselines(root, ("psnr", "ssim", "ms-ssim"), pairs)
    notes.extend(baseline_notes)
    scorer = all_layer_scorer(ENCODER)
    names = [*scorer.layers, EMBEDDING]

    def components(distorted: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return scorer.components(distorted, scorer.reference_features(reference).expand(len(distorted)))

    values = score_images(root, f"components__{ENCODER.replace('/', '__')}", components, pairs)
    record = load_calibrated_weights(ENCODER)
    index = [names.index(k) for k in record["weights"]]
    weights = np.array(list(record["weights"].values()))
    scores["ML-CLIPSim mobilenet_v2, calibrated (full-reference)"] = {
        k: float(v[index] @ weights) for k, v in values.items()}
    scores.update(region_weighted_rows(root, record["weights"], {r["distorted_path"] for r in test_rows}, notes))
    return scores


def region_weighted_rows(root: Path, layer_weights: dict[str, float], paths: set[str],
                         notes: list[str]) -> dict[str, dict[str, float]]:
    """Region-weighted calibrated ML-CLIPSim rows from the evaluation benchmark's cache and its chosen alphas
    (``benchmarks/results/machine_preference.json``, alpha picked on the validation photos there)."""
    from mlclipsim.data.region_scores import region_weighted_scores
    from mlclipsim.metrics.functional.ml_clipsim import MLCLIPSimScorer

    record_path = Path("benchmarks/results/machine_preference.json")
    layers = [k for k in layer_weights if k != EMBEDDING]
    cache = root / "scores" / f"region__{ENCODER.replace('/', '__')}__{'+'.join(layers)}.npz"
    if not record_path.is_file() or not cache.is_file():
        notes.append("Region-weighted ML-CLIPSim: not shown (run benchmarks/machine_preference.py first: it chooses "
                     "the background floor on the validation photos and caches the per-token statistics).")
        return {}
    alphas = json.loads(record_path.read_text())["results"].get("region_weighting", {}).get("alpha", {})
    with np.load(cache) as data:
        stats = {p: v for p, v in zip(data["paths"].tolist(), data["values"]) if p in paths}
    if not alphas or len(stats) < len(paths):
        notes.append("Region-weighted ML-CLIPSim: not shown (its cache does not cover the test images).")
        return {}
    weights = MLCLIPSimScorer(ENCODER, pretrained="random", layers=layers, weights=layer_weights).layer_weights
    rows = {}
    for source, alpha in alphas.items():
        label = "ROI mask of the labelling models" if source == "mask" else "saliency"
        rows[f"ML-CLIPSim region-weighted ({label}, alpha {alpha}; full-reference)"] = region_weighted_scores(
            stats, source, len(layers), weights.numpy(), float(alpha))
    return rows


def speed(repeats: int = 5) -> dict[str, float]:
    """Images/s at batch 8, 224 px: RA-MIQA scoring (no grad) and as a loss (forward + backward to the images)."""
    from mlclipsim import MLCLIPSimLoss, RAMIQALoss

    torch.manual_seed(0)
    images = torch.rand(8, 3, 224, 224)
    loss_fn = RAMIQALoss(task="detection")
    model = loss_fn.model

    def timed(fn) -> float:
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return 8 / stats.median(times)

    def score() -> None:
        with torch.no_grad():
            model(images)

    def loss() -> None:
        x = images.clone().requires_grad_()
        loss_fn(x).backward()

    ml_loss = MLCLIPSimLoss(backbone=ENCODER)
    reference = ml_loss.reference_features(images)

    def ml_clipsim_loss() -> None:
        x = images.flip(-1).clone().requires_grad_()
        ml_loss(x, reference).backward()

    return {"threads": torch.get_num_threads(), "ra_miqa_score": timed(score), "ra_miqa_loss": timed(loss),
            "ml_clipsim_loss": timed(ml_clipsim_loss)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--runs", type=Path, default=Path("outputs/ra_miqa"))
    parser.add_argument("--cache-dir", type=Path, default=Path("outputs/ra_miqa_cache"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--split", type=float, nargs=3, default=[0.6, 0.1, 0.3])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", action="store_true", help="train the models that have no file yet")
    parser.add_argument("--retrain", action="store_true", help="with --train: train every model again")
    parser.add_argument("--train-only", action="store_true", help="with --train: stop after training")
    parser.add_argument("--paper-view", action="store_true", help="also the paper's view (detection)")
    parser.add_argument("--override", nargs="*", default=[], help="KEY=VALUE overrides for every training")
    parser.add_argument("--n-resamples", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    root = args.dataset
    trained = train_missing(args) if args.train else []
    train_seconds = time.perf_counter() - start
    if args.train_only:
        return 0

    build = json.loads((root / "build_info.json").read_text())
    rows, columns = load_manifest(root)
    module = MachineQualityDataModule(root, split=tuple(args.split), seed=args.seed)
    photos = {name: module.photos_of(name) for name in ("train", "val", "test")}
    test_photos = set(photos["test"])
    test_rows = [r for r in rows if r["photo"] in test_photos]
    paths = [r["distorted_path"] for r in test_rows]
    notes: list[str] = []
    missing_targets = [f"{kind}/{t}" for kind in ("accuracy", "composite") for t in TASKS
                       if f"{kind}/{t}" not in columns]
    if missing_targets:
        notes.append("Accuracy and composite targets: not measurable: the manifest has no "
                     f"{', '.join(missing_targets[:2])}, ... columns (the offline data engine has no ground-truth "
                     "annotations; it labels consistency: agreement of each task model's output on the distorted "
                     "image with its output on the reference). Every number below is for consistency.")

    # ------------------------------------------------------------------ scores
    scores = baseline_scores(root, test_rows, notes)
    ra: dict[tuple[str, str], dict[str, float]] = {}
    models: dict[tuple[str, str], RAMIQAModel] = {}
    for task in TASKS:
        for architecture in ARCHITECTURES:
            path = model_path(args.runs, architecture, task)
            if not path.is_file():
                notes.append(f"{architecture} for {task}: no model file {path} (run with --train).")
                continue
            model = RAMIQAModel.from_file(path)
            models[(architecture, task)] = model
            ra[(architecture, task)] = dict(zip(paths, ra_miqa_scores(model, paths, root, args.cache_dir,
                                                                      photos["test"])))
    paper_path = args.runs / "ra-miqa-paper-view_detection.pt"
    if paper_path.is_file():
        model = RAMIQAModel.from_file(paper_path)
        models[("paper-view", "detection")] = model
        ra[("paper-view", "detection")] = dict(zip(paths, ra_miqa_scores(model, paths, root, args.cache_dir,
                                                                          photos["test"])))
    sample = paths[:: max(1, len(paths) // 24)][:24]
    cached_vs_direct = (check_cached_path(models[("ra-miqa", "detection")], sample, root, args.cache_dir,
                                          photos["test"]) if ("ra-miqa", "detection") in models else None)

    def metric_scores(task: str) -> dict[str, dict[str, float]]:
        out = dict(scores)
        for architecture, label in ARCHITECTURES.items():
            if (architecture, task) in ra:
                out[f"{label} ({task} model)"] = ra[(architecture, task)]
        if ("paper-view", task) in ra:
            out[f"{PAPER_VIEW} ({task} model)"] = ra[("paper-view", task)]
        return out

    # ------------------------------------------------------------------ correlation per task, target and mode
    groups = [r["photo"] for r in test_rows]
    results: dict = {"correlation": {}, "cross_task": {}, "pairs": {}, "by_type": {}, "by_severity": {},
                     "label_agreement": {}, "meta": {}, "fit": {}}
    for task in TASKS:
        target = f"mmos/{task}"
        y = np.array([r[target] for r in test_rows])
        results["correlation"][task] = {}
        for metric, values in metric_scores(task).items():
            x = np.array([values[p] for p in paths])
            entry = {}
            for mode in MODES:
                index = [i for i, r in enumerate(test_rows) if mode == "all" or r["mode"] == mode]
                result = evaluate(x[index], y[index])
                entry[mode] = {"srcc": result.srcc, "plcc": result.plcc, "krcc": result.krcc, "rmse": result.rmse,
                               "n": result.n}
            entry["all"]["srcc_ci"] = bootstrap_ci(srcc, groups, x, y, n_resamples=args.n_resamples).to_dict()
            results["correlation"][task][metric] = entry
        if ("ra-miqa", task) in ra:
            x = np.array([ra[("ra-miqa", task)][p] for p in paths])
            results["by_type"][task] = {k: (e.result.srcc if e.result else None) for k, e in breakdown(
                x, y, [r["distortion"] for r in test_rows], min_count=20).items()}
            results["by_type_pixel"] = results.get("by_type_pixel", {})
            best_pixel = {}
            for name in ("PSNR", "SSIM", "MS-SSIM"):
                if name in scores:
                    xp = np.array([scores[name][p] for p in paths])
                    best_pixel[name] = {k: (e.result.srcc if e.result else None) for k, e in breakdown(
                        xp, y, [r["distortion"] for r in test_rows], min_count=20).items()}
            results["by_type_pixel"][task] = best_pixel
            uniform = [i for i, r in enumerate(test_rows) if r["mode"] == "uniform"]
            results["by_severity"][task] = {k: (e.result.srcc if e.result else None) for k, e in breakdown(
                x[uniform], y[uniform], [test_rows[i]["roi_severity"] for i in uniform], min_count=20).items()}
    # why: how far RA-MIQA fits its training photos, and what knowing the distortion itself gives
    train_rows = [r for r in rows if r["photo"] in set(photos["train"])]
    train_paths = [r["distorted_path"] for r in train_rows]
    for (architecture, task), model in models.items():
        if architecture == "paper-view":
            continue
        x_train = ra_miqa_scores(model, train_paths, root, args.cache_dir, photos["train"])
        results["fit"][f"{architecture}/{task}"] = {
            "train_srcc": srcc(x_train, [r[f"mmos/{task}"] for r in train_rows]),
            "test_srcc": results["correlation"][task][
                f"{ARCHITECTURES[architecture]} ({task} model)"]["all"]["srcc"]}
    severity = -np.array([r["roi_severity"] + r["bg_severity"] for r in test_rows], dtype=float)
    results["severity_oracle"] = {task: srcc(severity, [r[f"mmos/{task}"] for r in test_rows]) for task in TASKS}
    results["shipped"] = {f"{a}/{t}": is_shipped(model_path(args.runs, a, t), t) for a, t in models if a == "ra-miqa"}
    model_columns = [c for c in columns if c.startswith("consistency/")]
    for i, a in enumerate(model_columns):
        for b in model_columns[i + 1:]:
            results["label_agreement"][f"{a.split('/')[1]} ~ {b.split('/')[1]}"] = srcc(
                [r[a] for r in test_rows], [r[b] for r in test_rows])
    for i, a in enumerate(TASKS):
        for b in TASKS[i + 1:]:
            results["label_agreement"][f"mmos/{a} ~ mmos/{b}"] = srcc([r[f"mmos/{a}"] for r in test_rows],
                                                                      [r[f"mmos/{b}"] for r in test_rows])

    # ------------------------------------------------------------------ cross-task
    for architecture in ARCHITECTURES:
        for trained_on in TASKS:
            if (architecture, trained_on) not in ra:
                continue
            x = np.array([ra[(architecture, trained_on)][p] for p in paths])
            results["cross_task"].setdefault(architecture, {})[trained_on] = {
                t: srcc(x, [r["mmos" if t == "mmos" else f"mmos/{t}"] for r in test_rows]) for t in (*TASKS, "mmos")}

    # ------------------------------------------------------------------ ROI-vs-background pairs
    pairs, _ = load_pairs(root)
    subset = [p for p in pairs if p["kind"] == "roi_vs_background" and p["photo"] in test_photos]
    label_columns = ["soft_label", *[f"soft_label/{t}" for t in TASKS]]
    pair_metrics: dict[str, dict[str, dict[str, float]]] = {}
    for name, values in scores.items():
        pair_metrics[name] = {column: values for column in label_columns}
    for architecture, label in ARCHITECTURES.items():
        if not all((architecture, t) in ra for t in TASKS):
            continue
        mean_values = {p: float(np.mean([ra[(architecture, t)][p] for t in TASKS])) for p in paths}
        pair_metrics[label] = {"soft_label": mean_values,
                               **{f"soft_label/{t}": ra[(architecture, t)] for t in TASKS}}
    for metric, by_column in pair_metrics.items():
        results["pairs"][metric] = {}
        for column in label_columns:
            values = by_column[column]
            a = [values[p["a_path"]] for p in subset]
            b = [values[p["b_path"]] for p in subset]
            results["pairs"][metric][column] = two_afc(a, b, [p[column] for p in subset],
                                                       groups=[p["photo"] for p in subset],
                                                       n_resamples=args.n_resamples).to_dict()

    # ------------------------------------------------------------------ speed and meta
    speed_numbers = speed()
    for (architecture, task), model in models.items():
        meta = getattr(model, "meta", {})
        results["meta"][f"{architecture}/{task}"] = {
            "best_val_srcc": meta.get("best_val_srcc"), "epochs": meta.get("epochs_run"),
            "steps": meta.get("global_steps"), "wall_time_s": meta.get("wall_time_s"),
            "parameters": sum(p.numel() for p in model.net.parameters()), "command": meta.get("command")}
    seconds = time.perf_counter() - start
    write_report(args, results, notes, build, photos, test_rows, subset, speed_numbers, cached_vs_direct, seconds,
                 train_seconds, trained)
    return 0


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def write_report(args, results, notes, build, photos, test_rows, pairs, speed_numbers, cached_vs_direct, seconds,
                 train_seconds, trained) -> None:
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/ra_miqa.py " + " ".join(sys.argv[1:])
    corr = results["correlation"]
    ra_name = {task: f"RA-MIQA ({task} model)" for task in TASKS}
    nr_name = {task: f"{ARCHITECTURES['no-region']} ({task} model)" for task in TASKS}
    lines = ["# RA-MIQA: no-reference, region-aware machine quality", "",
             f"Command: `{command}`  ",
             f"Machine: {platform.machine()}, CPU only, {speed_numbers['threads']} torch thread(s) for scoring; "
             f"wall time {seconds:.0f} s ({train_seconds:.0f} s of it training), shared with other jobs.  ",
             f"Dataset: {args.dataset} ({build['rows']} distorted images of {build['references']} references); labels "
             f"from the task models {', '.join(build['config']['task_models'])}.  ",
             f"Split by photo (fractions {args.split}, seed {args.seed}, the evaluation benchmark's): "
             f"{len(photos['train'])} train photos (training), {len(photos['val'])} validation photos (checkpoint "
             f"choice), {len(photos['test'])} test photos ({len(test_rows)} distorted images, {len(pairs)} "
             "ROI-vs-background pairs) on which every number below is measured.  ",
             "Encoders: patch tokens and region token both from the frozen ImageNet MobileNetV2 (offline package; "
             "not a labeller), run once: patches from blocks features.3/.6/.13 (mean+std pooled to a 7x7 grid), the "
             "region token from features.17 (deepest block), attention-pooled. EfficientNet-Lite0 labels the "
             "classification task and is not used as an encoder; no timm ViT weights exist offline, so the paper's "
             "ViT-S/16 path is built and tested on random weights only.  ",
             "Labels: consistency per task = `mmos/<task>` (mean over the task's models: detection = centernet + "
             "nanodet, segmentation = selfie, classification = efficientnet-lite0).  ",
             "Protocol: SRCC, KRCC on raw scores; PLCC, RMSE after the 5-parameter logistic fitted on the scored "
             f"points; SRCC 95% CI from {args.n_resamples} bootstrap resamples of test photos.", ""]
    if cached_vs_direct is not None:
        lines.append(f"RA-MIQA scores come from the float16 feature cache of the scored view; on 24 test images they "
                     f"differ from the full model run on the image files by at most {cached_vs_direct:.1e}.")
    lines += [f"- {note}" for note in notes] + [""]

    # targets
    lines += ["## Targets", ""]
    for task in TASKS:
        if ra_name[task] in corr[task]:
            value = corr[task][ra_name[task]]["all"]["srcc"]
            lines.append(f"- SRCC with {task} consistency >= 0.75: {value:.3f} "
                         f"({'met' if value >= 0.75 else 'MISSED'})")
    for task in TASKS:
        if ra_name[task] in corr[task] and nr_name[task] in corr[task]:
            gains = {m: corr[task][ra_name[task]][m]["srcc"] - corr[task][nr_name[task]][m]["srcc"]
                     for m in ("roi", "background")}
            lines.append(f"- region token over no-region, {task}: ROI-dominated {gains['roi']:+.3f}, "
                         f"background-dominated {gains['background']:+.3f} (target >= +0.05 on both: "
                         f"{'met' if min(gains.values()) >= 0.05 else 'MISSED'})")
    if "RA-MIQA" in results["pairs"]:
        acc = results["pairs"]["RA-MIQA"]["soft_label"]["accuracy"]
        lines.append(f"- ROI-vs-background pairs, RA-MIQA (mean of the three task models) against the machines' "
                     f"majority: {acc:.3f} (target >= 0.80: {'met' if acc >= 0.8 else 'MISSED'})")
    lines.append("")

    for task in TASKS:
        lines += [f"## {task}: correlation with consistency (`mmos/{task}`), test photos", "",
                  "| metric | SRCC [95% CI] | PLCC | KRCC | RMSE | SRCC uniform | SRCC ROI-dom. | SRCC BG-dom. |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for metric, entry in corr[task].items():
            a, ci = entry["all"], entry["all"]["srcc_ci"]
            lines.append(f"| {metric} | {a['srcc']:.3f} [{ci['low']:.2f}, {ci['high']:.2f}] | {a['plcc']:.3f} | "
                         f"{a['krcc']:.3f} | {a['rmse']:.3f} | {fmt(entry['uniform']['srcc'])} | "
                         f"{fmt(entry['roi']['srcc'])} | {fmt(entry['background']['srcc'])} |")
        lines.append("")
        lines += [f"Per region mode, all four statistics ({task}):", "",
                  "| metric | mode | n | SRCC | PLCC | KRCC | RMSE |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        for metric, entry in corr[task].items():
            for mode in ("uniform", "roi", "background"):
                e = entry[mode]
                lines.append(f"| {metric} | {mode} | {e['n']} | {fmt(e['srcc'])} | {fmt(e['plcc'])} | "
                             f"{fmt(e['krcc'])} | {fmt(e['rmse'])} |")
        lines.append("")

    lines += ["## Cross-task: trained on one task's consistency, tested on every task's (SRCC, test photos)", "",
              "| model | trained on | " + " | ".join(TASKS) + " | mean MMOS |", "| --- | --- |" + " ---: |" * 4]
    for architecture, by_task in results["cross_task"].items():
        for trained_on, values in by_task.items():
            lines.append(f"| {ARCHITECTURES[architecture]} | {trained_on} | "
                         + " | ".join(f"{values[t]:.3f}" for t in (*TASKS, "mmos")) + " |")
    lines += ["", "Label agreement between the labels themselves (SRCC on the test images), a rough ceiling for "
              "predicting one task from another:", "", "| pair | SRCC |", "| --- | ---: |"]
    lines += [f"| {pair} | {value:.3f} |" for pair, value in results["label_agreement"].items()]
    lines.append("")

    lines += ["## Why the targets are missed", "",
              "Knowing the distortion itself (an oracle that scores an image by minus its ROI + background severity; "
              "not a metric) reaches SRCC " + ", ".join(f"{t} {v:.3f}" for t, v in results["severity_oracle"].items())
              + " with the consistency labels on the test photos: the labels depend on the photo's content (how many "
              "objects a detector finds, whether the segmenter sees a person, how confident the classifier is) at "
              "least as much as on the damage, and two detectors agree with each other only at the SRCC in the label "
              "table above. A no-reference model must infer that content dependence from 52 training photos. It fits "
              "the training photos and does not carry it over:", "",
              "| model | SRCC train photos | SRCC test photos |", "| --- | ---: | ---: |"]
    lines += [f"| {key} | {v['train_srcc']:.3f} | {v['test_srcc']:.3f} |" for key, v in results["fit"].items()]
    shipped = ", ".join(f"{k} {'shipped' if v else 'NOT shipped'}" for k, v in results["shipped"].items())
    lines += ["", f"RA-MIQA files evaluated here vs the package: {shipped}.", ""]

    first = next(iter(results["pairs"].values()), None)
    if first:
        lines += ["## ROI-vs-background pairs (A = cleaner ROI, B = cleaner background; test photos)", "",
                  f"{first['soft_label']['n']} pairs. Accuracy against the majority label of the machines (ties left "
                  "out), with a 95% CI over photos; soft agreement with the share of machines preferring A; per task: "
                  "accuracy against that task's models. RA-MIQA rows: each task column uses that task's model; the "
                  "overall column uses the mean of the three task models' predictions.", "",
                  "| metric | accuracy [95% CI] | soft agreement | " + " | ".join(TASKS) + " |",
                  "| --- | ---: | ---: |" + " ---: |" * len(TASKS)]
        for metric, entry in results["pairs"].items():
            overall = entry["soft_label"]
            ci = overall["accuracy_ci"]
            cell = f"{overall['accuracy']:.3f}" + (f" [{ci['low']:.2f}, {ci['high']:.2f}]" if ci else "")
            lines.append(f"| {metric} | {cell} | {overall['soft_agreement']:.3f} | "
                         + " | ".join(f"{entry[f'soft_label/{t}']['accuracy']:.3f}" for t in TASKS) + " |")
        lines.append("")

    lines += ["## Where RA-MIQA misses: SRCC per distortion type (test photos, all modes)", "",
              "Each task's RA-MIQA model against that task's consistency, next to the best pixel metric on the same "
              "subset.", ""]
    types = sorted({r["distortion"] for r in test_rows})
    lines += ["| task | " + " | ".join(types) + " |", "| --- |" + " ---: |" * len(types)]
    for task, values in results["by_type"].items():
        pixel = results["by_type_pixel"].get(task, {})
        cells = []
        for t in types:
            best = max((v.get(t) for v in pixel.values() if v.get(t) is not None), default=None)
            cells.append(f"{fmt(values.get(t), 2)} ({fmt(best, 2)})")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    lines += ["", "(in brackets: the best of PSNR / SSIM / MS-SSIM)", "",
              "SRCC per severity (uniform mode, all types mixed):", "",
              "| task | s1 | s2 | s3 | s4 | s5 |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for task, values in results["by_severity"].items():
        lines.append(f"| {task} | " + " | ".join(fmt(values.get(k), 2) for k in range(1, 6)) + " |")
    lines.append("")

    lines += ["## Speed (batch 8, 224 x 224, CPU)", "",
              "| what | images/s |", "| --- | ---: |",
              f"| RA-MIQA scoring (no gradient) | {speed_numbers['ra_miqa_score']:.1f} |",
              f"| RA-MIQA as a loss (forward + backward to the images) | {speed_numbers['ra_miqa_loss']:.1f} |",
              f"| for comparison: ML-CLIPSim MobileNetV2 loss (forward + backward, references cached) | "
              f"{speed_numbers['ml_clipsim_loss']:.1f} |", "",
              f"Median of 5 runs after a warm-up, {speed_numbers['threads']} torch thread(s), on a machine shared with "
              "other jobs (absolute numbers are pessimistic; the ratio is the point).", ""]

    lines += ["## Training runs", "",
              "| model | best val SRCC | epochs | steps | trainable parameters | wall time (s) |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for key, meta in results["meta"].items():
        lines.append(f"| {key} | {fmt(meta['best_val_srcc'])} | {meta['epochs']} | {meta['steps']} | "
                     f"{meta['parameters']} | {meta['wall_time_s']} |")
    lines += ["", "Every model: `mlclipsim train-ramiqa --config ra_miqa.yaml model.heads=[<task>/consistency] "
              "model.architecture=<architecture> ...` (the exact command is stored in each file's `meta` and in the "
              "JSON next to it); recipe: MSE, AdamW lr 1e-4, weight decay 1e-4, 1 warm-up epoch then cosine, flips "
              "on the cached feature maps, batch 32, 8 epochs, best epoch by validation SRCC (8 photos: a noisy "
              "choice), clean references added with label 1.", ""]
    lines += ["## As a codec loss", "",
              "The no-reference `ra-miqa` codec term (scale and recipes: codecs/README.md) and the codecs trained "
              "with it, alone and mixed with MSE, are measured on the held-out photos by "
              "`benchmarks/ra_miqa_codecs.py` (is the term gamed: [ra_miqa_codecs.md](ra_miqa_codecs.md)) and by "
              "`benchmarks/rate_task.py` (their points on the rate-task curves: [rate_task.md](rate_task.md)).", ""]
    (out / "ra_miqa.md").write_text("\n".join(lines))
    (out / "ra_miqa.json").write_text(json.dumps({"command": command, "trained": trained, "results": results},
                                                 indent=2, default=str))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
