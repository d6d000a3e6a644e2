"""Tests for compression.data: discovery, the tf.data pipeline, and the fixture writer."""

import dataclasses
import os
import warnings

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from compression import data
from compression.data import (
    Example,
    SkipCounter,
    SkippedFileWarning,
    find_examples,
    make_dataset,
    write_synthetic_cityscapes,
)
from compression.errors import CompressionError, DataError


def _batches(ds, n=None):
    """The first ``n`` batches (all when None) as dicts of numpy arrays."""
    ds = ds if n is None else ds.take(n)
    return [{k: v.numpy() for k, v in b.items()} for b in ds]


def _write_tree(root, split, stems, images, labels=None):
    """Write given uint8 images (and label maps) in the Cityscapes layout."""
    for i, (stem, image) in enumerate(zip(stems, images, strict=True)):
        d = os.path.join(root, "leftImg8bit", split, "city")
        os.makedirs(d, exist_ok=True)
        Image.fromarray(image).save(os.path.join(d, f"{stem}_leftImg8bit.png"))
        if labels is not None:
            d = os.path.join(root, "gtFine", split, "city")
            os.makedirs(d, exist_ok=True)
            Image.fromarray(labels[i]).save(os.path.join(d, f"{stem}_gtFine_labelIds.png"))
    return str(root)


def _id_tree(root, n, size=(16, 24)):
    """``n`` constant-colour images whose grey value 10*k + 5 identifies example k."""
    images = [np.full(size + (3,), 10 * k + 5, np.uint8) for k in range(n)]
    return _write_tree(root, "train", [f"im{k:02d}" for k in range(n)], images)


def _ids(batch):
    """Example numbers of a batch of :func:`_id_tree` images."""
    grey = (batch["image"][..., 0].mean(axis=(1, 2)) + 1.0) * 127.5
    return [int(round((g - 5) / 10)) for g in grey]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_synthetic_cityscapes(tmp_path_factory.mktemp("cityscapes"))


# ------------------------------------------------------------------------- discovery


def test_find_examples_pairs_images_with_labels(tree):
    train = find_examples(tree, "train", require_labels=True)
    val = find_examples(tree, "val")
    assert len(train) == 4 and len(val) == 2
    assert train == sorted(train, key=lambda e: e.image_path)
    for ex in train + val:
        assert isinstance(ex, Example)
        assert ex.image_path.endswith("_leftImg8bit.png") and os.path.isfile(ex.image_path)
        assert ex.label_path.endswith("_gtFine_labelIds.png") and os.path.isfile(ex.label_path)
        stem = os.path.basename(ex.image_path)[: -len("_leftImg8bit.png")]
        assert os.path.basename(ex.label_path) == stem + "_gtFine_labelIds.png"
    with pytest.raises(dataclasses.FrozenInstanceError):
        train[0].image_path = "x"


def test_find_examples_accepts_any_extension_case_and_unlabelled(tmp_path):
    d = tmp_path / "leftImg8bit" / "train" / "c"
    d.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(d / "a_leftImg8bit.JPG", format="JPEG")
    Image.new("RGB", (8, 8)).save(d / "b_leftImg8bit.png")
    (d / "notes.txt").write_text("ignored")
    (d / "c.png").write_bytes(b"no _leftImg8bit suffix: ignored")
    found = find_examples(tmp_path, "train")
    assert [os.path.basename(e.image_path) for e in found] == [
        "a_leftImg8bit.JPG", "b_leftImg8bit.png"]
    assert all(e.label_path is None for e in found)


