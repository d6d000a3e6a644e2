"""compression.mask: selective masks derived from label maps and coded losslessly."""

import dataclasses

import numpy as np
import pytest

from compression.config import CompressionConfig
from compression.errors import ConfigError, CorruptFileError
from compression.mask import (
    class_ids,
    decode_mask,
    encode_mask_bitmap,
    encode_mask_classes,
    mask_from_labels,
)


def blob_mask(h, w, seed=0):
    """A few rectangles, like objects at the bottleneck's resolution."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((h, w), np.uint8)
    for _ in range(4):
        y, x = rng.integers(0, h), rng.integers(0, w)
        mask[y:y + rng.integers(1, 6), x:x + rng.integers(1, 9)] = 1
    return mask


@pytest.mark.parametrize("mask", [
    blob_mask(23, 30), blob_mask(64, 128, 1), np.zeros((5, 7), np.uint8),
    np.ones((5, 7), np.uint8), np.ones((1, 1), np.uint8), np.zeros((1, 40), np.uint8),
    np.random.default_rng(2).integers(0, 2, (17, 19)).astype(np.uint8),
], ids=["blobs", "large", "empty", "full", "1x1", "one row", "random"])
def test_bitmap_round_trip_is_exact(mask):
    data = encode_mask_bitmap(mask)
    np.testing.assert_array_equal(decode_mask(data, mask.shape), mask)


def test_bitmap_of_object_masks_is_small():
    mask = blob_mask(64, 128, 1)
    data = encode_mask_bitmap(mask)
    assert 8 * len(data) < 0.1 * mask.size  # well under a tenth of a bit per cell


def test_class_coding_derives_the_mask_from_the_label_map():
    labels = np.zeros((40, 50), np.uint8)
    labels[17, 33] = 3           # one pixel of class 3 keeps its whole 16x16 cell
    labels[35:, :] = 2           # the last, partial row of cells
    data = encode_mask_classes([3, 2, 3])
    assert data == bytes([0, 2, 2, 3])
    mask = decode_mask(data, (3, 4), labels, num_classes=4)
    expected = np.zeros((3, 4), np.uint8)
    expected[1, 2] = 1
    expected[2, :] = 1
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(mask_from_labels(labels, [2, 3]), expected)
    assert not mask_from_labels(labels, []).any()


@pytest.mark.parametrize("data,match", [
    (b"", "empty"),
    (b"\x05", "unknown mask coding 5"),
    (bytes([0, 2, 1]), "wrong length"),
    (bytes([0, 2, 3, 1]), "keeps classes"),        # unsorted
    (bytes([0, 1, 9]), "keeps classes"),           # id 9 of 4 classes
    (b"\x01\x00\x00", "whole 32-bit words"),
])
def test_damaged_masks_are_corrupt_files(data, match):
    with pytest.raises(CorruptFileError, match=match):
        decode_mask(data, (3, 4), np.zeros((40, 50), np.uint8), num_classes=4)


def test_class_mask_needs_a_fitting_label_map():
    with pytest.raises(CorruptFileError, match="without a label map"):
        decode_mask(bytes([0, 1, 1]), (3, 4))
    with pytest.raises(CorruptFileError, match="bottleneck"):
        decode_mask(bytes([0, 1, 1]), (3, 5), np.zeros((40, 50), np.uint8))


def test_random_bitmap_bytes_never_crash():
    rng = np.random.default_rng(0)
    for _ in range(50):
        data = b"\x01" + rng.integers(0, 256, 4 * int(rng.integers(0, 4)), np.uint8).tobytes()
        try:
            mask = decode_mask(data, (6, 9))
        except CorruptFileError:
            continue
        assert mask.shape == (6, 9) and np.isin(mask, (0, 1)).all()


def test_class_ids_by_name_id_or_none():
    cfg = CompressionConfig(semantic_classes=4, class_names=("sky", "road", "car", "person"))
    assert class_ids("car, person", cfg) == [2, 3]
    assert class_ids("3,car,3", cfg) == [2, 3]
    assert class_ids(["sky", 1], cfg) == [0, 1]
    assert class_ids("none", cfg) == []
    with pytest.raises(ConfigError, match="unknown class 'bus'; this model knows 0 sky, 1 road"):
        class_ids("bus", cfg)
    with pytest.raises(ConfigError, match="unknown class '4'"):
        class_ids("4", cfg)
    unnamed = dataclasses.replace(cfg, class_names=())
    with pytest.raises(ConfigError, match="ids 0..3 .the model has no class names"):
        class_ids("car", unnamed)


def test_bad_masks_to_code():
    with pytest.raises(ConfigError, match="0 and 1"):
        encode_mask_bitmap(np.full((3, 3), 2))
    with pytest.raises(ConfigError, match="at most 255"):
        encode_mask_classes(range(300))


def test_classes_with_corrections_round_trip():
    from compression.label_map import coarse_labels
    from compression.mask import MASK_CORRECTED, encode_mask_corrected

    labels = np.zeros((64, 96), np.uint8)
    labels[40:60, 10:40] = 3      # a car: the coarse map keeps it
    labels[5:50, 70] = 2          # a one-pixel pole on a column a 4x coarser map skips
    seen = coarse_labels(labels, 4)
    wanted, derived = mask_from_labels(labels, [2, 3]), mask_from_labels(seen, [2, 3])
    assert not np.array_equal(wanted, derived)
    data = encode_mask_corrected([2, 3], wanted, derived)
    assert data[0] == MASK_CORRECTED
    np.testing.assert_array_equal(decode_mask(data, wanted.shape, seen, num_classes=4), wanted)
    with pytest.raises(CorruptFileError, match="without a label map"):
        decode_mask(data, wanted.shape)
    with pytest.raises(CorruptFileError, match="whole 32-bit words"):
        decode_mask(data[:-1], wanted.shape, seen, num_classes=4)
