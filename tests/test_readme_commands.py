"""Every command in README.md's bash blocks runs here on tiny inputs, or says in NOT_RUN why it cannot.

The commands run in a temporary checkout (the working directory of this module): its
``../shared/data/images`` holds four photos shrunk to 192x176 px (``$MLCLIPSIM_SHARED_DIR`` points
there too, so commands that default to the shared photos use them), ``codecs/`` is the repository's,
``benchmarks/results/heldout_photos.txt`` lists one of the four photos, and
``benchmarks/results/codecs/small`` and ``benchmarks/results/rate_task`` are the committed files
(read only). So the README's relative paths work as written; RUN lists, per command, every word that
differs from the README and why, and the test of each command checks what it promises. The task
models are the real ONNX files (``$MLCLIPSIM_MODELS_DIR``), the encoders the real offline MobileNetV2.
The tiny dataset that ``build-dataset`` makes feeds ``build-pairs``, ``calibrate`` and ``train-ramiqa``;
the codec that ``train-codec`` trains is the one ``codec compress`` / ``decompress`` use.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import io
import json
import re
import runpy
import shlex
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
from PIL import Image

from mlclipsim.cli import build_parser, main

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: one torch thread for this module

REPO = Path(__file__).resolve().parents[1]
PHOTOS = ("opencv_baboon.jpg", "opencv_board.jpg", "skimage_astronaut.png", "skimage_camera.png")
"""Split 0.6/0.1/0.3 by photo, seed 0 (calibrate, train-ramiqa): train baboon + astronaut, validation board,
test camera. All four are textured enough that noise and blur meet at equal PSNR (PSNR-matched pairs)."""
HELDOUT = "skimage_astronaut.png"  # a held-out photo of the committed rate-task run (benchmarks/results/rate_task)


class Change(NamedTuple):
    """How a README command is run here: words swapped (README word -> word here), words appended, why."""

    why: str
    swap: dict[str, str] = {}
    append: tuple[str, ...] = ()


# README command (its start, without `.venv/bin/`) -> every difference from the README, and why.
RUN: dict[str, Change] = {
    "mlclipsim score": Change(
        "placeholders: REF, DIST = two of the photos; [--json] (optional) given",
        swap={"REF": f"../shared/data/images/{PHOTOS[2]}", "DIST": f"../shared/data/images/{PHOTOS[3]}",
              "[--json]": "--json"}),
    "python benchmarks/noise_sweep.py": Change("as written (the four photos, all six noise levels)"),
    "mlclipsim build-dataset": Change(
        "2 of the 12 distortion types (two are the fewest that make PSNR-matched pairs), 1 ROI pair per type "
        "instead of 2; 1 process: 2 spawn DDP workers that each load torch and the 4 task models "
        "(~20 s of CPU; two processes are tested in tests/test_data_engine.py)",
        append=("--distortions", "gaussian_noise", "defocus_blur", "--region-pairs", "1", "--processes", "1")),
    "mlclipsim build-pairs": Change("1 process (see build-dataset)", append=("--processes", "1")),
    "mlclipsim calibrate": Change("as written (on the tiny dataset)"),
    "mlclipsim train-codec": Change("2 steps of the README recipe instead of 3000, on the four photos (its "
                                    "default data.images is $MLCLIPSIM_SHARED_DIR/data/images); validation, due "
                                    "every 10 epochs, never runs, so the run writes last.ckpt, not best.ckpt",
                                    append=("trainer.max_steps=2",)),
    "mlclipsim codec compress": Change(
        "photo.png = one of the photos; runs/.../best.ckpt = last.ckpt of the train-codec run above",
        swap={"photo.png": f"../shared/data/images/{PHOTOS[2]}",
              "runs/.../best.ckpt": "runs/codec/version_0/checkpoints/last.ckpt"}),
    "mlclipsim codec decompress": Change("runs/.../best.ckpt = last.ckpt of the train-codec run above",
                                         swap={"runs/.../best.ckpt": "runs/codec/version_0/checkpoints/last.ckpt"}),
    "mlclipsim compress": Change("photos/ = the four photos", swap={"photos/": "../shared/data/images"}),
    "mlclipsim rate-task": Change("as written (heldout_photos.txt lists one photo)"),
    "mlclipsim train-ramiqa": Change("as written (trains on outputs/dataset, the tiny dataset built above)"),
    "python benchmarks/rate_task.py --images ../shared/data/images --import-rows": Change(
        "--photos/--out/--report: the defaults are the repository's own files (the 26 held-out photos, "
        "outputs/rate_task and the committed report); here one held-out photo whose rows the committed run "
        "holds (nothing is recomputed) and files in the checkout",
        append=("--photos", "benchmarks/results/heldout_photos.txt", "--out", "outputs/rate_task_study",
                "--report", "report/rate_task.md")),
}

# README command (its start) -> why it is not run here (CPU seconds measured on 2 cores, one torch thread).
NOT_RUN: dict[str, str] = {
    "python3 -m venv": "the install itself (`bash .ci/run` runs it in a fresh environment, as CI does)",
    "python -m pytest": "the test suite itself",
    "python benchmarks/rate_task.py --images ../shared/data/images": (
        "the full study: 63 codec points x 4 task models per photo, about 35 s of CPU for one 192-px photo "
        "(`mlclipsim rate-task` takes 16 s for its 31 points); its study is `mlclipsim rate-task` and its "
        "report runs in the --import-rows command, both run here"),
    "python benchmarks/machine_preference.py": (
        "46 s of CPU on the 4-photo dataset with its scores already cached, even with --n-resamples 10 "
        "(80 five-parameter logistic fits that run to their evaluation budget on 18 test images)"),
    "python benchmarks/ra_miqa.py": (
        "trains 9 models (3 tasks x RA-MIQA and two ablations) and scores them: 34 s of CPU on the tiny "
        "dataset even with --override trainer.max_epochs=1 --n-resamples 10; its training is `mlclipsim "
        "train-ramiqa`, run here"),
    "bash benchmarks/codec_training/train_small.sh": (
        "each training is a new Python process (torch, Lightning, CompressAI) plus an export process: 24 s "
        "of CPU with STEPS=2 LAMBDAS=0.0130 on the tiny photos; its recipes are checked to exist here and "
        "trained in-process by `mlclipsim train-codec` (here) and tests/test_recipes.py"),
    "python benchmarks/ra_miqa_codecs.py": (
        "codes each photo with the 13 committed learned codecs, whole and as a 128-px crop, and scores every "
        "reconstruction with RA-MIQA: 47-70 s of CPU for one 192-px photo"),
}


def readme_commands() -> list[str]:
    """The commands of README.md's bash blocks, one line each (continuations joined, comments dropped)."""
    text = (REPO / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                commands.append(re.sub(r"\s+", " ", line))
    return commands


def _short(command: str) -> str:
    """The command without leading VAR=value assignments and the `.venv/bin/` prefix."""
    words = command.split(" ")
    while words and re.fullmatch(r"[A-Z_]+=\S+", words[0]):
        words.pop(0)
    return " ".join(words).replace(".venv/bin/", "")


def _entry(command: str) -> str | None:
    """The longest RUN or NOT_RUN key that the command starts with."""
    keys = [key for key in (*RUN, *NOT_RUN) if _short(command) == key or _short(command).startswith(key + " ")]
    return max(keys, key=len) if keys else None


def readme_command(start: str) -> str:
    """The one README command that RUN's entry ``start`` stands for."""
    matches = [c for c in readme_commands() if _entry(c) == start]
    assert len(matches) == 1, f"{start!r} matches {len(matches)} README commands: {matches}"
    return matches[0]


def _load_script(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_readme(start: str, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """Run the README command ``start`` in the checkout (the cwd), changed as RUN says; (exit status, stdout)."""
    change = RUN[start]
    words = [change.swap.get(word, word) for word in shlex.split(readme_command(start))] + list(change.append)
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        if words[0] == ".venv/bin/mlclipsim":
            status = main(words[1:])
        else:
            assert words[0] == ".venv/bin/python" and words[1].startswith("benchmarks/"), words
            module = _load_script(REPO / words[1])
            monkeypatch.setattr(sys, "argv", words[1:])
            status = module.main()
    return status, stdout.getvalue()


CHECKED: set[str] = set()


def checks(start: str):
    """Marks the test that runs RUN's entry ``start`` (every entry must have one)."""
    def mark(test):
        CHECKED.add(start)
        return test
    return mark


# ------------------------------------------------------------------------------------------- the checkout


@pytest.fixture(scope="module")
def checkout(tmp_path_factory, shared_dir, one_torch_thread):
    """A temporary checkout (made the cwd for this module) with the tiny photos at ../shared/data/images."""
    root = tmp_path_factory.mktemp("readme")
    photos = root / "shared" / "data" / "images"
    photos.mkdir(parents=True)
    for name in PHOTOS:
        with Image.open(shared_dir / "data" / "images" / name) as image:
            image.convert("RGB").resize((192, 176), Image.LANCZOS).save(photos / name)
    work = root / "checkout"
    (work / "benchmarks" / "results" / "codecs").mkdir(parents=True)
    (work / "codecs").symlink_to(REPO / "codecs")
    for committed in ("codecs/small", "rate_task"):
        (work / "benchmarks" / "results" / committed).symlink_to(REPO / "benchmarks" / "results" / committed)
    (work / "benchmarks" / "results" / "heldout_photos.txt").write_text(HELDOUT + "\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        patch.setenv("MLCLIPSIM_SHARED_DIR", str(root / "shared"))
        yield work


@pytest.fixture(scope="module")
def dataset(checkout) -> tuple[int, str]:
    with pytest.MonkeyPatch.context() as patch:
        return run_readme("mlclipsim build-dataset", patch)


@pytest.fixture(scope="module")
def pairs(dataset) -> tuple[int, str]:
    with pytest.MonkeyPatch.context() as patch:
        return run_readme("mlclipsim build-pairs", patch)


@pytest.fixture(scope="module")
def trained_codec(checkout) -> tuple[int, str]:
    with pytest.MonkeyPatch.context() as patch:
        return run_readme("mlclipsim train-codec", patch)


# ------------------------------------------------------------------------------------------- the table


def test_every_readme_command_is_run_or_says_why_not():
    commands = readme_commands()
    assert len(commands) > 10
    unknown = [c for c in commands if _entry(c) is None]
    assert not unknown, f"README commands neither in RUN nor in NOT_RUN of {__file__}: {unknown}"
    used = {_entry(c) for c in commands}
    assert used == set(RUN) | set(NOT_RUN), f"entries matching no README command: {set(RUN) | set(NOT_RUN) - used}"
    assert all(len([c for c in commands if _entry(c) == start]) == 1 for start in RUN)
    assert CHECKED == set(RUN), f"RUN entries without a test: {set(RUN) - CHECKED}"


def _script_flags_exist(words: list[str]) -> None:
    script = next(w for w in words if w.endswith((".py", ".sh")))
    source = (REPO / script).read_text()
    for word in words:
        if word.startswith("--"):
            assert word.split("=")[0] in source, f"{script} has no option {word}"


def test_commands_not_run_name_files_options_and_recipes_that_exist():
    recipes = runpy.run_path(str(REPO / "codecs" / "recipes.py"))["RECIPES"]
    for command in readme_commands():
        if _entry(command) not in NOT_RUN or not any(w.endswith((".py", ".sh")) for w in command.split(" ")):
            continue
        words = shlex.split(_short(command))
        _script_flags_exist(words)
        if words[0] == "bash":
            assert words[2] in recipes, command
    for command in readme_commands():  # the commands run here also parse (cheap, and names the bad option)
        if _short(command).startswith("mlclipsim ") and _entry(command) in RUN:
            words = [RUN[_entry(command)].swap.get(w, w) for w in shlex.split(_short(command))]
            build_parser(words[1]).parse_args(words[1:])


# ------------------------------------------------------------------------------------------- quick commands


@checks("mlclipsim score")
def test_score(checkout, monkeypatch):
    status, out = run_readme("mlclipsim score", monkeypatch)
    report = json.loads(out)
    assert status == 0 and report["backbone"] == "torchvision/mobilenet_v2" and len(report["results"]) == 1
    assert 0.0 <= report["results"][0]["score"] < 1.0 and not report["errors"]


def test_score_folders_as_json(checkout, capsys):
    assert main(["score", "../shared/data/images", "../shared/data/images", "--backbone",
                 "torchvision/mobilenet_v2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["score"] for r in report["results"]] == pytest.approx([1.0] * len(PHOTOS), abs=1e-5)


@checks("python benchmarks/noise_sweep.py")
def test_noise_sweep_writes_its_table_to_stdout_and_the_bar_to_stderr(checkout, capsys, monkeypatch):
    monkeypatch.setenv("MLCLIPSIM_PROGRESS", "1")
    status, out = run_readme("python benchmarks/noise_sweep.py", monkeypatch)
    assert status == 0 and "strictly falling" in out and "noise sweep" not in out
    assert "noise sweep" in capsys.readouterr().err  # the progress bar goes to stderr
    with (checkout / "outputs" / "noise_sweep.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == len(PHOTOS) * 6


@checks("mlclipsim compress")
def test_compress(checkout, monkeypatch):
    status, _ = run_readme("mlclipsim compress", monkeypatch)
    assert status == 0
    with (checkout / "out" / "rate_control.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(PHOTOS)
    for row in rows:
        assert (checkout / "out" / (Path(row["image"]).stem + ".webp")).is_file()
        assert row["reached"] == "True" and float(row["score"]) >= 0.9


# ------------------------------------------------------------------------------------------- data engine


@checks("mlclipsim build-dataset")
def test_build_dataset(dataset, checkout):
    from mlclipsim.data.build_dataset import DEFAULT_TASK_MODELS
    from mlclipsim.data.manifest import read_rows

    status, out = dataset
    summary = json.loads(out)
    rows = read_rows(checkout / "outputs" / "dataset" / "manifest.csv")
    assert status == 0 and summary["references"] == len(PHOTOS) and summary["failures"] == []
    assert summary["rows"] == len(rows) >= len(PHOTOS) * 2 * 5
    assert {r["distortion"] for r in rows} == {"gaussian_noise", "defocus_blur"}
    assert {r["mode"] for r in rows} == {"uniform", "roi", "background"}
    for row in rows:
        assert (checkout / "outputs" / "dataset" / row["distorted_path"]).is_file()
        assert all(0.0 <= row[f"consistency/{model}"] <= 1.0 for model in DEFAULT_TASK_MODELS)


@checks("mlclipsim build-pairs")
def test_build_pairs(pairs, checkout):
    from mlclipsim.data.manifest import read_rows

    status, out = pairs
    summary = json.loads(out)
    rows = read_rows(checkout / "outputs" / "dataset" / "pairs.csv")
    assert status == 0 and summary["pairs"]["psnr_matched"] >= 2 and summary["pairs"]["roi_vs_background"] >= 1
    assert len(rows) == sum(summary["pairs"].values())
    for row in rows:
        assert 0.0 <= row["soft_label"] <= 1.0
        assert (checkout / "outputs" / "dataset" / row["a_path"]).is_file()


@checks("mlclipsim calibrate")
def test_calibrate(pairs, checkout, monkeypatch):
    status, out = run_readme("mlclipsim calibrate", monkeypatch)
    record = json.loads((checkout / "weights.json").read_text())
    assert status == 0 and json.loads(out)["weights"] == record["weights"]
    assert sum(record["weights"].values()) == pytest.approx(1.0)
    assert record["fitted_on"]["train_photos"] == 2 and record["fitted_on"]["train_pairs"] >= 2


@checks("mlclipsim train-ramiqa")
def test_train_ramiqa(dataset, checkout, monkeypatch):
    from mlclipsim.models.ra_miqa import RAMIQAModel

    status, _ = run_readme("mlclipsim train-ramiqa", monkeypatch)
    assert status == 0 and any((checkout / "outputs" / "ra_miqa_cache").rglob("*.npz"))
    model = RAMIQAModel.from_file(checkout / "ra_miqa_detection.pt")
    assert model.heads == ("detection/consistency",) and model.meta["photos"]["train"] == 2


# ------------------------------------------------------------------------------------------- codecs


@checks("mlclipsim train-codec")
def test_train_codec(trained_codec, checkout):
    status, _ = trained_codec
    run = checkout / "runs" / "codec" / "version_0"
    config = (run / "config.yaml").read_text()
    assert status == 0 and (run / "checkpoints" / "last.ckpt").is_file()
    assert "lmbda: 0.0067" in config and "ml-clipsim" in config and "bmshj2018-factorized" in config


@checks("mlclipsim codec compress")
def test_codec_compress(trained_codec, checkout, monkeypatch):
    status, _ = run_readme("mlclipsim codec compress", monkeypatch)
    assert status == 0 and (checkout / "photo.bin").stat().st_size > 0


@checks("mlclipsim codec decompress")
def test_codec_decompress(trained_codec, checkout, monkeypatch):
    if not (checkout / "photo.bin").is_file():
        run_readme("mlclipsim codec compress", monkeypatch)
    status, _ = run_readme("mlclipsim codec decompress", monkeypatch)
    assert status == 0
    with Image.open(checkout / "decoded.png") as decoded:
        assert decoded.size == (192, 176)


# ------------------------------------------------------------------------------------------- rate-task


@checks("mlclipsim rate-task")
def test_rate_task(checkout, monkeypatch):
    status, _ = run_readme("mlclipsim rate-task", monkeypatch)
    out = checkout / "outputs" / "rate_task"
    summary = json.loads((out / "summary.json").read_text())
    assert status == 0 and summary["photos"] == [HELDOUT]
    with (out / "rows.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {r["codec"] for r in rows} == {"jpeg", "webp", "avif", "webp@mlclipsim", "mse"}
    assert len([r for r in rows if r["codec"] == "mse"]) == 4  # the four committed lambdas
    assert all(0.0 <= float(r["consistency/centernet"]) <= 1.0 for r in rows)
    for name in ("curves.md", "bd_rate.md", "rate_task.png", "rate_task.svg"):
        assert (out / name).is_file(), name


@checks("python benchmarks/rate_task.py --images ../shared/data/images --import-rows")
def test_rate_task_report_from_the_committed_rows(checkout, monkeypatch, capsys):
    status, _ = run_readme("python benchmarks/rate_task.py --images ../shared/data/images --import-rows",
                           monkeypatch)
    summary = json.loads((checkout / "outputs" / "rate_task_study" / "summary.json").read_text())
    assert status == 0 and summary["photos"] == [HELDOUT]
    imported = re.search(r"'imported': (\d+)", capsys.readouterr().err)
    assert imported and int(imported.group(1)) > 0 and (checkout / "report" / "rate_task.md").is_file()
    assert HELDOUT in (checkout / "report" / "rate_task.md").read_text()
