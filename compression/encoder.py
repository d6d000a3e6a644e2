"""The encoder E: image -> bottleneck (Agustsson et al. 2018, appendix A).

``c7s1-60, d120, d240, d480, d960, c3s1-C`` with reflection padding and
instance norm; every filter count scaled by ``config.width``.  The last layer
has no normalisation and no ReLU: the quantiser's centres include negative
values, which a ReLU there would leave unused.
"""

import tensorflow as tf

from compression.config import DOWNSAMPLING
from compression.errors import ConfigError
from noisegen.layers import instance_norm, reflect_conv2d
from noisegen.slim_compat import slim

__all__ = ["encoder", "check_image_size", "conv_norm_relu", "layer_scope", "ENCODER_SCOPE",
           "DOWNSAMPLING"]

ENCODER_SCOPE = "encoder"

_v1 = tf.compat.v1


def check_image_size(height, width):
    """Raise a clear error unless ``height`` and ``width`` are multiples of 16 (when known)."""
    for name, size in (("height", height), ("width", width)):
        if size is None:
            continue
        if size < DOWNSAMPLING or size % DOWNSAMPLING:
            raise ConfigError(
                f"image {name} {size} is not a positive multiple of {DOWNSAMPLING}; "
                "pad images first with compression.pad_to_multiple(image, 16) and crop "
                "the reconstruction back with compression.crop_to"
            )


def layer_scope():
    """The ``slim.arg_scope`` of the encoder, decoder, discriminator and semantic branch.

    Convolutions are linear with biases and no normaliser (norm and
    activation follow as separate ops, so checkpoints keep ``biases`` before
    every instance norm) and NHWC; slim's Xavier initialiser is its default.
    """
    return slim.arg_scope(
        [slim.conv2d, slim.conv2d_transpose],
        activation_fn=None, normalizer_fn=None, data_format="NHWC",
    )


def conv_norm_relu(x, filters, kernel_size, stride, scope):
    """Reflect-padded conv, instance norm, ReLU: ``c{k}s{stride}-filters``.

    Variables ``scope/{weights,biases}`` and ``scope/InstanceNorm/{beta,gamma}``.
    """
    with _v1.variable_scope(scope) as sc:
        x = reflect_conv2d(x, filters, kernel_size, stride, scope=sc)
        return tf.nn.relu(instance_norm(x))


def encoder(images, config, reuse=False, scope=ENCODER_SCOPE):
    """Encode images ``[B, H, W, 3]`` in [-1, 1] to ``w`` ``[B, H/16, W/16, C]``.

    ``H`` and ``W`` must be multiples of 16 (see :func:`check_image_size`).
    """
    images = tf.convert_to_tensor(images, tf.float32)
    if images.shape.rank != 4 or images.shape[-1] != 3:
        raise ConfigError(f"images must have shape [batch, H, W, 3], got {images.shape}")
    check_image_size(images.shape[1], images.shape[2])
    f = config.filters
    with _v1.variable_scope(scope, reuse=reuse), layer_scope():
        x = conv_norm_relu(images, f[0], 7, 1, "c7s1")
        for i, k in enumerate(f[1:], start=1):
            x = conv_norm_relu(x, k, 3, 2, f"d{i}")
        return reflect_conv2d(x, config.channels, 3, 1, scope="c3s1_out")
