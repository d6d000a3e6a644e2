"""Tests for noisegen.layers (what tf-slim lacks) and for the tf-slim layers against the old ones.

``legacy_layers`` is the hand-written implementation the model used before
tf-slim; every slim layer that replaced one of its functions must give the
same output on the same weights (and the same variable names and shapes).
"""

import legacy_layers as old
import numpy as np
import pytest
import tensorflow as tf

from noisegen.layers import INSTANCE_NORM_EPSILON, instance_norm, reflect_conv2d, reflect_pad
from noisegen.slim_compat import batch_norm, slim

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


# --- reflect_conv2d ----------------------------------------------------------


@pytest.mark.parametrize("h, w", [(8, 12), (9, 13), (1, 1)])
def test_reflect_conv2d_stride1_keeps_size(h, w):
    x = np.random.default_rng(0).standard_normal((2, h, w, 3)).astype(np.float32)
    with tf.Graph().as_default():
        y = reflect_conv2d(tf.constant(x), 5, 3, 1, scope="c", activation_fn=None)
        assert y.shape.as_list() == [2, h, w, 5]
        assert run(y, init=True).shape == (2, h, w, 5)


def test_reflect_conv2d_stride2_halves():
    x = np.random.default_rng(1).standard_normal((2, 16, 20, 3)).astype(np.float32)
    with tf.Graph().as_default():
        y = reflect_conv2d(tf.constant(x), 4, 3, 2, scope="c")
        assert y.shape.as_list() == [2, 8, 10, 4]
        assert run(y, init=True).shape == (2, 8, 10, 4)


def test_reflect_conv2d_matches_manual_pad_then_valid():
    x = np.random.default_rng(2).standard_normal((1, 6, 7, 2)).astype(np.float32)
    with tf.Graph().as_default():
        y = reflect_conv2d(tf.constant(x), 3, 5, 1, scope="c", activation_fn=None)
        weights, biases = variable("c/weights"), variable("c/biases")
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


def test_reflect_conv2d_takes_arg_scope_and_fixes_valid_padding():
    with tf.Graph().as_default():
        reg = slim.l2_regularizer(0.5)
        with slim.arg_scope([slim.conv2d], weights_regularizer=reg, padding="SAME"):
            y = reflect_conv2d(tf.zeros([1, 8, 8, 3]), 6, 7, scope="layer")
        shapes = {v.name: v.shape.as_list() for v in v1.global_variables()}
        losses = v1.get_collection(v1.GraphKeys.REGULARIZATION_LOSSES)
    assert shapes == {"layer/weights:0": [7, 7, 3, 6], "layer/biases:0": [6]}
    assert y.shape.as_list() == [1, 8, 8, 6]  # reflect pad 3 + VALID, not SAME on top
    assert len(losses) == 1


# --- instance_norm -------------------------------------------------------------


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
    with tf.Graph().as_default():
        alone = run(instance_norm(tf.constant(x[:1])), init=True)
    np.testing.assert_allclose(alone[0], out[0], atol=1e-5)


def test_instance_norm_applies_affine():
    x = np.random.default_rng(4).standard_normal((2, 5, 5, 2)).astype(np.float32)
    with tf.Graph().as_default():
        y = instance_norm(tf.constant(x))
        beta, gamma = variable("InstanceNorm/beta"), variable("InstanceNorm/gamma")
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            sess.run([beta.assign([1.0, -2.0]), gamma.assign([3.0, 0.5])])
            out = sess.run(y)
    np.testing.assert_allclose(out.mean(axis=(1, 2)), [[1.0, -2.0]] * 2, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(1, 2)), [[3.0, 0.5]] * 2, rtol=1e-3)


