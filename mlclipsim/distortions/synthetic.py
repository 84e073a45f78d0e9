"""The ten synthetic distortion types of MIQD-2.5M, in numpy/scipy/Pillow.

Images are float32 ``(H, W, 3)`` arrays in ``[0, 1]``; outputs have the same shape, dtype and
range. Severity 1 is subtle, 5 is extreme; PSNR against the clean image falls with severity.

Resolution: spatial parameters are given in pixels of a *reference image whose short side is
512 px* ("ref px" below) and are multiplied by ``s = max(min(H, W), 256) / 512``, so a 512 px
crop and a 1600 px photo degrade comparably (after resizing both to one size, PSNRs agree within
~0.5 dB for the blur, pixelate, fog and snow types). Images whose short side is under 256 px are
treated as 256 px (relatively stronger), so subtle severities do not vanish on thumbnails. Fog and
snow patterns are drawn on a grid of fixed short side (256 and 512 px) and resized to the image.
Not scaled: point-wise types (contrast, darkness, gaussian_noise; pixel noise therefore fades when
a large photo is downsampled) and JPEG (its 8x8 blocks are in image pixels).

==============  =====================================  =========  =========  =========  =========  =========
name            parameter                              s1         s2         s3         s4         s5
==============  =====================================  =========  =========  =========  =========  =========
contrast        c: fraction of contrast kept           0.80       0.60       0.42       0.27       0.15
pixelate        b: block size (ref px)                 2.5        4          6          9          13
jpeg            q: JPEG quality (integer)              50         30         18         10         5
motion_blur     L: line length = 4 sigma (ref px)      8          14         22         32         44
defocus_blur    r: disk radius (ref px)                1.5        2.5        4          6          9
glass_blur      (sigma, shift) (ref px)                (0.4,0.8)  (0.6,1.5)  (0.8,2.5)  (1.0,3.5)  (1.2,5)
fog             a: fog strength                        0.20       0.35       0.50       0.65       0.80
snow            (density, flake, streak, whiten)       see below
darkness        (gain, gamma): out = gain * x**gamma   (.90,1.1)  (.78,1.3)  (.62,1.6)  (.45,2.0)  (.30,2.5)
gaussian_noise  sigma: noise std (intensity units)     0.04       0.08       0.12       0.18       0.26
==============  =====================================  =========  =========  =========  =========  =========

Snow ``(density, flake, streak, whiten)``: fraction of reference pixels that seed a flake,
flake Gaussian radius (ref px), fall-streak length (ref px), and how far the scene is whitened:
s1 (0.0008, 0.8, 4, 0.03), s2 (0.0015, 1.0, 8, 0.07), s3 (0.0025, 1.2, 12, 0.12),
s4 (0.0040, 1.4, 16, 0.18), s5 (0.0060, 1.7, 22, 0.25).

Random types (draws come only from the ``rng`` passed in): motion_blur (angle), glass_blur (pixel
shifts), fog (cloud pattern), snow (flakes, fall angle), gaussian_noise. Every parameter is
continuous except the JPEG quality, which is rounded to an integer. PSNR falls monotonically
along the continuous severity path too, except for pixelate (block-grid phase, rises up to
~0.3 dB on small images) and JPEG (integer steps).
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage, signal

from mlclipsim.distortions.compression_artifacts import jpeg_roundtrip
from mlclipsim.distortions.registry import Distortion, Param, register_distortion

REFERENCE_SHORT_SIDE = 512
MIN_SHORT_SIDE = 256
_FOG_GRID = 256
_AIRLIGHT = 0.9
_SNOW_GAIN = 2.5


def resolution_scale(image: np.ndarray) -> float:
    """``max(min(H, W), 256) / 512``: the factor applied to parameters given in reference pixels."""
    return max(min(image.shape[0], image.shape[1]), MIN_SHORT_SIDE) / REFERENCE_SHORT_SIDE


def _convolve(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve each channel of ``(H, W, 3)`` with an odd-sized 2-D ``kernel``, reflecting borders."""
    kh, kw = kernel.shape
    if kh == 1 and kw == 1:
        return image * kernel[0, 0]
    padded = np.pad(image, ((kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)), mode="symmetric")
    out = signal.fftconvolve(padded, kernel[:, :, None].astype(np.float32), mode="valid", axes=(0, 1))
    return out.astype(np.float32, copy=False)


