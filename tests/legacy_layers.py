"""The hand-written layers of noisegen/layers.py before tf-slim (commit f668ca0), as a reference.

tests/test_layers.py checks that each tf-slim layer that replaced one of
these gives the same output on the same weights.  Kept verbatim apart from
``reflect_pad``, which did not change and is imported from noisegen.layers.
"""

import contextlib

import tensorflow as tf

from noisegen.layers import reflect_pad

__all__ = [
    "dense",
    "conv2d",
    "conv2d_transpose",
    "batch_norm",
    "instance_norm",
]

_v1 = tf.compat.v1


def _scope(name):
    """A variable scope named ``name``, or the current one when ``name`` is None."""
    if name is None:
        return contextlib.nullcontext()
    return _v1.variable_scope(name)


def _xavier():
    return _v1.glorot_uniform_initializer()


def dense(x, units, scope=None, use_bias=True):
    """Fully connected layer: ``[B, in] -> [B, units]``."""
    with _scope(scope):
        fan_in = x.shape[-1]
        if fan_in is None:
            raise ValueError(f"dense layer {scope!r} needs a known input depth")
        w = _v1.get_variable("weights", [int(fan_in), units], initializer=_xavier())
        y = tf.matmul(x, w)
        if use_bias:
            b = _v1.get_variable("biases", [units], initializer=_v1.zeros_initializer())
            y = tf.nn.bias_add(y, b)
        return y


def conv2d(x, filters, kernel_size, stride=1, scope=None, padding="REFLECT", use_bias=True):
    """2-D convolution ``[B,H,W,Cin] -> [B,H/stride,W/stride,filters]``.

    ``padding`` is ``"REFLECT"`` (reflect-pad by ``kernel_size // 2`` then a
    VALID convolution, as the paper's encoder and decoder do), ``"SAME"`` or
    ``"VALID"``.
    """
    with _scope(scope):
        cin = x.shape[-1]
        if cin is None:
            raise ValueError(f"conv layer {scope!r} needs a known input depth")
        w = _v1.get_variable(
            "weights", [kernel_size, kernel_size, int(cin), filters], initializer=_xavier()
        )
        if padding == "REFLECT":
            x = reflect_pad(x, kernel_size // 2)
            padding = "VALID"
        y = tf.nn.conv2d(x, w, strides=[1, stride, stride, 1], padding=padding)
        if use_bias:
            b = _v1.get_variable("biases", [filters], initializer=_v1.zeros_initializer())
            y = tf.nn.bias_add(y, b)
        return y


def conv2d_transpose(x, filters, kernel_size, stride=2, scope=None, use_bias=True):
    """Transposed convolution, ``same`` padding: ``[B,H,W,Cin] -> [B,H*s,W*s,filters]``."""
    with _scope(scope):
        cin = x.shape[-1]
        if cin is None:
            raise ValueError(f"transposed conv layer {scope!r} needs a known input depth")
        w = _v1.get_variable(
            "weights", [kernel_size, kernel_size, filters, int(cin)], initializer=_xavier()
        )
        dyn = tf.shape(x)
        # Static sizes where known keep downstream shapes static (useful for
        # users and for shape checks); dynamic ones otherwise.
        h = x.shape[1] * stride if x.shape[1] is not None else dyn[1] * stride
        wd = x.shape[2] * stride if x.shape[2] is not None else dyn[2] * stride
        out_shape = tf.stack([dyn[0], h, wd, filters])
        y = tf.nn.conv2d_transpose(
            x, w, out_shape, strides=[1, stride, stride, 1], padding="SAME"
        )
        static_b = x.shape[0]
        y.set_shape(
            [
                static_b,
                x.shape[1] * stride if x.shape[1] is not None else None,
                x.shape[2] * stride if x.shape[2] is not None else None,
                filters,
            ]
        )
        if use_bias:
            b = _v1.get_variable("biases", [filters], initializer=_v1.zeros_initializer())
            y = tf.nn.bias_add(y, b)
        return y


def batch_norm(x, training, scope="BatchNorm", decay=0.99, epsilon=1e-3):
    """Batch normalisation over every axis but the last.

    ``training`` is a Python bool or a scalar bool tensor.  In training the
    batch statistics normalise ``x`` and the moving averages are updated as a
    control dependency of the output, so any step that evaluates the output
    in training mode updates them: callers need no ``UPDATE_OPS`` collection.
    At inference the moving statistics are used, so an example's output does
    not depend on the rest of its batch.

    Variables: ``beta``, ``gamma`` (trainable), ``moving_mean``,
    ``moving_variance`` (non-trainable, also in ``MOVING_AVERAGE_VARIABLES``).
    """
    with _v1.variable_scope(scope):
        depth = int(x.shape[-1])
        beta = _v1.get_variable("beta", [depth], initializer=_v1.zeros_initializer())
        gamma = _v1.get_variable("gamma", [depth], initializer=_v1.ones_initializer())
        collections = [
            _v1.GraphKeys.GLOBAL_VARIABLES,
            _v1.GraphKeys.MOVING_AVERAGE_VARIABLES,
        ]
        moving_mean = _v1.get_variable(
            "moving_mean", [depth], initializer=_v1.zeros_initializer(),
            trainable=False, collections=collections,
        )
        moving_var = _v1.get_variable(
            "moving_variance", [depth], initializer=_v1.ones_initializer(),
            trainable=False, collections=collections,
        )
        axes = list(range(len(x.shape) - 1))

        def train_branch():
            mean, var = tf.nn.moments(x, axes)
            update_mean = moving_mean.assign_sub((moving_mean - mean) * (1.0 - decay))
            update_var = moving_var.assign_sub((moving_var - var) * (1.0 - decay))
            with tf.control_dependencies([update_mean, update_var]):
                return tf.nn.batch_normalization(x, mean, var, beta, gamma, epsilon)

        def infer_branch():
            return tf.nn.batch_normalization(
                x, moving_mean, moving_var, beta, gamma, epsilon
            )

        if isinstance(training, bool):
            return train_branch() if training else infer_branch()
        training = tf.convert_to_tensor(training, dtype=tf.bool)
        if training.shape.rank not in (None, 0):
            raise ValueError(
                "training must be a Python bool or a scalar bool tensor, "
                f"got shape {training.shape}"
            )
        y = tf.cond(training, train_branch, infer_branch)
        y.set_shape(x.shape)
        return y


def instance_norm(x, scope="InstanceNorm", epsilon=1e-5, statistics=None):
    """Instance normalisation: per example and channel over H and W, with a learned affine.

    ``[B,H,W,C] -> [B,H,W,C]``; variables ``beta`` and ``gamma``.  With
    ``statistics=(mean, variance)`` (each ``[C]``) those are used instead of
    the moments of ``x``: a tiled decoder computes them over the whole image
    and normalises each tile with them, so tiles join without seams.
    """
    with _v1.variable_scope(scope):
        depth = int(x.shape[-1])
        beta = _v1.get_variable("beta", [depth], initializer=_v1.zeros_initializer())
        gamma = _v1.get_variable("gamma", [depth], initializer=_v1.ones_initializer())
        if statistics is None:
            mean, var = tf.nn.moments(x, [1, 2], keepdims=True)
        else:
            mean, var = statistics
        return tf.nn.batch_normalization(x, mean, var, beta, gamma, epsilon)
