"""The multiscale PatchGAN discriminator D (Agustsson et al. 2018, appendix A; pix2pixHD).

``config.discriminator_scales`` discriminators see the image at scales 1,
1/2, 1/4, ... (3x3 stride-2 average pooling between scales).  Each is
``C64-C128-C256-C512`` (4x4 stride-2 convs, instance norm except on the
first, leaky ReLU 0.2) and a final 4x4 conv to one logit per patch.  When
``labels_one_hot`` is given, it is concatenated to the input (conditioning).
"""

import collections

import tensorflow as tf

from compression.encoder import layer_scope
from noisegen.layers import instance_norm
from noisegen.slim_compat import slim

__all__ = ["ScaleOutput", "multiscale_discriminator", "DISCRIMINATOR_SCOPE"]

DISCRIMINATOR_SCOPE = "discriminator"

ScaleOutput = collections.namedtuple("ScaleOutput", ["logits", "features"])
ScaleOutput.__doc__ = """One scale of D: ``logits`` ``[B, h_s, w_s, 1]`` and the
list of intermediate activations used by the feature-matching loss."""

_v1 = tf.compat.v1


def _patch_discriminator(x, filters):
    features = []
    for i, k in enumerate(filters):
        x = slim.conv2d(x, k, 4, 2, padding="SAME", scope=f"conv{i + 1}")
        if i > 0:
            x = instance_norm(x, scope=f"norm{i + 1}")
        # max(x, 0.2x) rather than tf.nn.leaky_relu: Grappler's remapper fails
        # (and logs an error) fusing LeakyRelu in graphs with its gradient.
        x = tf.maximum(x, 0.2 * x)
        features.append(x)
    logits = slim.conv2d(x, 1, 4, 1, padding="SAME", scope="logits")
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
                outputs.append(_patch_discriminator(x, config.discriminator_filters))
    return outputs