def _resize_channels(array: np.ndarray, height: int, width: int, resample: int) -> np.ndarray:
    """Resize a float ``(h, w)`` or ``(h, w, c)`` array with Pillow in float mode."""
    if array.ndim == 2:
        img = Image.fromarray(np.ascontiguousarray(array, dtype=np.float32), mode="F")
        return np.asarray(img.resize((width, height), resample=resample), dtype=np.float32)
    return np.stack([_resize_channels(array[:, :, c], height, width, resample) for c in range(array.shape[2])], axis=2)


def _line_kernel(length: float, angle_deg: float, gaussian: bool = False) -> np.ndarray:
    """Normalised kernel of a centred line at ``angle_deg``; bilinear splatting keeps it continuous.

    Uniform weights over ``length`` px, or (``gaussian``) Gaussian weights with sigma ``length / 4``
    over +-3 sigma, whose attenuation grows with ``length`` at every frequency.
    """
    length = max(float(length), 1.0)
    extent = 1.5 * length if gaussian else length
    radius = int(np.ceil(extent / 2)) + 1
    size = 2 * radius + 1
    t = np.linspace(-extent / 2, extent / 2, max(2, int(np.ceil(extent * 4))))
    weights = np.exp(-0.5 * (t / (length / 4)) ** 2) if gaussian else np.ones_like(t)
    theta = np.deg2rad(angle_deg)
    x = radius + t * np.cos(theta)
    y = radius - t * np.sin(theta)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    kernel = np.zeros((size, size), dtype=np.float64)
    for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        np.add.at(kernel, (y0 + dy, x0 + dx), w * weights)
    return (kernel / kernel.sum()).astype(np.float32)


def _disk_kernel(radius: float) -> np.ndarray:
    """Normalised anti-aliased disk of ``radius`` px (continuous in the radius)."""
    radius = max(float(radius), 0.0)
    half = int(np.ceil(radius)) + 1
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    weights = np.clip(radius + 0.5 - np.hypot(xx, yy), 0.0, 1.0)
    return (weights / weights.sum()).astype(np.float32)


def _fractal_noise(height: int, width: int, rng: np.random.Generator, beta: float = 2.2) -> np.ndarray:
    """Cloud-like noise with a ``1/f**beta`` power spectrum, min-max scaled to ``[0, 1]``, ``(height, width)``."""
    white = rng.standard_normal((height, width))
    fy = np.fft.fftfreq(height)[:, None] * height / max(height, width)
    fx = np.fft.rfftfreq(width)[None, :] * width / max(height, width)
    freq = np.hypot(fy, fx)
    freq[0, 0] = np.inf
    field = np.fft.irfft2(np.fft.rfft2(white) * freq ** (-beta / 2), s=(height, width))
    field -= field.min()
    return field / max(field.max(), 1e-12)


def _grid_shape(image: np.ndarray, short_side: int) -> tuple[int, int]:
    """Shape of a grid with the image's aspect ratio and the given short side."""
    h, w = image.shape[:2]
    k = short_side / min(h, w)
    return max(1, round(h * k)), max(1, round(w * k))


# ---------------------------------------------------------------- the ten types


def contrast(image: np.ndarray, param: Param, rng: np.random.Generator) -> np.ndarray:
    """Pull every pixel towards the channel mean, keeping a fraction ``c`` in (0, 1] of the contrast."""
    c = float(param)
    mean = image.mean(axis=(0, 1), keepdims=True)
    return (image - mean) * c + mean


def pixelate(image: np.ndarray, param: Param, rng: np.random.Generator) -> np.ndarray:
    """Box-downsample to blocks of ``b`` ref px and upsample with nearest neighbour."""
    h, w = image.shape[:2]
    block = max(float(param) * resolution_scale(image), 1.0)
    small = _resize_channels(image, max(1, round(h / block)), max(1, round(w / block)), Image.Resampling.BOX)
    return _resize_channels(small, h, w, Image.Resampling.NEAREST)


