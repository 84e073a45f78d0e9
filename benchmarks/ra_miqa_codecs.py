"""Is a codec trained with the no-reference RA-MIQA term gamed? What RA-MIQA says against what machines say.

    MLCLIPSIM_OFFLINE=1 python benchmarks/ra_miqa_codecs.py [--images ../shared/data/images] \\
        [--photos benchmarks/results/heldout_photos.txt] [--codecs-dir benchmarks/results/codecs/small] \\
        [--rows benchmarks/results/rate_task/rows.csv] [--report benchmarks/results/ra_miqa_codecs.md]

For every learned family ``mse``, ``mix``, ``mse-ra-miqa`` (0.5 MSE + 0.5 RA-MIQA) and ``ra-miqa``
(RA-MIQA alone) found in ``--codecs-dir`` (``bmshj2018-factorized_<family>_small_<lambda>.pth``) and every
lambda, on the held-out photos (shrunk to 512 px on the long side, as the rate-task study makes them):
code each photo through the real bitstream and score the 8-bit decoded image with the shipped RA-MIQA
detection head (the codec term's head), next to the same head on the original photos. The machines'
verdict (consistency of each task model, bpp, PSNR) comes from the rate-task study's rows (``--rows``,
made by ``benchmarks/rate_task.py``): the two are joined per (family, lambda), over the same photos.

Also probes what the head rewards: its score on the originals against a flat grey image, each
photo's flat mean colour and a heavy Gaussian blur (sigma 8 px) of it. Writes the report and a figure
of one photo coded by each family at the lambda all of them share (``<report stem>/examples.png``).

Each photo's 128-px centre crop is also coded on its own and scored: the view the codec term saw in
training. A family is called gamed when most of its reconstructions score higher with RA-MIQA than
the photos they code; the machines' verdict is its consistency against the MSE and JPEG curves at
equal rate.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
FAMILIES = ("mse", "mix", "mse-ra-miqa", "ra-miqa")
DESCRIPTIONS = {"mse": "255² · MSE", "mix": "0.5 MSE + 0.5 ML-CLIPSim", "mse-ra-miqa": "0.5 MSE + 0.5 RA-MIQA",
                "ra-miqa": "RA-MIQA alone"}
TASK_MODELS = ("centernet", "nanodet", "selfie", "efficientnet-lite0")
SIZE = 512
CROP = 128  # the small recipes' training crops: the view the codec term saw
ANCHORS = ("mse", "jpeg")  # curves the machines' verdict compares with at equal rate


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=REPO.parent / "shared/data/images")
    parser.add_argument("--photos", type=Path, default=REPO / "benchmarks/results/heldout_photos.txt")
    parser.add_argument("--codecs-dir", type=Path, default=REPO / "benchmarks/results/codecs/small")
    parser.add_argument("--rows", type=Path, default=REPO / "benchmarks/results/rate_task/rows.csv")
    parser.add_argument("--report", type=Path, default=REPO / "benchmarks/results/ra_miqa_codecs.md")
    parser.add_argument("--task", default="detection", help="RA-MIQA head of the codec term (default detection)")
    parser.add_argument("--example", default="skimage_astronaut.png",
                        help="held-out photo shown in the figure (default skimage_astronaut.png, else the first)")
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args(argv)


def load_photos(args: argparse.Namespace) -> dict[str, torch.Tensor]:
    from mlclipsim.core.images import array_to_tensor
    from mlclipsim.data.references import reference_crops
    from mlclipsim.rate_task.study import read_photo_list

    return {name: array_to_tensor(np.array(reference_crops(args.images / name, 1, SIZE)[0].image))
            for name in read_photo_list(args.photos)}


def families(codecs_dir: Path) -> dict[str, list[Path]]:
    found = {f: sorted(codecs_dir.glob(f"bmshj2018-factorized_{f}_small_*.pth")) for f in FAMILIES}
    return {f: paths for f, paths in found.items() if paths}


def lambda_of(path: Path) -> str:
    return path.stem.rsplit("_", 1)[-1]


def centre_crop(image: torch.Tensor, size: int = CROP) -> torch.Tensor:
    top, left = (image.shape[-2] - size) // 2, (image.shape[-1] - size) // 2
    return image[..., top:top + size, left:left + size]


def code_and_score(paths: list[Path], photos: dict[str, torch.Tensor], scorer,
                   keep: str) -> tuple[dict, dict, dict]:
    """RA-MIQA of every photo's reconstruction at every lambda, of the reconstruction of its 128-px centre
    crop coded on its own (the training view), and both reconstructions of photo ``keep``."""
    from mlclipsim.coding.interface import format_point
    from mlclipsim.coding.learned import LearnedCodec
    from mlclipsim.core.images import array_to_tensor, tensor_to_array

    codec = LearnedCodec.from_checkpoints([str(p) for p in paths])
    scores: dict[str, dict[str, float]] = {}
    crop_scores: dict[str, dict[str, float]] = {}
    kept: dict[str, np.ndarray] = {}
    for point in codec.points:
        label = format_point(point)
        scores[label], crop_scores[label] = {}, {}
        for name, image in photos.items():
            decoded = tensor_to_array(codec.code(image[None], point).reconstructions[0])
            scores[label][name] = float(scorer(array_to_tensor(decoded)[None])[0])
            crop = tensor_to_array(codec.code(centre_crop(image)[None], point).reconstructions[0])
            crop_scores[label][name] = float(scorer(array_to_tensor(crop)[None])[0])
            if name == keep:
                kept[label] = (decoded, crop)
    return scores, crop_scores, kept


def probes(photos: dict[str, torch.Tensor], scorer) -> dict[str, list[float]]:
    from torchvision.transforms.functional import gaussian_blur

    out: dict[str, list[float]] = {"original": [], f"original, {CROP}-px centre crop": [], "flat grey": [],
                                   "flat mean colour": [], "blur sigma 8": []}
    for image in photos.values():
        x = image[None]
        out["original"].append(float(scorer(x)[0]))
        out[f"original, {CROP}-px centre crop"].append(float(scorer(centre_crop(x))[0]))
        out["flat grey"].append(float(scorer(torch.full_like(x, 0.5))[0]))
        out["flat mean colour"].append(float(scorer(x.mean(dim=(-2, -1), keepdim=True).expand_as(x).contiguous())[0]))
        out["blur sigma 8"].append(float(scorer(gaussian_blur(x, [49, 49], [8.0, 8.0]))[0]))
    return out


def machine_means(rows: list[dict]) -> dict[tuple[str, str], dict[str, float]]:
    """Mean bpp, PSNR, ML-CLIPSim and consistency per (codec, point), from the study's rows."""
    keys = ["bpp", "psnr", "ml_clipsim"] + [f"consistency/{m}" for m in TASK_MODELS]
    grouped: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        grouped.setdefault((row["codec"], row["point"]), []).append(row)
    return {key: {"n": len(group), **{k: float(np.mean([float(r[k]) for r in group])) for k in keys}}
            for key, group in grouped.items()}


