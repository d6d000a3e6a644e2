"""The layer pieces tf-slim lacks: reflection padding and instance norm with given moments.

Every layer of this project is a tf-slim layer (``slim.conv2d``,
``slim.conv2d_transpose``, ``slim.fully_connected``, ``slim.batch_norm``,
``slim.instance_norm``) under ``slim.arg_scope``.  Slim has no reflection
padding, which the paper's encoder and decoder use everywhere (appendix A),
and its instance norm always normalises by the moments of its own input,
which a tiled decoder cannot use.  Those two are here, on slim's variables.
"""

import tensorflow as tf

from noisegen.slim_compat import slim

__all__ = ["reflect_pad", "reflect_conv2d", "instance_norm", "INSTANCE_NORM_EPSILON"]

#: Epsilon of every instance norm (slim's default is 1e-6; checkpoints were trained with 1e-5).
INSTANCE_NORM_EPSILON = 1e-5

_v1 = tf.compat.v1


def reflect_pad(x, pad):
    """Reflection padding of ``pad`` pixels on H and W: ``[B,H,W,C] -> [B,H+2p,W+2p,C]``.

    Reflection needs ``pad < H`` and ``pad < W``; for tiny maps (such as a 1x1
    bottleneck) it falls back to symmetric padding, which is defined down to
    ``pad <= H``, and then to edge replication.
    """
    if pad == 0:
        return x
    paddings = [[0, 0], [pad, pad], [pad, pad], [0, 0]]

    def reflect():
        return tf.pad(x, paddings, mode="REFLECT")

    def symmetric():
        return tf.pad(x, paddings, mode="SYMMETRIC")

    def edge():
        # Edge replication, one pixel at a time via SYMMETRIC on the growing map.
        y = x
        for _ in range(pad):
            y = tf.pad(y, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
        return y

    h, w = x.shape[1], x.shape[2]
    if h is not None and w is not None:
        small = min(int(h), int(w))
        if pad < small:
            return reflect()
        return symmetric() if pad <= small else edge()
    # Unknown size (inference graphs take any image): the same choice at run
    # time, so a 16-pixel-high image (1-row bottleneck) does not fail in REFLECT.
    dyn = tf.shape(x)
    small = tf.minimum(dyn[1], dyn[2])
    return tf.cond(
        pad < small, reflect, lambda: tf.cond(pad <= small, symmetric, edge)
    )


def reflect_conv2d(x, filters, kernel_size, stride=1, scope=None, **kwargs):
    """Reflect-pad by ``kernel_size // 2``, then ``slim.conv2d`` VALID: ``c{k}s{stride}``.

    ``[B,H,W,Cin] -> [B,H/stride,W/stride,filters]`` (``H``, ``W`` multiples of
    ``stride``).  ``kwargs`` go to ``slim.conv2d`` (an enclosing
    ``slim.arg_scope`` supplies the rest); ``padding`` is fixed to VALID.
    """
    return slim.conv2d(reflect_pad(x, kernel_size // 2), filters, kernel_size, stride,
                       padding="VALID", scope=scope, **kwargs)


def instance_norm(x, scope="InstanceNorm", statistics=None):
    """Instance norm: per example and channel over H and W, learned ``beta`` and ``gamma``.

    ``[B,H,W,C] -> [B,H,W,C]``.  Without ``statistics`` this is
    ``slim.instance_norm``.  With ``statistics=(mean, variance)`` (each
    ``[C]``) those replace the moments of ``x``, on the same variables: a
    tiled decoder computes them over the whole image and normalises each tile
    with them, so tiles join without seams.
    """
    if statistics is None:
        return slim.instance_norm(x, epsilon=INSTANCE_NORM_EPSILON, scope=scope)
    with _v1.variable_scope(scope):
        depth = int(x.shape[-1])
        beta = slim.model_variable("beta", [depth], initializer=_v1.zeros_initializer())
        gamma = slim.model_variable("gamma", [depth], initializer=_v1.ones_initializer())
        mean, variance = statistics
        return tf.nn.batch_normalization(x, mean, variance, beta, gamma, INSTANCE_NORM_EPSILON)