def test_find_examples_plain_folder(tmp_path):
    (tmp_path / "trips" / "2019").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "trips" / "2019" / "x.JPEG", format="JPEG")
    Image.new("RGB", (8, 8)).save(tmp_path / "top.png")
    (tmp_path / "._top.png").write_bytes(b"macOS resource fork")
    found = find_examples(tmp_path, "train")
    assert [os.path.relpath(e.image_path, tmp_path) for e in found] == [
        "top.png", os.path.join("trips", "2019", "x.JPEG")]
    # ROOT/<split> is preferred when it exists.
    (tmp_path / "val").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "val" / "v.png")
    assert [os.path.basename(e.image_path) for e in find_examples(tmp_path, "val")] == ["v.png"]
    # Without train/, training takes ROOT but never its held-out val/ and test/.
    (tmp_path / "test").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "test" / "t.png")
    assert [os.path.basename(e.image_path) for e in find_examples(tmp_path, "train")] == [
        "top.png", "x.JPEG"]
    with pytest.raises(DataError, match=r"no holdout/ subfolder; put the images"):
        find_examples(tmp_path, "holdout")
    with pytest.raises(DataError, match="plain folder"):
        find_examples(tmp_path, "train", require_labels=True)


def test_find_examples_missing_root(tmp_path):
    with pytest.raises(DataError, match="does not exist") as info:
        find_examples(tmp_path / "nope")
    assert isinstance(info.value, CompressionError) and isinstance(info.value, ValueError)


def test_find_examples_empty_folders_list_the_patterns(tmp_path):
    with pytest.raises(DataError) as info:
        find_examples(tmp_path, "train")
    for ext in (".png", ".jpg", ".jpeg"):
        assert os.path.join(str(tmp_path), "**", "*" + ext) in str(info.value)
    (tmp_path / "leftImg8bit" / "val").mkdir(parents=True)
    with pytest.raises(DataError) as info:
        find_examples(tmp_path, "train")
    message = str(info.value)
    pattern = os.path.join(str(tmp_path), "leftImg8bit", "train", "**", "*_leftImg8bit.jpeg")
    assert pattern in message and "'val'" in message


def test_find_examples_missing_labels(tmp_path):
    root = write_synthetic_cityscapes(tmp_path)
    victim = find_examples(root, "train")[2].label_path
    os.remove(victim)
    found = find_examples(root, "train")
    assert sum(e.label_path is None for e in found) == 1
    with pytest.raises(DataError, match="1 of 4") as info:
        find_examples(root, "train", require_labels=True)
    assert victim in str(info.value)
    with pytest.raises(DataError, match="label map for every image"):
        make_dataset(found, crop_size=(16, 16), batch_size=1, training=False, num_classes=4)


def test_synthetic_tree_without_classes(tmp_path):
    root = write_synthetic_cityscapes(tmp_path, splits={"train": 3}, size=(20, 30),
                                      num_classes=0)
    found = find_examples(root, "train")
    assert len(found) == 3 and all(e.label_path is None for e in found)
    assert not (tmp_path / "gtFine").exists()
    assert Image.open(found[0].image_path).size == (30, 20)


# ------------------------------------------------------------------------- pipeline


def test_training_batches_shapes_dtypes_ranges(tree):
    ds = make_dataset(find_examples(tree, "train", True), crop_size=(32, 48), batch_size=3,
                      training=True, num_classes=4)
    assert ds.element_spec["image"].shape == (3, 32, 48, 3)
    assert ds.element_spec["labels"].shape == (3, 32, 48)
    for b in _batches(ds, 3):
        assert b["image"].dtype == np.float32 and b["image"].shape == (3, 32, 48, 3)
        assert b["labels"].dtype == np.int32 and b["labels"].shape == (3, 32, 48)
        assert -1.0 <= b["image"].min() < b["image"].max() <= 1.0
        assert 0 <= b["labels"].min() and b["labels"].max() < 4
    assert isinstance(ds.skip_counter, SkipCounter) and ds.skip_counter.count == 0
    no_labels = make_dataset(find_examples(tree, "train"), crop_size=(16, 16), batch_size=2,
                             training=True)
    assert set(no_labels.element_spec) == {"image"}


def test_evaluation_is_one_ordered_pass_with_partial_batch(tmp_path):
    root = _id_tree(tmp_path, 5)
    ds = make_dataset(find_examples(root), crop_size=(16, 24), batch_size=2, training=False)
    batches = _batches(ds)
    assert [b["image"].shape[0] for b in batches] == [2, 2, 1]
    assert sum((_ids(b) for b in batches), []) == [0, 1, 2, 3, 4]


