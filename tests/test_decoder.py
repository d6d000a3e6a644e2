"""compression.decoder: image shapes, tanh range, noise and semantic inputs."""

import numpy as np
import pytest
import tensorflow as tf

from compression.config import CompressionConfig
from compression.decoder import decoder

_v1 = tf.compat.v1

CONFIG = CompressionConfig(channels=4, width=0.0625, residual_blocks=2, noise_dim=16,
                           upsample_dim=32, semantic_channels=3, crop_height=64,
                           crop_width=64)


def rand(shape, scale=1.0, seed=0):
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype(np.float32)


def run_initialised(fetches, feed_dict=None):
    with _v1.Session() as sess:
        sess.run(_v1.global_variables_initializer())
        return sess.run(fetches, feed_dict)


@pytest.mark.parametrize("batch, h, w", [(2, 4, 4), (1, 2, 6), (1, 3, 1)])
def test_output_shape_and_range(batch, h, w):
    with tf.Graph().as_default():
        w_hat = _v1.placeholder(tf.float32, [batch, h, w, CONFIG.channels])
        image = decoder(w_hat, CONFIG)
        assert image.shape.as_list() == [batch, 16 * h, 16 * w, 3]
        # Large inputs drive the tanh into saturation; it must stay in [-1, 1].
        out = run_initialised(image, {w_hat: rand((batch, h, w, CONFIG.channels), 50.0)})
    assert out.shape == (batch, 16 * h, 16 * w, 3)
    assert np.all(np.abs(out) <= 1.0)
    assert out.std() > 0
    assert image.op.type == "Tanh"


def test_layer_table_and_input_depth_with_noise_and_semantics():
    c, s = CONFIG.channels, CONFIG.semantic_channels
    with tf.Graph().as_default():
        w_hat = _v1.placeholder(tf.float32, [2, 2, 3, c])
        noise = _v1.placeholder(tf.float32, [2, 2, 3, c])
        semantic = _v1.placeholder(tf.float32, [2, 2, 3, s])
        image = decoder(w_hat, CONFIG, noise=noise, semantic=semantic)
        assert image.shape.as_list() == [2, 32, 48, 3]
        shapes = {v.op.name: v.shape.as_list() for v in _v1.trainable_variables()}
        feed = {w_hat: rand((2, 2, 3, c)), noise: rand((2, 2, 3, c), seed=1),
                semantic: rand((2, 2, 3, s), seed=2)}
        out = run_initialised(image, feed)
    f = CONFIG.filters[::-1]  # (60, 30, 15, 8, 4)
    assert shapes["decoder/c3s1/weights"] == [3, 3, c + c + s, f[0]]
    for i in (1, 2):
        assert shapes[f"decoder/res{i}/conv1/weights"] == [3, 3, f[0], f[0]]
        assert shapes[f"decoder/res{i}/conv2/weights"] == [3, 3, f[0], f[0]]
    assert "decoder/res3/conv1/weights" not in shapes
    for i in range(1, 5):  # transposed conv kernels are [k, k, out, in]
        assert shapes[f"decoder/u{i}/weights"] == [3, 3, f[i], f[i - 1]]
    assert shapes["decoder/c7s1_out/weights"] == [7, 7, f[4], 3]
    assert out.shape == (2, 32, 48, 3) and np.all(np.abs(out) <= 1.0)


def test_noise_changes_the_output():
    c = CONFIG.channels
    with tf.Graph().as_default():
        w_hat = tf.constant(rand((1, 2, 2, c)))
        noise = _v1.placeholder(tf.float32, [1, 2, 2, c])
        image = decoder(w_hat, CONFIG, noise=noise)
        with _v1.Session() as sess:
            sess.run(_v1.global_variables_initializer())
            a = sess.run(image, {noise: rand((1, 2, 2, c), seed=7)})
            b = sess.run(image, {noise: rand((1, 2, 2, c), seed=8)})
            a_again = sess.run(image, {noise: rand((1, 2, 2, c), seed=7)})
    assert np.abs(a - b).max() > 1e-4
    np.testing.assert_array_equal(a, a_again)


def test_no_residual_blocks_and_reuse():
    cfg = CompressionConfig(channels=2, width=0.0625, residual_blocks=0)
    with tf.Graph().as_default():
        w_hat = _v1.placeholder(tf.float32, [1, 1, 2, 2])
        decoder(w_hat, cfg)
        count = len(_v1.global_variables())
        again = decoder(w_hat, cfg, reuse=True)
        assert len(_v1.global_variables()) == count
        assert not any("/res" in v.name for v in _v1.global_variables())
        assert again.shape.as_list() == [1, 16, 32, 3]


