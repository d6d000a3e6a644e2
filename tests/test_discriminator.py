"""compression.discriminator: scales, logits shapes, features, semantic conditioning."""

import math

import numpy as np
import pytest
import tensorflow as tf

from compression.config import CompressionConfig
from compression.discriminator import multiscale_discriminator

_v1 = tf.compat.v1


def config(scales=3):
    return CompressionConfig(discriminator_width=0.125, discriminator_scales=scales)


def expected_logits_size(height, width, scale):
    """3x3/2 SAME pooling per scale, then four 4x4/2 SAME convs: ceil halvings."""
    h, w = height, width
    for _ in range(scale + 4):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    return h, w


@pytest.mark.parametrize("scales, height, width", [(3, 64, 64), (2, 32, 96), (1, 48, 80)])
def test_scales_logits_and_features(scales, height, width):
    cfg = config(scales)
    with tf.Graph().as_default():
        images = _v1.placeholder(tf.float32, [2, height, width, 3])
        outputs = multiscale_discriminator(images, cfg)
        assert len(outputs) == scales
        for s, out in enumerate(outputs):
            h, w = expected_logits_size(height, width, s)
            assert out.logits.shape.as_list() == [2, h, w, 1]
            assert len(out.features) == 4
            fh, fw = height, width
            for _ in range(s):
                fh, fw = math.ceil(fh / 2), math.ceil(fw / 2)
            for depth, feature in zip(cfg.discriminator_filters, out.features, strict=True):
                fh, fw = math.ceil(fh / 2), math.ceil(fw / 2)
                assert feature.shape.as_list() == [2, fh, fw, depth]
        names = {v.op.name for v in _v1.trainable_variables()}
        with _v1.Session() as sess:
            sess.run(_v1.global_variables_initializer())
            x = np.random.default_rng(0).uniform(-1, 1, (2, height, width, 3))
            logits = sess.run([o.logits for o in outputs], {images: x})
    assert all(np.all(np.isfinite(v)) for v in logits)
    # Separate weights per scale; no norm on the first layer.
    for s in range(1, scales + 1):
        assert f"discriminator/scale{s}/conv1/weights" in names
        assert f"discriminator/scale{s}/logits/weights" in names
        assert f"discriminator/scale{s}/norm2/gamma" in names
        assert not any(n.startswith(f"discriminator/scale{s}/norm1") for n in names)
    assert not any(n.startswith(f"discriminator/scale{scales + 1}/") for n in names)


def test_features_are_leaky_relu_outputs():
    cfg = config(1)
    with tf.Graph().as_default():
        _v1.set_random_seed(0)
        images = tf.random.uniform([1, 32, 32, 3], -1, 1)
        (out,) = multiscale_discriminator(images, cfg)
        with _v1.Session() as sess:
            sess.run(_v1.global_variables_initializer())
            features = sess.run(out.features)
    for f in features:
        assert f.min() < 0 < f.max()  # leaky, not a plain ReLU


def test_semantic_conditioning_adds_input_channels():
    cfg = config(2)
    classes = 5
    with tf.Graph().as_default():
        images = _v1.placeholder(tf.float32, [1, 32, 64, 3])
        one_hot = _v1.placeholder(tf.float32, [1, 32, 64, classes])
        outputs = multiscale_discriminator(images, cfg, labels_one_hot=one_hot)
        shapes = {v.op.name: v.shape.as_list() for v in _v1.trainable_variables()}
        assert len(outputs) == 2
    for s in (1, 2):
        assert shapes[f"discriminator/scale{s}/conv1/weights"] == [
            4, 4, 3 + classes, cfg.discriminator_filters[0]]


def test_reuse_shares_variables_between_real_and_fake():
    cfg = config(2)
    with tf.Graph().as_default():
        real = tf.zeros([1, 32, 32, 3])
        multiscale_discriminator(real, cfg, reuse=_v1.AUTO_REUSE)
        count = len(_v1.global_variables())
        multiscale_discriminator(real + 1.0, cfg, reuse=_v1.AUTO_REUSE)
        assert len(_v1.global_variables()) == count
