"""The ``mlclipsim`` command. Subcommands are registered in ``COMMANDS`` (a
:class:`~mlclipsim.core.registry.Registry`: name -> (setup, run), with the help line as description).

    mlclipsim score REF DIST [--backbone NAME] [--pretrained TAG_OR_PATH] [--json]
    mlclipsim compress IMAGE_OR_DIR OUT_DIR --codec webp --target-mlclipsim 0.9
    mlclipsim rate-task --images DIR --codec jpeg webp ... --task-model centernet ... --out DIR

Errors a user can cause end in one ``error: ...`` line on stderr and exit status 2, never a
traceback; ``--debug`` (before or after the command name) shows the traceback instead. Results go to
stdout, progress and warnings to stderr.

Nothing heavy is imported to build the parser (no torch): ``mlclipsim --help`` answers at once, and
only the chosen command's arguments are set up. Keep ``setup`` functions free of heavy imports.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence

from mlclipsim.core.registry import Registry

Setup = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], int]
COMMANDS: Registry[tuple[Setup, Run]] = Registry("command", unknown_message="Unknown command {name!r}; the "
                                                 "commands are: {names}. See `mlclipsim --help`.")
RESIZE_CHOICES = ("center_crop", "native", "resize", "tile")
"""The resize policies of :data:`mlclipsim.backbones.preprocessing.RESIZE_POLICIES` (named here so that the
parser needs no torch; a test checks that the two agree)."""


def register_command(name: str, help_text: str, setup: Setup, run: Run) -> None:
    """Add a subcommand: ``setup`` adds its arguments, ``run`` executes it and returns the exit status."""
    COMMANDS.register(name, (setup, run), description=help_text, overwrite=True)


# ----------------------------------------------------------------------------- score


def _score_setup(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reference", help="reference image, or folder of references")
    parser.add_argument("distorted", help="distorted image, or folder paired with REF by file name (suffix ignored)")
    parser.add_argument("--backbone", default=None, help="backbone name (default: ViT-B-32 where its weights can "
                        "be had, else the best installed encoder, named in the output; offline: "
                        "torchvision/mobilenet_v2 or efficientnet-lite0)")
    parser.add_argument("--weights", default=None, choices=("calibrated", "uniform", "embedding"),
                        help="layer-weight preset (default: the backbone's shipped default variant)")
    parser.add_argument("--pretrained", default=None, help="pretrained tag or weights path (default: the backbone's)")
    parser.add_argument("--resize", default="resize", choices=RESIZE_CHOICES)
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")


def _run_score(args: argparse.Namespace) -> int:
    import torch

    from mlclipsim.core.devices import check_device
    from mlclipsim.core.images import ImageReadError, read_image
    from mlclipsim.data.pairing import pair_images
    from mlclipsim.metrics import MLCLIPSimScorer

    device = check_device(args.device)
    pairing = pair_images(args.reference, args.distorted)
    scorer = MLCLIPSimScorer(args.backbone, pretrained=args.pretrained, resize=args.resize,
                             weights=args.weights).to(device)
    results, errors = [], [{"name": name, "error": reason} for name, reason in pairing.unpaired]
    for pair in pairing.pairs:
        try:
            reference = read_image(pair.reference)[None].to(device)
            distorted = read_image(pair.distorted)[None].to(device)
            with torch.no_grad():
                score = float(scorer(distorted, reference))
        except (ImageReadError, ValueError) as err:
            errors.append({"name": pair.name, "error": str(err)})
            continue
        results.append({"name": pair.name, "reference": str(pair.reference), "distorted": str(pair.distorted),
                        "score": score})
    mean = sum(r["score"] for r in results) / len(results) if results else None
    if args.json:
        print(json.dumps({"backbone": scorer.encoder.name, "pretrained": args.pretrained, "resize": args.resize,
                          "weights": scorer.weights_by_name(), "results": results, "errors": errors,
                          "mean": mean}, indent=2))
    else:
        width = max([len(r["name"]) for r in results] + [4])
        for r in results:
            print(f"{r['name']:<{width}}  {r['score']:.4f}")
        if mean is not None:
            print(f"{'mean':<{width}}  {mean:.4f}  ({len(results)} image(s), {scorer.encoder.name})")
    for e in errors:
        print(f"error: {e['name']}: {e['error']}", file=sys.stderr)
    return 0 if not errors else (1 if results else 2)


register_command("score", "ML-CLIPSim of distorted images against their references (two files or two folders)",
                 _score_setup, _run_score)


# ----------------------------------------------------------------------------- build-dataset / build-pairs


def _shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard takes I/N, e.g. 0/4, got {text!r}") from None
    return index, count


def _build_dataset_setup(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", required=True, help="folder of reference photos")
    parser.add_argument("--out", required=True, help="dataset folder (created; re-running resumes)")
    parser.add_argument("--task-models", nargs="+", default=None,
                        help="task-model registry names (default: mlclipsim.data.build_dataset.DEFAULT_TASK_MODELS, "
                             "the four offline models centernet nanodet selfie efficientnet-lite0)")
    parser.add_argument("--roi-models", nargs="+", default=None,
                        help="models whose reference predictions make the ROI (default: the detectors, "
                             "segmenters and face detectors among --task-models)")
    parser.add_argument("--distortions", nargs="+", default=None,
                        help="distortion types (default: every synthetic type, mlclipsim.distortions.SYNTHETIC_NAMES)")
    parser.add_argument("--codec-distortions", nargs="+", default=[], metavar="NAME[=CHECKPOINTS]",
                        help="codecs as extra distortion types 'codec_NAME', through their real bitstreams, "
                             "severity 1..5 = highest..lowest rate: NAME=CHECKPOINTS for a learned family "
                             "(e.g. mbt2018-mean-vr=runs/mbt2018-mean-vr_base.pth) or a registered codec (webp)")
    parser.add_argument("--region-pairs", type=int, default=2,
                        help="ROI-dominated severity pairs drawn per type (mirrored for background-dominated); "
                             "10 = the full MIQD product")
    parser.add_argument("--crops-per-image", type=int, default=1)
    parser.add_argument("--crop-scales", type=float, nargs="+", default=[2.0],
                        help="crop i is cut from the photo at long side scale*size, scale = the (i-1)-th of these, "
                             "cycled (e.g. 2 3 with --crops-per-image 3)")
    parser.add_argument("--draws", type=int, default=1,
                        help="independent draws of each stochastic distortion at each uniform severity")
    parser.add_argument("--person-models", nargs="+", default=[],
                        help="task models that vote only on references with a person (e.g. meet rvm)")
    parser.add_argument("--size", type=int, default=512, help="long side of crop 0 / side of square crops (px)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--processes", type=int, default=1, help="CPU processes (Lightning DDP)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    parser.add_argument("--shard", type=_shard, default=(0, 1), help="I/N: this machine's share of the photos")
    parser.add_argument("--limit", type=int, default=None, help="at most this many photos (for a trial run)")


def _run_build_dataset(args: argparse.Namespace) -> int:
    from mlclipsim.data.build_dataset import DEFAULT_TASK_MODELS, BuildConfig, build_dataset
    from mlclipsim.data.codec_distortions import parse_codec_distortions
    from mlclipsim.distortions import SYNTHETIC_NAMES

    config = BuildConfig(
        images=args.images, out=args.out, task_models=tuple(args.task_models or DEFAULT_TASK_MODELS),
        roi_models=tuple(args.roi_models) if args.roi_models else None,
        distortions=tuple(args.distortions or SYNTHETIC_NAMES),
        region_pairs=args.region_pairs, crops_per_image=args.crops_per_image, size=args.size, seed=args.seed,
        crop_scales=tuple(args.crop_scales), draws=args.draws, person_models=tuple(args.person_models),
        codec_distortions=parse_codec_distortions(args.codec_distortions),
        processes=args.processes, threads=args.threads, shard=args.shard, limit=args.limit,
    )
    summary = build_dataset(config)
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=2))
    for failure in summary["failures"]:
        print(f"skipped unreadable photo: {failure} (see {args.out}/failures/)", file=sys.stderr)
    return 0


def _build_pairs_setup(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="a folder made by `mlclipsim build-dataset`")
    parser.add_argument("--pairs-per-reference", type=int, default=8)
    parser.add_argument("--tol-db", type=float, default=0.25)
    parser.add_argument("--distortions", nargs="+", default=None, help="default: the dataset's types")
    parser.add_argument("--no-roi-vs-background", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)


def _run_build_pairs(args: argparse.Namespace) -> int:
    from mlclipsim.data.build_pairs import PairsConfig, build_pairs

    config = PairsConfig(dataset=args.dataset, pairs_per_reference=args.pairs_per_reference, tol_db=args.tol_db,
                         distortions=tuple(args.distortions) if args.distortions else None, seed=args.seed,
                         threads=args.threads, processes=args.processes,
                         include_roi_vs_background=not args.no_roi_vs_background)
    summary = build_pairs(config)
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=2))
    return 0


def _calibrate_setup(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="a folder with manifest.csv and pairs.csv")
    parser.add_argument("--backbone", required=True, help="backbone to calibrate, e.g. torchvision/mobilenet_v2")
    parser.add_argument("--pretrained", default=None)
    parser.add_argument("--out", default=None, help="JSON file for the weights (default: print only)")
    parser.add_argument("--split", type=float, nargs=3, default=[0.6, 0.1, 0.3],
                        help="train/val/test fractions of the photos (test photos are never read)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kind", default="psnr_matched", help="pair kind to fit on")
    parser.add_argument("--max-epochs", type=int, default=400)
    parser.add_argument("--min-weight", type=float, default=0.01)


def _run_calibrate(args: argparse.Namespace) -> int:
    from mlclipsim.training.calibrate_layer_weights import calibrate_on_dataset

    record = calibrate_on_dataset(args.dataset, args.backbone, out=args.out, pretrained=args.pretrained,
                                  split=args.split, seed=args.seed, kind=args.kind, max_epochs=args.max_epochs,
                                  min_weight=args.min_weight)
    print(json.dumps(record, indent=2))
    return 0


register_command("calibrate", "fit ML-CLIPSim layer weights on a dataset's PSNR-matched pairs (Bradley-Terry)",
                 _calibrate_setup, _run_calibrate)
register_command("build-dataset", "distort reference photos, label them with task models, write images + manifest",
                 _build_dataset_setup, _run_build_dataset)
register_command("build-pairs", "PSNR-matched and ROI-vs-background preference pairs of a built dataset",
                 _build_pairs_setup, _run_build_pairs)


# ----------------------------------------------------------------------------- codec compress / decompress


def _codec_setup(parser: argparse.ArgumentParser) -> None:
    from mlclipsim.commands.codec import setup

    setup(parser)


def _run_codec(args: argparse.Namespace) -> int:
    from mlclipsim.commands.codec import run

    return run(args)


register_command("codec", "learned codec on files: `codec compress IMAGE OUT.bin --checkpoint CKPT`, "
                 "`codec decompress IN.bin IMAGE --checkpoint CKPT`", _codec_setup, _run_codec)


# ----------------------------------------------------------------------------- compress / rate-task


def _compress_setup(parser: argparse.ArgumentParser) -> None:
    from mlclipsim.commands.rate import compress_setup

    compress_setup(parser)


def _run_compress(args: argparse.Namespace) -> int:
    from mlclipsim.commands.rate import compress_run

    return compress_run(args)


def _rate_task_setup(parser: argparse.ArgumentParser) -> None:
    from mlclipsim.commands.rate import rate_task_setup

    rate_task_setup(parser)


def _run_rate_task(args: argparse.Namespace) -> int:
    from mlclipsim.commands.rate import rate_task_run

    return rate_task_run(args)


register_command("compress", "each image at the lowest codec quality whose ML-CLIPSim reaches a target "
                 "(`compress IMAGE_OR_DIR OUT_DIR --codec webp --target-mlclipsim 0.9`)", _compress_setup,
                 _run_compress)
register_command("rate-task", "rate-task curves: codecs x operating points x photos, scored by task models, "
                 "PSNR, MS-SSIM and ML-CLIPSim; mean curves, plots, BD-rates", _rate_task_setup, _run_rate_task)


# ----------------------------------------------------------------------------- train-ramiqa


def _train_ramiqa_setup(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", action="append", required=True,
                        help="LightningCLI YAML, repeatable (a file, or a config shipped in mlclipsim/configs, "
                             "e.g. ra_miqa.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="overrides, e.g. model.heads=[segmentation/consistency] trainer.max_epochs=5 "
                             "export=outputs/ra_miqa/segmentation.pt")


def _run_train_ramiqa(args: argparse.Namespace) -> int:
    from mlclipsim.training.train_ra_miqa import cli_arguments, train

    train(cli_arguments(args.config, args.overrides))
    return 0


register_command("train-ramiqa", "train RA-MIQA (no-reference, region-aware machine quality) on a built dataset",
                 _train_ramiqa_setup, _run_train_ramiqa)


# ----------------------------------------------------------------------------- train-codec


def _train_codec_setup(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", action="append", required=True,
                        help="LightningCLI YAML, repeatable, merged in order: a recipe's files (codecs/README.md), "
                             "e.g. codecs/base/small.yaml codecs/architecture/bmshj2018-factorized.yaml "
                             "codecs/term/mse.yaml")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="overrides, e.g. model.lmbda=0.0067 trainer.max_steps=500 ckpt_path=last.ckpt")


def _run_train_codec(args: argparse.Namespace) -> int:
    from mlclipsim.training.train_codec import cli_arguments, train

    train(cli_arguments(args.config, args.overrides))
    return 0


register_command("train-codec", "train a learned codec for bpp + lambda * D from a recipe (codecs/README.md)",
                 _train_codec_setup, _run_train_codec)


# ----------------------------------------------------------------------------- entry point


USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, OSError, LookupError, RuntimeError)
"""Exception types a user's input can cause (bad values, files, devices, missing weights: ``ValueError``
covers MissingWeightsError, ImageReadError and BitstreamError). Any other exception is a bug: it is
reported as one line too, with a request to rerun with ``--debug`` and report it."""

_DEBUG_HELP = "on an error, show the full traceback instead of one line"


def _add_debug(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("--debug", action="store_true", default=default, help=_DEBUG_HELP)


_ALL = "*"


def build_parser(command: str | None = _ALL) -> argparse.ArgumentParser:
    """The command's parser: every subcommand with its arguments (default), or with the arguments of
    ``command`` only (None: of none, enough for ``mlclipsim --help``). Help lines come from the registry."""
    parser = argparse.ArgumentParser(prog="mlclipsim", description="How much an image still serves machines.")
    _add_debug(parser, False)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for entry in COMMANDS.entries():
        sub = subparsers.add_parser(entry.name, help=entry.description, description=entry.description)
        if command in (_ALL, entry.name):
            entry.factory[0](sub)
            _add_debug(sub, argparse.SUPPRESS)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The first argument that is not an option (the subcommand), or None."""
    for item in argv:
        if not item.startswith("-"):
            return item
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mlclipsim`` console script; returns the exit status (0 done, 1 some inputs
    failed and were reported, 2 nothing done: bad usage or input; see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("MLCLIPSIM_DEBUG", "") not in ("", "0")
    command = _command_of(argv)
    if command is not None and command not in COMMANDS:
        print(f"error: {COMMANDS.unknown(command)}", file=sys.stderr)
        return 2
    args = build_parser(command).parse_args(argv)
    if not debug:  # known third-party deprecation noise, not actionable by a user (CompressAI's torch.jit.script)
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*is deprecated", category=FutureWarning)
    try:
        return COMMANDS[args.command][1](args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # one line for the user, the traceback with --debug
        if debug:
            traceback.print_exc()
        if isinstance(err, USER_ERRORS):
            message = str(err) or type(err).__name__
        else:
            message = (f"unexpected {type(err).__name__}: {err} (this is a bug in mlclipsim: rerun with --debug "
                       "and report the traceback)")
        first, *rest = message.splitlines() or [""]
        print(f"error: {first}", file=sys.stderr)
        for line in rest:  # multi-line messages (e.g. the four weight sources) stay readable
            print(f"  {line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
