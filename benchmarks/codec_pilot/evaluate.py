"""Rate-distortion of a learned codec and of JPEG on photos, with real file sizes, and BD-rate vs JPEG.

Two evaluation sets per photo list (the held-out list by default):
- ``crop384``: the 384 x 384 centre crop (smaller photos: the centre min(384, H) x min(384, W));
- ``whole768``: the whole photo shrunk (Lanczos) so that its long side is at most 768 px.

Learned codec: the input is padded (replicate) to a multiple of 64, ``model.compress`` gives the range-coded
strings, ``model.decompress`` decodes them, the output is cropped, clamped and rounded to 8 bits, and PSNR is
measured on that decoded image. Rate = true bytes: the sum of the string lengths + 8 bytes header (image
height/width) + 4 bytes length prefix per extra string (hyperprior models have two) + 1 byte for the
rate level of a variable-rate model, divided by the unpadded pixel count.

JPEG anchor: Pillow ``save(format="JPEG", quality=q, optimize=True)`` (optimised Huffman tables, 4:2:0
chroma subsampling, Pillow's default); each file is also written with ``progressive=True`` and the smaller of
the two counts (same decoded pixels). A second anchor, JPEG 4:4:4 (``subsampling=0``) with the same options,
is recorded too; "jpeg-best" is the Pareto union of both.

Curves are per-image means of bpp and PSNR at each quality / lambda. BD-rate (percent, negative = fewer
bits than JPEG at equal PSNR) is computed over the PSNR interval that JPEG spans between 0.2 and 1.0 bpp
(intersected with the test curve's PSNR range), with monotone pchip interpolation of log10(bpp) as a
function of PSNR (``bd_rate_range``); ``mlclipsim.eval.bd_rate`` (whole overlap, same pchip) is reported
alongside. For a single operating point, ``point_vs_jpeg`` gives the rate saving at equal PSNR and the PSNR
gain at equal rate against the JPEG curve.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.integrate import trapezoid
from scipy.interpolate import PchipInterpolator

try:  # the package's BD-rate (read-only use); optional
    from mlclipsim.eval.bd_rate import bd_rate as _pkg_bd_rate
except Exception:  # pragma: no cover
    _pkg_bd_rate = None

from data import IMAGES, load_rgb, read_list, to_chw_uint8

RESULTS = Path(__file__).resolve().parents[1] / "results" / "codec_pilot"
JPEG_QUALITIES = (3, 5, 8, 10, 12, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90, 95)
BPP_LO, BPP_HI = 0.2, 1.0


# ----------------------------------------------------------------------------------------- eval sets
def load_set(names: list[str], mode: str, images: Path = IMAGES) -> list[torch.Tensor]:
    out = []
    for n in names:
        im = load_rgb(images / n)
        w, h = im.size
        if mode == "crop384":
            cw, ch = min(384, w), min(384, h)
            l, t = (w - cw) // 2, (h - ch) // 2
            im = im.crop((l, t, l + cw, t + ch))
        elif mode == "whole768":
            s = 768 / max(w, h)
            if s < 1:
                im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS)
        else:
            raise ValueError(mode)
        out.append(to_chw_uint8(im))
    return out


def psnr_u8(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


# ----------------------------------------------------------------------------------------- JPEG
def jpeg_bytes(img: np.ndarray, q: int, subsampling: int | None) -> tuple[int, np.ndarray]:
    im = Image.fromarray(img)
    kw = {} if subsampling is None else {"subsampling": subsampling}
    sizes, data = [], None
    for prog in (False, True):
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=q, optimize=True, progressive=prog, **kw)
        sizes.append(buf.tell())
        if data is None:
            data = buf.getvalue()
    dec = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return min(sizes), dec


def jpeg_curve(imgs: list[torch.Tensor], subsampling: int | None = None,
               qualities=JPEG_QUALITIES) -> dict:
    bpp, psnr = [], []
    arrs = [t.permute(1, 2, 0).numpy() for t in imgs]
    for q in qualities:
        b, p = [], []
        for a in arrs:
            n, dec = jpeg_bytes(a, q, subsampling)
            b.append(8 * n / (a.shape[0] * a.shape[1]))
            p.append(psnr_u8(a, dec))
        bpp.append(float(np.mean(b)))
        psnr.append(float(np.mean(p)))
    return {"quality": list(qualities), "bpp": bpp, "psnr": psnr}


def jpeg_best(c420: dict, c444: dict) -> dict:
    pts = sorted(zip(c420["bpp"] + c444["bpp"], c420["psnr"] + c444["psnr"]))
    kept, best = [], -1e9
    for r, p in pts:
        if p > best:
            kept.append((r, p))
            best = p
    return {"bpp": [r for r, _ in kept], "psnr": [p for _, p in kept]}


def jpeg_anchor(names: list[str], mode: str, cache: Path | None = None) -> dict:
    """JPEG curves (4:2:0, 4:4:4, best) for a photo list and mode, cached as JSON."""
    if cache is not None and cache.exists():
        d = json.loads(cache.read_text())
        if d.get("names") == names and d.get("mode") == mode:
            return d
    imgs = load_set(names, mode)
    c420, c444 = jpeg_curve(imgs), jpeg_curve(imgs, subsampling=0)
    d = {"names": names, "mode": mode, "jpeg420": c420, "jpeg444": c444, "jpeg_best": jpeg_best(c420, c444)}
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(d, indent=1))
    return d


# ----------------------------------------------------------------------------------------- learned codec
@torch.no_grad()
def codec_point(model, imgs: list[torch.Tensor], level: int | None = None, decode: bool = True) -> dict:
    """Mean bpp (true bytes) and PSNR (decoded, 8-bit) of a codec at one rate point. ``model.update`` must
    have been called."""
    model.eval()
    bpps, psnrs, nbytes = [], [], []
    t0 = time.perf_counter()
    for t in imgs:
        _, h, w = t.shape
        x = t[None].float() / 255.0
        ph, pw = (-h) % 64, (-w) % 64
        xp = F.pad(x, (0, pw, 0, ph), mode="replicate") if (ph or pw) else x
        enc = model.compress(xp) if level is None else model.compress(xp, level)
        strings = enc["strings"]
        n = sum(len(s[0]) for s in strings) + 8 + 4 * (len(strings) - 1) + (0 if level is None else 1)
        if decode:
            dec = model.decompress(strings, enc["shape"]) if level is None else \
                model.decompress(strings, enc["shape"], level)
            xh = dec["x_hat"][:, :, :h, :w].clamp(0, 1)
        else:  # pragma: no cover - faster, not used for reported numbers
            xh = model(xp)["x_hat"][:, :, :h, :w].clamp(0, 1)
        a = t.permute(1, 2, 0).numpy()
        b = (xh[0].permute(1, 2, 0).numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
        bpps.append(8 * n / (h * w))
        psnrs.append(psnr_u8(a, b))
        nbytes.append(n)
    return {"bpp": float(np.mean(bpps)), "psnr": float(np.mean(psnrs)), "bytes": int(np.sum(nbytes)),
            "n": len(imgs), "seconds": time.perf_counter() - t0}


def prepare(model):
    """Fast quantile update of the entropy bottleneck + CDF tables (the real entropy coder's tables)."""
    model.update(force=True, update_quantiles=True)
    return model


# ----------------------------------------------------------------------------------------- BD-rate
def _pareto(r, p):
    pts = sorted(zip(r, p), key=lambda t: (t[0], -t[1]))
    kr, kp, best = [], [], -1e9
    for a, b in pts:
        if b > best:
            kr.append(a)
            kp.append(b)
            best = b
    return np.array(kr), np.array(kp)


def bd_rate_range(r_a, p_a, r_t, p_t, lo: float = BPP_LO, hi: float = BPP_HI) -> dict:
    """BD-rate (%) of test vs anchor over the PSNR interval the anchor spans between ``lo`` and ``hi`` bpp,
    intersected with the test's PSNR range. pchip of log10(bpp) vs PSNR on both curves."""
    r_a, p_a = _pareto(r_a, p_a)
    r_t, p_t = _pareto(r_t, p_t)
    if len(r_a) < 2 or len(r_t) < 2:
        return {"value": None, "reason": "fewer than 2 points"}
    psnr_of_rate = PchipInterpolator(np.log10(r_a), p_a)
    lo_p = float(psnr_of_rate(np.log10(max(lo, r_a.min()))))
    hi_p = float(psnr_of_rate(np.log10(min(hi, r_a.max()))))
    a, b = max(lo_p, p_t.min()), min(hi_p, p_t.max())
    if b <= a:
        return {"value": None, "reason": "no PSNR overlap in range", "psnr_range": [lo_p, hi_p]}
    fa, ft = PchipInterpolator(p_a, np.log10(r_a)), PchipInterpolator(p_t, np.log10(r_t))
    grid = np.linspace(a, b, 1001)
    d = trapezoid(ft(grid) - fa(grid), grid) / (b - a)
    return {"value": float((10 ** d - 1) * 100), "psnr_range": [a, b],
            "coverage": (b - a) / (hi_p - lo_p), "jpeg_psnr_at_0.2_1.0": [lo_p, hi_p]}


def pkg_bd_rate(r_a, p_a, r_t, p_t):
    if _pkg_bd_rate is None:
        return None
    res = _pkg_bd_rate(r_a, p_a, r_t, p_t, method="pchip")
    return res.value


def point_vs_jpeg(bpp: float, psnr: float, jr, jp) -> dict:
    """Rate saving (%) at equal PSNR and PSNR gain (dB) at equal rate, of one point against a JPEG curve
    (pchip on the Pareto-filtered curve; None outside the JPEG curve's range)."""
    r, p = _pareto(jr, jp)
    out = {"rate_saving_pct": None, "psnr_gain_db": None}
    if p.min() <= psnr <= p.max():
        r_j = 10 ** float(PchipInterpolator(p, np.log10(r))(psnr))
        out["rate_saving_pct"] = (bpp / r_j - 1) * 100
    if r.min() <= bpp <= r.max():
        out["psnr_gain_db"] = psnr - float(PchipInterpolator(np.log10(r), p)(np.log10(bpp)))
    return out


# ----------------------------------------------------------------------------------------- CLI
def load_checkpoint(path: Path):
    from models import build

    ck = torch.load(path, map_location="cpu", weights_only=False)
    cfg = ck["config"]
    model = build(cfg["arch"], cfg["N"], cfg["M"], cfg.get("lmbdas"))
    model.load_state_dict(ck["model"])
    return model, cfg


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="*", type=Path, help="checkpoints (train_base.py / pilot.py)")
    ap.add_argument("--modes", nargs="+", default=["crop384", "whole768"])
    ap.add_argument("--out", type=Path, default=None, help="JSON with all curves and BD-rates")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    names = read_list()
    res = {"photos": names, "modes": {}}
    for mode in a.modes:
        jp = jpeg_anchor(names, mode, RESULTS / f"jpeg_heldout_{mode}.json")
        imgs = load_set(names, mode)
        m = {"jpeg": jp, "codecs": {}}
        pts = []
        for ck in a.checkpoints:
            model, cfg = load_checkpoint(ck)
            prepare(model)
            if cfg["arch"] == "mean-gain":
                for lv, lm in enumerate(cfg["lmbdas"]):
                    pts.append({"checkpoint": str(ck), "lmbda": lm, **codec_point(model, imgs, level=lv)})
            else:
                pts.append({"checkpoint": str(ck), "lmbda": cfg["lmbda"], **codec_point(model, imgs)})
            print(mode, pts[-1], flush=True)
        m["points"] = pts
        if len(pts) >= 2:
            r, p = [q["bpp"] for q in pts], [q["psnr"] for q in pts]
            for anchor in ("jpeg420", "jpeg_best"):
                j = jp[anchor]
                m[f"bd_rate_vs_{anchor}_0.2-1.0"] = bd_rate_range(j["bpp"], j["psnr"], r, p)
                m[f"bd_rate_vs_{anchor}_pkg_overlap"] = pkg_bd_rate(j["bpp"], j["psnr"], r, p)
        res["modes"][mode] = m
        print(json.dumps({k: v for k, v in m.items() if k.startswith("bd")}, indent=1))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
