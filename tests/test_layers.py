"""Tests for noisegen.layers: the graph-mode layer primitives under the generator."""

import numpy as np
import pytest
import tensorflow as tf

from noisegen.layers import (
    batch_norm,
    conv2d,
    conv2d_transpose,
    dense,
    instance_norm,
    reflect_pad,
)

v1 = tf.compat.v1


def run(fetches, feed_dict=None, init=False):
    """Evaluate ``fetches`` in a session on the current default graph."""
    with v1.Session() as sess:
        if init:
            sess.run(v1.global_variables_initializer())
        return sess.run(fetches, feed_dict)


def numpy_pad(x, pad, mode):
    return np.pad(x, [(0, 0), (pad, pad), (pad, pad), (0, 0)], mode=mode)


def tiny_map(h, w, c=2):
    """``[1, h, w, c]`` with every entry distinct, so any wrong index shows."""
    return np.arange(h * w * c, dtype=np.float32).reshape(1, h, w, c) * 1.5 - 7.0


# --- reflect_pad -----------------------------------------------------------


@pytest.mark.parametrize(
    "h, w, pad, mode",
    [
        (3, 4, 2, "reflect"),  # pad < min(H, W): true reflection
        (5, 7, 3, "reflect"),
        (2, 5, 2, "symmetric"),  # pad == min(H, W): symmetric fallback
        (1, 1, 1, "symmetric"),
        (1, 1, 3, "edge"),  # pad > min(H, W): edge replication
        (2, 5, 3, "edge"),
    ],
)
def test_reflect_pad_shape_and_values(h, w, pad, mode):
    x = tiny_map(h, w)
    with tf.Graph().as_default():
        y = reflect_pad(tf.constant(x), pad)
        assert y.shape.as_list() == [1, h + 2 * pad, w + 2 * pad, 2]
        out = run(y)
    np.testing.assert_array_equal(out, numpy_pad(x, pad, mode))


def test_reflect_pad_reflects_without_repeating_the_edge():
    # The hand-checked 1-D case: [a, b, c] padded by 2 is [c, b, a, b, c, b, a].
    x = np.array([1.0, 2.0, 3.0], np.float32).reshape(1, 1, 3, 1)
    x = np.concatenate([x, x + 10, x + 20], axis=1)  # rows 1.., 11.., 21..
    with tf.Graph().as_default():
        out = run(reflect_pad(tf.constant(x), 2))
    np.testing.assert_array_equal(out[0, 2, :, 0], [3, 2, 1, 2, 3, 2, 1])
    np.testing.assert_array_equal(out[0, :, 2, 0], [21, 11, 1, 11, 21, 11, 1])


def test_reflect_pad_zero_is_identity():
    with tf.Graph().as_default():
        x = tf.constant(tiny_map(2, 3))
        assert reflect_pad(x, 0) is x


def test_reflect_pad_dynamic_shape_chooses_mode_at_run_time():
    with tf.Graph().as_default():
        ph = v1.placeholder(tf.float32, [None, None, None, 2])
        y = reflect_pad(ph, 3)
        with v1.Session() as sess:
            for (h, w), mode in [
                ((4, 6), "reflect"),
                ((3, 9), "symmetric"),
                ((1, 1), "edge"),
                ((2, 5), "edge"),
            ]:
                x = tiny_map(h, w)
                np.testing.assert_array_equal(sess.run(y, {ph: x}), numpy_pad(x, 3, mode))


# --- conv2d ----------------------------------------------------------------


@pytest.mark.parametrize("h, w", [(8, 12), (9, 13), (1, 1)])
def test_conv2d_reflect_stride1_keeps_size(h, w):
    x = np.random.default_rng(0).standard_normal((2, h, w, 3)).astype(np.float32)
    with tf.Graph().as_default():
        y = conv2d(tf.constant(x), 5, 3, 1, scope="c")
        assert y.shape.as_list() == [2, h, w, 5]
        assert run(y, init=True).shape == (2, h, w, 5)


def test_conv2d_reflect_stride2_halves():
    x = np.random.default_rng(1).standard_normal((2, 16, 20, 3)).astype(np.float32)
    with tf.Graph().as_default():
        y = conv2d(tf.constant(x), 4, 3, 2, scope="c")
        assert y.shape.as_list() == [2, 8, 10, 4]
        assert run(y, init=True).shape == (2, 8, 10, 4)


