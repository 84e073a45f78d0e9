"""The ``mlclipsim`` command. Subcommands are registered in ``COMMANDS`` (name -> (setup, run)).

    mlclipsim score REF DIST [--backbone NAME] [--pretrained TAG_OR_PATH] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

import torch

Setup = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, tuple[str, Setup, Run]] = {}


def register_command(name: str, help_text: str, setup: Setup, run: Run) -> None:
    """Add a subcommand: ``setup`` adds its arguments, ``run`` executes it and returns the exit status."""
    COMMANDS[name] = (help_text, setup, run)


# ----------------------------------------------------------------------------- score


def _score_setup(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reference", help="reference image, or folder of references")
    parser.add_argument("distorted", help="distorted image, or folder paired with REF by file name (suffix ignored)")
    parser.add_argument("--backbone", default="ViT-B-32", help="backbone name (default ViT-B-32; offline: "
                        "torchvision/mobilenet_v2 or efficientnet-lite0)")
    parser.add_argument("--pretrained", default=None, help="pretrained tag or weights path (default: the backbone's)")
    parser.add_argument("--resize", default="resize", choices=["resize", "center_crop", "tile"])
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")


def _run_score(args: argparse.Namespace) -> int:
    from mlclipsim.data.image_io import ImageReadError, read_image
    from mlclipsim.data.pairing import pair_images
    from mlclipsim.metrics import MLCLIPSimScorer

    pairing = pair_images(args.reference, args.distorted)
    scorer = MLCLIPSimScorer(args.backbone, pretrained=args.pretrained, resize=args.resize).to(args.device)
    results, errors = [], [{"name": name, "error": reason} for name, reason in pairing.unpaired]
    for pair in pairing.pairs:
        try:
            reference = read_image(pair.reference)[None].to(args.device)
            distorted = read_image(pair.distorted)[None].to(args.device)
            with torch.no_grad():
                score = float(scorer(distorted, reference))
        except (ImageReadError, ValueError) as err:
            errors.append({"name": pair.name, "error": str(err)})
            continue
        results.append({"name": pair.name, "reference": str(pair.reference), "distorted": str(pair.distorted),
                        "score": score})
    mean = sum(r["score"] for r in results) / len(results) if results else None
    if args.json:
        print(json.dumps({"backbone": args.backbone, "pretrained": args.pretrained, "resize": args.resize,
                          "weights": scorer.weights_by_name(), "results": results, "errors": errors,
                          "mean": mean}, indent=2))
    else:
        width = max([len(r["name"]) for r in results] + [4])
        for r in results:
            print(f"{r['name']:<{width}}  {r['score']:.4f}")
        if mean is not None:
            print(f"{'mean':<{width}}  {mean:.4f}  ({len(results)} image(s), {args.backbone})")
    for e in errors:
        print(f"error: {e['name']}: {e['error']}", file=sys.stderr)
    return 0 if not errors else (1 if results else 2)


register_command("score", "ML-CLIPSim of distorted images against their references (two files or two folders)",
                 _score_setup, _run_score)


# ----------------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlclipsim", description="How much an image still serves machines.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, setup, _run) in COMMANDS.items():
        setup(subparsers.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mlclipsim`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    from mlclipsim.backbones import MissingWeightsError

    try:
        return COMMANDS[args.command][2](args)
    except MissingWeightsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
