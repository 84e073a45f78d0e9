"""Train a codec from a recipe: a thin LightningCLI entry point.

    python -m mlclipsim.training.train_codec --config codecs/bmshj2018-factorized_mse_small.yaml [--model.lmbda 0.0067]
    python -m mlclipsim.training.train_codec --config RECIPE.yaml --ckpt_path last.ckpt     # resume

A recipe is a LightningCLI config with the top-level keys ``seed_everything``, ``trainer`` (Trainer
arguments; callbacks and loggers as ``class_path`` / ``init_args``), ``model``
(:class:`~mlclipsim.training.codec_module.CompressionModule` arguments), ``data``
(:class:`~mlclipsim.training.codec_data.CodecDataModule` arguments) and optionally ``ckpt_path``.
Any key can be overridden on the command line as ``--section.key value`` (values are YAML); more
than one ``--config`` merge in order. The run calls ``trainer.fit`` (no subcommand).

LightningCLI needs ``jsonargparse[signatures]`` (``pip install "lightning[pytorch-extra]"``). Without
it this entry point reads the same recipes with a small built-in reader that supports exactly the
above (``--config``, dotted overrides, ``--ckpt_path``, ``--print_config``), so recipes run either way.
"""

from __future__ import annotations

import copy
import importlib.util
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

SECTIONS = ("trainer", "model", "data")


def _has_jsonargparse() -> bool:
    return importlib.util.find_spec("jsonargparse") is not None


def run_lightning_cli(argv: Sequence[str] | None = None) -> Any:
    from lightning.pytorch.cli import LightningCLI

    from mlclipsim.training.codec_data import CodecDataModule
    from mlclipsim.training.codec_module import CompressionModule

    class _CLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            parser.add_argument("--ckpt_path", type=str | None, default=None, help="checkpoint to resume from")

    cli = _CLI(CompressionModule, CodecDataModule, run=False, args=list(argv) if argv is not None else None,
               save_config_kwargs={"overwrite": True})
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.get("ckpt_path"))
    return cli


# ------------------------------------------------------------------------------------------ fallback


def load_config(configs: Sequence[str | Path], overrides: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """Merge YAML recipes in order, then apply ``("section.key", "yaml value")`` overrides."""
    import yaml

    config: dict[str, Any] = {}
    for path in configs:
        with open(path) as handle:
            loaded = yaml.safe_load(handle) or {}
        if not isinstance(loaded, Mapping):
            raise ValueError(f"{path}: a recipe is a YAML mapping with {list(SECTIONS)}, got {type(loaded).__name__}")
        _merge(config, loaded)
    for key, text in overrides:
        value = yaml.safe_load(text)
        parts = key.split(".")
        if parts[0] not in (*SECTIONS, "seed_everything", "ckpt_path"):
            raise ValueError(f"Unknown option --{key}; options are --seed_everything, --ckpt_path and "
                             f"--<section>.<key> with section one of {list(SECTIONS)}.")
        node = config
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"--{key}: {part!r} is not a mapping in the config.")
        node[parts[-1]] = value
    unknown = sorted(set(config) - {*SECTIONS, "seed_everything", "ckpt_path"})
    if unknown:
        raise ValueError(f"Unknown top-level key(s) {unknown}; a recipe has {list(SECTIONS)}, seed_everything, "
                         "ckpt_path.")
    return config


def _merge(base: dict, update: Mapping) -> None:
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict) and key != "init_args":
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


def instantiate(spec: Any) -> Any:
    """Build ``{class_path, init_args}`` mappings (recursively in lists); other values are returned as they are."""
    if isinstance(spec, list):
        return [instantiate(item) for item in spec]
    if isinstance(spec, Mapping) and "class_path" in spec:
        from mlclipsim.training.distortion_terms import import_object

        cls = import_object(spec["class_path"])
        return cls(**{k: instantiate(v) for k, v in dict(spec.get("init_args") or {}).items()})
    return spec


def build_from_config(config: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """(trainer, model, datamodule) from a merged config."""
    import lightning as L

    from mlclipsim.training.codec_data import CodecDataModule
    from mlclipsim.training.codec_module import CompressionModule

    seed = config.get("seed_everything")
    if seed is not None and seed is not False:
        L.seed_everything(int(seed), workers=True)
    trainer_args = {k: instantiate(v) for k, v in dict(config.get("trainer") or {}).items()}
    model = CompressionModule(**dict(config.get("model") or {}))
    data = CodecDataModule(**dict(config.get("data") or {}))
    return L.Trainer(**trainer_args), model, data


def _parse_fallback(argv: Sequence[str]) -> tuple[list[str], list[tuple[str, str]], bool]:
    configs: list[str] = []
    overrides: list[tuple[str, str]] = []
    print_config = False
    items = list(argv)
    i = 0
    while i < len(items):
        item = items[i]
        if item in ("-h", "--help"):
            print(__doc__)
            sys.exit(0)
        if item == "--print_config":
            print_config = True
            i += 1
            continue
        if not item.startswith("--"):
            raise SystemExit(f"error: unexpected argument {item!r}; use --config FILE and --section.key VALUE.")
        key, sep, value = item[2:].partition("=")
        if not sep:
            if i + 1 >= len(items):
                raise SystemExit(f"error: --{key} needs a value.")
            value = items[i + 1]
            i += 1
        i += 1
        if key == "config":
            configs.append(value)
        else:
            overrides.append((key, value))
    return configs, overrides, print_config


def run_fallback(argv: Sequence[str]) -> Any:
    import yaml

    configs, overrides, print_config = _parse_fallback(argv)
    config = load_config(configs, overrides)
    if print_config:
        print(yaml.safe_dump(config, sort_keys=False))
        return config
    trainer, model, data = build_from_config(config)
    trainer.fit(model, datamodule=data, ckpt_path=config.get("ckpt_path"))
    return trainer


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if _has_jsonargparse():
        run_lightning_cli(argv)
    else:
        run_fallback(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
