"""compression.label_map: lossless label maps, and every way a bad one is refused."""

import io

import numpy as np
import pytest
from PIL import Image

from compression.errors import ConfigError, CorruptFileError, ImageReadError
from compression.label_map import (
    check_label_map,
    decode_label_map,
    encode_label_map,
    label_format,
    read_label_map,
)


def blocky(h, w, classes, seed=0):
    """A piecewise-constant map like a real segmentation: a few random rectangles."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((h, w), np.uint8)
    for _ in range(12):
        y, x = rng.integers(0, h), rng.integers(0, w)
        height, width = rng.integers(1, h + 1), rng.integers(1, w + 1)
        labels[y:y + height, x:x + width] = rng.integers(0, classes)
    return labels


@pytest.mark.parametrize("shape", [(1, 1), (17, 33), (360, 480)])
@pytest.mark.parametrize("classes", [2, 12, 34])
def test_round_trip_is_lossless_and_compact(shape, classes):
    labels = blocky(*shape, classes, seed=classes)
    data = encode_label_map(labels)
    assert label_format(data) in ("PNG", "WEBP")
    decoded = decode_label_map(data, shape, classes)
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, labels)
    if shape == (360, 480):
        assert len(data) < labels.size / 20  # far below a byte per pixel


def test_noise_round_trips_too():
    labels = np.random.default_rng(1).integers(0, 255, (40, 50)).astype(np.uint8)
    np.testing.assert_array_equal(decode_label_map(encode_label_map(labels), (40, 50), 256),
                                  labels)


def test_check_names_the_problem():
    good = blocky(20, 30, 5)
    assert check_label_map(good.astype(np.int64), 20, 30, 5).dtype == np.uint8
    with pytest.raises(ConfigError, match="the label map is 30x20.*the image is 31x20"):
        check_label_map(good, 20, 31, 5)
    with pytest.raises(ConfigError, match="class id 7, but this model knows 5 classes"):
        check_label_map(np.full((20, 30), 7), 20, 30, 5)
    with pytest.raises(ConfigError, match="class id -1"):
        check_label_map(np.full((20, 30), -1), 20, 30, 5)
    with pytest.raises(ConfigError, match="integer class ids"):
        check_label_map(good.astype(np.float32), 20, 30, 5)


def test_reading_label_files(tmp_path):
    labels = blocky(20, 30, 5)
    Image.fromarray(labels).save(tmp_path / "ids.png")
    np.testing.assert_array_equal(read_label_map(tmp_path / "ids.png"), labels)
    Image.fromarray(np.repeat(labels[:, :, None], 3, 2)).save(tmp_path / "colour.png")
    with pytest.raises(ImageReadError, match="mode 'RGB'.*single-channel class ids"):
        read_label_map(tmp_path / "colour.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ImageReadError, match="not an image"):
        read_label_map(tmp_path / "text.png")
    with pytest.raises(ImageReadError):
        read_label_map(tmp_path / "missing.png")


def test_damaged_label_data_is_a_corrupt_file():
    labels = blocky(20, 30, 5)
    data = encode_label_map(labels)
    with pytest.raises(CorruptFileError, match="neither PNG nor WebP"):
        decode_label_map(b"GIF89a" + data, (20, 30), 5)
    with pytest.raises(CorruptFileError, match="is 30x20, the image 31x20"):
        decode_label_map(data, (20, 31), 5)
    with pytest.raises(CorruptFileError, match="class id"):
        decode_label_map(data, (20, 30), int(labels.max()))
    with pytest.raises(CorruptFileError):
        decode_label_map(data[:len(data) // 2], (20, 30), 5)
    buffer = io.BytesIO()
    Image.fromarray(np.dstack([labels, labels, labels + 1])).save(buffer, "PNG")
    with pytest.raises(CorruptFileError, match="not single-channel"):
        decode_label_map(buffer.getvalue(), (20, 30), 256)