def jpeg(image: np.ndarray, param: Param, rng: np.random.Generator) -> np.ndarray:
    """JPEG encode/decode at quality ``q`` (1..100, rounded)."""
    return jpeg_roundtrip(image, float(param))


def motion_blur(image: np.ndarray, param: Param, rng: np.random.Generator) -> np.ndarray:
    """Blur along a straight line at an angle drawn uniformly from [-45, 45] deg; Gaussian weights
    along the line with sigma ``L / 4`` ref px (support +-0.75 L), so blur grows monotonically with L."""
    angle = rng.uniform(-45.0, 45.0)
    return _convolve(image, _line_kernel(float(param) * resolution_scale(image), angle, gaussian=True))


def defocus_blur(image: np.ndarray, param: Param, rng: np.random.Generator) -> np.ndarray:
    """Blur with an anti-aliased disk (the out-of-focus point spread) of radius ``r`` ref px."""
    return _convolve(image, _disk_kernel(float(param) * resolution_scale(image)))


def _jitter(image: np.ndarray, shift: float, rng: np.random.Generator) -> np.ndarray:
    """Resample every pixel from a random position up to ``shift`` px away per axis (bilinear)."""
    h, w = image.shape[:2]
    u = rng.uniform(-1.0, 1.0, size=(2, h, w)).astype(np.float32)
    r = np.clip(np.arange(h, dtype=np.float32)[:, None] + u[0] * shift, 0, h - 1)
    c = np.clip(np.arange(w, dtype=np.float32)[None, :] + u[1] * shift, 0, w - 1)
    r0 = np.floor(r).astype(np.intp)
    c0 = np.floor(c).astype(np.intp)
    r1 = np.minimum(r0 + 1, h - 1)
    c1 = np.minimum(c0 + 1, w - 1)
    fr = (r - r0)[:, :, None]
    fc = (c - c0)[:, :, None]
    top = image[r0, c0] * (1 - fc) + image[r0, c1] * fc
    bottom = image[r1, c0] * (1 - fc) + image[r1, c1] * fc
    return top * (1 - fr) + bottom * fr


def glass_blur(image: np.ndarray, param: Param, rng: np.random.Generator) -> np.ndarray:
    """Frosted glass: Gaussian blur (``sigma`` ref px), two rounds of resampling every pixel from a
    random position up to ``shift`` ref px away, and a second Gaussian blur."""
    sigma, shift = (float(v) * resolution_scale(image) for v in param)
    out = ndimage.gaussian_filter(image, sigma=(sigma, sigma, 0), mode="reflect")
    for _ in range(2):
        out = _jitter(out, shift, rng)
    return ndimage.gaussian_filter(out, sigma=(sigma, sigma, 0), mode="reflect")


def fog(image: np.ndarray, param: Param, rng: np.random.Generator) -> np.ndarray:
    """Haze: ``out = t * x + (1 - t) * 0.9`` with transmission ``t = 1 - a * cloud``, where the cloud
    map (values 0.4..1) is fractal noise drawn on a 256 px grid."""
    a = float(param)
    h, w = image.shape[:2]
    cloud = _fractal_noise(*_grid_shape(image, _FOG_GRID), rng).astype(np.float32)
    cloud = _resize_channels(cloud, h, w, Image.Resampling.BILINEAR)
    density = (a * (0.4 + 0.6 * cloud))[:, :, None]
    return image * (1.0 - density) + _AIRLIGHT * density


def snow(image: np.ndarray, param: Param, rng: np.random.Generator) -> np.ndarray:
    """Falling snow: whiten the scene by ``whiten``, then screen-blend a flake layer (flakes seeded in
    a fraction ``density`` of reference pixels, Gaussian radius ``flake``, streaked over ``streak``
    ref px along a random fall direction). The layer is drawn on a 512 px grid."""
    density, flake, streak, whiten = (float(v) for v in param)
    h, w = image.shape[:2]
    gh, gw = _grid_shape(image, REFERENCE_SHORT_SIDE)
    seeds = rng.uniform(size=(gh, gw))
    brightness = rng.uniform(0.6, 1.0, size=(gh, gw))
    angle = rng.uniform(-120.0, -60.0)
    layer = np.where(seeds < density, brightness, 0.0).astype(np.float32)
    layer = ndimage.gaussian_filter(layer, sigma=flake, mode="wrap") * (2 * np.pi * flake**2)
    layer = _convolve(layer[:, :, None], _line_kernel(streak, angle))[:, :, 0]
    layer = np.clip(_SNOW_GAIN * layer, 0.0, 1.0)
    if (gh, gw) != (h, w):
        layer = _resize_channels(layer, h, w, Image.Resampling.BILINEAR)
    gray = image.mean(axis=2, keepdims=True)
    whitened = (1.0 - whiten) * image + whiten * np.maximum(image, gray * 1.5 + 0.5)
    whitened = np.clip(whitened, 0.0, 1.0)
    return 1.0 - (1.0 - whitened) * (1.0 - layer[:, :, None])


