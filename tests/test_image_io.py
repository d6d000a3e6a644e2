"""Tests of compression.image_io: reading any image as RGB, padding, writing."""

import os
import warnings

import numpy as np
import pytest
from PIL import Image
from skimage import data as samples

from compression.errors import CompressionError, ImageReadError
from compression.image_io import (
    crop_to,
    extend_to,
    image_from_array,
    pad_to_multiple,
    read_image,
    to_float,
    to_uint8,
    write_image,
)


@pytest.fixture(scope="module")
def chelsea():
    return samples.chelsea()  # 300x451 RGB photo


def test_png_round_trip_is_exact(tmp_path, chelsea):
    path = tmp_path / "cat.png"
    write_image(path, chelsea)
    out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == chelsea.shape
    np.testing.assert_array_equal(out, chelsea)


def test_exif_orientation_is_applied(tmp_path, chelsea):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    Image.fromarray(chelsea).save(path, quality=90, exif=exif.tobytes())
    with Image.open(path) as raw:
        assert raw.size == (451, 300)  # stored landscape
    out = read_image(path)
    assert out.shape == (451, 300, 3)  # displayed portrait
    # Orientation 6 means the stored top row is the displayed right column.
    expected = np.rot90(chelsea, k=-1)
    assert np.abs(out.astype(int) - expected).mean() < 4  # JPEG noise only


def test_rgba_png_warns_and_drops_alpha(tmp_path):
    rgba = np.zeros((20, 24, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = np.arange(24, dtype=np.uint8)
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(path)
    with pytest.warns(UserWarning, match="alpha.png.*alpha"):
        out = read_image(path)
    assert out.shape == (20, 24, 3)
    assert (out[..., 0] == 200).all() and (out[..., 1:] == 0).all()  # no compositing


@pytest.mark.parametrize("mode", ["P", "L", "1", "CMYK"])
def test_other_modes_become_rgb(tmp_path, chelsea, mode):
    ext = "tif" if mode == "CMYK" else "png"
    path = tmp_path / f"image.{ext}"
    Image.fromarray(chelsea).convert(mode).save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no alpha warning for these
        out = read_image(path)
    assert out.shape == chelsea.shape and out.dtype == np.uint8
    if mode in ("L", "1"):
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_grayscale_photo(tmp_path):
    camera = samples.camera()
    path = tmp_path / "camera.png"
    Image.fromarray(camera).save(path)
    out = read_image(path)
    assert out.shape == camera.shape + (3,)
    np.testing.assert_array_equal(out[..., 1], camera)


def test_16bit_grayscale_is_scaled_not_clipped(tmp_path):
    ramp = (np.arange(32 * 32, dtype=np.uint32).reshape(32, 32) * 64).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    out = read_image(path)
    np.testing.assert_array_equal(out[..., 0], np.round(ramp / 257.0).astype(np.uint8))


def test_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (20, 20), c) for c in ("red", "blue")]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    out = read_image(path)
    assert out.shape == (20, 20, 3) and tuple(out[0, 0]) == (255, 0, 0)


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "nope.png")


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("hello")
    with pytest.raises(ImageReadError, match="is not an image Pillow can read"):
        read_image(path)
    with pytest.raises(ImageReadError, match="directory"):
        read_image(tmp_path)


def test_truncated_file(tmp_path, chelsea):
    path = tmp_path / "cut.png"
    write_image(path, chelsea)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ImageReadError, match="cut.png"):
        read_image(path)


def test_too_small(tmp_path):
    path = tmp_path / "tiny.png"
    Image.new("RGB", (15, 40)).save(path)
    with pytest.raises(ImageReadError, match=r"15x40.*minimum is 16x16"):
        read_image(path)
    assert isinstance(ImageReadError("x"), ValueError)