def test_conv2d_reflect_matches_manual_pad_then_valid():
    x = np.random.default_rng(2).standard_normal((1, 6, 7, 2)).astype(np.float32)
    with tf.Graph().as_default():
        y = conv2d(tf.constant(x), 3, 5, 1, scope="c")
        weights = [v for v in v1.global_variables() if v.name == "c/weights:0"][0]
        biases = [v for v in v1.global_variables() if v.name == "c/biases:0"][0]
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            sess.run(biases.assign([0.5, -1.0, 2.0]))
            out, kernel = sess.run([y, weights])
    padded = numpy_pad(x, 2, "reflect")
    expected = np.zeros((1, 6, 7, 3), np.float32)
    for i in range(6):
        for j in range(7):
            patch = padded[0, i:i + 5, j:j + 5, :]
            expected[0, i, j] = np.tensordot(patch, kernel, axes=3) + [0.5, -1.0, 2.0]
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_conv2d_variables():
    with tf.Graph().as_default():
        conv2d(tf.zeros([1, 8, 8, 3]), 6, 7, scope="layer")
        conv2d(tf.zeros([1, 8, 8, 3]), 2, 3, scope="nobias", use_bias=False)
        shapes = {v.name: v.shape.as_list() for v in v1.global_variables()}
    assert shapes == {
        "layer/weights:0": [7, 7, 3, 6],
        "layer/biases:0": [6],
        "nobias/weights:0": [3, 3, 3, 2],
    }


# --- conv2d_transpose --------------------------------------------------------


def test_conv2d_transpose_doubles_static():
    with tf.Graph().as_default():
        y = conv2d_transpose(tf.zeros([2, 3, 5, 4]), 8, 5, 2, scope="t")
        assert y.shape.as_list() == [2, 6, 10, 8]
        assert run(y, init=True).shape == (2, 6, 10, 8)
        shapes = {v.name: v.shape.as_list() for v in v1.global_variables()}
    assert shapes == {"t/weights:0": [5, 5, 8, 4], "t/biases:0": [8]}


@pytest.mark.parametrize("h, w", [(3, 5), (1, 1), (4, 7)])
def test_conv2d_transpose_doubles_dynamic(h, w):
    with tf.Graph().as_default():
        ph = v1.placeholder(tf.float32, [None, None, None, 4])
        y = conv2d_transpose(ph, 8, 5, 2, scope="t")
        assert y.shape.as_list() == [None, None, None, 8]
        out = run(y, {ph: np.ones((3, h, w, 4), np.float32)}, init=True)
    assert out.shape == (3, 2 * h, 2 * w, 8)


def test_conv2d_transpose_partially_known_shape():
    with tf.Graph().as_default():
        ph = v1.placeholder(tf.float32, [None, 3, None, 4])
        y = conv2d_transpose(ph, 2, 3, 2, scope="t")
        assert y.shape.as_list() == [None, 6, None, 2]
        out = run(y, {ph: np.ones((1, 3, 5, 4), np.float32)}, init=True)
    assert out.shape == (1, 6, 10, 2)


# --- normalisation -----------------------------------------------------------


def test_instance_norm_zero_mean_unit_variance_per_example_channel():
    rng = np.random.default_rng(3)
    scale = np.array([0.1, 3.0, 20.0], np.float32)
    shift = np.array([-5.0, 0.0, 40.0], np.float32)
    x = (rng.standard_normal((4, 9, 11, 3)) * scale + shift).astype(np.float32)
    x[1] *= 7.0  # a very different example must not influence the others
    with tf.Graph().as_default():
        y = instance_norm(tf.constant(x))
        out = run(y, init=True)
        names = sorted(v.name for v in v1.global_variables())
    assert names == ["InstanceNorm/beta:0", "InstanceNorm/gamma:0"]
    np.testing.assert_allclose(out.mean(axis=(1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(1, 2)), 1.0, atol=2e-3)
    # Per-example: the normalised first example is the same when it is alone.
    with tf.Graph().as_default():
        alone = run(instance_norm(tf.constant(x[:1])), init=True)
    np.testing.assert_allclose(alone[0], out[0], atol=1e-5)


def test_instance_norm_applies_affine():
    x = np.random.default_rng(4).standard_normal((2, 5, 5, 2)).astype(np.float32)
    with tf.Graph().as_default():
        y = instance_norm(tf.constant(x))
        beta, gamma = sorted(v1.global_variables(), key=lambda v: v.name)
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            sess.run([beta.assign([1.0, -2.0]), gamma.assign([3.0, 0.5])])
            out = sess.run(y)
    np.testing.assert_allclose(out.mean(axis=(1, 2)), [[1.0, -2.0]] * 2, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(1, 2)), [[3.0, 0.5]] * 2, rtol=1e-3)