def test_evaluation_centre_crop(tmp_path):
    yy, xx = np.mgrid[0:20, 0:30]
    image = np.stack([yy * 10, xx * 8, np.zeros_like(xx)], -1).astype(np.uint8)
    root = _write_tree(tmp_path, "val", ["a"], [image])
    b = _batches(make_dataset(find_examples(root, "val"), crop_size=(10, 10), batch_size=1,
                              training=False))[0]
    got = np.round((b["image"][0] + 1) * 127.5).astype(np.uint8)
    np.testing.assert_array_equal(got, image[5:15, 10:20])


def test_evaluation_of_whole_images_keeps_each_size(tmp_path):
    """crop_size=None: every image in its own centred window, sides cut to
    multiples of 16 (no padding needed) and labels cut the same."""
    rng = np.random.default_rng(0)
    sizes = [(40, 70), (33, 16), (64, 48)]
    images = [rng.integers(0, 256, s + (3,), dtype=np.uint8) for s in sizes]
    labels = [rng.integers(0, 4, s, dtype=np.uint8) for s in sizes]
    root = _write_tree(tmp_path, "val", ["a", "b", "c"], images, labels)
    batches = _batches(make_dataset(find_examples(root, "val", True), crop_size=None,
                                    batch_size=1, training=False, num_classes=4))
    windows = [(32, 64), (32, 16), (64, 48)]
    assert [b["image"].shape[1:3] for b in batches] == windows
    for b, image, label, (h, w) in zip(batches, images, labels, windows, strict=True):
        y, x = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
        got = np.round((b["image"][0] + 1) * 127.5).astype(np.uint8)
        np.testing.assert_array_equal(got, image[y:y + h, x:x + w])
        np.testing.assert_array_equal(b["labels"][0], label[y:y + h, x:x + w])


def test_whole_window_cuts_to_the_stride_and_caps_large_images():
    assert data.whole_window(360, 480) == (352, 480)  # a CamVid frame
    assert data.whole_window(481, 321) == (480, 320)  # a BSDS500 portrait
    assert data.whole_window(1024, 2048) == (1024, data.WHOLE_MAX_SIDE)


def test_whole_images_are_for_evaluation_one_at_a_time(tmp_path):
    examples = find_examples(_id_tree(tmp_path, 2))
    for kwargs in (dict(training=True, batch_size=1), dict(training=False, batch_size=2)):
        with pytest.raises(DataError, match="crop_size=None"):
            make_dataset(examples, crop_size=None, **kwargs)


def test_resize_keeps_label_ids(tmp_path):
    # 2x2 blocks of ids 0 and 10: halving the size with nearest neighbour must
    # give the blocks back exactly; any interpolation would create other ids.
    blocks = np.random.default_rng(0).choice([0, 10], size=(20, 30)).astype(np.uint8)
    labels = np.kron(blocks, np.ones((2, 2), np.uint8))
    image = np.repeat(labels[..., None], 3, -1) * 20
    root = _write_tree(tmp_path, "val", ["a"], [image], [labels])
    ds = make_dataset(find_examples(root, "val", True), crop_size=(20, 30), batch_size=1,
                      training=False, num_classes=11, resize=(20, 30))
    b = _batches(ds)[0]
    assert b["labels"].shape == (1, 20, 30)
    np.testing.assert_array_equal(b["labels"][0], blocks)
    # The image is resampled bilinearly, so it takes in-between values.
    grey = np.round((b["image"][0, ..., 0] + 1) * 127.5)
    assert len(np.unique(grey)) > 2