def test_image_from_array():
    rgb = np.zeros((16, 20, 3), np.uint8)
    assert image_from_array(rgb).shape == (16, 20, 3)
    assert image_from_array(np.zeros((16, 20), np.uint8)).shape == (16, 20, 3)
    for bad in (np.zeros((16, 20, 3), np.float32), np.zeros((16, 20, 4), np.uint8),
                np.zeros((2, 16, 20, 3), np.uint8), [[0] * 20] * 16):
        with pytest.raises(ImageReadError, match=r"uint8 array of shape \[H, W, 3\]"):
            image_from_array(bad)
    with pytest.raises(ImageReadError, match="minimum"):
        image_from_array(np.zeros((8, 8, 3), np.uint8))


@pytest.mark.parametrize("shape", [(1, 1, 3), (17, 33, 3), (16, 16, 3), (5, 40), (513, 1023, 3)])
def test_pad_crop_round_trip(shape):
    rng = np.random.default_rng(0)
    big = shape[0] > 100
    image = np.zeros(shape, np.uint8) if big else rng.integers(0, 256, shape, dtype=np.uint8)
    padded, size = pad_to_multiple(image, 16)
    assert size == shape[:2]
    assert padded.shape[0] % 16 == 0 and padded.shape[1] % 16 == 0
    assert padded.shape[0] - shape[0] < 16 and padded.shape[1] - shape[1] < 16
    assert padded.shape[2:] == shape[2:]
    np.testing.assert_array_equal(crop_to(padded, size), image)


def test_padding_reflects():
    image = np.arange(3 * 5, dtype=np.uint8).reshape(3, 5)
    padded, _ = pad_to_multiple(image, 8)  # pads of 5 and 3: longer than the image
    np.testing.assert_array_equal(padded, np.pad(image, ((0, 5), (0, 3)), mode="reflect"))
    np.testing.assert_array_equal(padded[0, 5:], [3, 2, 1])
    one, _ = pad_to_multiple(np.full((1, 1), 7, np.uint8), 16)
    assert (one == 7).all()


def test_extend_repeats_the_last_row_and_column_and_crops_the_rest():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    grown = extend_to(image, (4, 2))
    assert grown.shape == (4, 2, 3)
    np.testing.assert_array_equal(grown[:2], image[:, :2])
    np.testing.assert_array_equal(grown[2], image[1, :2])
    np.testing.assert_array_equal(grown[3], image[1, :2])
    np.testing.assert_array_equal(extend_to(image, (2, 3)), image)
    with pytest.raises(ValueError, match="cannot extend"):
        extend_to(image, (0, 3))


def test_crop_rejects_bigger_size():
    with pytest.raises(ValueError):
        crop_to(np.zeros((16, 16, 3), np.uint8), (17, 16))


def test_write_refuses_to_overwrite(tmp_path, chelsea):
    path = tmp_path / "out.png"
    write_image(path, chelsea)
    with pytest.raises(FileExistsError, match="--force"):
        write_image(path, np.zeros_like(chelsea))
    np.testing.assert_array_equal(read_image(path), chelsea)  # untouched
    write_image(path, np.zeros_like(chelsea), overwrite=True)
    assert read_image(path).max() == 0
    assert os.listdir(tmp_path) == ["out.png"]  # no temporary files left


def test_write_by_extension_and_errors(tmp_path, chelsea):
    write_image(tmp_path / "a.jpg", chelsea)
    with Image.open(tmp_path / "a.jpg") as img:
        assert img.format == "JPEG"
    write_image(tmp_path / "noext", chelsea)
    with Image.open(tmp_path / "noext") as img:
        assert img.format == "PNG"
    with pytest.raises(CompressionError, match="cannot write"):
        write_image(tmp_path / "missing_dir" / "a.png", chelsea)


def test_float_conversions():
    every = np.arange(256, dtype=np.uint8)
    f = to_float(every)
    assert f.dtype == np.float32 and f[0] == -1.0 and f[-1] == 1.0
    np.testing.assert_array_equal(to_uint8(f), every)
    np.testing.assert_array_equal(to_uint8(np.array([-3.0, 3.0, np.nan])), [0, 255, 0])
    with pytest.raises(ValueError):
        to_float(f)