def test_batch_norm_variables_and_collections():
    with tf.Graph().as_default():
        batch_norm(tf.zeros([2, 3, 3, 5]), True)
        all_vars = {v.name: v.shape.as_list() for v in v1.global_variables()}
        trainable = {v.name for v in v1.trainable_variables()}
        moving = {v.name for v in v1.moving_average_variables()}
    assert all_vars == {
        "BatchNorm/beta:0": [5],
        "BatchNorm/gamma:0": [5],
        "BatchNorm/moving_mean:0": [5],
        "BatchNorm/moving_variance:0": [5],
    }
    assert trainable == {"BatchNorm/beta:0", "BatchNorm/gamma:0"}
    assert moving == {"BatchNorm/moving_mean:0", "BatchNorm/moving_variance:0"}


def test_batch_norm_training_step_updates_moving_stats_by_decay():
    x = np.random.default_rng(5).normal(3.0, 2.0, (4, 6, 6, 2)).astype(np.float32)
    with tf.Graph().as_default():
        y = batch_norm(tf.constant(x), True, decay=0.9)
        mean_var, var_var = [
            v for v in v1.global_variables() if "moving" in v.name
        ]
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            out = sess.run(y)
            moving_mean, moving_var = sess.run([mean_var, var_var])
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(moving_mean, 0.1 * x.mean(axis=(0, 1, 2)), rtol=1e-4)
    np.testing.assert_allclose(moving_var, 0.9 + 0.1 * x.var(axis=(0, 1, 2)), rtol=1e-4)


def test_batch_norm_inference_uses_moving_stats():
    x = np.random.default_rng(6).standard_normal((3, 4, 4, 2)).astype(np.float32)
    with tf.Graph().as_default():
        y = batch_norm(tf.constant(x), False, epsilon=0.0)
        beta, gamma, mean_var, var_var = sorted(
            v1.global_variables(), key=lambda v: v.name
        )
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            sess.run([mean_var.assign([1.0, -1.0]), var_var.assign([4.0, 0.25])])
            out = sess.run(y)
            after = sess.run([mean_var, var_var])
    expected = (x - np.array([1.0, -1.0])) / np.sqrt([4.0, 0.25])
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(after[0], [1.0, -1.0])
    np.testing.assert_array_equal(after[1], [4.0, 0.25])


def test_batch_norm_rejects_non_scalar_training():
    with tf.Graph().as_default():
        with pytest.raises(ValueError, match="training"):
            batch_norm(tf.zeros([2, 3]), tf.constant([True, False]))


# --- dense -------------------------------------------------------------------


def test_dense_variables_and_value():
    x = np.random.default_rng(7).standard_normal((3, 5)).astype(np.float32)
    with tf.Graph().as_default():
        y = dense(tf.constant(x), 4, scope="fc")
        dense(tf.constant(x), 2, scope="fc_nobias", use_bias=False)
        shapes = {v.name: v.shape.as_list() for v in v1.global_variables()}
        weights = [v for v in v1.global_variables() if v.name == "fc/weights:0"][0]
        biases = [v for v in v1.global_variables() if v.name == "fc/biases:0"][0]
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            sess.run(biases.assign([1.0, 2.0, 3.0, 4.0]))
            out, kernel = sess.run([y, weights])
    assert shapes == {
        "fc/weights:0": [5, 4],
        "fc/biases:0": [4],
        "fc_nobias/weights:0": [5, 2],
    }
    np.testing.assert_allclose(out, x @ kernel + [1.0, 2.0, 3.0, 4.0], rtol=1e-5, atol=1e-5)


def test_dense_in_enclosing_scope_and_reuse():
    with tf.Graph().as_default():
        with v1.variable_scope("outer"):
            dense(tf.zeros([1, 3]), 2)
        with v1.variable_scope("outer", reuse=True):
            dense(tf.zeros([1, 3]), 2)
        names = sorted(v.name for v in v1.global_variables())
    assert names == ["outer/biases:0", "outer/weights:0"]


def test_dense_needs_known_depth():
    with tf.Graph().as_default():
        ph = v1.placeholder(tf.float32, [None, None])
        with pytest.raises(ValueError, match="input depth"):
            dense(ph, 3, scope="fc")
