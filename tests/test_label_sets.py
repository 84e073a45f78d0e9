"""Label sets (discrete / soft) named the same everywhere: manifest columns, datamodules, pairs,
RA-MIQA targets and the dataset report's reliability section, on tiny hand-made manifests."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.stats import spearmanr

from mlclipsim.data.datamodules import MachineQualityDataModule, MachineQualityDataset, PreferencePairsDataset
from mlclipsim.data.manifest import read_header, read_rows, write_rows

REPO = Path(__file__).resolve().parents[1]
NAN = float("nan")


# ----------------------------------------------------------------------------- the table of label sets

def test_label_column_names_every_set_and_suggests_the_closest_name():
    from mlclipsim.data.manifest import (
        label_column,
        label_sets_of,
        pair_label_column,
        parse_label_column,
        resolve_pair_target,
        resolve_target,
    )

    assert label_column() == "mmos" and label_column("soft") == "mmos_soft"
    assert label_column("discrete", task="detection") == "mmos/detection"
    assert label_column("soft", task="detection") == "mmos_soft/detection"
    assert label_column("discrete", model="centernet") == "consistency/centernet"
    assert label_column("soft", model="centernet") == "soft/centernet"
    with pytest.raises(ValueError, match="Did you mean 'soft'"):
        label_column("sfot")
    with pytest.raises(ValueError, match="task or a model, not both"):
        label_column("soft", task="detection", model="centernet")
    assert pair_label_column() == "soft_label" and pair_label_column("soft", majority=True) == "majority_label@soft"
    assert pair_label_column("soft", task="detection") == "soft_label/detection@soft"
    # every column names its set, kind and task/model; other columns are not labels
    assert parse_label_column("mmos_soft/detection") == ("soft", "task", "detection")
    assert parse_label_column("consistency/nanodet") == ("discrete", "model", "nanodet")
    assert parse_label_column("mmos") == ("discrete", "overall", None) and parse_label_column("psnr") is None
    assert label_sets_of(["psnr", "mmos", "mmos_soft"]) == ["discrete", "soft"]
    # a target named in one set is read in another; None keeps the column; a bare name is a task
    assert resolve_target("mmos/detection", "soft") == "mmos_soft/detection"
    assert resolve_target("soft/centernet", "discrete") == "consistency/centernet"
    assert resolve_target("mmos_soft", None) == "mmos_soft" and resolve_target("segmentation", "soft") == (
        "mmos_soft/segmentation")
    assert resolve_pair_target("soft_label/detection", "soft") == "soft_label/detection@soft"
    assert resolve_pair_target("majority_label@soft", "discrete") == "majority_label"


# ----------------------------------------------------------------------------- datamodules

def _png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(path)


def make_dataset(root: Path, photos: int = 4, per_reference: int = 3) -> list[dict]:
    """Both label sets; the soft detection label is NaN on every image of photo p0 (no box on its reference)."""
    rows = []
    for p in range(photos):
        ref = f"references/p{p}.png"
        _png(root / ref, 100 * p)
        for d in range(per_reference):
            path = f"images/p{p}/noise_{d}.png"
            _png(root / path, 100 * p + d + 1)
            value = 0.9 - 0.2 * d
            soft_det = NAN if p == 0 else value - 0.05
            row = {"reference_id": f"p{p}", "photo": f"p{p}", "crop": 0, "reference_path": ref,
                   "distorted_path": path, "distortion": "noise", "mode": "uniform", "roi_severity": d + 1,
                   "bg_severity": d + 1, "roi_fraction": 0.0, "psnr": 30.0 - d,
                   "consistency/centernet": value, "mmos/detection": value, "mmos": value,
                   "soft/centernet": soft_det, "mmos_soft/detection": soft_det,
                   "mmos_soft": value - 0.05}
            rows.append(row)
    write_rows(root / "manifest.csv", rows)
    return rows


def test_nan_targets_are_dropped_once_with_a_count(tmp_path):
    root = tmp_path / "ds"
    make_dataset(root)
    rows, columns = read_rows(root / "manifest.csv"), read_header(root / "manifest.csv")
    assert math.isnan(rows[0]["mmos_soft/detection"])  # NaN survives the CSV round trip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = MachineQualityDataModule(root, target="detection", labels="soft", split=(0.5, 0.25, 0.25))
        module.setup()
    messages = [str(w.message) for w in caught if "NaN" in str(w.message)]
    assert len(messages) == 1 and "Dropped 3 of 12 manifest rows" in messages[0]
    assert "'mmos_soft/detection'" in messages[0] and "find nothing on the clean reference" in messages[0]
    assert module.target == "mmos_soft/detection" and len(module.all_dataset) == 9
    targets = [module.all_dataset[i]["target"].item() for i in range(9)]
    assert all(math.isfinite(t) for t in targets)
    assert sorted(module.photos_of("train") + module.photos_of("val") + module.photos_of("test")) == [
        "p0", "p1", "p2", "p3"]  # the split is made on every photo, before rows are dropped
    # standalone dataset: the same, and the discrete label of the same task keeps every row silently
    with pytest.warns(UserWarning, match="Dropped 3 of 12"):
        assert len(MachineQualityDataset(rows, root, target="mmos/detection", labels="soft", columns=columns)) == 9
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        discrete = MachineQualityDataset(rows, root, target="detection", columns=columns)
    assert len(discrete) == 12 and discrete.target == "mmos/detection"
    assert len(MachineQualityDataset(rows, root, target="mmos", labels="soft", columns=columns)) == 12
    # a missing label is still an error, not a drop
    rows[1]["mmos_soft/detection"] = ""
    with pytest.raises(ValueError, match="no numeric 'mmos_soft/detection'"), pytest.warns(UserWarning):
        MachineQualityDataset(rows, root, target="mmos_soft/detection", columns=columns)


def test_pairs_dataset_reads_the_label_set(tmp_path):
    root = tmp_path / "ds"
    make_dataset(root, photos=2)
    pairs = [{"pair_id": f"q{k}", "kind": "psnr_matched", "reference_id": "p1", "photo": "p1",
              "reference_path": "references/p1.png", "a_path": "images/p1/noise_0.png",
              "b_path": "images/p1/noise_1.png", "soft_label": 1.0, "majority_label": 1.0,
              "soft_label@soft": [0.25, NAN][k], "majority_label@soft": [0.0, NAN][k]} for k in range(2)]
    with pytest.warns(UserWarning, match="Dropped 1 of 2 pairs whose target 'soft_label@soft'"):
        dataset = PreferencePairsDataset(pairs, root, labels="soft", columns=list(pairs[0]))
    item = dataset[0]
    assert item["target"].item() == 0.25 and item["soft_label"].item() == 0.25 and item["majority_label"].item() == 0
    assert PreferencePairsDataset(pairs, root)[1]["soft_label"].item() == 1.0  # default: discrete, as before


# ----------------------------------------------------------------------------- pairs

def test_pair_labels_from_continuous_scores_leave_out_undefined_tasks():
    from mlclipsim.data.build_pairs import defined_preference, majority, pair_label_sets

    tasks = {"centernet": "detection", "nanodet": "detection", "selfie": "segmentation", "lite0": "classification"}
    a = {"centernet": 0.8, "nanodet": NAN, "selfie": 0.7, "lite0": 0.5}
    b = {"centernet": 0.6, "nanodet": NAN, "selfie": 0.9, "lite0": 0.4}
    overall, per_task = defined_preference(a, b, tasks, list(tasks))
    assert math.isnan(per_task["detection"])          # one detector undefined: the task drops out
    assert per_task["segmentation"] == 0.0 and per_task["classification"] == 1.0 and overall == 0.5
    # a voter left out (a person model on a reference without a person) does not vote
    assert defined_preference(a, b, tasks, ["centernet", "lite0"])[0] == 1.0
    nothing, _ = defined_preference({"nanodet": NAN}, {"nanodet": NAN}, {"nanodet": "detection"}, ["nanodet"])
    assert math.isnan(nothing) and math.isnan(majority(nothing))
    columns = ["consistency/centernet", "soft/centernet", "consistency/nanodet"]
    assert pair_label_sets(columns, ("centernet", "nanodet")) == ("discrete",)  # old datasets: unchanged
    assert pair_label_sets([*columns, "soft/nanodet"], ("centernet", "nanodet")) == ("discrete", "soft")


# ----------------------------------------------------------------------------- RA-MIQA targets

def test_ra_miqa_targets_follow_the_label_set(tmp_path):
    from mlclipsim.training.ra_miqa_data import RAMIQADataModule, reference_rows, target_column

    assert target_column("detection/consistency") == "mmos/detection"          # default: as before
    assert target_column("detection/consistency", "soft") == "mmos_soft/detection"
    assert target_column("detection/accuracy", "soft") == "accuracy/detection"
    with pytest.raises(ValueError, match="Did you mean 'discrete'"):
        target_column("detection/consistency", "discret")
    encoder = {"view_size": 64, "pretrained": None}
    root = tmp_path / "ds"
    make_dataset(root, photos=10)
    old = RAMIQADataModule(root, heads=["detection/consistency"], encoder=encoder, from_images=True)
    assert old.targets == ["mmos/detection"]
    data = RAMIQADataModule(root, heads=["detection/consistency"], encoder=encoder, from_images=True, labels="soft")
    assert data.targets == ["mmos_soft/detection"]
    with pytest.warns(UserWarning, match=r"Dropped 4 rows whose target \(mmos_soft/detection\) is NaN"):
        data.setup()   # p0: 3 images and its reference (NaN on every image of it)
    split_of_p0 = next(name for name, photos in data.photos.items() if "p0" in photos)
    for name, rows in data.rows.items():
        values = data.datasets[name].targets
        assert torch_isfinite(values) and len(rows) == len(values)
        assert all(r["photo"] != "p0" for r in rows)
    assert len(data.rows[split_of_p0]) == 4 * (len(data.photos[split_of_p0]) - 1)
    refs = reference_rows(read_rows(root / "manifest.csv")[:6], ["mmos_soft/detection", "mmos"])
    assert [r["distorted_path"] for r in refs] == ["references/p0.png", "references/p1.png"]
    assert math.isnan(refs[0]["mmos_soft/detection"]) and refs[0]["mmos"] == 1.0
    assert refs[1]["mmos_soft/detection"] == 1.0


def torch_isfinite(values) -> bool:
    return bool(values.isfinite().all())


# ----------------------------------------------------------------------------- the report

def _report_module():
    spec = importlib.util.spec_from_file_location("dataset_report", REPO / "benchmarks" / "dataset_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DET, SEG, CLS = ("centernet", "nanodet"), ("selfie", "meet"), ("efficientnet-lite0", "efficientnet-lite1")
TYPES = ("gaussian_noise", "defocus_blur")


def reliability_manifest(path: Path) -> list[dict]:
    """6 photos x 2 types x 5 severities x 2 draws. Each model's label is a shared latent damage plus its
    own noise, more noise in the discrete set; the soft detection label is NaN on photo 5 (no box on its
    reference); Meet (a person model) voted on photos 0-3 only; the soft defocus label rises s2->s3."""
    rng = np.random.default_rng(0)
    rows = []
    for p in range(6):
        for t in TYPES:
            for s in range(1, 6):
                for draw in (0, 1):
                    latent = 1 - 0.15 * s + 0.1 * rng.normal()
                    row = {"reference_id": f"p{p}", "photo": f"p{p}", "crop": 0, "reference_path": f"r/p{p}.png",
                           "distorted_path": f"i/p{p}/{t}{s}_{draw}.png", "distortion": t, "mode": "uniform",
                           "roi_severity": s, "bg_severity": s, "roi_fraction": 0.0, "psnr": 30.0 - s,
                           "draw": draw}
                    for m in (*DET, *SEG, *CLS):
                        row[f"consistency/{m}"] = latent + 0.3 * rng.normal()
                        row[f"soft/{m}"] = latent + 0.05 * rng.normal() + (0.5 if t == "defocus_blur" and s == 3
                                                                          else 0.0)
                    if p == 5:
                        row["soft/centernet"] = row["soft/nanodet"] = NAN
                    seg_voters = SEG if p < 4 else SEG[:1]
                    for prefix, task_prefix in (("consistency", "mmos"), ("soft", "mmos_soft")):
                        per_task = {task: float(np.mean([row[f"{prefix}/{m}"] for m in models]))
                                    for task, models in (("detection", DET), ("segmentation", seg_voters),
                                                         ("classification", CLS))}
                        for task, value in per_task.items():
                            row[f"{task_prefix}/{task}"] = value
                        row[task_prefix] = float(np.nanmean(list(per_task.values())))
                    rows.append(row)
    write_rows(path, rows)
    return read_rows(path)


def test_report_reliability_section_compares_label_sets(tmp_path):
    report = _report_module()
    manifest = tmp_path / "ds" / "manifest.csv"
    rows = reliability_manifest(manifest)
    columns = read_header(manifest)
    assert report.person_references(rows, columns, ["meet"]) == {"p0", "p1", "p2", "p3"}
    assert report.person_references(rows, columns, []) == {f"p{p}" for p in range(6)}
    lines, results = report.reliability_table(rows, columns, ["meet"], n_resamples=50)
    assert set(results) == {"discrete", "soft"}
    det_old, det_new = results["discrete"]["voters/detection"], results["soft"]["voters/detection"]
    assert (det_old["images"], det_old["dropped"]) == (120, 0) and (det_new["images"], det_new["dropped"]) == (100, 20)
    keep = [r for r in rows if r["photo"] != "p5"]
    expected = spearmanr([r["soft/centernet"] for r in keep], [r["soft/nanodet"] for r in keep])[0]
    assert det_new["result"].srcc.estimate == pytest.approx(expected)
    assert det_new["result"].corrected.estimate == pytest.approx(2 * expected / (1 + expected))
    assert det_new["result"].srcc.n_groups == 5 and det_new["result"].srcc.low <= expected
    seg = results["soft"]["voters/segmentation"]
    assert seg["images"] == 80  # Meet voted on 4 photos x 20 images
    for task in ("detection", "segmentation", "classification"):   # the soft labels carry less noise here
        assert (results["soft"][f"voters/{task}"]["result"].corrected.estimate
                > results["discrete"][f"voters/{task}"]["result"].corrected.estimate)
    draws = results["soft"]["draws/detection"]
    assert (draws["images"], draws["dropped"]) == (50, 10)
    first = {(r["photo"], r["distortion"], r["roi_severity"]): r["mmos_soft/detection"] for r in keep if r["draw"] == 0}
    second = [r["mmos_soft/detection"] for r in keep if r["draw"] == 1]
    assert draws["result"].srcc.estimate == pytest.approx(spearmanr(list(first.values()), second)[0])
    text = "\n".join(lines)
    assert "| detection | voters: centernet ~ nanodet |" in text and "| 100 (20) |" in text
    assert text.count("\n") + 1 == 2 + 3 + 4 and "draws: 0 ~ 1" in text   # 3 voter rows, 3 tasks + overall
    exception_lines, found = report.severity_exceptions(rows, columns, list(TYPES))
    assert ("defocus_blur", "overall") in found["soft"] and "s2->s3" in found["soft"][("defocus_blur", "overall")]
    assert ("defocus_blur", "overall") not in found["discrete"]
    assert "| defocus_blur | overall | falls |" in "\n".join(exception_lines)


def test_report_renders_the_section(tmp_path, monkeypatch, capsys):
    report = _report_module()
    root = tmp_path / "ds"
    reliability_manifest(root / "manifest.csv")
    config = {"distortions": list(TYPES), "roi_models": ["centernet"], "size": 64, "crops_per_image": 1,
              "region_pairs": 0, "processes": 1, "person_models": ["meet"]}
    (root / "build_info.json").write_text(json.dumps({"config": config, "references": 6, "photos": 6, "rows": 120,
                                                      "failures": [], "photos_processed_this_run": 6,
                                                      "seconds_this_run": 1.0, "machine": "test"}))
    out = tmp_path / "report.md"
    monkeypatch.setattr(sys, "argv", ["dataset_report.py", "--dataset", str(root), "--out", str(out),
                                      "--n-resamples", "20"])
    report.main()
    text = out.read_text()
    assert "## Label reliability" in text and "soft: reliability of the mean (SB) [95% CI]" in text
    assert "references where meet voted (4)" in text and "Exceptions:" in text


def test_build_pairs_labels_pairs_in_both_sets_with_the_builders_scores(tmp_path, shared_dir):
    """Real task models (NanoDet, Selfie) on one small photo: PSNR-matched pairs are scored with
    soft_consistency, ROI-vs-background pairs read the manifest's soft columns, and a part written
    before the manifest had soft labels is redone."""
    from mlclipsim.data.build_dataset import BuildConfig, build_dataset
    from mlclipsim.data.build_pairs import PairsConfig, build_pairs, defined_preference
    from mlclipsim.machine.prediction_cache import load_task_models
    from mlclipsim.machine.predictions import load_predictions
    from mlclipsim.machine.soft_agreement import soft_consistency

    photos = tmp_path / "photos"
    photos.mkdir()
    with Image.open(shared_dir / "data" / "images" / "skimage_astronaut.png") as image:
        image.convert("RGB").resize((192, 160)).save(photos / "skimage_astronaut.png")
    out = tmp_path / "ds"
    build_dataset(BuildConfig(images=photos, out=out, task_models=("nanodet", "selfie"),
                              distortions=("gaussian_noise", "defocus_blur"), region_pairs=1, size=160, batch_size=4))
    summary = build_pairs(PairsConfig(dataset=out, pairs_per_reference=1))
    assert set(summary["label_sets"]) == {"discrete", "soft"}
    assert summary["label_sets"]["soft"]["soft_label"] == "soft_label@soft"
    assert json.loads((out / "pairs_info.json").read_text())["label_sets"] == summary["label_sets"]
    pairs = read_rows(out / "pairs.csv")
    assert {p["kind"] for p in pairs} == {"psnr_matched", "roi_vs_background"}
    tasks = {"nanodet": "detection", "selfie": "segmentation"}
    models = {m.name: m for m in load_task_models(list(tasks), 1, {})}
    manifest = {r["distorted_path"]: r for r in read_rows(out / "manifest.csv")}
    for pair in pairs:
        a = {m: pair[f"a_soft/{m}"] for m in tasks}
        b = {m: pair[f"b_soft/{m}"] for m in tasks}
        overall, per_task = defined_preference(a, b, tasks, list(tasks))
        assert pair["soft_label@soft"] == pytest.approx(overall, nan_ok=True)
        assert pair["soft_label/segmentation@soft"] == pytest.approx(per_task["segmentation"], nan_ok=True)
        assert pair["majority_label"] in (0.0, 0.5, 1.0) and 0 <= pair["soft_label"] <= 1  # discrete, as before
        if pair["kind"] == "roi_vs_background":
            assert a["selfie"] == manifest[pair["a_path"]]["soft/selfie"]
        else:   # scored here, exactly as the builder scores its images
            stem = Path(pair["a_path"]).stem
            predictions = out / "predictions" / "selfie" / pair["reference_id"]
            pred = load_predictions(predictions / f"{stem}.npz")[0]
            reference = load_predictions(predictions / "reference.npz")[0]
            assert a["selfie"] == pytest.approx(soft_consistency(models["selfie"], pred, reference), abs=1e-5)
    # a part from before the soft labels is redone; the discrete labels come out the same
    part = next((out / "pair_parts").glob("*.csv"))
    old = [{k: v for k, v in r.items() if "@" not in k and "soft/" not in k} for r in read_rows(part)]
    write_rows(part, old, columns=list(old[0]))
    assert build_pairs(PairsConfig(dataset=out, pairs_per_reference=1))["references_processed_this_run"] == 1
    again = read_rows(out / "pairs.csv")
    assert [r["soft_label@soft"] for r in again] == pytest.approx([r["soft_label@soft"] for r in pairs], nan_ok=True)
    assert [r["soft_label"] for r in again] == [r["soft_label"] for r in old]