def test_instance_norm_with_statistics_shares_variables_and_matches_own_moments():
    x = np.random.default_rng(5).normal(2.0, 3.0, (1, 6, 8, 3)).astype(np.float32)
    with tf.Graph().as_default():
        with v1.variable_scope("u1", reuse=v1.AUTO_REUSE):
            plain = instance_norm(tf.constant(x))
            stats = (tf.constant(x.mean(axis=(0, 1, 2))), tf.constant(x.var(axis=(0, 1, 2))))
            given = instance_norm(tf.constant(x), statistics=stats)
        names = sorted(v.name for v in v1.global_variables())
        a, b = run([plain, given], init=True)
    assert names == ["u1/InstanceNorm/beta:0", "u1/InstanceNorm/gamma:0"]
    np.testing.assert_allclose(a, b, atol=1e-5)


# --- the tf-slim layers against the old hand-written ones ------------------------------


def variable(name):
    return next(v for v in v1.global_variables() if v.name == name + ":0")


def copy_and_run(pairs, fetches, feed=None):
    """Initialise, copy each old variable into its new twin, run ``fetches``."""
    with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        rng = np.random.default_rng(11)
        for old_name, new_name in pairs:
            src = variable(old_name)
            value = rng.standard_normal(src.shape.as_list()).astype(np.float32) * 0.3
            if "variance" in old_name or "gamma" in old_name:
                value = np.abs(value) + 0.5
            sess.run([src.assign(value), variable(new_name).assign(value)])
        return sess.run(fetches, feed)


def same_names(old_scope, new_scope):
    strip = len(old_scope) + 1
    names = sorted(v.name[strip:] for v in v1.global_variables()
                   if v.name.startswith(old_scope + "/"))
    new = sorted(v.name[len(new_scope) + 1:] for v in v1.global_variables()
                 if v.name.startswith(new_scope + "/"))
    assert names == new
    for n in names:
        assert (variable(f"{old_scope}/{n[:-2]}").shape.as_list()
                == variable(f"{new_scope}/{n[:-2]}").shape.as_list())
    return [(f"{old_scope}/{n[:-2]}", f"{new_scope}/{n[:-2]}") for n in names]