def darkness(image: np.ndarray, param: Param, rng: np.random.Generator) -> np.ndarray:
    """Under-exposure: ``out = gain * x ** gamma``."""
    gain, gamma = (float(v) for v in param)
    return gain * np.power(image, gamma)


def gaussian_noise(image: np.ndarray, param: Param, rng: np.random.Generator) -> np.ndarray:
    """Add i.i.d. Gaussian noise of std ``sigma`` (intensity units) to every pixel and channel."""
    noise = rng.standard_normal(image.shape, dtype=np.float32)
    return image + float(param) * noise


SYNTHETIC_DISTORTIONS: tuple[Distortion, ...] = (
    Distortion(
        "contrast",
        contrast,
        (0.80, 0.60, 0.42, 0.27, 0.15),
        "c in (0, 1]: fraction of contrast kept around the channel mean",
    ),
    Distortion(
        "pixelate", pixelate, (2.5, 4.0, 6.0, 9.0, 13.0), "b: pixel block size in ref px (short side 512), box-averaged"
    ),
    Distortion("jpeg", jpeg, (50, 30, 18, 10, 5), "q: JPEG quality 1..100, rounded to an integer", integer_param=True),
    Distortion(
        "motion_blur",
        motion_blur,
        (8.0, 14.0, 22.0, 32.0, 44.0),
        "L: motion blur length in ref px (4 sigma of a Gaussian-weighted line); angle random in [-45, 45] deg",
        stochastic=True,
    ),
    Distortion("defocus_blur", defocus_blur, (1.5, 2.5, 4.0, 6.0, 9.0), "r: defocus disk radius in ref px"),
    Distortion(
        "glass_blur",
        glass_blur,
        ((0.4, 0.8), (0.6, 1.5), (0.8, 2.5), (1.0, 3.5), (1.2, 5.0)),
        "(sigma, shift): Gaussian sigma and max random pixel shift, both in ref px",
        stochastic=True,
    ),
    Distortion(
        "fog",
        fog,
        (0.20, 0.35, 0.50, 0.65, 0.80),
        "a in [0, 1]: fog strength (fraction of light replaced by airlight at densest fog)",
        stochastic=True,
    ),
    Distortion(
        "snow",
        snow,
        (
            (0.0008, 0.8, 4.0, 0.03),
            (0.0015, 1.0, 8.0, 0.07),
            (0.0025, 1.2, 12.0, 0.12),
            (0.0040, 1.4, 16.0, 0.18),
            (0.0060, 1.7, 22.0, 0.25),
        ),
        "(density, flake, streak, whiten): flake seed fraction, flake radius and streak length "
        "in ref px, scene whitening in [0, 1]",
        stochastic=True,
    ),
    Distortion(
        "darkness",
        darkness,
        ((0.90, 1.1), (0.78, 1.3), (0.62, 1.6), (0.45, 2.0), (0.30, 2.5)),
        "(gain, gamma): out = gain * x ** gamma",
    ),
    Distortion(
        "gaussian_noise",
        gaussian_noise,
        (0.04, 0.08, 0.12, 0.18, 0.26),
        "sigma: std of additive Gaussian noise in intensity units",
        stochastic=True,
    ),
)

for _distortion in SYNTHETIC_DISTORTIONS:
    register_distortion(_distortion)

SYNTHETIC_NAMES: tuple[str, ...] = tuple(d.name for d in SYNTHETIC_DISTORTIONS)
