"""ML-CLIPSim rate control and the rate-task study: choices checked by brute force, CLIs end to end, resume."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_codec_interface import tiny_family

from mlclipsim.cli import main
from mlclipsim.coding.interface import Codec, CodedImages, create_codec
from mlclipsim.coding.rate_control import RateControlledCodec, check_target, control_rate

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: one torch thread for this module

# ----------------------------------------------------------------------------- a codec with known scores


class TableCodec(Codec):
    """Point i returns the image scaled by FACTORS[i] with a file of 10 * i bytes; counts its codings."""

    name = "table"

    def __init__(self, factors) -> None:
        self.factors = list(factors)
        self.calls = 0

    @property
    def points(self):
        return tuple(range(1, len(self.factors) + 1))

    def _code(self, images, point):
        self.calls += 1
        out = images * self.factors[point - 1]
        return CodedImages(out, [80 * point] * images.shape[0], [bytes(10 * point)] * images.shape[0])


def mean_ratio(decoded: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """A stand-in score: mean(decoded) / mean(reference), i.e. the factor of TableCodec."""
    return decoded.mean(dim=(1, 2, 3)) / reference.mean(dim=(1, 2, 3))


IMAGE = torch.full((1, 3, 8, 8), 0.5)


def brute_force(codec: Codec, image: torch.Tensor, target: float, score) -> tuple:
    scores = [(p, float(score(codec.code(image, p).reconstructions, image)[0])) for p in codec.ladder]
    reaching = [p for p, s in scores if s >= target]
    return (reaching[0] if reaching else None), scores


@pytest.mark.parametrize("target", [0.05, 0.31, 0.5, 0.62, 0.9, 0.97])
def test_bisection_finds_the_lowest_point_on_a_monotone_ladder(target):
    codec = TableCodec(np.linspace(0.1, 0.95, 9))
    expected, _ = brute_force(codec, IMAGE, target, mean_ratio)
    codec.calls = 0
    result = control_rate(codec, IMAGE, target, mean_ratio)
    assert codec.calls <= 5  # log2(9) + 1 codings, not 9
    if expected is None:
        assert not result.reached and result.point == 9 and result.score < target
    else:
        assert result.reached and result.point == expected and result.score >= target
        assert result.bits == 80 * expected and result.file == bytes(10 * expected)
    assert result.monotone


def test_non_monotone_ladder_is_flagged_and_exhaustive_search_is_exact():
    codec = TableCodec([0.2, 0.95, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])  # point 2 is a spike
    bisect = control_rate(codec, IMAGE, 0.85, mean_ratio)
    assert bisect.reached and bisect.score >= 0.85  # never a point that misses the target
    assert bisect.point in (2, 9)
    exhaustive = control_rate(codec, IMAGE, 0.85, mean_ratio, search="exhaustive")
    assert exhaustive.point == brute_force(codec, IMAGE, 0.85, mean_ratio)[0] == 2
    assert not exhaustive.monotone and len(exhaustive.evaluations) == 9
    # a search whose path passes the spike sees it and says so
    seen = control_rate(TableCodec([0.2, 0.3, 0.4, 0.5, 0.99, 0.6, 0.7, 0.8, 0.955]), IMAGE, 0.95, mean_ratio,
                        search="exhaustive")
    assert seen.point == 5 and not seen.monotone  # point 5 scores above the top point 9


def test_bad_targets_searches_and_images():
    codec = TableCodec([0.5, 1.0])
    for bad in (0, -0.1, 1.5, float("nan"), "x", True, None):
        with pytest.raises(ValueError, match=r"target"):
            control_rate(codec, IMAGE, bad, mean_ratio)
    with pytest.raises(ValueError, match="Unknown search"):
        control_rate(codec, IMAGE, 0.5, mean_ratio, search="greedy")
    with pytest.raises(ValueError, match="one image"):
        control_rate(codec, IMAGE.repeat(2, 1, 1, 1), 0.5, mean_ratio)
    with pytest.raises(ValueError, match="no operating point"):
        control_rate(codec, IMAGE, 0.5, mean_ratio, ladder=[1, 7])
    assert check_target("0.9") == 0.9


def test_rate_controlled_codec_reuses_codings_across_targets():
    base = TableCodec(np.linspace(0.1, 0.95, 9))
    codec = RateControlledCodec(base, scorer=mean_ratio)
    assert codec.name == "table@mlclipsim"
    first = codec.code(IMAGE, 0.6)
    calls = base.calls
    second = codec.code(IMAGE, 0.61)
    assert base.calls - calls <= 1  # the ladder was mostly coded already for this image
    assert first.details[0]["reached"] and second.bits[0] >= first.bits[0]
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        codec.code(IMAGE, 1.2)


def test_real_jpeg_rate_control_matches_brute_force(mobilenet, astronaut):
    from mlclipsim.metrics import MLCLIPSimScorer

    scorer = MLCLIPSimScorer(mobilenet)
    image = torch.nn.functional.interpolate(astronaut, size=(96, 96), mode="area").clamp(0, 1)
    codec = create_codec("jpeg")
    ladder = list(range(5, 100, 10))
    result = control_rate(codec, image, 0.9, scorer, ladder=ladder, search="exhaustive")
    scores = {q: float(scorer(codec.code(image, q).reconstructions, image)[0]) for q in ladder}
    expected = min(q for q, s in scores.items() if s >= 0.9)
    assert result.point == expected and result.reached
    assert result.score == pytest.approx(scores[expected], abs=1e-5)
    assert result.bits == codec.code(image, expected).bits[0]
    bisect = control_rate(codec, image, 0.9, scorer, ladder=ladder)
    assert bisect.reached and bisect.score >= 0.9
    if bisect.monotone and all(scores[a] <= scores[b] for a, b in zip(ladder, ladder[1:])):
        assert bisect.point == expected


# ----------------------------------------------------------------------------- command lines


@pytest.fixture(scope="module")
def photos(tmp_path_factory, shared_dir) -> Path:
    """Two small photos (long side 200 px) and a corrupt file."""
    folder = tmp_path_factory.mktemp("photos")
    for name, size in (("skimage_astronaut.png", (200, 200)), ("skimage_coffee.png", (200, 150))):
        with Image.open(shared_dir / "data" / "images" / name) as image:
            image.convert("RGB").resize(size, Image.LANCZOS).save(folder / name)
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    return folder


def test_compress_writes_files_at_the_chosen_quality(photos, tmp_path, capsys):
    out = tmp_path / "out"
    status = main(["compress", str(photos), str(out), "--codec", "webp:5,15,30,50,70,90", "--target-mlclipsim",
                   "0.93", "--backbone", "torchvision/mobilenet_v2"])
    captured = capsys.readouterr()
    assert status == 1 and "broken.png" in captured.err  # one unreadable image: reported, others written
    with (out / "rate_control.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["image"] for r in rows) == ["skimage_astronaut.png", "skimage_coffee.png"]
    from mlclipsim.core.images import read_image
    from mlclipsim.metrics import MLCLIPSimScorer

    scorer = MLCLIPSimScorer("torchvision/mobilenet_v2")
    for row in rows:
        data = (out / row["file"]).read_bytes()
        assert row["file"].endswith(".webp") and len(data) == int(row["bytes"])
        with Image.open(out / row["file"]) as image:
            assert image.format == "WEBP"
        original = read_image(photos / row["image"])[None]
        score = float(scorer(read_image(out / row["file"])[None], original)[0])
        assert score == pytest.approx(float(row["score"]), abs=1e-4)
        assert (row["reached"] == "True") == (score >= 0.93)
        if row["reached"] == "True" and row["quality"] != "5":  # the next lower ladder quality misses
            lower = [5, 15, 30, 50, 70, 90][[5, 15, 30, 50, 70, 90].index(int(row["quality"])) - 1]
            decoded = create_codec("webp").code(original, lower).reconstructions
            assert float(scorer(decoded, original)[0]) < 0.93


def test_compress_bad_input_errors(photos, tmp_path, capsys):
    base = [str(photos / "skimage_coffee.png"), str(tmp_path / "o"), "--backbone", "torchvision/mobilenet_v2"]
    assert main(["compress", *base, "--codec", "webp", "--target-mlclipsim", "1.5"]) == 2
    assert "(0, 1]" in capsys.readouterr().err
    assert main(["compress", *base, "--codec", "gif", "--target-mlclipsim", "0.9"]) == 2
    assert "Registered codecs: avif" in capsys.readouterr().err
    assert main(["compress", *base, "--codec", "webp:0,50", "--target-mlclipsim", "0.9"]) == 2
    assert "1..100" in capsys.readouterr().err
    assert main(["compress", *base, "--codec", "webp@mlclipsim", "--target-mlclipsim", "0.9"]) == 2
    assert "base codec" in capsys.readouterr().err


def _rate_task_args(photos: Path, out: Path, family: Path) -> list[str]:
    return ["rate-task", "--images", str(photos), "--out", str(out), "--size", "192",
            "--codec", "jpeg:10,40,80", "webp:10,40,80", "webp@mlclipsim:0.9,0.97", "tiny",
            "--learned", f"tiny={family}/*.pth", "--task-model", "selfie", "efficientnet-lite0",
            "--anchor", "jpeg", "webp"]


def test_rate_task_end_to_end_resumes_and_skips_a_corrupt_photo(photos, tmp_path, capsys):
    family = tmp_path / "family"
    family.mkdir()
    tiny_family(family)
    out = tmp_path / "study"
    assert main(_rate_task_args(photos, out, family)) == 0
    captured = capsys.readouterr()
    assert "skipped unreadable photo: broken.png" in captured.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["photos"] == ["skimage_astronaut.png", "skimage_coffee.png"]
    assert list(summary["failures"]) == ["broken.png"] and (out / "failures" / "broken.png.txt").is_file()
    assert summary["codecs"]["webp@mlclipsim"] == ["0.9", "0.97"]
    assert summary["codecs"]["tiny"] == ["0.0035", "0.0130"]

    with (out / "rows.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * (3 + 3 + 2 + 2)
    for row in rows:
        assert max(int(row["height"]), int(row["width"])) == 192
        assert int(row["bits"]) == 8 * int(row["bytes"])
        assert float(row["bpp"]) == pytest.approx(int(row["bits"]) / (int(row["height"]) * int(row["width"])))
        for key in ("consistency/selfie", "consistency/efficientnet-lite0", "ml_clipsim"):
            assert 0.0 <= float(row[key]) <= 1.0
        assert math.isfinite(float(row["psnr"]))
    coffee = [r for r in rows if r["photo"] == "skimage_coffee.png"]
    assert all(r["ms_ssim"] == "" for r in coffee)  # 144 px: too small for MS-SSIM's 5 scales, not invented
    controlled = [r for r in rows if r["codec"] == "webp@mlclipsim"]
    assert all((r["reached"] == "True") == (float(r["ml_clipsim"]) >= float(r["point"])) for r in controlled)
    jpeg = {(r["photo"], r["point"]): int(r["bits"]) for r in rows if r["codec"] == "jpeg"}
    assert all(jpeg[(p, "10")] < jpeg[(p, "40")] < jpeg[(p, "80")] for p, _ in jpeg)
    # the learned rows are the real file of the real codec
    image = _prepared(photos / "skimage_astronaut.png", 192)
    tiny = create_codec("tiny")
    learned_row = next(r for r in rows if r["codec"] == "tiny" and r["photo"] == "skimage_astronaut.png"
                       and r["point"] == "0.0130")
    assert int(learned_row["bits"]) == tiny.code(image, "0.0130").bits[0]

    curves = list(csv.DictReader((out / "curves.csv").open()))
    assert len(curves) == 10 and all(int(c["n"]) == 2 for c in curves)
    assert "| jpeg | 10 | 2 |" in (out / "curves.md").read_text()
    bd = list(csv.DictReader((out / "bd_rate.csv").open()))
    assert {(b["anchor"], b["test"]) for b in bd} >= {("jpeg", "webp"), ("webp", "webp@mlclipsim"), ("jpeg", "tiny")}
    assert {b["score"] for b in bd} == {"consistency/selfie", "consistency/efficientnet-lite0", "psnr", "ms_ssim",
                                        "ml_clipsim"}
    psnr = next(b for b in bd if b["anchor"] == "jpeg" and b["test"] == "webp" and b["score"] == "psnr")
    assert psnr["bd_rate"] and 0 < float(psnr["overlap"]) <= 1 and psnr["method_used"] == "pchip"
    assert "Pareto filter" in (out / "bd_rate.md").read_text() and "overlap" in (out / "bd_rate.md").read_text()
    assert "| jpeg |" in (out / "rate_monotonicity.md").read_text()
    assert (out / "rate_task.png").stat().st_size > 10_000 and b"<svg" in (out / "rate_task.svg").read_bytes()

    # resume: nothing is recomputed
    stamps = {p: p.stat().st_mtime_ns for p in (out / "rows").rglob("*.json")}
    assert main(_rate_task_args(photos, out, family)) == 0
    capsys.readouterr()
    assert json.loads((out / "summary.json").read_text())["photos_processed_this_run"] == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "rows").rglob("*.json")} == stamps
    # a lost result is recomputed, identically (deterministic)
    lost = out / "rows" / "webp@mlclipsim" / "0.97" / "skimage_coffee.png.json"
    before = json.loads(lost.read_text())
    lost.unlink()
    assert main(_rate_task_args(photos, out, family)) == 0
    capsys.readouterr()
    assert json.loads((out / "summary.json").read_text())["photos_processed_this_run"] == 1
    after = json.loads(lost.read_text())
    assert {k: v for k, v in after.items() if not k.startswith("seconds/")} == \
        {k: v for k, v in before.items() if not k.startswith("seconds/")}

    # a new folder seeded from the finished run's rows.csv + summary.json computes nothing, and its rows are
    # the cached ones with their types (NaN MS-SSIM included)
    seeded = tmp_path / "seeded"
    args = _rate_task_args(photos, seeded, family)
    assert main([*args, "--import-rows", str(out)]) == 0
    captured = capsys.readouterr()
    assert "'imported': 20" in captured.err
    assert json.loads((seeded / "summary.json").read_text())["photos_processed_this_run"] == 0
    for path in (out / "rows").rglob("*.json"):
        original, copy = json.loads(path.read_text()), json.loads((seeded / path.relative_to(out)).read_text())
        assert copy.keys() == original.keys()
        for key, value in original.items():
            assert value == copy[key] or (isinstance(value, float) and math.isnan(value) and math.isnan(copy[key])), key
    assert (seeded / "rows.csv").read_text() == (out / "rows.csv").read_text()
    # a source made with another photo size does not apply
    other = [*args[:args.index("--size")], "--size", "160", *args[args.index("--size") + 2:]]
    assert main([*other[:other.index("--out") + 1], str(tmp_path / "other"), *other[other.index("--out") + 2:],
                 "--import-rows", str(out)]) == 2
    assert "size=192" in capsys.readouterr().err


def _prepared(path: Path, size: int) -> torch.Tensor:
    from mlclipsim.core.images import array_to_tensor
    from mlclipsim.data.references import reference_crops

    return array_to_tensor(reference_crops(path, 1, size)[0].image)[None]


def test_rate_task_photo_list_and_bad_input_errors(photos, tmp_path, capsys):
    out = str(tmp_path / "o")
    base = ["rate-task", "--images", str(photos), "--out", out, "--task-model", "selfie", "--size", "64"]
    cases = {
        "Registered codecs": ["--codec", "jpeg", "heic"],
        "integer qualities": ["--codec", "jpeg:0,50"],
        "(0, 1]": ["--codec", "webp", "webp@mlclipsim:0.9,1.5"],
        "are not among the codecs": ["--codec", "jpeg", "--anchor", "webp"],
        "given more than once": ["--codec", "jpeg:10", "jpeg:20"],
        "must not score": ["--codec", "jpeg", "--backbone", "efficientnet-lite0", "--task-model",
                           "efficientnet-lite0"],
        "Unknown task model": ["--codec", "jpeg", "--task-model", "yolo"],
        "NAME=GLOB": ["--codec", "jpeg", "--learned", "tiny"],
    }
    for message, extra in cases.items():
        assert main(base + extra) == 2, message
        assert message in capsys.readouterr().err, message
    listing = tmp_path / "photos.txt"
    listing.write_text("# held-out photos\nskimage_coffee.png\nnot_there.jpg\n")
    assert main(base + ["--codec", "jpeg:20,60", "--photos", str(listing)]) == 2
    assert "not_there.jpg" in capsys.readouterr().err
    listing.write_text("skimage_coffee.png\n")
    assert main(base + ["--codec", "jpeg:20,60", "webp:20,60", "--photos", str(listing)]) == 0
    capsys.readouterr()
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["photos"] == ["skimage_coffee.png"] and summary["rows"] == 4
    assert main(base + ["--codec", "jpeg:20,60", "--size", "96"]) == 2  # the cache was made at 64 px
    assert "size=64" in capsys.readouterr().err


def test_bd_rates_of_mean_curves_halving_the_rate_and_without_overlap():
    from mlclipsim.rate_task.curves import bd_rates

    scores = {"consistency/m": [0.5, 0.7, 0.8, 0.9], "psnr": [28.0, 31.0, 33.0, 35.0], "ms_ssim": [math.nan] * 4,
              "ml_clipsim": [0.7, 0.8, 0.9, 0.95]}
    bpp = [0.2, 0.4, 0.8, 1.6]
    curves = []
    for codec, factor, shift in (("a", 1.0, 0.0), ("half", 0.5, 0.0), ("far", 1.0, 100.0)):
        for i in range(4):
            curves.append({"codec": codec, "point": str(i), "n": 1, "bpp": bpp[i] * factor,
                           **{s: v[i] + (shift if s == "psnr" else 0.0) for s, v in scores.items()}})
    entries = {(e["test"], e["score"]): e for e in bd_rates(curves, ["a"], ["m"])}
    assert entries[("half", "consistency/m")]["bd_rate"] == pytest.approx(-50.0, abs=1e-6)
    assert entries[("half", "psnr")]["overlap"] == pytest.approx(1.0)
    assert entries[("far", "psnr")]["bd_rate"] is None and entries[("far", "psnr")]["reason"] == "no overlap"
    assert entries[("half", "ms_ssim")]["bd_rate"] is None and "too few" in entries[("half", "ms_ssim")]["reason"]


def test_rate_monotonicity_counts_photos_whose_file_shrinks_at_a_higher_point():
    from mlclipsim.rate_task.curves import monotonicity_markdown, rate_monotonicity

    bits = {("p1", "q1"): 100, ("p1", "q2"): 200, ("p1", "q3"): 300,   # monotone
            ("p2", "q1"): 250, ("p2", "q2"): 200, ("p2", "q3"): 300,   # one inversion (q1 -> q2)
            ("p3", "q1"): 100, ("p3", "q3"): 300}                      # q2 missing: not counted
    rows = [{"codec": "c", "photo": photo, "point": point, "bits": b} for (photo, point), b in bits.items()]
    [entry] = rate_monotonicity(rows, {"c": ["q1", "q2", "q3"]})
    assert entry == {"codec": "c", "photos": 2, "monotone": 1, "inversions": 1, "pairs": 4,
                     "photos_not_monotone": ["p2"]}
    assert "| c | 1 of 2 | 1 / 4 | p2 |" in monotonicity_markdown([entry])
