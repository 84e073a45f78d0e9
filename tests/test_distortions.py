"""Tests for mlclipsim.distortions: registry, the ten synthetic types, codecs, region modes, PSNR matching."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlclipsim.distortions import (
    BACKGROUND_DOMINATED_LEVELS,
    NUM_SEVERITIES,
    REGION_MODES,
    ROI_DOMINATED_LEVELS,
    SYNTHETIC_NAMES,
    UNIFORM_LEVELS,
    Distortion,
    PSNRMatchError,
    compressai_distortion,
    distort,
    distort_regions,
    distort_with_param,
    encode_decode,
    feathered_mask,
    get_distortion,
    list_distortions,
    mask_from_boxes,
    match_psnr,
    psnr,
    register_distortion,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("MLCLIPSIM_SHARED_DIR", str(REPO_ROOT.parent / "shared")))
IMAGES_DIR = SHARED_DIR / "data" / "images"
MIQD_TYPES = {
    "contrast",
    "pixelate",
    "jpeg",
    "motion_blur",
    "defocus_blur",
    "glass_blur",
    "fog",
    "snow",
    "darkness",
    "gaussian_noise",
}
ALL_NAMES = list_distortions()
SEVERITIES = range(1, NUM_SEVERITIES + 1)


def _load_photo(filename: str, size: int = 256) -> np.ndarray:
    """Centre square crop of a shared photo resized to ``size``; float32 (size, size, 3) in [0, 1]."""
    path = IMAGES_DIR / filename
    if not path.is_file():
        pytest.skip(f"shared photo {path} not found; set MLCLIPSIM_SHARED_DIR to the folder holding data/images")
    with Image.open(path) as img:
        img = img.convert("RGB")
        w, h = img.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)
        return np.asarray(img, dtype=np.float32) / 255.0


@pytest.fixture(scope="module")
def small_image() -> np.ndarray:
    """96x128 synthetic image with gradients, edges and texture, float32 in [0, 1]."""
    rng = np.random.default_rng(123)
    yy, xx = np.mgrid[0:96, 0:128].astype(np.float32)
    img = np.stack([xx / 127, yy / 95, 0.5 + 0.4 * np.sin(xx / 5) * np.cos(yy / 7)], axis=2)
    img[30:60, 40:90] = [0.9, 0.2, 0.1]
    img += 0.03 * rng.standard_normal(img.shape).astype(np.float32)
    return np.clip(img, 0, 1).astype(np.float32)


@pytest.fixture(scope="module", params=["skimage_astronaut.png", "gcompris-qt-data_cow.jpg"])
def photo(request) -> np.ndarray:
    return _load_photo(request.param)


# ---------------------------------------------------------------- registry


def test_registry_holds_the_miqd_types_and_codecs():
    assert set(SYNTHETIC_NAMES) == MIQD_TYPES
    assert MIQD_TYPES | {"jpeg_quality", "webp_quality"} <= set(ALL_NAMES)
    for name in ALL_NAMES:
        d = get_distortion(name)
        assert d.name == name and len(d.severity_params) == NUM_SEVERITIES and d.doc


@pytest.mark.parametrize("name", ALL_NAMES)
@pytest.mark.parametrize("severity", SEVERITIES)
def test_output_shape_dtype_range(small_image, name, severity):
    before = small_image.copy()
    out = distort(small_image, name, severity, seed=3)
    assert out.shape == small_image.shape and out.dtype == np.float32
    assert np.all(np.isfinite(out)) and out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_array_equal(small_image, before)  # input untouched


@pytest.mark.parametrize("name", ALL_NAMES)
def test_deterministic_per_seed(small_image, name):
    stochastic = get_distortion(name).stochastic
    for severity in (1, 5):
        a = distort(small_image, name, severity, seed=7)
        b = distort(small_image, name, severity, seed=7)
        np.testing.assert_array_equal(a, b)
        c = distort(small_image, name, severity, seed=8)
        assert np.array_equal(a, c) != stochastic, f"{name}: seed changed={not np.array_equal(a, c)}"


@pytest.mark.parametrize("name", ALL_NAMES)
def test_psnr_falls_with_severity_on_a_photo(photo, name):
    values = [psnr(photo, distort(photo, name, s, seed=0)) for s in SEVERITIES]
    assert all(np.isfinite(values)), f"{name}: a severity left the photo unchanged: {values}"
    assert all(a >= b for a, b in zip(values, values[1:])), f"{name}: PSNR by severity {values}"


def test_continuous_param_at_interpolates():
    d = get_distortion("glass_blur")
    assert d.param_at(2) == d.severity_params[1]
    mid = d.param_at(2.5)
    assert mid == pytest.approx(tuple((x + y) / 2 for x, y in zip(d.severity_params[1], d.severity_params[2])))
    with pytest.raises(ValueError, match=r"\[1, 5\]"):
        d.param_at(5.5)


def test_distort_with_param_matches_severity(small_image):
    d = get_distortion("defocus_blur")
    np.testing.assert_array_equal(
        distort(small_image, "defocus_blur", 3), distort_with_param(small_image, "defocus_blur", d.severity_params[2])
    )


def test_unknown_name_lists_valid_names(small_image):
    with pytest.raises(ValueError, match="valid names:.*gaussian_noise"):
        distort(small_image, "gausian_noise", 1)
    with pytest.raises(ValueError, match="valid names"):
        get_distortion("nope")


@pytest.mark.parametrize("severity", [0, 6, -1])
def test_bad_severity_value(small_image, severity):
    with pytest.raises(ValueError, match=r"1\.\.5"):
        distort(small_image, "fog", severity)


@pytest.mark.parametrize("severity", [2.5, "3", True, None])
def test_bad_severity_type(small_image, severity):
    with pytest.raises(TypeError, match=r"int in 1\.\.5"):
        distort(small_image, "fog", severity)


def test_bad_images_are_rejected(small_image):
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        distort(small_image[:, :, :2], "fog", 1)
    with pytest.raises(TypeError, match="astype"):
        distort((small_image * 255).astype(np.uint8), "fog", 1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        distort(small_image * 255, "fog", 1)
    bad = small_image.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        distort(bad, "fog", 1)


def test_register_validates():
    with pytest.raises(ValueError, match="5 severity"):
        Distortion("four", lambda x, p, r: x, (1.0, 2.0, 3.0, 4.0), "x")
    with pytest.raises(ValueError, match="already registered"):
        register_distortion(get_distortion("fog"))


# ---------------------------------------------------------------- codecs


@pytest.mark.parametrize("codec", ["jpeg", "webp"])
def test_codec_round_trip_and_rate(photo, codec):
    sizes = []
    for quality in (90, 50, 10):
        decoded, n_bytes = encode_decode(photo, codec, quality)
        assert decoded.shape == photo.shape and decoded.dtype == np.float32
        assert 0.0 <= decoded.min() and decoded.max() <= 1.0 and n_bytes > 0
        sizes.append(n_bytes)
    assert sizes[0] > sizes[1] > sizes[2]


def test_codec_errors(small_image):
    with pytest.raises(ValueError, match="valid codecs: jpeg, webp"):
        encode_decode(small_image, "avif", 50)
    with pytest.raises(ValueError, match=r"1\.\.100"):
        encode_decode(small_image, "jpeg", 0)


def test_compressai_distortion_pads_and_crops(small_image):
    torch = pytest.importorskip("torch")
    models = pytest.importorskip("compressai.models")
    torch.manual_seed(0)
    model = models.FactorizedPrior(N=8, M=8)  # random weights: only shapes and bookkeeping are tested
    model.train()
    image = small_image[:70, :100]
    out = compressai_distortion(image, model)
    assert out.shape == image.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert model.training  # mode restored


# ---------------------------------------------------------------- region modes


def test_level_constants():
    assert UNIFORM_LEVELS == tuple((s, s) for s in SEVERITIES)
    assert len(ROI_DOMINATED_LEVELS) == 10 and all(r > b >= 1 for r, b in ROI_DOMINATED_LEVELS)
    assert len(BACKGROUND_DOMINATED_LEVELS) == 10 and all(b > r >= 1 for r, b in BACKGROUND_DOMINATED_LEVELS)
    assert set(REGION_MODES) == {"uniform", "roi", "background"}


def test_region_blend_extremes(small_image):
    h, w = small_image.shape[:2]
    roi = distort(small_image, "gaussian_noise", 4, seed=5)
    bg = distort(small_image, "gaussian_noise", 1, seed=5)
    ones = distort_regions(small_image, "gaussian_noise", 4, 1, np.ones((h, w)), seed=5)
    zeros = distort_regions(small_image, "gaussian_noise", 4, 1, np.zeros((h, w)), seed=5)
    np.testing.assert_array_equal(ones, roi)
    np.testing.assert_array_equal(zeros, bg)
    clean = distort_regions(small_image, "gaussian_noise", 0, 0, np.ones((h, w)))
    np.testing.assert_array_equal(clean, small_image)


def test_region_far_pixels_follow_their_region(photo):
    h, w = photo.shape[:2]
    mask = mask_from_boxes([(64, 64, 192, 192)], h, w)
    out = distort_regions(photo, "defocus_blur", 5, 0, mask, seed=0, sigma_frac=0.01)
    roi = distort(photo, "defocus_blur", 5)
    reach = int(np.ceil(4 * 0.01 * np.hypot(h, w))) + 1  # feathering support
    np.testing.assert_allclose(
        out[64 + reach : 192 - reach, 64 + reach : 192 - reach],
        roi[64 + reach : 192 - reach, 64 + reach : 192 - reach],
        atol=1e-6,
    )
    np.testing.assert_allclose(out[: 64 - reach], photo[: 64 - reach], atol=1e-6)
    seam = out[128, 64]
    assert not np.allclose(seam, roi[128, 64]) and not np.allclose(seam, photo[128, 64])


def test_masks_and_their_errors(small_image):
    mask = mask_from_boxes([(0, 0, 10, 5), (5, 2, 20, 8)], 16, 32)
    assert mask.shape == (16, 32) and mask.sum() == 10 * 5 + 15 * 6 - 5 * 3
    soft = feathered_mask(mask, 0.05)
    assert soft.dtype == np.float32 and 0.0 <= soft.min() and soft.max() <= 1.0
    np.testing.assert_array_equal(feathered_mask(mask, 0.0), mask)
    with pytest.raises(ValueError, match="does not match"):
        distort_regions(small_image, "fog", 2, 1, np.ones((10, 10)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        distort_regions(small_image, "fog", 2, 1, 2 * np.ones(small_image.shape[:2]))
    with pytest.raises(ValueError, match=r"0\.\.5"):
        distort_regions(small_image, "fog", 6, 1, np.ones(small_image.shape[:2]))


# ---------------------------------------------------------------- PSNR matching


def test_psnr_values():
    a = np.zeros((4, 4, 3), dtype=np.float32)
    assert psnr(a, a) == float("inf")
    assert psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-4)
    with pytest.raises(ValueError, match="equal shape"):
        psnr(a, a[:2])


@pytest.mark.parametrize(
    "name_a, name_b", [("defocus_blur", "gaussian_noise"), ("fog", "contrast"), ("motion_blur", "glass_blur")]
)
def test_match_psnr_hits_tolerance(name_a, name_b):
    reference = _load_photo("skimage_astronaut.png", 128)
    match = match_psnr(reference, name_a, name_b, seed=1, tol_db=0.25)
    assert match.within_tol and abs(match.psnr_a - match.psnr_b) <= 0.25
    assert match.psnr_a == pytest.approx(psnr(reference, match.image_a))
    assert match.psnr_b == pytest.approx(psnr(reference, match.image_b))
    np.testing.assert_array_equal(match.image_b, distort_with_param(reference, name_b, match.param_b, seed=1))


def test_match_psnr_explicit_target_and_unreachable():
    reference = _load_photo("skimage_astronaut.png", 128)
    match = match_psnr(reference, "gaussian_noise", "fog", target_psnr=20.0, tol_db=0.2)
    assert abs(match.psnr_a - 20.0) <= 0.1 and abs(match.psnr_b - 20.0) <= 0.1
    with pytest.raises(PSNRMatchError, match="reachable range"):
        match_psnr(reference, "gaussian_noise", "fog", target_psnr=60.0)


def test_match_psnr_integer_grid():
    reference = _load_photo("skimage_astronaut.png", 128)
    loose = match_psnr(reference, "defocus_blur", "jpeg", tol_db=0.01, strict=False)
    assert loose.within_tol == (abs(loose.psnr_a - loose.psnr_b) <= 0.01)
    if not loose.within_tol:
        with pytest.raises(PSNRMatchError, match="strict=False"):
            match_psnr(reference, "defocus_blur", "jpeg", tol_db=0.01)


def test_integer_params_stay_on_the_grid():
    d = get_distortion("jpeg")
    assert d.integer_param and all(isinstance(d.param_at(t), int) for t in np.linspace(1, 5, 9))