def test_dynamic_spatial_size():
    c = CONFIG.channels
    with tf.Graph().as_default():
        w_hat = _v1.placeholder(tf.float32, [None, None, None, c])
        image = decoder(w_hat, CONFIG)
        with _v1.Session() as sess:
            sess.run(_v1.global_variables_initializer())
            for h, w in [(1, 3), (3, 2)]:
                out = sess.run(image, {w_hat: rand((1, h, w, c))})
                assert out.shape == (1, 16 * h, 16 * w, 3)


def _stage_output(method, kernel, x):
    """One u stage, linear (no bias, no activation), on ``x`` ``[1, H, W, cin]``."""
    from compression.decoder import upsample
    from compression.encoder import layer_scope

    with tf.Graph().as_default():
        with layer_scope(), _v1.variable_scope("u") as sc:
            y = upsample(tf.constant(x), kernel.shape[2 if method == "transposed" else 3],
                         method, sc)
        found = {v.op.name: v for v in _v1.global_variables()}
        weights, biases = found["u/weights"], found["u/biases"]
        with _v1.Session() as sess:
            sess.run(_v1.global_variables_initializer())
            sess.run([weights.assign(kernel), biases.assign(tf.zeros_like(biases))])
            return sess.run(y)


@pytest.mark.parametrize("method", ["transposed", "resize"])
def test_phase_taps_describe_the_upsampling_ops(method):
    """The per-phase maps the kernel conversion is fitted on are what TF computes."""
    from compression.decoder import _phase_taps

    kernel = rand((3, 3, 1, 1), seed=1)
    x = rand((1, 6, 7, 1), seed=2)
    out = _stage_output(method, kernel, x)[0, :, :, 0]
    assert out.shape == (12, 14)
    taps = _phase_taps(method).reshape(2, 3, 3)  # phase, offset, tap
    effective = np.einsum("pdt,qeu,tu->pqde", taps, taps, kernel[:, :, 0, 0])
    padded = np.pad(x[0, :, :, 0], 1)
    for i in range(1, 5):  # interior rows and columns: no padding involved
        for j in range(1, 6):
            window = padded[i:i + 3, j:j + 3]
            for a in range(2):
                for b in range(2):
                    assert out[2 * i + a, 2 * j + b] == pytest.approx(
                        float((effective[a, b] * window).sum()), abs=1e-5)


def test_resize_kernel_from_transposed_is_exact_without_a_checkerboard():
    """A transposed kernel whose phases agree (k1 = k0 + k2 along each axis)
    is a resize-convolution; the fit finds it, and the layout changes."""
    from compression.decoder import resize_kernel_from_transposed

    rng = np.random.default_rng(3)
    cout, cin = 3, 2
    kernel = np.zeros((3, 3, cout, cin), np.float32)
    for o in range(cout):
        for i in range(cin):
            ky, kx = rng.normal(size=2), rng.normal(size=2)
            ky, kx = np.r_[ky[0], ky.sum(), ky[1]], np.r_[kx[0], kx.sum(), kx[1]]
            kernel[:, :, o, i] = np.outer(ky, kx)
    converted = resize_kernel_from_transposed(kernel)
    assert converted.shape == (3, 3, cin, cout) and converted.dtype == np.float32
    x = rand((1, 5, 6, cin), seed=4)
    want = _stage_output("transposed", kernel, x)
    got = _stage_output("resize", converted, x)
    # Interior only: the transposed op pads zeros, the resize stage reflects.
    np.testing.assert_allclose(got[:, 2:-2, 2:-2], want[:, 2:-2, 2:-2], atol=1e-4)
    with pytest.raises(ValueError, match=r"\[3, 3, out, in\]"):
        resize_kernel_from_transposed(np.zeros((5, 5, 2, 2)))


def test_resize_upsampling_decoder_shapes_and_variables():
    import dataclasses

    config = dataclasses.replace(CONFIG, upsampling="resize")
    with tf.Graph().as_default():
        w_hat = _v1.placeholder(tf.float32, [1, 3, 5, config.channels])
        image = decoder(w_hat, config)
        out = run_initialised(image, {w_hat: rand((1, 3, 5, config.channels))})
        kernels = {v.op.name: v.shape.as_list() for v in _v1.global_variables()
                   if "/u" in v.op.name and v.op.name.endswith("weights")}
    assert out.shape == (1, 48, 80, 3) and np.all(np.abs(out) <= 1)
    f = config.filters[::-1]
    assert kernels == {f"decoder/u{i}/weights": [3, 3, f[i - 1], f[i]] for i in range(1, 5)}
