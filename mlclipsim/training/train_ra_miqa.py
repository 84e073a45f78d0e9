"""Train RA-MIQA from a LightningCLI config: ``mlclipsim train-ramiqa --config CONFIG.yaml [key=value ...]``.

    mlclipsim train-ramiqa --config mlclipsim/configs/ra_miqa.yaml model.heads=[segmentation/consistency] \
        export=outputs/ra_miqa/segmentation.pt
    python -m mlclipsim.training.train_ra_miqa --config mlclipsim/configs/ra_miqa.yaml --trainer.max_epochs 5

A config has ``seed_everything``, ``trainer`` (Lightning Trainer arguments; ``strategy: ddp`` with
``devices: 2`` runs DDP on CPU processes), ``model`` (:class:`~mlclipsim.training.ra_miqa_module.RAMIQAModule`),
``data`` (:class:`~mlclipsim.training.ra_miqa_data.RAMIQADataModule`; ``heads``, ``encoder`` and
``from_images`` are linked from ``model``), ``export`` (where to write the trained RA-MIQA file; the
best checkpoint by ``val/srcc`` is exported when a ModelCheckpoint monitors it, else the last
weights) and ``ckpt_path`` (resume). The shipped config, ``mlclipsim/configs/ra_miqa.yaml``, is the
default recipe; its ablations are the same config with ``model.architecture=no-region`` (no region
token) or ``model.architecture=cnn`` (pooled features -> MLP), as ``benchmarks/ra_miqa.py`` runs them.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.cli import LightningCLI

from mlclipsim.training.ra_miqa_data import RAMIQADataModule
from mlclipsim.training.ra_miqa_module import RAMIQAModule


def packaged_config(name: str = "ra_miqa.yaml") -> Path:
    """Path of a config that ships in ``mlclipsim/configs``."""
    path = Path(str(resources.files("mlclipsim") / "configs" / name))
    if not path.is_file():
        raise FileNotFoundError(f"No packaged config {name!r} in {path.parent}.")
    return path


def cli_arguments(configs: Sequence[str], overrides: Sequence[str] = ()) -> list[str]:
    """``mlclipsim train-ramiqa`` arguments -> LightningCLI arguments.

    A config that is not a file but names a packaged config (``ra_miqa.yaml``) is taken from the
    package; each override ``key=value`` becomes ``--key value`` (values are YAML).
    """
    arguments: list[str] = []
    for config in configs:
        path = Path(config)
        if not path.is_file():
            try:
                path = packaged_config(path.name)
            except FileNotFoundError:
                raise FileNotFoundError(f"Config {config!r} is neither a file nor a config shipped in "
                                        "mlclipsim/configs (e.g. ra_miqa.yaml).") from None
        arguments += ["--config", str(path)]
    for override in overrides:
        key, sep, value = override.partition("=")
        if not sep or not key:
            raise ValueError(f"Override {override!r} is not KEY=VALUE (e.g. trainer.max_epochs=5).")
        arguments += [f"--{key.removeprefix('--')}", value]
    return arguments


class RAMIQACLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("model.heads", "data.heads")
        parser.link_arguments("model.encoder", "data.encoder")
        parser.link_arguments("model.from_images", "data.from_images")
        parser.add_argument("--export", type=str | None, default=None, help="write the trained RA-MIQA file here")
        parser.add_argument("--ckpt_path", type=str | None, default=None, help="checkpoint to resume from")


def train(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Fit, reload the best checkpoint, export; returns a summary (also written next to the export as JSON)."""
    start = time.perf_counter()
    given = None if argv is None else list(argv)
    argv = list(sys.argv[1:]) if given is None else given
    cli = RAMIQACLI(RAMIQAModule, RAMIQADataModule, run=False, args=given, save_config_kwargs={"overwrite": True})
    trainer, module, data = cli.trainer, cli.model, cli.datamodule
    trainer.fit(module, datamodule=data, ckpt_path=cli.config.get("ckpt_path"))
    callback = trainer.checkpoint_callback
    best = getattr(callback, "best_model_path", "") if callback is not None else ""
    best_score = getattr(callback, "best_model_score", None) if callback is not None else None
    if best:
        state = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
        module.load_state_dict(state)
    summary = {
        "command": "mlclipsim train-ramiqa " + " ".join(argv),
        "best_checkpoint": best or None,
        "best_val_srcc": None if best_score is None else float(best_score),
        "epochs_run": int(trainer.current_epoch),
        "global_steps": int(trainer.global_step),
        "dataset": str(data.root), "split": list(data.split), "seed": data.seed, "targets": data.targets,
        "photos": {name: len(photos) for name, photos in data.photos.items()},
        "images": {name: len(rows) for name, rows in data.rows.items()},
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), "
                   f"{trainer.world_size} process(es)",
        "wall_time_s": round(time.perf_counter() - start, 1),
    }
    export = cli.config.get("export")
    if export and trainer.is_global_zero:
        module.export(export, meta=summary)
        Path(export).with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    train(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
