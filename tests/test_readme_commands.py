"""Every command in README.md's bash blocks is checked: the quick ones run as written on tiny inputs
(paths swapped for tiny files), the others have their arguments parsed by the real parser (or, for
scripts, their file and flags checked), and those not run say why in a warning. A README command
that this file does not know fails the test, so nothing is skipped silently."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlclipsim.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]
NOT_RUN = {  # command prefix -> why it is not run here
    "python3 -m venv": "the install itself (CI's fresh environment runs it)",
    ".venv/bin/python -m pytest": "the test suite itself",
    "bash .ci/run": "CI itself",
}
PARSED_ONLY = {  # mlclipsim subcommands whose README examples take minutes on the full data
    "build-dataset": "labels every photo with four task models (minutes); tests/test_data_engine.py builds a tiny one",
    "build-pairs": "needs a built dataset; tests/test_data_engine.py runs it on a tiny one",
    "calibrate": "needs a built dataset; tests/test_data_engine.py runs it on a tiny one",
    "train-codec": "trains a codec for minutes; tests/test_recipes.py trains a tiny recipe",
    "rate-task": "the full study (minutes); tests/test_rate_task.py runs a tiny one",
    "train-ramiqa": "trains RA-MIQA; tests/test_ra_miqa.py runs the packaged config on a tiny dataset",
}
RUN = ("score", "compress", "codec")


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                commands.append(re.sub(r"\s+", " ", line))
    return commands


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Two small photos, one folder of them, and a tiny exported codec."""
    import torch
    from compressai.models import FactorizedPrior

    from mlclipsim.coding.export import export_state_dict

    root = tmp_path_factory.mktemp("readme")
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(photos / name)
    torch.manual_seed(0)
    model = FactorizedPrior(8, 8).eval()
    model.update(force=True)
    torch.save(model.state_dict(), root / "plain.pth")
    export_state_dict(root / "plain.pth", root / "best.pth", architecture="bmshj2018-factorized")
    return root


def _substitute(command: str, tiny: Path, out: Path) -> str:
    swaps = {"../shared/data/images": str(tiny / "photos"), "REF": str(tiny / "photos" / "a.png"),
             "DIST": str(tiny / "photos" / "b.png"), "photo.png": str(tiny / "photos" / "a.png"),
             "photo.bin": str(out / "photo.bin"), "decoded.png": str(out / "decoded.png"),
             "runs/.../best.ckpt": str(tiny / "best.pth"), "photos/": str(tiny / "photos"), "out/": str(out / "out"),
             "outputs/": f"{out}/outputs/", "weights.json": str(out / "weights.json")}
    words = shlex.split(command)
    return shlex.join([swaps.get(word, word) if word in swaps else
                       (word.replace("outputs/", f"{out}/outputs/") if word.startswith("outputs/") else word)
                       for word in words])


def _script_flags_exist(words: list[str]) -> None:
    script = next(w for w in words if w.endswith((".py", ".sh")))
    source = (REPO / script).read_text()
    for word in words:
        if word.startswith("--"):
            assert word.split("=")[0] in source, f"{script} has no option {word}"


def test_every_readme_command_is_run_parsed_or_says_why_not(tiny, tmp_path, capsys, monkeypatch):
    commands = readme_commands()
    assert len(commands) > 10
    not_run = []
    for command in commands:
        if any(command.startswith(prefix) for prefix in NOT_RUN):
            not_run.append(command)
            continue
        words = [w for w in shlex.split(command) if not re.fullmatch(r"[A-Z_]+=\S+", w)]
        if words[0] == ".venv/bin/mlclipsim":
            name = words[1]
            argv = shlex.split(_substitute(command, tiny, tmp_path))[1:]
            argv = [w for w in argv if w != "[--json]"]
            build_parser(name).parse_args(argv)  # the options as written exist (SystemExit otherwise)
            if name in RUN:
                status = main(argv)
                captured = capsys.readouterr()
                assert status == 0, (command, captured.err)
            else:
                assert name in PARSED_ONLY, f"README command {command!r} is neither run nor listed in PARSED_ONLY"
                not_run.append(command)
        elif words[0] in (".venv/bin/python", "bash") and any(w.endswith((".py", ".sh")) for w in words):
            _script_flags_exist(words)
            if "benchmarks/noise_sweep.py" not in words:
                not_run.append(command)
        else:
            pytest.fail(f"README command {command!r} is not known to tests/test_readme_commands.py; classify it")
    warnings.warn("README commands checked but not run here (see NOT_RUN / PARSED_ONLY for why): "
                  + " | ".join(not_run), UserWarning, stacklevel=2)


def test_noise_sweep_runs_as_written_with_results_on_stdout(tiny, tmp_path, capsys, monkeypatch):
    command = next(c for c in readme_commands() if "benchmarks/noise_sweep.py" in c)
    words = shlex.split(_substitute(command, tiny, tmp_path))
    spec = importlib.util.spec_from_file_location("noise_sweep", REPO / "benchmarks" / "noise_sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", [words[1], *words[2:], "--out", str(tmp_path / "sweep.csv"), "--levels", "0",
                                      "0.2"])
    monkeypatch.setenv("MLCLIPSIM_PROGRESS", "1")
    assert module.main() == 0
    captured = capsys.readouterr()
    assert "noise sweep" in captured.err and "noise sweep" not in captured.out  # the bar goes to stderr
    assert "strictly falling" in captured.out and (tmp_path / "sweep.csv").is_file()


def test_score_folders_as_json(tiny, capsys):
    assert main(["score", str(tiny / "photos"), str(tiny / "photos"), "--backbone", "torchvision/mobilenet_v2",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["score"] for r in report["results"]] == pytest.approx([1.0, 1.0], abs=1e-5)