def lost_everywhere(rows: list[dict], codec: str) -> dict[str, int]:
    """Per task model: photos whose consistency is 0 at every point of ``codec`` (the model keeps nothing)."""
    by_photo: dict[str, list[dict]] = {}
    for row in rows:
        if row["codec"] == codec:
            by_photo.setdefault(row["photo"], []).append(row)
    return {m: sum(all(r[f"consistency/{m}"] == 0 for r in group) for group in by_photo.values())
            for m in TASK_MODELS}


def curve_at_rate(machines: dict, codec: str, bpp: float) -> dict[str, float] | None:
    """A codec's mean scores interpolated at ``bpp`` along its points (None outside its rate range)."""
    points = sorted((m for (c, _), m in machines.items() if c == codec), key=lambda m: m["bpp"])
    rates = np.array([m["bpp"] for m in points])
    if len(points) < 2 or not rates[0] <= bpp <= rates[-1]:
        return None
    return {k: float(np.interp(bpp, rates, [m[k] for m in points])) for k in points[0] if k != "n"}


def example_figure(path: Path, original: np.ndarray, kept: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]],
                   point: str) -> None:
    """Top row: the whole photo and its reconstructions; bottom row: the 128-px centre crop coded on its own."""
    from PIL import Image, ImageDraw

    top, left = (original.shape[0] - CROP) // 2, (original.shape[1] - CROP) // 2
    crop = original[top:top + CROP, left:left + CROP]
    tiles = [("original", original, crop)] + [(family, *images[point]) for family, images in kept.items()
                                              if point in images]
    height, width = original.shape[:2]
    scale = 256 / max(height, width)
    size = (round(width * scale), round(height * scale))
    side = min(size)
    canvas = Image.new("RGB", (size[0] * len(tiles), 18 + size[1] + 18 + side), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (label, whole, part) in enumerate(tiles):
        canvas.paste(Image.fromarray(whole).resize(size, Image.LANCZOS), (i * size[0], 18))
        canvas.paste(Image.fromarray(part).resize((side, side), Image.NEAREST), (i * size[0], 36 + size[1]))
        draw.text((i * size[0] + 4, 3), label if label == "original" else f"{label}, lambda {point}", fill="black")
        draw.text((i * size[0] + 4, 21 + size[1]), f"{CROP}-px crop coded alone", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def _shown(path: Path) -> Path:
    return path.resolve().relative_to(REPO) if path.resolve().is_relative_to(REPO) else path


def main(argv: list[str] | None = None) -> int:
    from mlclipsim.metrics import RAMIQALoss

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    start = time.perf_counter()
    loss = RAMIQALoss(task=args.task, reduction="none")

    def scorer(x: torch.Tensor) -> torch.Tensor:
        return 1.0 - loss(x)

    photos = load_photos(args)
    names = list(photos)
    keep = args.example if args.example in photos else names[0]
    found = families(args.codecs_dir)
    if "mse" not in found:
        print(f"error: no bmshj2018-factorized_mse_small_*.pth in {args.codecs_dir}: the MSE codecs are the baseline",
              file=sys.stderr)
        return 2
    ra_scores, crop_scores, kept = {}, {}, {}
    for family, paths in found.items():
        ra_scores[family], crop_scores[family], kept[family] = code_and_score(paths, photos, scorer, keep)
        print(f"{family}: {len(paths)} codec(s) coded and scored ({time.perf_counter() - start:.0f} s)", flush=True)
    probe = probes(photos, scorer)
    from mlclipsim.rate_task.rows import read_rows_csv

    rows = [r for r in read_rows_csv(args.rows) if r["photo"] in set(names)]
    machines = machine_means(rows)
    wall = time.perf_counter() - start

    originals = np.array(probe["original"])
    crop_originals = np.array(probe[f"original, {CROP}-px centre crop"])
    lines = ["# Codecs trained with the no-reference RA-MIQA term: gamed or not", "",
             f"Made by `python benchmarks/ra_miqa_codecs.py {' '.join(shlex.quote(a) for a in sys.argv[1:])}` in "
             f"{wall:.0f} s on {platform.machine()}, {torch.get_num_threads()} torch threads. Photos: the "
             f"{len(names)} held-out photos of `{_shown(args.photos)}` "
             f"(none trained any codec or the RA-MIQA head), shrunk to {SIZE} px on the long side. RA-MIQA: the "
             f"shipped {args.task}-consistency head, the one in the codec term. Machine scores and bpp: the rate-task "
             f"study's rows (`{_shown(args.rows)}`), "
             "same photos and real bitstreams.", "",
             "Families (bmshj2018-factorized N=64 M=96, 1500 steps each on the same photos, "
             "`benchmarks/codec_training/train_small.sh`): " + "; ".join(f"`{f}` = {DESCRIPTIONS[f]}" for f in found) + ".", "",
             "## What the head rewards", "",
             "| image | mean RA-MIQA | photos scoring above their original |", "| --- | ---: | ---: |"]
    for label, values in probe.items():
        above = "-" if label.startswith("original") else f"{int(np.sum(np.array(values) > originals))} / {len(values)}"
        lines.append(f"| {label} | {np.mean(values):.3f} | {above} |")
    lines += ["", "## RA-MIQA against the machines, per family and lambda", "",
              "RA-MIQA of the reconstructions (mean over the photos; the originals score "
              f"{originals.mean():.3f}); `above`: photos whose reconstruction scores higher than the photo "
              f"itself. `RA-MIQA {CROP} px`: the same for each photo's {CROP}-px centre crop coded on its own, the "
              f"view the codec term saw in training (the original crops score {crop_originals.mean():.3f}). "
              "Consistency: agreement of each task model's prediction on the decoded photo with its "
              "prediction on the original (1 = unchanged).", "",
              f"| family | lambda | bpp | PSNR dB | RA-MIQA | above | RA-MIQA {CROP} px | above | " +
              " | ".join(TASK_MODELS) + " | ML-CLIPSim |", "| --- | --- |" + " ---: |" * (7 + len(TASK_MODELS))]
    verdicts = []
    for family, per_point in ra_scores.items():
        for point, by_photo in per_point.items():
            values = np.array([by_photo[n] for n in names])
            above = int(np.sum(values > originals))
            crops = np.array([crop_scores[family][point][n] for n in names])
            crop_above = int(np.sum(crops > crop_originals))
            crop_cells = f"{crops.mean():.3f} | {crop_above} / {len(names)}"
            machine = machines.get((family, point))
            if machine is None or machine["n"] != len(names):  # not (fully) in the study's rows yet
                lines.append(f"| {family} | {point} | - | - | {values.mean():.3f} | {above} / {len(names)} | "
                             f"{crop_cells} | " + " | ".join("-" for _ in TASK_MODELS) + " | - |")
                continue
            lines.append(f"| {family} | {point} | {machine['bpp']:.3f} | {machine['psnr']:.2f} | {values.mean():.3f} | "
                         f"{above} / {len(names)} | {crop_cells} | " + " | ".join(f"{machine[f'consistency/{m}']:.3f}"
                                                                   for m in TASK_MODELS)
                         + f" | {machine['ml_clipsim']:.3f} |")
            if family == "mse":
                continue
            gamed_whole, gamed_crop = above > len(names) / 2, crop_above > len(names) / 2
            versus = []
            for anchor in ANCHORS:
                reference = curve_at_rate(machines, anchor, machine["bpp"])
                if reference is None:
                    versus.append(f"outside the {anchor} curve's rates")
                    continue
                higher = [m for m in TASK_MODELS if machine[f"consistency/{m}"] > reference[f"consistency/{m}"]]
                versus.append(f"above the {anchor} curve for {len(higher)} of {len(TASK_MODELS)} task models"
                              + (f" ({', '.join(higher)})" if higher else ""))
            verdicts.append(
                f"- `{family}` at lambda {point} ({machine['bpp']:.3f} bpp, {machine['psnr']:.2f} dB): "
                f"{crop_above} of {len(names)} {CROP}-px reconstructions and {above} of {len(names)} whole "
                f"reconstructions score above their original with RA-MIQA ("
                + ("**gamed** in the training view" if gamed_crop else "not gamed in the training view")
                + (", **gamed** on whole photos" if gamed_whole else ", not on whole photos")
                + "); machines at equal rate: " + "; ".join(versus) + ".")
    lines += ["", "Photos on which a task model keeps nothing (consistency 0 at every lambda of the family), of "
              f"{len(names)}:", "", "| family | " + " | ".join(TASK_MODELS) + " |",
              "| --- |" + " ---: |" * len(TASK_MODELS)]
    for family in ra_scores:
        lost = lost_everywhere(rows, family)
        lines.append(f"| {family} | " + " | ".join(str(lost[m]) for m in TASK_MODELS) + " |")
    lines += ["", "## Verdicts", "", "Gamed: more than half of the reconstructions score higher with RA-MIQA than "
              "the photos they code (the term is satisfied by something other than the photo). The machines' verdict "
              "is each task model's mean consistency against the " + " and ".join(ANCHORS) + " curves at equal "
              "rate (interpolated linearly in bpp between their points; not judged outside their rates).", "",
              *verdicts, ""]
    shared = sorted(set.intersection(*(set(k) for k in kept.values())))
    if shared:
        point = "0.0130" if "0.0130" in shared else shared[0]
        figure = args.report.with_suffix("") / "examples.png"
        example_figure(figure, np.clip(photos[keep].permute(1, 2, 0).numpy() * 255 + 0.5, 0, 255).astype(np.uint8),
                       kept, point)
        lines += [f"## Example: `{keep}` at lambda {point}", "",
                  f"![{keep} coded by each family]({figure.parent.name}/{figure.name})", ""]
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.report} ({wall:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