def test_fully_connected_matches_old_dense():
    x = np.random.default_rng(7).standard_normal((3, 5)).astype(np.float32)
    with tf.Graph().as_default():
        a = old.dense(tf.constant(x), 4, scope="old")
        b = slim.fully_connected(tf.constant(x), 4, activation_fn=None, scope="new")
        a, b = copy_and_run(same_names("old", "new"), [a, b])
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel, stride, padding", [
    (7, 1, "REFLECT"), (3, 2, "REFLECT"), (3, 1, "REFLECT"), (4, 2, "SAME"), (4, 1, "SAME"),
    (7, 1, "VALID"),
])
def test_conv2d_matches_old(kernel, stride, padding):
    x = np.random.default_rng(8).standard_normal((2, 16, 24, 3)).astype(np.float32)
    with tf.Graph().as_default():
        a = old.conv2d(tf.constant(x), 5, kernel, stride, scope="old", padding=padding)
        if padding == "REFLECT":
            b = reflect_conv2d(tf.constant(x), 5, kernel, stride, scope="new",
                               activation_fn=None)
        else:
            b = slim.conv2d(tf.constant(x), 5, kernel, stride, padding=padding,
                            activation_fn=None, scope="new")
        assert a.shape.as_list() == b.shape.as_list()
        a, b = copy_and_run(same_names("old", "new"), [a, b])
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("static", [True, False])
def test_conv2d_transpose_matches_old(static):
    x = np.random.default_rng(9).standard_normal((2, 3, 5, 4)).astype(np.float32)
    with tf.Graph().as_default():
        ph = v1.placeholder(tf.float32, x.shape if static else [None, None, None, 4])
        a = old.conv2d_transpose(ph, 8, 5, 2, scope="old")
        b = slim.conv2d_transpose(ph, 8, 5, 2, padding="SAME", activation_fn=None,
                                  scope="new")
        assert a.shape.as_list() == b.shape.as_list()
        a, b = copy_and_run(same_names("old", "new"), [a, b], {ph: x})
    assert b.shape == (2, 6, 10, 8)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_instance_norm_matches_old():
    x = np.random.default_rng(10).normal(1.0, 4.0, (2, 6, 7, 3)).astype(np.float32)
    with tf.Graph().as_default():
        a = old.instance_norm(tf.constant(x), scope="old/InstanceNorm")
        b = instance_norm(tf.constant(x), scope="new/InstanceNorm")
        a, b = copy_and_run(same_names("old", "new"), [a, b])
    assert INSTANCE_NORM_EPSILON == 1e-5
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 6), (4, 5, 6, 3)])
def test_batch_norm_matches_old(shape):
    """Outputs agree in both modes; the moving variance now takes the unbiased estimate.

    The old layer averaged the biased batch variance into ``moving_variance``;
    slim's fused kernel averages the unbiased one (``n / (n - 1)`` times larger,
    n the number of values per channel), which is what inference needs.
    """
    x = np.random.default_rng(12).normal(3.0, 2.0, shape).astype(np.float32)
    n = x.size // shape[-1]
    with tf.Graph().as_default():
        training = v1.placeholder(tf.bool, [])
        a = old.batch_norm(tf.constant(x), training, scope="old/BatchNorm", decay=0.9)
        b = batch_norm(tf.constant(x), is_training=training, decay=0.9, epsilon=1e-3,
                       scale=True, scope="new/BatchNorm")
        pairs = same_names("old", "new")
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            out_infer = sess.run([a, b], {training: False})
            out_train = sess.run([a, b], {training: True})
            old_var, new_var = sess.run([variable("old/BatchNorm/moving_variance"),
                                         variable("new/BatchNorm/moving_variance")])
            old_mean, new_mean = sess.run([variable("old/BatchNorm/moving_mean"),
                                           variable("new/BatchNorm/moving_mean")])
    assert [p[0].split("/")[-1] for p in pairs] == ["beta", "gamma", "moving_mean",
                                                   "moving_variance"]
    np.testing.assert_allclose(*out_infer, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(*out_train, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(old_mean, new_mean, rtol=1e-5)
    axes = tuple(range(len(shape) - 1))
    np.testing.assert_allclose(old_var, 0.9 + 0.1 * x.var(axis=axes), rtol=1e-4)
    np.testing.assert_allclose(new_var, 0.9 + 0.1 * x.var(axis=axes, ddof=1), rtol=1e-4)
    assert n > 1


def test_batch_norm_variables_and_collections():
    with tf.Graph().as_default():
        batch_norm(tf.zeros([2, 3, 3, 5]), is_training=True, scale=True)
        all_vars = {v.name: v.shape.as_list() for v in v1.global_variables()}
        trainable = {v.name for v in v1.trainable_variables()}
        assert v1.get_collection(v1.GraphKeys.UPDATE_OPS) == []
    assert all_vars == {
        "BatchNorm/beta:0": [5],
        "BatchNorm/gamma:0": [5],
        "BatchNorm/moving_mean:0": [5],
        "BatchNorm/moving_variance:0": [5],
    }
    assert trainable == {"BatchNorm/beta:0", "BatchNorm/gamma:0"}


def test_batch_norm_refuses_update_ops_collection():
    with tf.Graph().as_default():
        with pytest.raises(ValueError, match="updates_collections must be None"):
            batch_norm(tf.zeros([2, 3]), is_training=True,
                       updates_collections=v1.GraphKeys.UPDATE_OPS)


def test_batch_norm_inference_uses_moving_stats():
    x = np.random.default_rng(6).standard_normal((3, 4, 4, 2)).astype(np.float32)
    with tf.Graph().as_default():
        y = batch_norm(tf.constant(x), is_training=False, epsilon=1.001e-5, scale=True)
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            sess.run([variable("BatchNorm/moving_mean").assign([1.0, -1.0]),
                      variable("BatchNorm/moving_variance").assign([4.0, 0.25])])
            out = sess.run(y)
            after = sess.run([variable("BatchNorm/moving_mean"),
                              variable("BatchNorm/moving_variance")])
    expected = (x - np.array([1.0, -1.0])) / np.sqrt(np.array([4.0, 0.25]) + 1.001e-5)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(after[0], [1.0, -1.0])
    np.testing.assert_array_equal(after[1], [4.0, 0.25])
