"""Measure the scale that puts ``1 - ML-CLIPSim`` on the MSE scale of CompressAI's lambda ladder.

    MLCLIPSIM_OFFLINE=1 python -m mlclipsim.training.calibrate_lambda [--backbone torchvision/mobilenet_v2]
        [--pretrained TAG_OR_PATH] [--images FOLDER] [--photos 0] [--resize resize] [--crop 256]
        [--out calibration.json]

Method. At a rate-distortion optimum of ``R + lambda * D``, ``lambda * dD/dR = -1``: lambda sets the
slope. Two distortions give the same operating point under one lambda when their slopes along the
codec's rate-distortion curve agree, so the scale is the ratio of slopes,
``scale = (dD_mse/dR) / (d(1 - ML-CLIPSim)/dR)`` with ``D_mse = 255**2 * MSE``. The probe codec is JPEG
(Pillow, 4:2:0) at 13 qualities on one 256x256 centre crop per photo (photos first shrunk so that
their shorter side is at most 512 px; ``--crop`` sets another crop size, e.g. the training crops of a
recipe whose encoder runs with ``resize: native``). Per quality the distortions are averaged over the photos; the
slope ratio over the rate interval [R/sqrt(2), R*sqrt(2)] is the ratio of the distortion drops over
that interval (interpolated linearly in rate), reported at 0.5, 0.75 and 1.0 bpp. The scale
kept is the one at 0.5 bpp, the middle of CompressAI's ladder.

Check of the method: the same probe gives the MS-SSIM slope ratio ``dD_mse / d(1 - MS-SSIM)``; CompressAI's
own ladders put it at ``lambda_ms-ssim / lambda_mse`` = 1333, 1309, 1303, 1280, 1269, 1253 for
qualities 1..6. The script also reports the gradient-norm ratio ``|d(scale * D_clip)/dx| / |dD_mse/dx|``
at the JPEG quality nearest 0.5 bpp (how hard each term pulls on the pixels at that operating point).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from mlclipsim.core.images import read_image_array
from mlclipsim.distortions.compression_artifacts import encode_decode
from mlclipsim.metrics import MLCLIPSimScorer, RAMIQALoss
from mlclipsim.training.codec_data import find_photos
from mlclipsim.training.distortion_terms import MS_SSIM_LAMBDAS, MSE_LAMBDAS
from mlclipsim.training.msssim import ms_ssim

QUALITIES = (5, 10, 15, 20, 25, 30, 40, 50, 60, 70, 80, 90, 95)
TARGET_BPPS = (0.5, 0.75, 1.0)  # JPEG on 256-px crops does not go below 0.3 bpp
CROP = 256
MAX_SHORT_SIDE = 512


def _crop(path, crop: int = CROP) -> np.ndarray:
    image = Image.fromarray(read_image_array(path))
    short = min(image.size)
    if short > MAX_SHORT_SIDE:
        factor = MAX_SHORT_SIDE / short
        image = image.resize((round(image.width * factor), round(image.height * factor)), Image.BICUBIC)
    if min(image.size) < crop:
        factor = crop / min(image.size)
        image = image.resize((max(crop, round(image.width * factor)), max(crop, round(image.height * factor))),
                             Image.BICUBIC)
    left, top = (image.width - crop) // 2, (image.height - crop) // 2
    return np.asarray(image.crop((left, top, left + crop, top + crop)), dtype=np.float32) / 255.0


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)[None].float()


def _drop(rates: np.ndarray, values: np.ndarray, target: float) -> float:
    low, high = target / math.sqrt(2), target * math.sqrt(2)
    order = np.argsort(rates)
    return float(np.interp(low, rates[order], values[order]) - np.interp(high, rates[order], values[order]))


def calibrate(backbone: str = "torchvision/mobilenet_v2", pretrained: str | None = None, images: str | None = None,
              photos: int = 0, cosine_maps: Sequence[str] = ("rescale", "clamp"), resize: str = "resize",
              crop: int = CROP, ra_miqa_tasks: Sequence[str] = ()) -> dict:
    torch.set_grad_enabled(False)
    paths = find_photos(images)
    if photos:
        paths = paths[:photos]
    first = MLCLIPSimScorer(backbone, pretrained=pretrained, cosine_map=cosine_maps[0], resize=resize)
    scorers = {cosine_maps[0]: first}
    for name in cosine_maps[1:]:
        scorers[name] = MLCLIPSimScorer(first.encoder, cosine_map=name)
    ra_miqa = {task: RAMIQALoss(task=task, reduction="none") for task in ra_miqa_tasks}
    rows = {q: {"bpp": [], "d_mse": [], "d_ms_ssim": [], **{f"d_clip_{m}": [] for m in cosine_maps},
                **{f"d_ra_miqa_{t}": [] for t in ra_miqa}} for q in QUALITIES}
    crops = [_crop(p, crop) for p in paths]
    for photo in crops:
        reference = _to_tensor(photo)
        features = {m: s.reference_features(reference) for m, s in scorers.items()}
        for q in QUALITIES:
            decoded, n_bytes = encode_decode(photo, "jpeg", q)
            x = _to_tensor(decoded)
            row = rows[q]
            row["bpp"].append(8.0 * n_bytes / (crop * crop))
            row["d_mse"].append(255.0**2 * float(((x - reference) ** 2).mean()))
            row["d_ms_ssim"].append(1.0 - float(ms_ssim(x, reference)))
            for m, scorer in scorers.items():
                row[f"d_clip_{m}"].append(1.0 - float(scorer(x, features[m])))
            for task, loss in ra_miqa.items():
                row[f"d_ra_miqa_{task}"].append(float(loss(x)[0]))
    curve = {q: {k: float(np.mean(v)) for k, v in row.items()} for q, row in rows.items()}
    rates = np.array([curve[q]["bpp"] for q in QUALITIES])
    mse = np.array([curve[q]["d_mse"] for q in QUALITIES])
    result: dict = {"backbone": backbone, "pretrained": pretrained, "resize": resize, "photos": len(paths),
                    "crop": crop, "qualities": list(QUALITIES), "curve": curve, "slope_ratios": {}}
    for target in TARGET_BPPS:
        entry = {"mse_lambda_jpeg": 1.0 / (_drop(rates, mse, target) / (target * (math.sqrt(2) - 1 / math.sqrt(2))))}
        ms = np.array([curve[q]["d_ms_ssim"] for q in QUALITIES])
        entry["ms_ssim"] = _drop(rates, mse, target) / _drop(rates, ms, target)
        for m in cosine_maps:
            clip = np.array([curve[q][f"d_clip_{m}"] for q in QUALITIES])
            entry[f"ml_clipsim_{m}"] = _drop(rates, mse, target) / _drop(rates, clip, target)
        for task in ra_miqa:
            no_reference = np.array([curve[q][f"d_ra_miqa_{task}"] for q in QUALITIES])
            entry[f"ra_miqa_{task}"] = _drop(rates, mse, target) / _drop(rates, no_reference, target)
        result["slope_ratios"][str(target)] = entry
    result["compressai_ms_ssim_ratio"] = [round(a / b, 1) for a, b in zip(MS_SSIM_LAMBDAS[:6], MSE_LAMBDAS[:6])]
    result["scales"] = {m: result["slope_ratios"]["0.5"][f"ml_clipsim_{m}"] for m in cosine_maps}
    result["ra_miqa_scales"] = {t: result["slope_ratios"]["0.5"][f"ra_miqa_{t}"] for t in ra_miqa}
    result["gradient_norm_ratio"] = _gradient_ratio(crops, scorers, result["scales"], rates)
    return result


def _gradient_ratio(crops: Sequence[np.ndarray], scorers: dict, scales: dict, rates: np.ndarray) -> dict:
    quality = QUALITIES[int(np.argmin(np.abs(rates - 0.5)))]
    ratios: dict[str, list[float]] = {m: [] for m in scorers}
    with torch.enable_grad():
        for crop in crops:
            reference = _to_tensor(crop)
            x = _to_tensor(encode_decode(crop, "jpeg", quality)[0]).requires_grad_(True)
            (grad_mse,) = torch.autograd.grad(255.0**2 * ((x - reference) ** 2).mean(), x)
            for m, scorer in scorers.items():
                (grad_clip,) = torch.autograd.grad(scales[m] * (1.0 - scorer(x, reference).mean()), x)
                ratios[m].append(float(grad_clip.norm() / grad_mse.norm().clamp_min(1e-12)))
    return {"jpeg_quality": quality, **{m: float(np.median(v)) for m, v in ratios.items()}}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlclipsim.training.calibrate_lambda",
                                     description="Calibrate the ml-clipsim term's scale against the MSE lambda ladder.")
    parser.add_argument("--backbone", default="torchvision/mobilenet_v2")
    parser.add_argument("--pretrained", default=None)
    parser.add_argument("--images", default=None, help="folder of photos (default: the shared photos)")
    parser.add_argument("--photos", type=int, default=0, help="use the first N photos (0: all)")
    parser.add_argument("--cosine-map", nargs="+", default=["rescale", "clamp"], choices=["rescale", "clamp"])
    parser.add_argument("--resize", default="resize", help="the encoder's resize policy (e.g. native)")
    parser.add_argument("--crop", type=int, default=CROP, help="side of the centre crop of every photo (px)")
    parser.add_argument("--ra-miqa", nargs="*", default=[], metavar="TASK",
                        help="also calibrate the no-reference ra-miqa term with these shipped heads "
                             "(e.g. detection classification)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="write the full result as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = calibrate(args.backbone, args.pretrained, args.images, args.photos, args.cosine_map, args.resize,
                       args.crop, args.ra_miqa)
    print(f"{'q':>3} {'bpp':>6} {'255^2*MSE':>10} {'1-MS-SSIM':>10} " +
          " ".join(f"{'1-MLC(' + m + ')':>16}" for m in args.cosine_map) +
          "".join(f" {'1-RAMIQA(' + t[:3] + ')':>16}" for t in args.ra_miqa))
    for q, row in result["curve"].items():
        print(f"{q:>3} {row['bpp']:6.3f} {row['d_mse']:10.2f} {row['d_ms_ssim']:10.5f} " +
              " ".join(f"{row['d_clip_' + m]:16.5f}" for m in args.cosine_map) +
              "".join(f" {row['d_ra_miqa_' + t]:16.5f}" for t in args.ra_miqa))
    print(json.dumps({k: v for k, v in result.items() if k != "curve"}, indent=2))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
