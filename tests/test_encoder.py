"""compression.encoder: bottleneck shapes, size checks, signed output, gradients through Q."""

import numpy as np
import pytest
import tensorflow as tf

from compression.config import CompressionConfig
from compression.encoder import encoder
from compression.errors import ConfigError
from compression.model import encode, synthesize

_v1 = tf.compat.v1

CONFIG = CompressionConfig(channels=4, width=0.0625, residual_blocks=1, noise_dim=16,
                           upsample_dim=32, discriminator_width=0.125,
                           discriminator_scales=2, crop_height=64, crop_width=64)


def random_images(shape, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, size=shape).astype(np.float32)


@pytest.mark.parametrize("batch, height, width", [(2, 64, 64), (1, 32, 96), (3, 48, 16)])
def test_bottleneck_shape(batch, height, width):
    with tf.Graph().as_default():
        images = _v1.placeholder(tf.float32, [batch, height, width, 3])
        w = encoder(images, CONFIG)
        expected = [batch, height // 16, width // 16, CONFIG.channels]
        assert w.shape.as_list() == expected
        with _v1.Session() as sess:
            sess.run(_v1.global_variables_initializer())
            out = sess.run(w, {images: random_images((batch, height, width, 3))})
    assert list(out.shape) == expected
    assert np.all(np.isfinite(out))


def test_variables_follow_the_layer_table():
    with tf.Graph().as_default():
        encoder(_v1.placeholder(tf.float32, [1, 32, 32, 3]), CONFIG)
        shapes = {v.name: v.shape.as_list() for v in _v1.trainable_variables()}
    f = CONFIG.filters  # (4, 8, 15, 30, 60) at width 1/16
    assert shapes["encoder/c7s1/weights:0"] == [7, 7, 3, f[0]]
    for i in range(1, 5):
        assert shapes[f"encoder/d{i}/weights:0"] == [3, 3, f[i - 1], f[i]]
        assert shapes[f"encoder/d{i}/InstanceNorm/gamma:0"] == [f[i]]
    assert shapes["encoder/c3s1_out/weights:0"] == [3, 3, f[4], CONFIG.channels]
    # The output layer has no normalisation.
    assert not any(name.startswith("encoder/c3s1_out/InstanceNorm") for name in shapes)


def test_dynamic_size_matches_static_including_one_row_bottleneck():
    """A [B, None, None, 3] placeholder takes any multiple of 16 -- also 16 itself,
    where the bottleneck is one pixel high and reflection padding must fall back
    the same way the static graph does."""
    with tf.Graph().as_default():
        dynamic = _v1.placeholder(tf.float32, [None, None, None, 3])
        w_dyn = encoder(dynamic, CONFIG)
        assert w_dyn.shape.as_list() == [None, None, None, CONFIG.channels]
        statics = {}
        for size in [(16, 48), (64, 16), (32, 64)]:
            ph = _v1.placeholder(tf.float32, [1, *size, 3])
            statics[size] = (ph, encoder(ph, CONFIG, reuse=True))
        with _v1.Session() as sess:
            sess.run(_v1.global_variables_initializer())
            for (h, w), (ph, w_static) in statics.items():
                x = random_images((1, h, w, 3), seed=h + w)
                out_dyn = sess.run(w_dyn, {dynamic: x})
                out_static = sess.run(w_static, {ph: x})
                assert out_dyn.shape == (1, h // 16, w // 16, CONFIG.channels)
                np.testing.assert_allclose(out_dyn, out_static, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 40, 64, 3), (1, 64, 8, 3), (2, 100, 100, 3)])
def test_size_not_multiple_of_16_is_refused_with_a_fix(shape):
    with tf.Graph().as_default():
        with pytest.raises(ConfigError, match="pad_to_multiple"):
            encoder(_v1.placeholder(tf.float32, shape), CONFIG)


def test_wrong_rank_or_channels_is_refused():
    with tf.Graph().as_default():
        with pytest.raises(ConfigError, match="shape"):
            encoder(_v1.placeholder(tf.float32, [1, 32, 32, 1]), CONFIG)
        with pytest.raises(ConfigError, match="shape"):
            encoder(_v1.placeholder(tf.float32, [32, 32, 3]), CONFIG)


def test_output_is_signed_so_negative_centres_are_used():
    with tf.Graph().as_default():
        _v1.set_random_seed(3)
        images = tf.constant(random_images((2, 64, 64, 3)))
        w, q = encode(images, CONFIG)
        # The last op is the bias add of the output conv: no ReLU after it.
        assert w.op.type == "BiasAdd"
        with _v1.Session() as sess:
            sess.run(_v1.global_variables_initializer())
            w_val, symbols = sess.run([w, q.symbols])
    assert w_val.min() < 0 < w_val.max()
    assert symbols.min() < CONFIG.centers.index(0.0)  # some negative centre is chosen


def test_encoder_gets_gradients_through_the_quantiser():
    """The bug this design avoids: a loss on the decoder output must reach every
    encoder weight through the quantiser (w_hat), not stop at it."""
    with tf.Graph().as_default():
        _v1.set_random_seed(4)
        images = tf.constant(random_images((2, 32, 64, 3), seed=5))
        _, q = encode(images, CONFIG)
        reconstruction, _ = synthesize(q.w_hat, CONFIG, True, z=tf.random.normal([2, 16]))
        loss = tf.reduce_mean(tf.square(reconstruction - images))
        variables = _v1.trainable_variables("generator/encoder/")
        assert len(variables) == 22  # 5 x (weights, biases, beta, gamma) + output conv
        grads = tf.gradients(loss, variables)
        assert all(g is not None for g in grads)
        with _v1.Session() as sess:
            sess.run(_v1.global_variables_initializer())
            values = sess.run(grads)
    magnitude = {v.op.name: float(np.abs(g).max()) for v, g in zip(variables, values, strict=True)}
    scale = max(magnitude.values())
    for name, m in magnitude.items():
        layer = name.split("/")[2]
        if name.endswith("/biases") and layer != "c3s1_out":
            # A conv bias followed by instance norm is removed by the mean
            # subtraction: its true gradient is 0 (only rounding noise here).
            assert m < 1e-4 * scale, name
        else:
            assert m > 1e-5 * scale and m > 0, name
    assert magnitude["generator/encoder/c3s1_out/weights"] > 0
    assert magnitude["generator/encoder/c7s1/weights"] > 0
