"""The one image loader reads every Pillow mode into correct RGB, and says what it decided."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from mlclipsim.core.images import ImageReadError, ImageReadWarning, image_to_array, read_image, read_image_array

H, W = 12, 16
RGB = np.stack(np.meshgrid(np.linspace(0, 255, W), np.linspace(30, 220, H)) + [np.full((H, W), 77.0)], -1
               ).round().astype(np.uint8)
GREY16 = (np.arange(H * W, dtype=np.uint32).reshape(H, W) * 343).astype(np.uint16)  # 0..65513


def _grey(values: np.ndarray) -> np.ndarray:
    return np.repeat(values[..., None], 3, axis=2)


def _read_quietly(path, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning for an image without transparency or frames
        return read_image_array(path, **options)


@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_sixteen_bit_grey(tmp_path, mode):
    data = GREY16.astype(">u2" if mode == "I;16B" else "<u2").tobytes()
    path = tmp_path / "grey16.tif"
    Image.frombytes(mode, (W, H), data).save(path)
    with Image.open(path) as check:
        assert check.mode == mode
    assert np.array_equal(_read_quietly(path), _grey(np.round(GREY16 / 65535 * 255).astype(np.uint8)))
    tensor = read_image(path)
    assert tensor.shape == (3, H, W)
    assert np.allclose(tensor[0].numpy(), GREY16 / 65535, atol=1e-6)  # full 16-bit precision, not 8-bit


def test_sixteen_bit_png_is_not_white(tmp_path):
    path = tmp_path / "grey16.png"
    Image.fromarray(GREY16).save(path)
    array = _read_quietly(path)
    assert array.min() == 0 and array.max() == 255
    assert np.array_equal(array, _grey(np.round(GREY16 / 65535 * 255).astype(np.uint8)))


def test_thirty_two_bit_integer(tmp_path):
    path = tmp_path / "int.tif"
    Image.fromarray(GREY16.astype(np.int32)).save(path)
    assert Image.open(path).mode == "I"
    assert np.allclose(read_image(path)[1].numpy(), GREY16 / 65535, atol=1e-6)
    Image.fromarray(GREY16.astype(np.int32) * 4).save(path)  # beyond 16 bits: the range is unknown
    with pytest.raises(ImageReadError, match="outside the 16-bit range"):
        read_image_array(path)


def test_float(tmp_path):
    values = (GREY16 / 65535).astype(np.float32)
    path = tmp_path / "float.tif"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode == "F"
    assert np.allclose(read_image(path)[2].numpy(), values)
    Image.fromarray(values * 255).save(path)
    with pytest.raises(ImageReadError, match=r"values 0\.\.25.*in \[0, 1\]"):
        read_image_array(path)


@pytest.mark.parametrize("mode", ["L", "P", "1", "CMYK", "YCbCr", "RGB"])
def test_eight_bit_modes_match_pillows_colour_conversion(tmp_path, mode):
    image = Image.fromarray(RGB).convert(mode)
    path = tmp_path / f"{mode}.{'png' if mode in ('L', 'P', '1', 'RGB') else 'tif'}"
    image.save(path)
    with Image.open(path) as check:
        assert check.mode == mode
    expected = np.asarray(image.convert("RGB"))
    assert np.array_equal(_read_quietly(path), expected)
    if mode in ("CMYK", "RGB"):  # lossless round trips
        assert np.array_equal(expected, RGB)
    if mode == "YCbCr":
        assert np.abs(expected.astype(int) - RGB).max() <= 3


def _half_transparent() -> np.ndarray:
    rgba = np.concatenate([RGB, np.full((H, W, 1), 255, np.uint8)], -1)
    rgba[:, : W // 2, 3] = 0
    return rgba


def test_rgba_with_transparency_warns_and_composites_on_white(tmp_path):
    path = tmp_path / "rgba.png"
    Image.fromarray(_half_transparent()).save(path)
    with pytest.warns(ImageReadWarning, match="50.0% .*composited on white"):
        array = read_image_array(path)
    assert (array[:, : W // 2] == 255).all() and np.array_equal(array[:, W // 2:], RGB[:, W // 2:])
    assert (_read_quietly(path, alpha="black")[:, : W // 2] == 0).all()
    assert np.array_equal(_read_quietly(path, alpha="drop"), RGB)
    with pytest.raises(ImageReadError, match="transparent pixels.*alpha='error'"):
        read_image_array(path, alpha="error")


def test_opaque_alpha_is_no_transparency(tmp_path):
    path = tmp_path / "opaque.png"
    Image.fromarray(np.concatenate([RGB, np.full((H, W, 1), 255, np.uint8)], -1)).save(path)
    assert np.array_equal(_read_quietly(path), RGB)


@pytest.mark.parametrize("mode", ["LA", "PA"])
def test_grey_and_palette_with_alpha(tmp_path, mode):
    image = Image.fromarray(_half_transparent()).convert(mode)
    expected = np.asarray(image.convert("RGB"))
    with pytest.warns(ImageReadWarning, match="composited on white"):
        array = image_to_array(image, name=f"{mode} image")
    assert (array[:, : W // 2] == 255).all() and np.array_equal(array[:, W // 2:], expected[:, W // 2:])
    if mode == "LA":  # a file round trip too (Pillow writes no PA files)
        path = tmp_path / "la.png"
        image.save(path)
        with pytest.warns(ImageReadWarning):
            assert np.array_equal(read_image_array(path), array)


def test_palette_with_transparent_index(tmp_path):
    image = Image.fromarray(RGB).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    index = int(np.asarray(image)[0, 0])
    path = tmp_path / "p.png"
    image.save(path, transparency=index)
    with pytest.warns(ImageReadWarning, match="transparent"):
        array = read_image_array(path)
    assert (array[np.asarray(image) == index] == 255).all()


def test_animated_gif_says_which_frame(tmp_path):
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (W, H), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    with pytest.warns(ImageReadWarning, match="2 frames; read frame 0"):
        first = read_image_array(path)
    assert tuple(first[0, 0]) == (255, 0, 0)
    assert tuple(_read_quietly(path, frame=1)[0, 0]) == (0, 0, 255)
    with pytest.raises(ImageReadError, match="frame 2 does not exist"):
        read_image_array(path, frame=2)


def test_decompression_bomb_is_a_clear_error(tmp_path, monkeypatch):
    path = tmp_path / "large.png"
    Image.fromarray(RGB).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)  # 192 px is more than twice the limit
    with pytest.raises(ImageReadError, match="decompression bomb.*MAX_IMAGE_PIXELS"):
        read_image_array(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 150)  # over the limit but under twice: Pillow only warns
    with pytest.raises(ImageReadError, match="decompression bomb"):
        read_image_array(path)


def test_unknown_alpha_policy():
    with pytest.raises(ValueError, match="alpha policy 'grey'"):
        read_image_array("any.png", alpha="grey")


def test_array_to_tensor_copies_a_read_only_array_instead_of_warning():
    import warnings

    from mlclipsim.core.images import array_to_tensor

    array = np.full((4, 5, 3), 0.5, np.float32)
    array.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tensor = array_to_tensor(array)
    tensor.add_(0.25)                      # writing to the tensor must not touch the caller's array
    assert tensor.shape == (3, 4, 5) and float(array[0, 0, 0]) == 0.5
