"""Semantic label maps as model input (Agustsson et al. 2018, sections 3.3 and 4.2).

Label maps ``[B, H, W]`` of class ids are one-hot encoded with
``config.semantic_classes`` classes.  The decoder receives them through a
small encoder branch of its own (``generator/semantic_encoder``) that maps the
one-hot map to ``[B, H/16, W/16, semantic_channels]``; the discriminator sees
the one-hot map concatenated to its input image at every scale.
"""

import tensorflow as tf

from compression.encoder import conv_norm_relu, layer_scope
from noisegen.layers import reflect_conv2d

__all__ = ["one_hot_labels", "coarse_label_tensor", "semantic_input", "semantic_encoder",
           "SEMANTIC_SCOPE"]

SEMANTIC_SCOPE = "semantic_encoder"

_v1 = tf.compat.v1


def one_hot_labels(labels, num_classes):
    """``[B, H, W]`` int class ids -> float32 ``[B, H, W, num_classes]``.

    An id outside ``0..num_classes-1`` stops the step with an error that names
    the problem (one-hot would silently map it to all zeros).
    """
    labels = tf.cast(labels, tf.int32)
    check = tf.debugging.assert_less(
        labels, num_classes,
        message=(f"label map holds a class id >= semantic_classes={num_classes}; "
                 "set --classes to the number of label ids in the data"),
    )
    check_neg = tf.debugging.assert_non_negative(
        labels, message="label map holds a negative class id")
    with tf.control_dependencies([check, check_neg]):
        return tf.one_hot(labels, num_classes, dtype=tf.float32)


def coarse_label_tensor(labels, factor):
    """``[B, H, W]`` ids as a file with ``label_factor`` ``factor`` stores them: every
    ``factor``-th id of every ``factor``-th row, repeated over its block, cropped
    to ``[H, W]`` (the graph twin of :func:`compression.label_map.coarse_labels`)."""
    shape = tf.shape(labels)
    kept = labels[:, ::factor, ::factor]
    full = tf.repeat(tf.repeat(kept, factor, axis=1), factor, axis=2)
    return full[:, :shape[1], :shape[2]]


def semantic_input(labels, config):
    """``[B, H, W]`` ids -> the one-hot map ``[B, H, W, K]`` the model is given: coarsened
    first as the model's files store them (``config.label_factor``)."""
    if config.label_factor > 1:
        labels = coarse_label_tensor(labels, config.label_factor)
    return one_hot_labels(labels, config.semantic_classes)


def semantic_encoder(one_hot, config, reuse=False, scope=SEMANTIC_SCOPE):
    """Encode a one-hot map ``[B, H, W, K]`` to ``[B, H/16, W/16, semantic_channels]``.

    A quarter-width copy of the image encoder's layout (``c7s1``, four
    stride-2 stages, ``c3s1``), enough to carry region layout to the decoder.
    """
    f = [max(1, k // 4) for k in config.filters]
    with _v1.variable_scope(scope, reuse=reuse), layer_scope():
        x = conv_norm_relu(one_hot, f[0], 7, 1, "c7s1")
        for i, k in enumerate(f[1:], start=1):
            x = conv_norm_relu(x, k, 3, 2, f"d{i}")
        return reflect_conv2d(x, config.semantic_channels, 3, 1, scope="c3s1_out")
