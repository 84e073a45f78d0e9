"""Pilot: how reliable are the machine labels, today's and the continuous ones with more voters?

    nice python benchmarks/label_reliability.py --images ../shared/data/images --out outputs/label_pilot \\
        [--photos 12] [--report benchmarks/results/label_reliability.md] [--analyse-only]

1. Picks ``--photos`` TRAINING photos (the by-photo split of `mlclipsim calibrate`: fractions
   0.6/0.1/0.3, seed 0; never a photo of benchmarks/results/heldout_photos.txt), half of them with a
   person that CenterNet finds (score >= 0.5) where there are enough, drawn with seed 0.
2. Builds a small dataset of them into ``--out`` (resumable): references = the photo at 512 px
   (``--crops 3``: plus crops at scales 2 and 3); the 12 synthetic and codec types of today plus AVIF and JPEG XL, five
   uniform severities, two independent draws of every stochastic type; task models: CenterNet,
   NanoDet (detection), Selfie, Meet, RVM (person segmentation), EfficientNet-Lite0/1/2
   (classification); one torch thread, one process.
3. Times every task model and distortion type per image on one reference (one thread).
4. Compares the old labels (discrete scores, today's voters: CenterNet, NanoDet, Selfie, Lite0) with
   the new ones (continuous scores, all voters) on the same images: SRCC between disjoint voter
   sets, between two draws of the same type/severity/reference, Spearman-Brown reliability, whether
   labels fall with severity; and projects the wall time of the full build.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from collections import defaultdict
from itertools import combinations
from pathlib import Path

import numpy as np

from mlclipsim.core.images import list_images, read_image_array
from mlclipsim.data.build_dataset import BuildConfig, build_dataset, merge_parts
from mlclipsim.data.manifest import read_rows, split_by_photo
from mlclipsim.data.plan import plan_distortions
from mlclipsim.data.references import reference_crops, stable_seed
from mlclipsim.distortions import SYNTHETIC_NAMES, distort_regions, list_distortions
from mlclipsim.eval.correlation import srcc
from mlclipsim.eval.reliability import mean_voter_reliability, paired_draws, split_reliability
from mlclipsim.machine.agreement import consistency
from mlclipsim.machine.predictions import load_predictions
from mlclipsim.machine.registry import create_task_model
from mlclipsim.machine.soft_agreement import soft_consistency

REPO = Path(__file__).resolve().parents[1]
HELDOUT = REPO / "benchmarks/results/heldout_photos.txt"
OLD = {"detection": ("centernet", "nanodet"), "segmentation": ("selfie",), "classification": ("efficientnet-lite0",)}
NEW = {"detection": ("centernet", "nanodet"), "segmentation": ("selfie", "meet", "rvm"),
       "classification": ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")}
PERSON_ONLY = ("meet", "rvm")          # vote only on references with a person (Meet marks texture elsewhere)
MODELS = tuple(dict.fromkeys(m for task in NEW.values() for m in task))
CODECS = ("jpeg_quality", "webp_quality", "avif_quality", "jxl_quality")
CROP_SCALES = (2.0, 3.0)
TASKS = ("detection", "segmentation", "classification")
N_BOOT = 1000


# ----------------------------------------------------------------------------- 1. photos

def training_photos(images: Path) -> list[Path]:
    photos = list_images(images)
    train, _, test = split_by_photo([p.stem for p in photos], (0.6, 0.1, 0.3), 0)
    heldout = {line.strip().rsplit(".", 1)[0] for line in HELDOUT.read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert heldout == test, "the split no longer reproduces heldout_photos.txt"
    return [p for p in photos if p.stem in train and p.stem not in heldout]


def pick_photos(images: Path, count: int, seed: int = 0) -> tuple[list[Path], list[str]]:
    candidates = training_photos(images)
    detector = create_task_model("centernet", threads=1)
    people = []
    for p in candidates:
        det = detector.predict([reference_crops(p)[0].image])[0]
        if np.any((det.labels == 0) & (det.scores >= 0.5)):
            people.append(p)
    others = [p for p in candidates if p not in people]
    rng = np.random.default_rng(seed)
    n_people = min(len(people), count // 2)
    chosen = [people[i] for i in sorted(rng.choice(len(people), n_people, replace=False))]
    chosen += [others[i] for i in sorted(rng.choice(len(others), count - n_people, replace=False))]
    return sorted(chosen), [p.stem for p in people]


# ----------------------------------------------------------------------------- 3. timing

def time_costs(out: Path, reference_id: str, types: list[str], n_images: int = 8) -> dict:
    """Seconds per image (one thread) of each model, each distortion type, saving a PNG, and scoring."""
    from PIL import Image

    reference = read_image_array(out / "references" / f"{reference_id}.png")
    rows = [r for r in read_rows(out / "manifest.csv") if r["reference_id"] == reference_id]
    images = [read_image_array(out / r["distorted_path"]) for r in rows[:: max(1, len(rows) // n_images)][:n_images]]
    costs: dict = {"models": {}, "distortions": {}}
    predictions = {}
    for name in MODELS:
        model = create_task_model(name, threads=1)
        model.predict(images[:1])
        start = time.process_time()
        predictions[name] = (model.predict(images), model.predict([reference])[0], model)
        costs["models"][name] = (time.process_time() - start) / (len(images) + 1)
    start = time.process_time()
    for preds, ref, model in predictions.values():
        for p in preds:
            consistency(model, p, ref)
            soft_consistency(model, p, ref)
    costs["agreement"] = (time.process_time() - start) / len(images)
    x = reference.astype(np.float32) / 255.0
    mask = np.zeros(x.shape[:2], np.float32)
    for name in types:
        start = time.process_time()
        for severity in (1, 3, 5):
            distort_regions(x, name, severity, severity, mask, seed=stable_seed(reference_id, name, severity))
        costs["distortions"][name] = (time.process_time() - start) / 3
    start = time.process_time()
    scratch = out / "timing.png"
    for image in images:
        Image.fromarray(image).save(scratch, compress_level=1)
    scratch.unlink()
    costs["png"] = (time.process_time() - start) / len(images)
    return costs


# ----------------------------------------------------------------------------- 4. labels

def has_person(out: Path, reference_id: str) -> bool:
    for name in ("centernet", "nanodet"):
        det = load_predictions(out / "predictions" / name / reference_id / "reference.npz")[0]
        if np.any((det.labels == 0) & (det.scores >= 0.5)):
            return True
    return False


def labels(rows: list[dict], people: set[str]) -> dict[str, dict[str, np.ndarray]]:
    """{"old"|"new": {task or "all": (N,)}}: old = discrete scores, today's voters; new = continuous, all voters
    (Meet and RVM only on references with a person)."""
    out: dict[str, dict[str, np.ndarray]] = {"old": {}, "new": {}}
    for task in TASKS:
        out["old"][task] = np.array([np.mean([r[f"consistency/{m}"] for m in OLD[task]]) for r in rows])
        out["new"][task] = np.array([np.mean([r[f"soft/{m}"] for m in voters(task, r, people)]) for r in rows])
    for kind in out:
        out[kind]["all"] = np.mean([out[kind][t] for t in TASKS], axis=0)
    return out


def voters(task: str, row: dict, people: set[str]) -> tuple[str, ...]:
    if task != "segmentation" or row["reference_id"] in people:
        return NEW[task]
    return tuple(m for m in NEW[task] if m not in PERSON_ONLY)


def within_cells(values: np.ndarray, rows: list[dict]) -> np.ndarray:
    """``values`` minus the mean of its (type, severity) cell: what is left once severity is known."""
    cells: dict[tuple, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        cells[(r["distortion"], r["roi_severity"])].append(i)
    out = values.astype(np.float64).copy()
    for idx in cells.values():
        out[idx] -= out[idx].mean()
    return out


def fmt_ci(ci) -> str:
    return f"{ci.estimate:.3f} [{ci.low:.2f}, {ci.high:.2f}]"


def voter_table(rows: list[dict], people: set[str]) -> tuple[list[str], dict]:
    """Per task: SRCC between voters (discrete and continuous), reliability of the label as each build defines it."""
    lines = ["| task | references | images | voters compared | old: discrete SRCC | old label reliability | "
             "new: continuous SRCC | new label reliability | within type x severity: old / new SRCC |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    summary = {}
    subsets = [("detection", "all", lambda r: True),
               ("detection", "without a person", lambda r: r["reference_id"] not in people),
               ("segmentation", "with a person", lambda r: r["reference_id"] in people),
               ("classification", "all", lambda r: True)]
    for task, which, keep in subsets:
        subset = [r for r in rows if keep(r)]
        g = [r["photo"] for r in subset]
        head = f"| {task} | {which} ({len({r['reference_id'] for r in subset})}) | {len(subset)} |"
        if len({r["photo"] for r in subset}) < 2:
            lines.append(f"{head} too few photos | | | | | |")
            continue
        old = {m: np.array([r[f"consistency/{m}"] for r in subset]) for m in NEW[task]}
        new = {m: np.array([r[f"soft/{m}"] for r in subset]) for m in NEW[task]}
        old_rel = (mean_voter_reliability({m: old[m] for m in OLD[task]}, g, n_resamples=N_BOOT)
                   if len(OLD[task]) > 1 else None)
        new_rel = mean_voter_reliability(new, g, n_resamples=N_BOOT)
        for a, b in combinations(NEW[task], 2):
            d = split_reliability(old[a], old[b], g, n_resamples=N_BOOT)
            s = split_reliability(new[a], new[b], g, n_resamples=N_BOOT)
            wd = srcc(within_cells(old[a], subset), within_cells(old[b], subset))
            ws = srcc(within_cells(new[a], subset), within_cells(new[b], subset))
            lines.append(f"{head} {a} ~ {b} | {fmt_ci(d.srcc)} | | {fmt_ci(s.srcc)} | | {wd:.2f} / {ws:.2f} |")
        if old_rel is not None:
            old_text = f"{fmt_ci(old_rel.corrected)} (SB, k={int(old_rel.factor)})"
        else:   # one voter: its reliability is its correlation with a parallel voter of the same task
            one = OLD[task][0]
            peers = [srcc(old[one], old[m]) for m in NEW[task] if m != one]
            old_text = f"{np.mean(peers):.3f} (1 voter: its mean SRCC with the others)"
        lines.append(f"{head} **label** (mean of its voters) | | {old_text} | "
                     f"mean pairwise {new_rel.srcc.estimate:.3f} | **{fmt_ci(new_rel.corrected)}** "
                     f"(SB, k={int(new_rel.factor)}) | |")
        summary[f"{task} ({which})"] = {"old": old_text, "new": new_rel.to_dict()}
    return lines, summary


def draw_table(rows: list[dict], lab: dict) -> list[str]:
    """SRCC between two draws of the same stochastic type, severity and reference."""
    index = [i for i, r in enumerate(rows) if r["distortion"] in stochastic_types()]
    keys = [(rows[i]["reference_id"], rows[i]["distortion"], rows[i]["roi_severity"]) for i in index]
    draws = [int(rows[i]["draw"]) for i in index]
    lines = ["| label | pairs | old: draw-to-draw SRCC | old: mean of 2 draws (SB) | new: draw-to-draw SRCC | "
             "new: mean of 2 draws (SB) | within type x severity: old / new |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for task in (*TASKS, "all"):
        cells = []
        within = []
        for kind in ("old", "new"):
            a, b, paired = paired_draws(keys, draws, lab[kind][task][index])
            groups = [k[0].split("__")[0] for k in paired]
            rel = split_reliability(a, b, groups, n_resamples=N_BOOT)
            cells.append((len(paired), rel))
            cell_of: dict = defaultdict(list)
            for j, k in enumerate(paired):
                cell_of[(k[1], k[2])].append(j)
            ra, rb = a.copy(), b.copy()
            for idx in cell_of.values():
                m = np.mean(np.concatenate([a[idx], b[idx]]))
                ra[idx] -= m
                rb[idx] -= m
            within.append(srcc(ra, rb))
        (n, old), (_, new) = cells
        name = "mean over tasks" if task == "all" else task
        lines.append(f"| {name} | {n} | {fmt_ci(old.srcc)} | {old.corrected.estimate:.3f} | {fmt_ci(new.srcc)} | "
                     f"{new.corrected.estimate:.3f} | {within[0]:.2f} / {within[1]:.2f} |")
    return lines


def stochastic_types() -> set[str]:
    from mlclipsim.distortions import get_distortion

    return {name for name in list_distortions() if get_distortion(name).stochastic}


def severity_tables(rows: list[dict], lab: dict, types: list[str]) -> tuple[list[str], list[str]]:
    first = [i for i, r in enumerate(rows) if int(r.get("draw", 0) or 0) == 0]
    lines, exceptions = [], []
    for kind in ("old", "new"):
        for task in (*TASKS, "all"):
            cell: dict = defaultdict(list)
            for i in first:
                cell[(rows[i]["distortion"], rows[i]["roi_severity"])].append(lab[kind][task][i])
            name = "mean over tasks" if task == "all" else task
            if task in ("all",):
                lines += ["", f"{kind} labels, {name} (mean over references):", "",
                          "| type | s1 | s2 | s3 | s4 | s5 |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
            for t in types:
                means = [float(np.mean(cell[(t, s)])) for s in range(1, 6)]
                if task == "all":
                    lines.append(f"| {t} | " + " | ".join(f"{m:.3f}" for m in means) + " |")
                for s in range(4):
                    if means[s + 1] > means[s]:
                        exceptions.append(f"{kind}, {name}, {t}: rises s{s + 1}->s{s + 2} "
                                          f"(+{means[s + 1] - means[s]:.3f})")
    return lines, exceptions


# ----------------------------------------------------------------------------- projection

def count_references(images: Path, crops: int, size: int = 512) -> int:
    """References `reference_crops` would cut from every photo (from the image headers, without decoding)."""
    from PIL import Image

    total = 0
    for path in list_images(images):
        with Image.open(path) as im:
            width, height = im.size
        total += 1
        for index in range(1, crops):
            factor = round(CROP_SCALES[(index - 1) % len(CROP_SCALES)] * size) / max(width, height)
            w, h = (width, height) if factor >= 1 else (max(1, round(width * factor)), max(1, round(height * factor)))
            total += int(h >= size and w >= size and not (h == size and w == size))
    return total


def projection(images: Path, costs: dict, types: list[str], roi_share: float, region_pairs: int, draws: int,
               min_references: int = 300) -> tuple[list[str], dict]:
    crops = next(c for c in range(1, 12) if count_references(images, c) >= min_references or c == 11)
    n_refs = count_references(images, crops)
    per_ref_uniform = len(plan_distortions("x", types, region_pairs, with_regions=False, draws=draws))
    per_ref_roi = len(plan_distortions("x", types, region_pairs, with_regions=True, draws=draws))
    per_ref = (1 - roi_share) * per_ref_uniform + roi_share * per_ref_roi
    n_images = n_refs * per_ref
    model_cost = sum(costs["models"].values())
    distortion_cost = float(np.mean([costs["distortions"][t] for t in types]))
    # ROI-mode images distort twice (two severities blended)
    per_image = model_cost + distortion_cost * (1 + roi_share * (per_ref_roi - per_ref_uniform) / per_ref) \
        + costs["png"] + costs["agreement"]
    cpu = n_images * per_image + n_refs * model_cost
    text = [f"Full build: `mlclipsim build-dataset --crops-per-image {crops} --crop-scales 2 3 --draws {draws} "
            f"--region-pairs {region_pairs} --task-models {' '.join(costs['models'])} --person-models "
            f"{' '.join(PERSON_ONLY)} --roi-models centernet nanodet selfie --distortions {' '.join(types)}` on all "
            "photos of `../shared/data/images` (the fewest crops per photo that give at least "
            f"{min_references} references):", "",
            f"- {len(list_images(images))} photos -> {n_refs} references (a crop is skipped where the shrunk photo "
            f"is too small); {per_ref_uniform} uniform images per reference ({draws} draws of the stochastic "
            f"types), {per_ref_roi} with {region_pairs} ROI pair(s) per type and mode; share of references with a "
            f"usable ROI {roi_share:.2f} (pilot) -> **{n_images:,.0f} images**.",
            f"- per image, one thread: task models {model_cost:.3f} s, distortion {distortion_cost:.3f} s "
            f"(mean over types), PNG {costs['png']:.3f} s, agreement {costs['agreement']:.3f} s -> "
            f"{per_image:.3f} CPU s.",
            f"- **{cpu / 3600:.1f} CPU hours**: {cpu / 3600 / 2:.1f} h wall with `--processes 2 --threads 1` on an "
            "idle 2-core machine."]
    return text, {"crops": crops, "references": n_refs, "images": n_images, "cpu_seconds": cpu,
                  "per_image_cpu_s": per_image}


# ----------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=REPO.parent / "shared/data/images")
    parser.add_argument("--out", type=Path, default=REPO / "outputs/label_pilot")
    parser.add_argument("--photos", type=int, default=12)
    parser.add_argument("--report", type=Path, default=REPO / "benchmarks/results/label_reliability.md")
    parser.add_argument("--analyse-only", action="store_true", help="skip the build and timing (reuse them)")
    parser.add_argument("--crops", type=int, default=1,
                        help="references per photo: the photo, then crops at scales 2 and 3 (cycled)")
    parser.add_argument("--types", nargs="+", default=None, help="distortion types (default: all 14; for a smoke run)")
    args = parser.parse_args()
    out: Path = args.out
    types = args.types or [*SYNTHETIC_NAMES, *(c for c in CODECS if c in list_distortions())]
    info_path = out / "pilot_info.json"

    if not args.analyse_only:
        out.mkdir(parents=True, exist_ok=True)
        if info_path.is_file():
            info = json.loads(info_path.read_text())
        else:
            chosen, people = pick_photos(args.images, args.photos)
            info = {"photos": [p.name for p in chosen], "people_photos": people, "crops": args.crops}
            info_path.write_text(json.dumps(info, indent=2))
        folder = out / "photos"
        folder.mkdir(exist_ok=True)
        for name in info["photos"]:
            link = folder / name
            if not link.exists():
                link.symlink_to((args.images / name).resolve())
        wall, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        summary = build_dataset(BuildConfig(
            images=folder, out=out, task_models=MODELS, roi_models=("centernet", "nanodet", "selfie"),
            distortions=tuple(types), region_pairs=0, crops_per_image=args.crops, crop_scales=CROP_SCALES, draws=2,
            threads=1, processes=1, batch_size=8))
        after = resource.getrusage(resource.RUSAGE_SELF)
        run = {"wall_s": time.perf_counter() - wall,
               "cpu_s": (after.ru_utime + after.ru_stime) - (cpu.ru_utime + cpu.ru_stime),
               "photos_processed": summary["photos_processed_this_run"], "rows": summary["rows"]}
        info.setdefault("runs", []).append(run)
        first_ref = sorted({r["reference_id"] for r in read_rows(out / "manifest.csv")})[0]
        info["costs"] = time_costs(out, first_ref, types)
        info["machine"] = f"{platform.machine()}, {platform.processor() or 'cpu'}"
        info_path.write_text(json.dumps(info, indent=2))
    info = json.loads(info_path.read_text())
    if args.analyse_only:   # a build still running: report on the references finished so far
        merge_parts(out)
        if "costs" not in info:
            first_ref = sorted({r["reference_id"] for r in read_rows(out / "manifest.csv")})[0]
            info["costs"] = time_costs(out, first_ref, types)
            info["machine"] = f"{platform.machine()}, {platform.processor() or 'cpu'}"

    rows = read_rows(out / "manifest.csv")
    refs = sorted({r["reference_id"] for r in rows})
    people = {ref for ref in refs if has_person(out, ref)}
    lab = labels(rows, people)
    first = [i for i, r in enumerate(rows) if int(r["draw"]) == 0]
    rows0 = [rows[i] for i in first]
    lab0 = {k: {t: v[first] for t, v in d.items()} for k, d in lab.items()}

    voter_lines, _ = voter_table(rows0, people)
    draw_lines = draw_table(rows, lab)
    sev_lines, exceptions = severity_tables(rows, lab, types)
    old_new = {t: srcc(lab0["old"][t], lab0["new"][t]) for t in (*TASKS, "all")}

    roi_share = float(np.mean([any(r["roi_fraction"] > 0 for r in rows if r["reference_id"] == ref) for ref in refs]))
    proj_lines, proj = projection(args.images, info["costs"], types, roi_share, region_pairs=1, draws=2)
    runs = info.get("runs", [])
    build_wall = sum(r["wall_s"] for r in runs)
    build_cpu = sum(r["cpu_s"] for r in runs)
    n_rows = len(rows)
    timed_photos = sum(r["photos_processed"] for r in runs)
    timed_images = n_rows * timed_photos / max(len(info["photos"]), 1)   # images per photo taken as equal

    lines = ["# Label reliability: today's labels vs continuous agreement with more voters (pilot)", "",
             "Command (one torch thread, one process, `nice`, in the background):", "", "```bash",
             "OMP_NUM_THREADS=1 MLCLIPSIM_OFFLINE=1 MLCLIPSIM_MODELS_DIR=../shared/models nice -n 10 \\",
             "    .venv/bin/python benchmarks/label_reliability.py --images ../shared/data/images \\",
             f"    --out outputs/label_pilot --photos {len(info['photos'])} --crops {info.get('crops', 1)}", "```", "",
             f"Machine: {info['machine']}, 2 cores shared with other jobs. Build: {n_rows} labelled images of "
             f"{len(refs)} references from {len(info['photos'])} training photos (never a test photo of "
             "`heldout_photos.txt`), " + (
                 f"{build_wall:.0f} s wall, {build_cpu:.0f} s CPU for the {timed_photos} photos built in the timed "
                 f"run(s) ({build_cpu / max(timed_images, 1):.2f} CPU s per image, all 8 models, distortion, PNG, both "
                 "scores)" + ("" if timed_photos == len(info["photos"]) else
                              f"; the other {len(info['photos']) - timed_photos} were built by an earlier, interrupted "
                              "start whose time is not counted") + "." if runs else
                 f"**the build is still running**: this report covers the {len(refs)} references finished so far "
                 "(rerun the command to finish it; it resumes)."), "",
             "Photos: " + ", ".join(f"`{p}`" for p in info["photos"]) + ".", "",
             "References: each photo at 512 px" + (
                 f" plus crops at scales {CROP_SCALES} (`--crops-per-image {info['crops']} --crop-scales 2 3`)"
                 if info.get("crops", 1) > 1 else " (no crops: they would triple the CPU time of the pilot on "
                 "this shared machine; `tests/test_dataset_options.py` checks them)") +
             f"; {len(people)} of {len(refs)} with a person "
             "(CenterNet or NanoDet, score >= 0.5). Distortions: " + ", ".join(types) +
             "; five uniform severities; two independent draws of every stochastic type (`--draws 2`); no region "
             "modes in the pilot.", "",
             "Labels compared on the same images:", "",
             "- **old**: today's discrete scores (`consistency/*`: detection F1 at IoU 0.5 and the model's score "
             "threshold, segmentation mask IoU at 0.5, classification soft top-5 overlap) and today's voters: "
             "detection = mean of CenterNet and NanoDet, segmentation = Selfie, classification = Lite0.",
             "- **new**: continuous scores (`soft/*`, `mlclipsim/machine/soft_agreement.py`: score-weighted F1 "
             "averaged over IoU 0.50:0.95 and score thresholds from the model's floor to 1; soft IoU of the "
             "probability maps; 1 - Jensen-Shannon divergence in bits of the full softmax) and all voters: "
             "detection = CenterNet + NanoDet, segmentation = Selfie + Meet + RVM on references with a person "
             "(Selfie alone elsewhere), classification = Lite0 + Lite1 + Lite2.", "",
             "SRCC pooled over all types and severities (as the 0.28 of `machine_preference.md`), 95% CIs from "
             f"{N_BOOT} bootstrap resamples of photos. SB = Spearman-Brown: the reliability of the mean of k "
             "voters (or of 2 draws) from the mean pairwise SRCC. 'Within type x severity': SRCC after "
             "subtracting each (type, severity) cell's mean, i.e. how well the two measurements agree on which "
             "references suffer more once the severity is known.", ""]
    lines += ["## Voter splits (draw 0 images)", "",
              "Segmentation: references with a person only (Meet and RVM segment people). Detection also on the "
              "references without a person, where the detectors see fewer, less certain objects.", ""]
    lines += voter_lines
    lines += ["", "## Two draws of the same type, severity and reference (stochastic types: "
              + ", ".join(sorted(stochastic_types())) + ")", ""]
    lines += draw_lines
    lines += ["", "Old vs new label on the same images (SRCC): "
              + ", ".join(f"{t} {v:.3f}" for t, v in old_new.items()) + ".", ""]
    lines += ["## Do labels fall with severity?", ""]
    lines += ["Exceptions (mean over references of a label at severity s+1 above severity s):", ""]
    lines += [f"- {e}" for e in exceptions] or ["- none"]
    lines += sev_lines
    lines += ["", "## Cost and the projected full build", "",
              "Measured per image on one reference, one thread (CPU seconds, `time.process_time`):", "",
              "| task model | s/image |", "| --- | ---: |"]
    lines += [f"| {m} | {v:.3f} |" for m, v in info["costs"]["models"].items()]
    lines += ["", "| distortion | s/image |", "| --- | ---: |"]
    lines += [f"| {t} | {v:.3f} |" for t, v in sorted(info["costs"]["distortions"].items())]
    lines += [""] + proj_lines
    ratio = build_wall / build_cpu if build_cpu else float("nan")
    lines += [] if not runs else [
              f"- The pilot ran at {ratio:.2f} wall s per CPU s (one niced process on the machine shared with other "
              f"jobs): at that rate the full build takes about {proj['cpu_seconds'] * ratio / 3600:.0f} h "
              f"wall in one process, or about {proj['cpu_seconds'] * ratio / 2 / 3600:.0f} h in two if each "
              "process gets the pilot's share. It is resumable and writes a manifest part per finished "
              "reference, so it can run in the background across sessions (`--shard` splits it over machines)."]
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text("\n".join(lines) + "\n")
    (out / "reliability_summary.json").write_text(json.dumps({"projection": proj, "old_vs_new": old_new}, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
