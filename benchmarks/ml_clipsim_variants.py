"""Which ML-CLIPSim variant should ship as the default? Calibrated vs uniform vs embedding vs magnitude-aware.

    nice python benchmarks/ml_clipsim_variants.py --dataset outputs/dataset [--encoder torchvision/mobilenet_v2]
        [--split 0.6 0.1 0.3] [--seed 0] [--n-resamples 1000] [--out benchmarks/results] [--write-weights]
        [--baselines ms-ssim psnr]

The photos are split exactly as ``mlclipsim calibrate`` and ``benchmarks/machine_preference.py`` split them
(same fractions and seed). Every image is encoded once with every layer of the encoder; per image and layer
the cosine term and the magnitude term (:func:`~mlclipsim.metrics.functional.ml_clipsim.magnitude_similarity`,
token mean) are cached in ``<dataset>/scores/``, so that every variant is a weighted sum of cached columns
(checked against the library's own scorer on test images).

Variants: the presets ``uniform`` (4 default layers + embedding) and ``embedding``, the shipped calibration,
each with and without the magnitude term, and calibrations refitted here on the **train photos only**:
Bradley-Terry weights (:func:`~mlclipsim.training.layer_weights_fit.fit_layer_weights`) over the default
layers + embedding or over all layers + embedding, with or without the magnitude term, fitted on the
PSNR-matched pairs plus within-reference MMOS pairs (two distorted versions of one reference whose mean
MMOS differ by >= 0.05, label 1 for the better one), regularised toward uniform by early stopping (the
softmax weights start uniform; 25, 100 or 400 full-batch steps). One variant is **chosen on the validation
photos** by the mean of SRCC with the mean MMOS and PSNR-matched 2AFC accuracy; the test photos are only
reported. ``--write-weights`` ships the choice (``default``), the best refit with and without the
magnitude term (``weights``, ``magnitude_weights``), the validation comparison, and the agreement scale
(5-parameter logistic, score -> mean MMOS, fitted on the train photos' images with the default variant)
into ``mlclipsim/weights/ml_clipsim/<encoder>.json``.

Report: ``benchmarks/results/ml_clipsim_variants.md`` (+ ``.json``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mlclipsim.backbones import EMBEDDING
from mlclipsim.core.images import read_image
from mlclipsim.data.datamodules import MachineQualityDataModule, load_manifest, load_pairs
from mlclipsim.data.score_images import dataset_image_pairs, score_baselines, score_images
from mlclipsim.eval import bootstrap_ci, breakdown, srcc, two_afc
from mlclipsim.metrics.agreement_scale import fit_agreement_scale
from mlclipsim.metrics.functional.ml_clipsim import (
    MLCLIPSimScorer,
    _token_mean,
    augmented_cosine,
    get_cosine_map,
    magnitude_similarity,
)
from mlclipsim.metrics.layer_weights import MAGNITUDE, load_calibrated_weights
from mlclipsim.training.calibrate_layer_weights import all_layer_scorer
from mlclipsim.training.layer_weights_fit import fit_layer_weights

PHOTOMETRIC = ("contrast", "darkness", "fog", "snow")
EPOCHS = (25, 100, 400)
MMOS_MARGIN = 0.05
MAX_MMOS_PAIRS = 20000
REPO = Path(__file__).resolve().parents[1]


def columns_scorer(scorer: MLCLIPSimScorer):
    """Pair scorer -> (B, 2(L+1)): cosine terms of every layer and the embedding, then their magnitude terms."""
    mapping = get_cosine_map(scorer.cosine_map)

    def score(distorted: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        ref = scorer.encoder(reference, scorer.layers)
        pred = scorer.encoder(distorted, scorer.layers)
        cos = [_token_mean(mapping(augmented_cosine(pred.tokens[k], ref.tokens[k].expand_as(pred.tokens[k]))), None)
               for k in scorer.layers]
        cos.append(mapping(augmented_cosine(pred.embedding, ref.embedding.expand_as(pred.embedding))))
        mag = [_token_mean(magnitude_similarity(pred.tokens[k], ref.tokens[k].expand_as(pred.tokens[k])), None)
               for k in scorer.layers]
        mag.append(magnitude_similarity(pred.embedding, ref.embedding.expand_as(pred.embedding)))
        return torch.stack(cos + mag, dim=-1)

    return score


class Columns:
    """Cached per-image columns and how a variant's weights combine them into a score."""

    def __init__(self, values: dict[str, np.ndarray], layers: tuple[str, ...]) -> None:
        self.values, self.layers = values, layers
        self.n = len(layers) + 1

    def matrix(self, terms: list[str], paths: list[str]) -> np.ndarray:
        """(len(paths), len(terms)): each term's column (``"magnitude"``: mean over the terms' layers)."""
        layers = [t for t in terms if t not in (EMBEDDING, MAGNITUDE)]
        out = np.empty((len(paths), len(terms)))
        for i, path in enumerate(paths):
            v = self.values[path]
            for j, term in enumerate(terms):
                if term == EMBEDDING:
                    out[i, j] = v[self.n - 1]
                elif term == MAGNITUDE:
                    out[i, j] = (np.mean([v[self.n + self.layers.index(k)] for k in layers]) if layers
                                 else v[2 * self.n - 1])
                else:
                    out[i, j] = v[self.layers.index(term)]
        return out

    def scores(self, weights: dict[str, float], paths: list[str]) -> dict[str, float]:
        terms = list(weights)
        w = np.array([weights[t] for t in terms], dtype=np.float64)
        return dict(zip(paths, (self.matrix(terms, paths) @ (w / w.sum())).tolist()))


