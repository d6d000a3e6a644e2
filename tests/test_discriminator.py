"""compression.discriminator: scales, logits shapes, features, semantic conditioning."""

import math

import numpy as np
import pytest
import tensorflow as tf

from compression.config import CompressionConfig
from compression.discriminator import multiscale_discriminator, replicate_pad

_v1 = tf.compat.v1


def config(scales=3, padding="replicate"):
    return CompressionConfig(discriminator_width=0.125, discriminator_scales=scales,
                             discriminator_padding=padding)


def expected_logits_size(height, width, scale):
    """3x3/2 SAME pooling per scale, then four 4x4/2 SAME convs: ceil halvings."""
    h, w = height, width
    for _ in range(scale + 4):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    return h, w


@pytest.mark.parametrize("padding", ["replicate", "zero"])
@pytest.mark.parametrize("scales, height, width", [(3, 64, 64), (2, 32, 96), (1, 48, 80)])
def test_scales_logits_and_features(scales, height, width, padding):
    cfg = config(scales, padding)
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


def _first_features_of_flat_image(padding, height=64, width=96):
    cfg = config(3, padding)
    with tf.Graph().as_default():
        _v1.set_random_seed(3)
        outputs = multiscale_discriminator(tf.fill([1, height, width, 3], 0.3), cfg)
        with _v1.Session() as sess:
            sess.run(_v1.global_variables_initializer())
            # Before any instance norm: a norm of a flat map divides rounding noise
            # by its (zero) spread, which would hide the border effect in noise.
            return sess.run([o.features[0][0] for o in outputs])


def test_replicated_edges_hide_the_border_from_d():
    # A flat image: with replicated edges every patch of every scale sees the
    # same values; with zeros the border patches differ, which is what a GAN
    # phase learnt to exploit.
    for features in _first_features_of_flat_image("replicate"):
        np.testing.assert_allclose(features, np.broadcast_to(features[:1, :1], features.shape),
                                   rtol=1e-5, atol=1e-6)
    finest = _first_features_of_flat_image("zero")[0]
    assert np.abs(finest[-1, -1] - finest[1, 1]).max() > 1e-3


@pytest.mark.parametrize("size", [1, 2, 5, 8, 13])
@pytest.mark.parametrize("kernel, stride", [(4, 2), (4, 1), (3, 2)])
def test_replicate_pad_gives_same_output_sizes_static_and_dynamic(size, kernel, stride):
    image = np.arange(size * (size + 1), dtype=np.float32).reshape(1, size, size + 1, 1)
    with tf.Graph().as_default():
        static = replicate_pad(tf.constant(image), kernel, stride)
        feed = _v1.placeholder(tf.float32, [1, None, None, 1])
        dynamic = replicate_pad(feed, kernel, stride)
        with _v1.Session() as sess:
            got, got_dynamic = sess.run([static, dynamic], {feed: image})
    np.testing.assert_array_equal(got, got_dynamic)
    before = []
    for axis, n in ((1, size), (2, size + 1)):
        total = got.shape[axis] - n
        assert (got.shape[axis] - kernel) // stride + 1 == math.ceil(n / stride)  # as "SAME"
        before.append(total // 2)
    top, left = before
    # The image inside, its edge rows and columns repeated outside.
    np.testing.assert_array_equal(got[:, top:top + size, left:left + size + 1], image)
    np.testing.assert_array_equal(got[:, :top + 1, left:left + size + 1],
                                  np.repeat(image[:, :1], top + 1, axis=1))
    np.testing.assert_array_equal(got[:, top + size - 1:, left:left + size + 1],
                                  np.repeat(image[:, -1:], got.shape[1] - top - size + 1, axis=1))


def test_padding_is_validated_and_old_configs_mean_zeros():
    from compression.errors import ConfigError

    with pytest.raises(ConfigError, match="discriminator_padding must be"):
        config(1, "reflect")
    saved = config(1).to_dict()
    del saved["discriminator_padding"]
    assert CompressionConfig.from_dict(saved).discriminator_padding == "zero"
    assert CompressionConfig().discriminator_padding == "replicate"
    # Training only: the fingerprint a file carries does not depend on it.
    assert config(1, "zero").fingerprint_json() == config(1).fingerprint_json()
