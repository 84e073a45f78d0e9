"""Train a codec from a recipe: a thin LightningCLI entry point.

    mlclipsim train-codec --config codecs/base/small.yaml --config codecs/architecture/bmshj2018-factorized.yaml \
        --config codecs/term/mse.yaml model.lmbda=0.0067 [ckpt_path=runs/codec/version_0/checkpoints/last.ckpt]
    python -m mlclipsim.training.train_codec --config codecs/base/small.yaml ... --model.lmbda 0.0067

A recipe is one or more LightningCLI configs, merged in the order given (later files override earlier
ones; a list such as ``model.terms`` is replaced as a whole). ``codecs/`` composes them from a base
(``base/small.yaml`` or ``base/full.yaml``), an architecture and a distortion term; its README lists
the named recipes and their files. The merged config has the top-level keys ``seed_everything``,
``trainer`` (Trainer arguments; callbacks and loggers as ``class_path`` / ``init_args``), ``model``
(:class:`~mlclipsim.training.codec_module.CompressionModule` arguments), ``data``
(:class:`~mlclipsim.training.codec_data.CodecDataModule` arguments) and ``ckpt_path`` (resume). Any
key can be overridden: ``KEY=VALUE`` with ``mlclipsim train-codec``, ``--KEY VALUE`` with LightningCLI
directly (values are YAML). The run calls ``trainer.fit`` (no subcommand).
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.cli import LightningCLI

from mlclipsim.training.codec_data import CodecDataModule
from mlclipsim.training.codec_module import CompressionModule


class CodecCLI(LightningCLI):
    """LightningCLI for :class:`CompressionModule` + :class:`CodecDataModule`, with ``--ckpt_path``."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--ckpt_path", type=str | None, default=None, help="checkpoint to resume from")


class _ParseOnlyCLI(CodecCLI):
    def instantiate_classes(self) -> None:  # the merged config only: build nothing
        pass


@contextlib.contextmanager
def _args_given() -> Iterator[None]:
    """Silence LightningCLI's warning that ``args`` are given while ``sys.argv`` has others (``mlclipsim ...``)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        yield


def cli_arguments(configs: Sequence[str | Path], overrides: Sequence[str] = ()) -> list[str]:
    """``mlclipsim train-codec`` arguments -> LightningCLI arguments.

    Every config must be a file; each override ``key=value`` becomes ``--key value``.

    >>> cli_arguments(["codecs/base/small.yaml"], ["model.lmbda=0.0067"])
    ['--config', 'codecs/base/small.yaml', '--model.lmbda', '0.0067']
    """
    arguments: list[str] = []
    for config in configs:
        if not Path(config).is_file():
            raise FileNotFoundError(f"Recipe file {str(config)!r} not found. A codec recipe is composed of "
                                    "codecs/base/<size>.yaml, codecs/architecture/<name>.yaml and "
                                    "codecs/term/<term>.yaml (codecs/README.md lists them); paths are relative to "
                                    "the current folder.")
        arguments += ["--config", str(config)]
    for override in overrides:
        key, sep, value = override.partition("=")
        if not sep or not key:
            raise ValueError(f"Override {override!r} is not KEY=VALUE (e.g. model.lmbda=0.0067).")
        arguments += [f"--{key.removeprefix('--')}", value]
    return arguments


def build(argv: Sequence[str], **cli_options: Any) -> CodecCLI:
    """The LightningCLI of a recipe (``--config FILE ... --key value``): seeded, model, data and trainer built."""
    options = {"save_config_kwargs": {"overwrite": True}, **cli_options}
    with _args_given():
        return CodecCLI(CompressionModule, CodecDataModule, run=False, args=list(argv), **options)


def parse(argv: Sequence[str]) -> dict[str, Any]:
    """The merged config of a recipe as LightningCLI parses it (defaults filled in), without building anything.

    The ``config`` key (the files read) is left out, so that two ways of writing a recipe compare equal.
    """
    with _args_given():
        cli = _ParseOnlyCLI(CompressionModule, CodecDataModule, run=False, args=list(argv), save_config_callback=None)
    merged = cli.config.as_dict()
    merged.pop("config", None)
    return merged


def train(argv: Sequence[str] | None = None) -> CodecCLI:
    """Build the recipe given by ``argv`` (default: the command line) and fit it; returns the CLI."""
    cli = build(list(sys.argv[1:]) if argv is None else argv)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.get("ckpt_path"))
    return cli


def main(argv: Sequence[str] | None = None) -> int:
    train(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