def mmos_pairs(rows: list[dict], seed: int) -> list[tuple[str, str, float]]:
    """Within-reference pairs (better, worse, 1.0) of distorted images whose mean MMOS differ by >= the margin."""
    rng = np.random.default_rng(seed)
    by_reference: dict[str, list[dict]] = {}
    for r in rows:
        by_reference.setdefault(r["reference_path"], []).append(r)
    out = []
    for group in by_reference.values():
        for a, b in itertools.combinations(group, 2):
            if abs(a["mmos"] - b["mmos"]) >= MMOS_MARGIN:
                better, worse = (a, b) if a["mmos"] > b["mmos"] else (b, a)
                out.append((better["distorted_path"], worse["distorted_path"], 1.0))
    if len(out) > MAX_MMOS_PAIRS:
        out = [out[i] for i in sorted(rng.choice(len(out), MAX_MMOS_PAIRS, replace=False))]
    flip = rng.random(len(out)) < 0.5  # present the better image as A or as B at random
    return [(b, a, 0.0) if f else (a, b, 1.0) for (a, b, _), f in zip(out, flip)]


def evaluate(scores: dict[str, float], rows: list[dict], pairs: list[dict], targets: list[str],
             n_resamples: int = 0) -> dict:
    """SRCC with each MMOS target, per distortion type, PSNR-matched 2AFC (with a photo-bootstrap CI)."""
    x = np.array([scores[r["distorted_path"]] for r in rows])
    groups = [r["photo"] for r in rows]
    out: dict = {"n_images": len(rows), "n_photos": len(set(groups))}
    for t in targets:
        y = np.array([r[t] for r in rows])
        out[f"srcc/{t}"] = (bootstrap_ci(srcc, groups, x, y, n_resamples=n_resamples).to_dict() if n_resamples
                            else {"estimate": srcc(x, y)})
    by_type = breakdown(x, [r["mmos"] for r in rows], [r["distortion"] for r in rows], min_count=10)
    out["by_type"] = {k: (e.result.srcc if e.result else None) for k, e in by_type.items()}
    photometric = [i for i, r in enumerate(rows) if r["distortion"] in PHOTOMETRIC]
    out["photometric_srcc"] = (srcc(x[photometric], np.array([rows[i]["mmos"] for i in photometric]))
                               if len(photometric) >= 3 else None)
    subset = [p for p in pairs if p["kind"] == "psnr_matched"]
    result = two_afc([scores[p["a_path"]] for p in subset], [scores[p["b_path"]] for p in subset],
                     [p["soft_label"] for p in subset],
                     **({"groups": [p["photo"] for p in subset], "n_resamples": n_resamples} if n_resamples else {})
                     ).to_dict()
    out["2afc"] = result
    out["criterion"] = (out["srcc/mmos"]["estimate"] + result["accuracy"]) / 2
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--encoder", default="torchvision/mobilenet_v2")
    parser.add_argument("--split", type=float, nargs=3, default=[0.6, 0.1, 0.3])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-resamples", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--baselines", nargs="*", default=["ms-ssim", "psnr"], help="pixel metrics to compare")
    parser.add_argument("--write-weights", action="store_true",
                        help="ship the choice and the agreement scale in mlclipsim/weights/ml_clipsim/")
    args = parser.parse_args()
    start = time.perf_counter()
    root = args.dataset
    command = "python benchmarks/ml_clipsim_variants.py " + " ".join(sys.argv[1:])

    rows, manifest_columns = load_manifest(root)
    pairs, _ = load_pairs(root)
    module = MachineQualityDataModule(root, split=tuple(args.split), seed=args.seed)
    photos = {s: set(module.photos_of(s)) for s in ("train", "val", "test")}
    split_rows = {s: [r for r in rows if r["photo"] in photos[s]] for s in photos}
    split_pairs = {s: [p for p in pairs if p["photo"] in photos[s]] for s in photos}
    targets = ["mmos"] + [c for c in manifest_columns if c.startswith("mmos/")]

    scorer = all_layer_scorer(args.encoder)
    layers = tuple(scorer.layers)
    cache = f"variant_columns__{args.encoder.replace('/', '__')}"
    columns = Columns(score_images(root, cache, columns_scorer(scorer), dataset_image_pairs(root)), layers)
    default_layers = list(scorer.encoder.default_layers)

    # ------------------------------------------------------------------ variants
    variants: dict[str, dict[str, float]] = {
        "uniform": {k: 1.0 for k in (*default_layers, EMBEDDING)},
        "embedding": {EMBEDDING: 1.0},
        "uniform + magnitude": {k: 1.0 for k in (*default_layers, EMBEDDING, MAGNITUDE)},
        "embedding + magnitude": {EMBEDDING: 1.0, MAGNITUDE: 1.0},
    }
    shipped = load_calibrated_weights(args.encoder)
    if shipped is not None:
        variants["calibrated (shipped before)"] = {k: v for k, v in shipped["weights"].items() if v > 0}

    def pair_arrays(terms: list[str], split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        matched = [(p["a_path"], p["b_path"], p["soft_label"]) for p in split_pairs[split]
                   if p["kind"] == "psnr_matched"]
        chosen = matched + mmos_pairs(split_rows[split], args.seed)
        a = columns.matrix(terms, [c[0] for c in chosen])
        b = columns.matrix(terms, [c[1] for c in chosen])
        return a, b, np.array([c[2] for c in chosen], dtype=np.float32)

    fits = {}
    for (layer_set, layer_names), magnitude, epochs in itertools.product(
            (("4 layers", default_layers), ("all layers", list(layers))), (False, True), EPOCHS):
        terms = [*layer_names, EMBEDDING, *((MAGNITUDE,) if magnitude else ())]
        result = fit_layer_weights(terms, pair_arrays(terms, "train"), pair_arrays(terms, "val"),
                                   max_epochs=epochs, seed=args.seed)
        name = f"calibrated: {layer_set}{' + magnitude' if magnitude else ''}, {epochs} steps"
        variants[name] = result.weights
        fits[name] = {"magnitude": magnitude, "weights": result.weights, "temperature": result.temperature,
                      "train_pairs": int(len(pair_arrays(terms, "train")[2])),
                      "train_2afc_soft": result.train_2afc, "val_2afc_soft": result.val_2afc}

    # ------------------------------------------------------------------ evaluation
    every_path = [r["distorted_path"] for r in rows] + [p[k] for p in pairs for k in ("a_path", "b_path")]
    every_path = sorted(set(every_path))
    scores = {name: columns.scores(w, every_path) for name, w in variants.items()}
    results: dict = {"val": {}, "test": {}}
    for name in variants:
        results["val"][name] = evaluate(scores[name], split_rows["val"], split_pairs["val"], targets)
        results["test"][name] = evaluate(scores[name], split_rows["test"], split_pairs["test"], targets,
                                         args.n_resamples)
    used = {r["reference_path"] for r in split_rows["val"] + split_rows["test"]}
    image_pairs = [(d, r) for d, r in dataset_image_pairs(root) if r in used]
    baselines, notes = score_baselines(root, tuple(args.baselines), image_pairs)
    for name, values in baselines.items():
        results["val"][name] = evaluate(values, split_rows["val"], split_pairs["val"], targets)
        results["test"][name] = evaluate(values, split_rows["test"], split_pairs["test"], targets, args.n_resamples)

    candidates = list(variants)
    chosen = max(candidates, key=lambda n: results["val"][n]["criterion"])
    best_plain = max((n for n in fits if not fits[n]["magnitude"]), key=lambda n: results["val"][n]["criterion"])
    best_magnitude = max((n for n in fits if fits[n]["magnitude"]), key=lambda n: results["val"][n]["criterion"])

    # the cached decomposition is the library's own score: check the chosen variant (and the magnitude term)
    reference_path = sorted(r["reference_path"] for r in split_rows["test"])[0]
    sample = [r for r in split_rows["test"] if r["reference_path"] == reference_path][:8]
    reference = read_image(root / reference_path)[None]
    distorted = torch.stack([read_image(root / r["distorted_path"]) for r in sample])
    check = 0.0
    for name in dict.fromkeys((chosen, "uniform + magnitude")):
        weights = variants[name]
        library = MLCLIPSimScorer(scorer.encoder, layers=[k for k in layers if k in weights], weights=weights,
                                  magnitude=MAGNITUDE in weights)
        with torch.no_grad():
            direct = library(distorted, reference.expand(len(sample), -1, -1, -1)).numpy()
        check = max(check, float(np.abs(direct - np.array([scores[name][r["distorted_path"]] for r in sample])).max()))
    library = MLCLIPSimScorer(scorer.encoder, layers=[k for k in layers if k in variants[chosen]],
                              weights=variants[chosen], magnitude=MAGNITUDE in variants[chosen])
    if check > 1e-4:
        raise RuntimeError(f"Cached variant scores differ from the library's by {check:.3g}")

    # ------------------------------------------------------------------ the readable scale (train photos)
    # every train image, plus each train reference against itself (score 1, the task models agree fully: 1)
    train_paths = [r["distorted_path"] for r in split_rows["train"]]
    anchors = len({r["reference_path"] for r in split_rows["train"]})
    scale = fit_agreement_scale([scores[chosen][p] for p in train_paths] + [1.0] * anchors,
                                [r["mmos"] for r in split_rows["train"]] + [1.0] * anchors,
                                library.weights_by_name())
    val_x = np.array([scores[chosen][r["distorted_path"]] for r in split_rows["val"]])
    val_y = np.array([r["mmos"] for r in split_rows["val"]])
    predicted = scale(torch.as_tensor(val_x)).numpy()
    scale_check = {"val_rmse": float(np.sqrt(np.mean((predicted - val_y) ** 2))),
                   "val_mean_abs_error": float(np.mean(np.abs(predicted - val_y))),
                   "score_for_agreement": {a: scale.score_for(a) for a in (0.7, 0.8, 0.9, 0.95)
                                           if a <= scale.range[1]}}

    seconds = time.perf_counter() - start
    if args.write_weights:
        write_weights(args, command, chosen, variants, fits, best_plain, best_magnitude, results, scale, library,
                      photos, scale_check)
    write_report(args, command, results, variants, fits, chosen, best_plain, best_magnitude, photos, split_rows,
                 scale, scale_check, check, notes, seconds)
    return 0


def preset_of(name: str) -> str:
    return "uniform" if name.startswith("uniform") else "embedding" if name.startswith("embedding") else "calibrated"


def write_weights(args, command, chosen, variants, fits, best_plain, best_magnitude, results, scale, library,
                  photos, scale_check) -> None:
    path = REPO / "mlclipsim" / "weights" / "ml_clipsim" / f"{args.encoder.replace('/', '__')}.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    preset = preset_of(chosen)
    if preset == "calibrated" and chosen not in (best_plain, best_magnitude):
        raise RuntimeError(f"The chosen variant {chosen!r} is not one of the refits that ship.")
    val = {name: {"srcc_mmos": r["srcc/mmos"]["estimate"], "2afc_psnr_matched": r["2afc"]["accuracy"],
                  "photometric_srcc": r["photometric_srcc"], "criterion": r["criterion"]}
           for name, r in results["val"].items()}
    record = {
        "backbone": args.encoder,
        "pretrained": None,
        "default": {"weights": preset, "magnitude": MAGNITUDE in variants[chosen], "variant": chosen},
        "weights": fits[best_plain]["weights"],
        "magnitude_weights": fits[best_magnitude]["weights"],
        "temperature": fits[best_plain]["temperature"],
        "command": command,
        "fitted_on": {"dataset": str(args.dataset), "pair_kinds": ["psnr_matched", "within-reference mmos"],
                      "mmos_margin": MMOS_MARGIN, "split": list(args.split), "seed": args.seed,
                      "train_photos": len(photos["train"]), "val_photos": len(photos["val"]),
                      "regularisation": f"early stopping from uniform weights, steps chosen on validation "
                                        f"among {list(EPOCHS)}",
                      "weights_variant": best_plain, "magnitude_weights_variant": best_magnitude},
        "chosen_on": "validation photos: mean of SRCC with the mean MMOS and PSNR-matched 2AFC accuracy",
        "validation": val,
        "agreement_scale": {
            "weights": {k: v for k, v in library.weights_by_name().items() if v > 0},
            "params": list(scale.params),
            "maps": "ML-CLIPSim score -> predicted mean MMOS (machine agreement, 0..1)",
            "fitted_on": {"dataset": str(args.dataset), "photos": "train",
                          "points": f"{scale.record['n']} (train images, and each train reference against itself "
                                    "at score 1, agreement 1)",
                          "rss": scale.record["rss"]},
            "check": scale_check,
            "command": command,
        },
        "previous": {k: old[k] for k in ("weights", "command", "fitted_on") if k in old},
    }
    path.write_text(json.dumps(record, indent=2) + "\n")


def fmt(entry: dict | float | None) -> str:
    if entry is None:
        return "-"
    if isinstance(entry, dict):
        text = f"{entry['estimate']:.3f}"
        return text + (f" [{entry['low']:.2f}, {entry['high']:.2f}]" if "low" in entry else "")
    return f"{entry:.3f}"


def write_report(args, command, results, variants, fits, chosen, best_plain, best_magnitude, photos, split_rows,
                 scale, scale_check, check, notes, seconds) -> None:
    lines = ["# ML-CLIPSim variants: which one ships as the default", "",
             f"Command: `{command}`  ",
             f"Machine: {platform.machine()}, CPU, 1 thread; wall time {seconds:.0f} s (columns cached in the dataset "
             "folder).  ",
             f"Encoder: `{args.encoder}`. Split by photo as `mlclipsim calibrate` (fractions {args.split}, seed "
             f"{args.seed}): {len(photos['train'])} train photos (refits, agreement scale), {len(photos['val'])} "
             f"validation photos (choice), {len(photos['test'])} test photos (reported only; "
             f"{len(split_rows['test'])} images). Test CIs: {args.n_resamples} bootstrap resamples of photos.  ",
             f"Chosen on validation (mean of SRCC with the mean MMOS and PSNR-matched 2AFC accuracy): **{chosen}**. "
             f"Best refit without / with the magnitude term: {best_plain} / {best_magnitude}.  ",
             f"Library check: the chosen variant's cached scores equal the library scorer's on 8 test images "
             f"(max difference {check:.1e}).", ""]
    lines += [f"- {n}" for n in notes]
    for split in ("val", "test"):
        res = results[split]
        tasks = [k for k in next(iter(res.values())) if k.startswith("srcc/mmos/")]
        lines += ["", f"## {'Validation' if split == 'val' else 'Test'} photos", "",
                  "| variant | SRCC mean MMOS | " + " | ".join(t.split("/")[-1] for t in tasks)
                  + " | 2AFC PSNR-matched | photometric SRCC | criterion |",
                  "| --- | ---: |" + " ---: |" * len(tasks) + " ---: | ---: | ---: |"]
        for name, r in res.items():
            mark = " **(chosen)**" if name == chosen else ""
            afc = r["2afc"]
            ci = afc.get("accuracy_ci")
            acc = f"{afc['accuracy']:.3f}" + (f" [{ci['low']:.2f}, {ci['high']:.2f}]" if ci else "")
            lines.append(f"| {name}{mark} | {fmt(r['srcc/mmos'])} | " + " | ".join(fmt(r[t]) for t in tasks)
                         + f" | {acc} | {fmt(r['photometric_srcc'])} | {r['criterion']:.3f} |")
        types = sorted({t for r in res.values() for t in r["by_type"]})
        lines += ["", f"SRCC with the mean MMOS per distortion type ({split}):", "",
                  "| variant | " + " | ".join(types) + " |", "| --- |" + " ---: |" * len(types)]
        for name, r in res.items():
            lines.append(f"| {name} | " + " | ".join(fmt(r["by_type"].get(t)) for t in types) + " |")
    lines += ["", "## Refitted weights (train photos)", "",
              "| refit | weights | train pairs | train / val 2AFC (soft) |", "| --- | --- | ---: | ---: |"]
    for name, f in fits.items():
        w = ", ".join(f"{k} {v:.2f}" for k, v in f["weights"].items())
        lines.append(f"| {name} | {w} | {f['train_pairs']} | "
                     f"{f['train_2afc_soft']:.3f} / {f['val_2afc_soft']:.3f} |")
    low, high = scale.range
    lines += ["", "## Agreement scale (the chosen variant, train photos)", "",
              "5-parameter logistic, bounded to be non-decreasing, fitted on the train images and each train "
              f"reference against itself (score 1, agreement 1): params {[round(p, 4) for p in scale.params]}; "
              f"predicted agreement {low:.3f} at score 0, {high:.3f} at score 1 (identical images). On the "
              f"validation images: RMSE {scale_check['val_rmse']:.3f}, mean absolute error "
              f"{scale_check['val_mean_abs_error']:.3f}.",
              "", "| target agreement | raw score needed |", "| ---: | ---: |"]
    lines += [f"| {a} | {s:.4f} |" for a, s in scale_check["score_for_agreement"].items()]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ml_clipsim_variants.md").write_text("\n".join(lines) + "\n")
    (args.out / "ml_clipsim_variants.json").write_text(json.dumps(
        {"command": command, "chosen": chosen, "variants": variants, "results": results}, indent=2, default=str))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