def _position_tree(root, size, col_step, row_step, seed):
    """Three labelled images whose pixels say where they are: red encodes the
    label (ids * 50), green the column (* ``col_step``), blue the row (* ``row_step``)."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    images, labels = [], []
    for _ in range(3):
        ids = rng.integers(0, 5, size=(h, w)).astype(np.uint8)
        images.append(np.stack([ids * 50, xx * col_step, yy * row_step], -1).astype(np.uint8))
        labels.append(ids)
    return _write_tree(root, "train", [f"s{k}" for k in range(3)], images, labels)


def test_training_crop_and_flip_are_shared_by_image_and_labels(tmp_path):
    root = _position_tree(tmp_path, (24, 40), col_step=6, row_step=10, seed=1)
    ds = make_dataset(find_examples(root, "train", True), crop_size=(8, 12), batch_size=4,
                      training=True, num_classes=5, seed=3)
    offsets, flips = set(), set()
    for b in _batches(ds, 4):
        pixels = np.round((b["image"] + 1) * 127.5).astype(np.int64)
        np.testing.assert_array_equal(pixels[..., 0], b["labels"] * 50)
        for p in pixels:
            cols = p[0, :, 1] // 6
            flipped = cols[0] > cols[-1]
            flips.add(bool(flipped))
            offsets.add((int(p[0, 0, 2] // 10), int(cols.min())))
            step = -1 if flipped else 1
            np.testing.assert_array_equal(np.diff(cols), np.full(11, step))
    assert flips == {True, False}
    assert len(offsets) > 4


def test_portrait_images_are_turned_to_fit_a_landscape_crop(tmp_path):
    # 40x24 portrait images hold a 16x32 crop only turned a quarter; before,
    # every one was skipped as "smaller than the crop".
    root = _position_tree(tmp_path, (40, 24), col_step=10, row_step=6, seed=2)
    examples = find_examples(root, "train", True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkippedFileWarning)
        ds = make_dataset(examples, crop_size=(16, 32), batch_size=4, training=True,
                          num_classes=5, seed=3)
        batches = _batches(ds, 4)
        ev = _batches(make_dataset(examples, crop_size=(16, 32), batch_size=3,
                                   training=False, num_classes=5))
    down = set()
    for b in batches:
        assert b["image"].shape == (4, 16, 32, 3)
        pixels = np.round((b["image"] + 1) * 127.5).astype(np.int64)
        np.testing.assert_array_equal(pixels[..., 0], b["labels"] * 50)
        for p in pixels:
            # Turned: along a row the source row changes by one, the column not.
            rows, cols = p[..., 2] // 6, p[..., 1] // 10
            assert np.all(cols == cols[:, :1])
            assert np.all(np.abs(np.diff(rows, axis=1)) == 1)
            assert abs(int(cols[-1, 0]) - int(cols[0, 0])) == 15
            down.add(bool(cols[-1, 0] > cols[0, 0]))
    assert down == {True, False}  # both ways round
    assert ev[0]["image"].shape == (3, 16, 32, 3)
    np.testing.assert_array_equal(
        np.round((ev[0]["image"] + 1) * 127.5)[..., 0], ev[0]["labels"] * 50)


def test_training_order_is_a_permutation_per_epoch(tmp_path):
    n, seed = 5, 7
    root = _id_tree(tmp_path, n)
    ds = make_dataset(find_examples(root), crop_size=(8, 8), batch_size=3, training=True,
                      seed=seed)
    seen = sum((_ids(b) for b in _batches(ds, 5)), [])  # 15 examples = 3 epochs
    expected = np.concatenate([np.random.default_rng([seed, e]).permutation(n)
                               for e in range(3)])
    assert seen == expected.tolist()
    other = make_dataset(find_examples(root), crop_size=(8, 8), batch_size=3, training=True,
                         seed=seed + 1)
    assert sum((_ids(b) for b in _batches(other, 5)), []) != seen


def test_start_step_reproduces_the_same_batches(tree):
    examples = find_examples(tree, "train", True)
    kwargs = dict(crop_size=(16, 32), batch_size=3, training=True, num_classes=4, seed=5)
    full = _batches(make_dataset(examples, **kwargs), 6)
    resumed = _batches(make_dataset(examples, start_step=4, **kwargs), 2)
    for a, b in zip(full[4:], resumed, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["labels"], b["labels"])
    # Not trivially equal: consecutive batches differ.
    assert not np.array_equal(full[4]["image"], full[5]["image"])


def test_corrupt_image_is_skipped_with_a_warning(tmp_path):
    root = _id_tree(tmp_path, 5)
    examples = find_examples(root)
    bad = examples[4].image_path
    with open(bad, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n this is not a png")
    with pytest.warns(SkippedFileWarning, match="im04"):
        ev = make_dataset(examples, crop_size=(16, 24), batch_size=2, training=False)
        batches = _batches(ev)
    assert sum((_ids(b) for b in batches), []) == [0, 1, 2, 3]
    assert ev.skip_counter.count == 1 and ev.skip_counter.paths == [bad]

    counter = SkipCounter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train = make_dataset(examples, crop_size=(16, 24), batch_size=5, training=True,
                             seed=0, skip_counter=counter)
        batches = _batches(train, 2)
    assert train.skip_counter is counter
    # Met once in each of the two epochs (more if prefetching read further).
    assert counter.count >= 2 and counter.paths == [bad]
    assert sum(issubclass(w.category, SkippedFileWarning) for w in caught) == 1
    for b in batches:
        assert b["image"].shape[0] == 5 and 4 not in _ids(b)


def test_later_image_of_another_size_is_skipped(tmp_path):
    images = [np.full((16, 24, 3), 5, np.uint8), np.full((16, 24, 3), 15, np.uint8)] * 3
    images.append(np.full((8, 8, 3), 25, np.uint8))  # beyond the eagerly checked few
    root = _write_tree(tmp_path, "val", [f"s{k}" for k in range(7)], images)
    with pytest.warns(SkippedFileWarning, match="smaller than the crop"):
        ds = make_dataset(find_examples(root, "val"), crop_size=(16, 24), batch_size=4,
                          training=False)
        assert sum(b["image"].shape[0] for b in _batches(ds)) == 6
    assert ds.skip_counter.count == 1


def test_a_small_image_is_skipped_wherever_it_is(tmp_path):
    # One rule: first among the eagerly checked files or later, it is skipped.
    images = [np.full((8, 8, 3), 25, np.uint8)] + [np.full((16, 24, 3), 5, np.uint8)] * 3
    root = _write_tree(tmp_path, "val", [f"s{k}" for k in range(4)], images)
    with pytest.warns(SkippedFileWarning, match="smaller than the crop"):
        ds = make_dataset(find_examples(root, "val"), crop_size=(16, 24), batch_size=4,
                          training=False)
        assert sum(b["image"].shape[0] for b in _batches(ds)) == 3


def test_crop_larger_than_image_is_a_data_error(tree):
    examples = find_examples(tree, "train")
    with pytest.raises(DataError, match="--crop") as info:
        make_dataset(examples, crop_size=(128, 128), batch_size=1, training=True)
    message = str(info.value)
    assert examples[0].image_path in message and "64x128" in message and "--resize" in message
    # A crop the 64x128 images hold only turned is used, not refused.
    ds = make_dataset(examples, crop_size=(128, 64), batch_size=1, training=True)
    assert _batches(ds, 1)[0]["image"].shape == (1, 128, 64, 3)
    with pytest.raises(DataError, match="--resize 32x64 is smaller than the crop 64x64"):
        make_dataset(examples, crop_size=(64, 64), batch_size=1, training=True, resize=(32, 64))
    # Resizing up makes the crop fit.
    ds = make_dataset(examples, crop_size=(96, 96), batch_size=1, training=True,
                      resize=(128, 256))
    assert _batches(ds, 1)[0]["image"].shape == (1, 96, 96, 3)


def test_label_ids_beyond_num_classes(tree):
    examples = find_examples(tree, "train", True)
    with pytest.raises(DataError, match=r"class id 3.*--classes to at least 4") as info:
        make_dataset(examples, crop_size=(16, 16), batch_size=1, training=True, num_classes=3)
    assert any(e.label_path in str(info.value) for e in examples[:data.EAGER_CHECKS])


def test_label_ids_beyond_num_classes_in_a_later_file_stop_iteration(tmp_path):
    root = write_synthetic_cityscapes(tmp_path, splits={"train": 6}, num_classes=3)
    examples = find_examples(root, "train", True)
    Image.fromarray(np.full((64, 128), 7, np.uint8)).save(examples[5].label_path)
    ds = make_dataset(examples, crop_size=(16, 16), batch_size=2, training=False,
                      num_classes=3)
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        _batches(ds)
    error = data.data_error_from(info.value)
    assert isinstance(error, DataError)
    assert str(error) == (f"label map {examples[5].label_path!r} holds class id 7, but "
                          "num_classes is 3 (ids must be 0..2); set --classes to at least 8")
    assert data.data_error_from(ValueError("something else")) is None


def test_grey_palette_and_alpha_images_become_rgb(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, size=(6, 8, 3)).astype(np.uint8)
    Image.fromarray(rgb[..., 0]).save(tmp_path / "a_grey.png")
    Image.fromarray(np.dstack([rgb, np.zeros((6, 8), np.uint8)])).save(tmp_path / "b_rgba.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "c_palette.png")
    Image.fromarray(rgb).save(tmp_path / "d_rgb.bmp")
    ds = make_dataset(find_examples(tmp_path), crop_size=(6, 8), batch_size=4, training=False)
    got = np.round((_batches(ds)[0]["image"] + 1) * 127.5).astype(np.uint8)
    assert got.shape == (4, 6, 8, 3)
    np.testing.assert_array_equal(got[0], np.repeat(rgb[..., :1], 3, -1))
    np.testing.assert_array_equal(got[1], rgb)  # alpha dropped, colours kept
    np.testing.assert_array_equal(got[2], np.asarray(Image.open(tmp_path / "c_palette.png")
                                                     .convert("RGB")))
    np.testing.assert_array_equal(got[3], rgb)


def test_bad_arguments(tree):
    examples = find_examples(tree, "train")
    with pytest.raises(DataError, match="no examples"):
        make_dataset([], crop_size=(8, 8), batch_size=1, training=True)
    with pytest.raises(DataError, match="crop_size"):
        make_dataset(examples, crop_size=(8,), batch_size=1, training=True)
    with pytest.raises(DataError, match="batch_size"):
        make_dataset(examples, crop_size=(8, 8), batch_size=0, training=True)


def test_graph_mode_iterators_match_eager(tree):
    examples = find_examples(tree, "train", True)
    kwargs = dict(crop_size=(16, 32), batch_size=2, num_classes=4, seed=1)
    eager_train = _batches(make_dataset(examples, training=True, **kwargs), 2)
    eager_eval = _batches(make_dataset(examples, training=False, **kwargs))
    with tf.Graph().as_default():
        train = make_dataset(examples, training=True, **kwargs)
        next_train = tf.compat.v1.data.make_one_shot_iterator(train).get_next()
        iterator = tf.compat.v1.data.make_initializable_iterator(
            make_dataset(examples, training=False, **kwargs))
        next_eval = iterator.get_next()
        assert next_train["image"].shape == (2, 16, 32, 3)
        with tf.compat.v1.Session() as sess:
            for expected in eager_train:
                got = sess.run(next_train)
                np.testing.assert_array_equal(got["image"], expected["image"])
                np.testing.assert_array_equal(got["labels"], expected["labels"])
            for _ in range(2):  # re-initialising replays the evaluation pass
                sess.run(iterator.initializer)
                got = []
                while True:
                    try:
                        got.append(sess.run(next_eval))
                    except tf.errors.OutOfRangeError:
                        break
                assert len(got) == len(eager_eval) == 2
                for g, e in zip(got, eager_eval, strict=True):
                    np.testing.assert_array_equal(g["image"], e["image"])


def test_module_exports():
    for name in data.__all__:
        assert hasattr(data, name)


def test_label_path_for_follows_the_cityscapes_layout():
    from compression.data import label_path_for

    image = os.path.join("root", "leftImg8bit", "val", "city", "x_1_leftImg8bit.png")
    assert label_path_for(image) == os.path.join("root", "gtFine", "val", "city",
                                                 "x_1_gtFine_labelIds.png")
    assert label_path_for(os.path.join("photos", "x_leftImg8bit.png")) is None
    assert label_path_for(os.path.join("root", "leftImg8bit", "val", "plain.jpg")) is None
