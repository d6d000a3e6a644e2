"""The multiscale PatchGAN discriminator D (Agustsson et al. 2018, appendix A; pix2pixHD).

``config.discriminator_scales`` discriminators see the image at scales 1,
1/2, 1/4, ... (3x3 stride-2 average pooling between scales).  Each is
``C64-C128-C256-C512`` (4x4 stride-2 convs, instance norm except on the
first, leaky ReLU 0.2) and a final 4x4 conv to one logit per patch.  When
``labels_one_hot`` is given, it is concatenated to the input (conditioning).

``config.discriminator_padding`` says what the convolutions see beyond the
image: ``"zero"`` (TensorFlow's "SAME", the paper's and pix2pixHD's) or
``"replicate"`` (the edge pixels repeated, as many as "SAME" would pad, so
the output sizes and variables are the same).  Zeros tell D where the border
is, most at the bottom-right, where "SAME" pads a 4x4 stride-1 convolution
by 2 against 1 at the top-left: a long GAN phase with zero padding grew a
noisy patch in every decode's bottom-right corner (docs/benchmarks.md,
2026-12-06).  With replicated edges a flat region looks the same at the
border as inside; after as many GAN steps the corner error was 7.1 levels
against 19.6 with zeros (the shipped models' was 7.0), though still creeping
up: what is left may be the decoder's own border.
"""

import collections

import numpy as np
import tensorflow as tf

from compression.encoder import layer_scope
from noisegen.layers import instance_norm
from noisegen.slim_compat import slim

__all__ = ["ScaleOutput", "multiscale_discriminator", "DISCRIMINATOR_SCOPE", "replicate_pad"]

DISCRIMINATOR_SCOPE = "discriminator"

ScaleOutput = collections.namedtuple("ScaleOutput", ["logits", "features"])
ScaleOutput.__doc__ = """One scale of D: ``logits`` ``[B, h_s, w_s, 1]`` and the
list of intermediate activations used by the feature-matching loss."""

_v1 = tf.compat.v1


def replicate_pad(x, kernel, stride):
    """Pad ``x`` ``[B, H, W, C]`` by repeating its edge pixels as "SAME" would pad zeros.

    A ``kernel`` x ``kernel`` convolution of ``stride`` with "VALID" padding
    then gives the output size of "SAME" (``ceil(H / stride)``), and its
    border outputs see the image's own edge values instead of zeros.  Works
    for static and dynamic sizes, down to 1x1.
    """
    for axis in (1, 2):
        size = x.shape[axis]
        if size is None:  # a dynamic size: the same arithmetic in the graph
            size = tf.shape(x)[axis]
            total = tf.maximum(((size + stride - 1) // stride - 1) * stride + kernel - size, 0)
            index = tf.clip_by_value(tf.range(size + total) - total // 2, 0, size - 1)
        else:  # static: a constant index keeps the static shape
            total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
            index = np.clip(np.arange(size + total) - total // 2, 0, size - 1).astype(np.int32)
        x = tf.gather(x, index, axis=axis)
    return x


def _conv(x, filters, kernel, stride, padding, scope):
    if padding == "replicate":
        x = replicate_pad(x, kernel, stride)
        return slim.conv2d(x, filters, kernel, stride, padding="VALID", scope=scope)
    return slim.conv2d(x, filters, kernel, stride, padding="SAME", scope=scope)


def _patch_discriminator(x, filters, padding):
    features = []
    for i, k in enumerate(filters):
        x = _conv(x, k, 4, 2, padding, f"conv{i + 1}")
        if i > 0:
            x = instance_norm(x, scope=f"norm{i + 1}")
        # max(x, 0.2x) rather than tf.nn.leaky_relu: Grappler's remapper fails
        # (and logs an error) fusing LeakyRelu in graphs with its gradient.
        x = tf.maximum(x, 0.2 * x)
        features.append(x)
    logits = _conv(x, 1, 4, 1, padding, "logits")
    return ScaleOutput(logits=logits, features=features)


def multiscale_discriminator(images, config, labels_one_hot=None, reuse=False,
                             scope=DISCRIMINATOR_SCOPE):
    """Run D on ``images`` ``[B, H, W, 3]``; a list of :class:`ScaleOutput`, finest first."""
    x = images
    if labels_one_hot is not None:
        x = tf.concat([x, labels_one_hot], axis=-1)
    outputs = []
    with _v1.variable_scope(scope, reuse=reuse), layer_scope():
        for s in range(config.discriminator_scales):
            if s > 0:
                x = slim.avg_pool2d(x, 3, 2, padding="SAME")
            with _v1.variable_scope(f"scale{s + 1}"):
                outputs.append(_patch_discriminator(x, config.discriminator_filters,
                                                    config.discriminator_padding))
    return outputs
