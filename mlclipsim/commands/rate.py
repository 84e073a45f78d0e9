"""``mlclipsim compress`` (ML-CLIPSim rate control) and ``mlclipsim rate-task`` (rate-task curves).

    mlclipsim compress IMAGE_OR_DIR OUT_DIR --codec webp --target-mlclipsim 0.9 [--backbone NAME]
    mlclipsim rate-task --images DIR --codec jpeg webp:10,30,50 webp@mlclipsim ... --task-model centernet ... \\
        --out DIR [--anchor jpeg] [--backbone NAME] [--photos LIST] [--learned NAME=GLOB ...] [--processes N]

``compress`` writes, per image, the file at the lowest quality whose ML-CLIPSim score against the
original reaches the target (:mod:`~mlclipsim.coding.rate_control`), and ``rate_control.csv``
(image, codec, quality, bytes, bpp, score, target, reached, ...). It refuses an output folder that
holds an input, inputs that share a stem (``a.jpg``, ``a.png`` would both become ``a.webp``; the
clashes are listed), and existing outputs unless ``--overwrite``, all before any coding; files are
written to a temporary name and renamed. A target reached at the codec's lowest quality is warned
about on stderr (it does not constrain the codec). ``rate-task`` is
:func:`~mlclipsim.rate_task.study.run_rate_task`.

This module imports nothing heavy at import time (the ``mlclipsim`` command builds its parser from it).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path


def _add_learned(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--learned", action="append", default=[], metavar="NAME=GLOB[,GLOB]",
                        help="name a family of CompressAI checkpoints (one per lambda; plain state dicts or "
                             "Lightning checkpoints) as a codec, e.g. mse='runs/*_mse_small_*.pth'; repeatable")
    parser.add_argument("--learned-architecture", default=None,
                        help="zoo architecture of the --learned plain state dicts (default: the zoo name their "
                             "file names start with)")


def _families(args: argparse.Namespace):
    # lazy: CLI command module, imported to build its subparser; these load only when the command runs
    from mlclipsim.rate_task.study import parse_learned

    return tuple(parse_learned(text, args.learned_architecture) for text in args.learned)


# ----------------------------------------------------------------------------- compress


def compress_setup(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", metavar="IMAGE_OR_DIR", help="an image, or a folder of images")
    parser.add_argument("out", metavar="OUT_DIR", help="folder for the coded files and rate_control.csv")
    parser.add_argument("--codec", required=True,
                        help="codec name, optionally with the ladder to search: webp, or webp:10,20,...,90 "
                             "(default ladder: every quality 1..100; a learned family's checkpoints)")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-agreement", type=float, metavar="A",
                        help="predicted machine agreement to reach, in (0, 1] (mean MMOS: 1 = the task models' output "
                             "unchanged; the ML-CLIPSim score mapped through the logistic shipped for the default "
                             "variant, see the README's table of targets)")
    target.add_argument("--target-mlclipsim", type=float, metavar="T",
                        help="raw ML-CLIPSim score to reach against the original, in (0, 1]")
    parser.add_argument("--backbone", default=None,
                        help="ML-CLIPSim encoder (default: ViT-B-32 where its weights can be had, else the best "
                             "installed encoder, named in the output)")
    parser.add_argument("--pretrained", default=None, help="pretrained tag or weights path of the encoder")
    parser.add_argument("--search", default="bisect", choices=["bisect", "exhaustive"],
                        help="bisection over the ladder (default), or every point (the true lowest)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace coded files and rate_control.csv left in OUT_DIR by an earlier run")
    _add_learned(parser)


def compress_run(args: argparse.Namespace) -> int:
    """Errors in the settings propagate (the ``mlclipsim`` command prints one ``error:`` line, exit 2);
    an unreadable image is reported and skipped (exit 1 when others were written)."""
    # lazy: CLI command module, imported to build its subparser; these load only when the command runs
    from mlclipsim.coding.interface import create_codec, parse_codec_spec, resolve_points
    from mlclipsim.coding.rate_control import check_target, control_rate
    from mlclipsim.core.devices import check_device
    from mlclipsim.core.files import atomic_write, check_output, check_output_folder
    from mlclipsim.core.images import ImageReadError, list_images, read_image, refuse_stem_clashes
    from mlclipsim.rate_task.study import register_families

    # settings and paths are checked before any model is loaded or file written
    agreement = args.target_agreement is not None
    target = check_target(args.target_agreement if agreement else args.target_mlclipsim)
    device = check_device(args.device)
    spec = parse_codec_spec(args.codec)
    if "@" in spec.name:
        raise ValueError("compress runs the rate control itself: give the base codec (e.g. webp), "
                         "not a BASE@mlclipsim name.")
    families = _families(args)
    register_families(families)
    learned = {f.name for f in families}
    codec = create_codec(spec.name, **({"device": device} if spec.name in learned else {}))
    ladder = codec.ladder if spec.points is None else resolve_points(codec, spec)
    source = Path(args.inputs)
    if source.is_dir():
        images = list_images(source)
        if not images:
            raise ValueError(f"No image files in {str(source)!r}.")
    elif source.is_file():
        images = [source]
    else:
        raise FileNotFoundError(f"{str(source)!r} is neither an image nor a folder.")
    out = check_output_folder(args.out)
    refuse_stem_clashes(images, f"output file (<stem>{codec.suffix})")
    targets = {path: out / f"{path.stem}{codec.suffix}" for path in images}
    for written in [*targets.values(), out / "rate_control.csv"]:
        check_output(written, inputs=images, overwrite=args.overwrite)
    # lazy: CLI command module; also, the settings above fail before the metric's heavy import
    from mlclipsim.metrics import MLCLIPSimScorer

    scorer = MLCLIPSimScorer(args.backbone, pretrained=args.pretrained,
                             scale="agreement" if agreement else "raw").to(device).eval()
    rows, errors = [], []
    for path in _progress(images, "compress"):
        try:
            image = read_image(path)[None].to(device)
            result = control_rate(codec, image, target, scorer, ladder=ladder, search=args.search)
        except (ImageReadError, ValueError) as err:
            errors.append((path.name, str(err)))
            print(f"error: {path.name}: {err}", file=sys.stderr)
            continue
        written = atomic_write(targets[path], result.file)
        height, width = image.shape[-2:]
        rows.append({"image": path.name, "file": written.name, "codec": codec.name, "quality": result.point,
                     "bytes": len(result.file), "bpp": 8.0 * len(result.file) / (height * width),
                     "score": result.score, "target": target, "reached": result.reached,
                     "monotone": result.monotone, "codings": len(result.evaluations),
                     "scale": scorer.scale, "backbone": scorer.encoder.name})
        if result.reached and str(result.point) == str(ladder[0]):
            print(f"warning: {path.name}: the target {target} is reached already at {codec.name}'s lowest quality "
                  f"{ladder[0]} (ML-CLIPSim {result.score:.4f}): it does not constrain the codec; a higher target "
                  "keeps more of what machines need.", file=sys.stderr)
    columns = ["image", "file", "codec", "quality", "bytes", "bpp", "score", "target", "reached", "monotone",
               "codings", "scale", "backbone"]

    def write_csv(temporary: Path) -> None:
        with temporary.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(out / "rate_control.csv", write_csv)
    for row in rows:
        mark = "reached" if row["reached"] else "NOT reached (top of the ladder)"
        print(f"{row['image']}: {codec.name} quality {row['quality']}, {row['bytes']} bytes, {row['bpp']:.3f} bpp, "
              f"{'predicted agreement' if agreement else 'ML-CLIPSim'} {row['score']:.4f} ({mark}; {row['backbone']})")
    print(f"wrote {len(rows)} file(s) and {out / 'rate_control.csv'}")
    return 0 if not errors else (1 if rows else 2)


def _progress(items: list, what: str):
    """``items`` with a progress bar on stderr (stdout keeps the results)."""
    # lazy: CLI command module, imported to build its subparser; these load only when the command runs
    from mlclipsim.core.progress import progress

    return progress(items, desc=what, unit="image")


# ----------------------------------------------------------------------------- rate-task


def rate_task_setup(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", required=True, help="folder of photos")
    parser.add_argument("--codec", nargs="+", action="extend", required=True, metavar="NAME[:POINTS]",
                        help="codecs, each NAME or NAME:P1,P2,... (jpeg, webp, avif, jxl, a --learned name, "
                             "BASE@mlclipsim with ML-CLIPSim targets as points)")
    parser.add_argument("--task-model", nargs="+", action="extend", required=True, metavar="NAME",
                        help="task models (mlclipsim.machine registry), e.g. centernet nanodet selfie "
                             "efficientnet-lite0")
    parser.add_argument("--out", required=True, help="output folder (re-running resumes)")
    parser.add_argument("--anchor", nargs="+", action="extend", default=None, metavar="NAME",
                        help="anchor codec(s) for BD-rates (default: the first codec)")
    parser.add_argument("--backbone", default=None,
                        help="ML-CLIPSim encoder (default: mlclipsim.rate_task.study.DEFAULT_BACKBONE, "
                             "torchvision/mobilenet_v2); never one of the task models")
    parser.add_argument("--pretrained", default=None, help="pretrained tag or weights path of the encoder")
    parser.add_argument("--photos", default=None, metavar="LIST_FILE",
                        help="file with one photo file name per line (default: every image in --images)")
    parser.add_argument("--size", type=int, default=512, help="long side the photos are shrunk to (default 512)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many photos (a trial run)")
    parser.add_argument("--processes", type=int, default=1, help="processes / devices (Lightning DDP)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    parser.add_argument("--accelerator", default="cpu", help="Lightning accelerator: cpu (default), gpu, auto")
    parser.add_argument("--search", default="bisect", choices=["bisect", "exhaustive"],
                        help="rate-control search of the BASE@mlclipsim codecs")
    parser.add_argument("--import-rows", default=None, metavar="RUN_DIR",
                        help="first seed --out with the rows of a finished run (its rows.csv and summary.json), "
                             "e.g. to add a codec to a committed study without recomputing the others")
    parser.add_argument("--bd-method", default="pchip", choices=["pchip", "akima", "cubic"])
    _add_learned(parser)


def rate_task_run(args: argparse.Namespace) -> int:
    # lazy: CLI command module, imported to build its subparser; these load only when the command runs
    from mlclipsim.core.images import ImageReadError
    from mlclipsim.rate_task.study import DEFAULT_BACKBONE, RateTaskConfig, import_rows, read_photo_list, run_rate_task

    try:
        config = RateTaskConfig(
            images=args.images, out=args.out, codecs=tuple(args.codec), task_models=tuple(args.task_model),
            backbone=args.backbone or DEFAULT_BACKBONE, pretrained=args.pretrained, anchors=tuple(args.anchor or ()),
            learned=_families(args), photos=read_photo_list(args.photos) if args.photos else None, size=args.size,
            limit=args.limit, processes=args.processes, threads=args.threads, accelerator=args.accelerator,
            search=args.search, bd_method=args.bd_method)
        if args.import_rows:
            counts = import_rows(config, args.import_rows)
            print(f"imported from {args.import_rows}: {counts}", file=sys.stderr)
        summary = run_rate_task(config)
    except (ValueError, FileNotFoundError, ImageReadError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=2))
    for photo, reason in summary["failures"].items():
        print(f"skipped unreadable photo: {photo}: {reason}", file=sys.stderr)
    return 0
