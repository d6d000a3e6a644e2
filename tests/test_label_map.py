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
    assert label_format(data) == "CONTEXT"  # the smallest for every map with ids below 64
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
    labels = blocky(20, 30, 5) + 64  # ids of 64 and above: PNG or WebP, not the context coding
    data = encode_label_map(labels)
    assert label_format(data) in ("PNG", "WEBP")
    with pytest.raises(CorruptFileError, match="neither PNG, WebP nor context-coded"):
        decode_label_map(b"GIF89a" + data, (20, 30), 69)
    with pytest.raises(CorruptFileError, match="is 30x20, the image 31x20"):
        decode_label_map(data, (20, 31), 69)
    with pytest.raises(CorruptFileError, match="class id"):
        decode_label_map(data, (20, 30), int(labels.max()))
    with pytest.raises(CorruptFileError):
        decode_label_map(data[:len(data) // 2], (20, 30), 69)
    buffer = io.BytesIO()
    Image.fromarray(np.dstack([labels, labels, labels + 1])).save(buffer, "PNG")
    with pytest.raises(CorruptFileError, match="not single-channel"):
        decode_label_map(buffer.getvalue(), (20, 30), 256)


def street_map():
    """Slanted region borders, as in a street scene seen in perspective."""
    yy, xx = np.mgrid[0:360, 0:480]
    labels = np.zeros((360, 480), np.uint8)          # sky
    labels[yy > 100 + xx // 8] = 1                    # buildings, a slanted roof line
    labels[yy > 230 - xx // 12] = 3                   # road
    labels[(yy - 250) ** 2 + (xx - 300) ** 2 < 900] = 8  # a car
    return labels


def test_context_coding_beats_webp_on_street_like_maps():
    labels = street_map()
    data = encode_label_map(labels)
    assert label_format(data) == "CONTEXT"
    np.testing.assert_array_equal(decode_label_map(data, labels.shape, 12), labels)
    from compression.label_map import _encode

    assert len(data) < 0.8 * len(_encode(labels, "WEBP"))


@pytest.mark.parametrize("shape", [(1, 40), (40, 1), (2, 2), (33, 17)])
def test_context_coding_of_thin_and_odd_shapes(shape):
    labels = np.random.default_rng(3).integers(0, 6, shape).astype(np.uint8)
    from compression.label_map import _decode_context, _encode_context

    data = _encode_context(labels)
    np.testing.assert_array_equal(_decode_context(data, shape, 6), labels)


def test_damaged_context_coding_is_a_corrupt_file():
    labels = blocky(20, 30, 5)
    data = encode_label_map(labels)
    assert label_format(data) == "CONTEXT"
    classes = data[4]
    with pytest.raises(CorruptFileError, match="claims 9 classes, the model knows 5"):
        decode_label_map(data[:4] + bytes([9]) + data[5:], (20, 30), 5)
    with pytest.raises(CorruptFileError, match="claims 0 classes"):
        decode_label_map(data[:4] + bytes([0]) + data[5:], (20, 30), 5)
    with pytest.raises(CorruptFileError, match="whole 32-bit words"):
        decode_label_map(data[:-1], (20, 30), 5)
    rng = np.random.default_rng(0)
    for _ in range(30):  # random streams decode to some map or are refused, never crash
        junk = data[:5] + rng.integers(0, 256, 4 * int(rng.integers(0, 6)), np.uint8).tobytes()
        try:
            decoded = decode_label_map(junk, (20, 30), 5)
        except CorruptFileError:
            continue
        assert decoded.shape == (20, 30) and decoded.max() < classes


@pytest.mark.parametrize("factor", [2, 4, 16])
@pytest.mark.parametrize("shape", [(360, 480), (37, 53), (3, 5)])
def test_coarse_maps_decode_to_what_coarse_labels_says(factor, shape):
    from compression.label_map import coarse_labels

    labels = blocky(*shape, 12, seed=factor)
    data = encode_label_map(labels, factor)
    assert label_format(data) == "COARSE"
    decoded = decode_label_map(data, shape, 12)
    expected = coarse_labels(labels, factor)
    assert expected.shape == shape
    np.testing.assert_array_equal(decoded, expected)
    np.testing.assert_array_equal(expected[::factor, ::factor], labels[::factor, ::factor])
    street = street_map()
    assert len(encode_label_map(street, factor)) < 0.6 * len(encode_label_map(street))


def test_damaged_coarse_maps_and_bad_factors():
    labels = blocky(40, 50, 5)
    data = encode_label_map(labels, 4)
    for bad in (data[:4] + bytes([3]) + data[5:], data[:5], data[:5] + data,
                data[:5] + b"junk" + data[9:]):
        with pytest.raises(CorruptFileError):
            decode_label_map(bad, (40, 50), 5)
    with pytest.raises(ConfigError, match="label_factor must be one of 1, 2, 4, 8, 16"):
        encode_label_map(labels, 3)
