"""compression.selective: training masks, zeroed w_hat and masked distortion (paper 4.2)."""

import numpy as np
import pytest
import tensorflow as tf

from compression.config import CompressionConfig
from compression.errors import ConfigError
from compression.model import build_training_graph
from compression.selective import apply_mask, keep_inside, pixel_mask, sample_masks

_v1 = tf.compat.v1

TINY = dict(channels=4, width=0.125, residual_blocks=1, discriminator_width=0.125,
            discriminator_scales=2, noise_dim=16, upsample_dim=32,
            crop_height=64, crop_width=64, semantic_classes=3)


def labels_batch(batch=8, h=64, w=96):
    """Three classes in horizontal bands, so every cell row holds one or two classes."""
    labels = np.zeros((batch, h, w), np.int32)
    labels[:, h // 3:] = 1
    labels[:, 2 * h // 3:, w // 2:] = 2
    return labels


def run_masks(probability, labels, seed=0):
    with tf.Graph().as_default():
        _v1.set_random_seed(seed)
        masks = sample_masks(tf.one_hot(labels, 3), probability)
        with _v1.Session() as sess:
            return sess.run(masks)


def test_probability_zero_codes_everything():
    masks = run_masks(0.0, labels_batch())
    assert masks.shape == (8, 4, 6, 1) and (masks == 1).all()


def test_sampled_masks_are_class_unions_or_boxes():
    labels = labels_batch(64)
    masks = run_masks(1.0, labels)[..., 0]
    cells = np.stack([np.isin(labels, [k]).reshape(64, 4, 16, 6, 16).any(axis=(2, 4))
                      for k in range(3)], -1)
    kinds = {"class": 0, "box": 0}
    for mask, present in zip(masks, cells, strict=True):
        assert set(np.unique(mask)) <= {0.0, 1.0}
        unions = [present[..., list(s)].any(-1) for s in
                  ([], [0], [1], [2], [0, 1], [0, 2], [1, 2], [0, 1, 2])]
        if any(np.array_equal(mask, u) for u in unions):
            kinds["class"] += 1
            continue
        rows, cols = np.nonzero(mask)
        assert len(rows), "a box keeps at least one cell"
        box = np.zeros_like(mask)
        box[rows.min():rows.max() + 1, cols.min():cols.max() + 1] = 1
        np.testing.assert_array_equal(mask, box)
        kinds["box"] += 1
    assert kinds["class"] > 10 and kinds["box"] > 10


def test_half_probability_leaves_some_examples_fully_coded():
    masks = run_masks(0.5, labels_batch(64))
    full = (masks == 1).all(axis=(1, 2, 3)).mean()
    assert 0.3 < full < 0.8   # about half, plus class masks that happen to keep all


def test_apply_mask_and_keep_inside():
    with tf.Graph().as_default():
        mask = tf.constant(np.array([[1, 0], [0, 1]], np.float32).reshape(1, 2, 2, 1))
        w_hat = tf.ones([1, 2, 2, 3]) * 2.0
        images = tf.zeros([1, 32, 32, 3])
        recon = tf.ones([1, 32, 32, 3])
        pasted = keep_inside(images, recon, mask)
        loss = tf.reduce_sum(pasted)
        grad = tf.gradients(loss, recon)[0]
        with _v1.Session() as sess:
            masked, pix, pasted, grad = sess.run([apply_mask(w_hat, mask), pixel_mask(mask),
                                                  pasted, grad])
    np.testing.assert_array_equal(masked[0, :, :, 0], [[2, 0], [0, 2]])
    assert pix.shape == (1, 32, 32, 1) and pix[0, :16, :16].all() and not pix[0, :16, 16:].any()
    np.testing.assert_array_equal(pasted, np.broadcast_to(pix, pasted.shape))
    np.testing.assert_array_equal(grad, np.broadcast_to(pix, grad.shape))


def test_training_graph_counts_distortion_only_inside_the_mask():
    cfg = CompressionConfig(**TINY, selective_probability=1.0)
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (2, 64, 96, 3)).astype(np.float32)
    with tf.Graph().as_default():
        _v1.set_random_seed(1)
        g = build_training_graph(tf.constant(images), cfg, labels=tf.constant(labels_batch(2)))
        recon = g.endpoints["reconstruction"]
        grad = tf.gradients(g.losses["distortion"], recon)[0]
        with _v1.Session() as sess:
            sess.run(_v1.global_variables_initializer())
            mask, grad, w_hat = sess.run([g.endpoints["mask"], grad, g.endpoints["w_hat"]])
    pix = np.repeat(np.repeat(mask, 16, axis=1), 16, axis=2)
    outside = np.broadcast_to(pix == 0, grad.shape)
    assert outside.any() and (grad[outside] == 0).all()
    assert np.abs(grad[~outside]).max() > 0
    assert w_hat.shape == (2, 4, 6, 4)


def test_selective_config_is_validated():
    with pytest.raises(ConfigError, match="needs a semantic model"):
        CompressionConfig(**dict(TINY, semantic_classes=0), selective_probability=0.5)
    with pytest.raises(ConfigError, match="needs the adversarial terms"):
        CompressionConfig(**TINY, selective_probability=0.5, lambda_gan=0.0, lambda_fm=0.0)
    with pytest.raises(ConfigError, match=r"in \[0, 1\]"):
        CompressionConfig(**TINY, selective_probability=1.5)
    with pytest.raises(ConfigError, match="one name per label id"):
        CompressionConfig(**TINY, class_names=("sky", "road"))
    with pytest.raises(ConfigError, match="duplicates"):
        CompressionConfig(**TINY, class_names=("sky", "road", "sky"))
    with pytest.raises(ConfigError, match="without commas"):
        CompressionConfig(**TINY, class_names=("sky", "road,car", "x"))
    cfg = CompressionConfig(**TINY, selective_probability=0.5, class_names=["a", "b", "c"])
    assert cfg.selective and cfg.class_names == ("a", "b", "c")
    assert CompressionConfig.from_json(cfg.to_json()) == cfg
    # Training-only fields: the fingerprint of files is unchanged by them.
    assert cfg.fingerprint_json() == CompressionConfig(**TINY).fingerprint_json()


def test_training_sees_label_maps_as_coarse_files_store_them():
    from compression.label_map import coarse_labels
    from compression.semantic import coarse_label_tensor

    labels = np.random.default_rng(0).integers(0, 3, (2, 64, 96)).astype(np.int32)
    with tf.Graph().as_default(), _v1.Session() as sess:
        coarse = sess.run(coarse_label_tensor(tf.constant(labels), 4))
    for got, want in zip(coarse, labels, strict=True):
        np.testing.assert_array_equal(got, coarse_labels(want, 4))
    with pytest.raises(ConfigError, match="label_factor must be 1, 2, 4, 8 or 16"):
        CompressionConfig(**TINY, label_factor=3)
    with pytest.raises(ConfigError, match="semantic models only"):
        CompressionConfig(**dict(TINY, semantic_classes=0), label_factor=4)
    cfg = CompressionConfig(**TINY, label_factor=4)
    with tf.Graph().as_default():
        g = build_training_graph(tf.zeros([2, 64, 96, 3]), cfg,
                                 labels=tf.constant(labels))
        assert g.endpoints["reconstruction"].shape.as_list() == [2, 64, 96, 3]
