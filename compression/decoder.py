"""The decoder / generator G: bottleneck (+ noise, + semantics) -> image.

``c3s1-960, R960 x residual_blocks, u480, u240, u120, u60, c7s1-3`` with
reflection padding, instance norm and a tanh output (Agustsson et al. 2018,
appendix A); every filter count scaled by ``config.width``, those of the
upsampling stages by ``config.decoder_tail_width``.

The paper's ``u`` stages are 3x3 transposed convolutions of stride 2.  Their
four output phases see different numbers of kernel taps, which draws a
checkerboard, and four of them in a row a 16-pixel grid, that a GAN phase
amplifies (Odena et al. 2016, "Deconvolution and Checkerboard Artifacts").
``config.upsampling = "resize"`` makes each stage a nearest-neighbour 2x
resize followed by a reflect-padded 3x3 convolution, whose phases all see
the same taps; :func:`resize_kernel_from_transposed` seeds one from a
trained transposed kernel (``train --init-from``).
"""

import numpy as np
import tensorflow as tf

from compression.config import UPSAMPLING
from compression.encoder import conv_norm_relu, layer_scope
from noisegen.layers import instance_norm, reflect_conv2d
from noisegen.slim_compat import slim

__all__ = ["decoder", "decoder_head", "decoder_tail", "residual_block", "fill_dropped_channels",
           "leading_channels", "resize_kernel_from_transposed", "upsample", "DECODER_SCOPE"]

DECODER_SCOPE = "decoder"

_v1 = tf.compat.v1


def residual_block(x, scope):
    """``R k``: two reflect-padded 3x3 convs (norm, ReLU between; norm after) plus identity."""
    k = int(x.shape[-1])
    with _v1.variable_scope(scope):
        y = reflect_conv2d(x, k, 3, 1, scope="conv1")
        y = tf.nn.relu(instance_norm(y, scope="norm1"))
        y = reflect_conv2d(y, k, 3, 1, scope="conv2")
        y = instance_norm(y, scope="norm2")
        return x + y


def leading_channels(kept, channels):
    """bool ``[B, 1, 1, channels]``: True for the first ``kept`` (scalar or ``[B]``) channels."""
    kept = tf.reshape(tf.cast(kept, tf.int32), [-1, 1, 1, 1])
    return tf.range(channels, dtype=tf.int32) < kept


def fill_dropped_channels(w_hat, kept, config):
    """Variable rate: channels ``>= kept`` of ``w_hat`` ``[B, h, w, C]`` become a learned fill.

    ``kept`` is an int scalar or ``[B]`` (per example), in
    ``[config.min_channels, C]``.  The fill, the variable
    ``channel_fill`` ``[C]`` of the current scope (the decoder's), starts
    at 0 and is trained with the decoder; it lets the decoder tell a dropped
    channel from one that holds the centre 0.  Returns ``w_hat`` unchanged
    for a fixed-rate config (no variable is made, so fixed-rate checkpoints
    keep their variable names).
    """
    if not config.variable_rate:
        return w_hat
    fill = _v1.get_variable("channel_fill", [config.channels], tf.float32,
                            initializer=_v1.zeros_initializer())
    if isinstance(kept, tf.Tensor) and kept.dtype == tf.bool:
        keep = kept  # per cell: a file's last channel may be coded in part of the map
    else:
        keep = leading_channels(kept, config.channels)
    return tf.where(tf.broadcast_to(keep, tf.shape(w_hat)), w_hat,
                    tf.broadcast_to(fill, tf.shape(w_hat)))


def decoder_head(w_hat, config, noise=None, semantic=None):
    """The latent-resolution part, ``c3s1`` and the residual blocks, in the current scope.

    ``[B, h, w, C (+C +semantic)] -> [B, h, w, width*960]``.
    """
    parts = [w_hat] + [t for t in (noise, semantic) if t is not None]
    x = tf.concat(parts, axis=-1) if len(parts) > 1 else w_hat
    with layer_scope():
        x = conv_norm_relu(x, config.filters[-1], 3, 1, "c3s1")
        for i in range(config.residual_blocks):
            x = residual_block(x, f"res{i + 1}")
    return x


def decoder_tail(x, config, statistics=None):
    """The upsampling part, ``u480 .. u60, c7s1-3`` and tanh, in the current scope.

    ``[B, h, w, width*960] -> ([B, 16h, 16w, 3], pre_norm)``, where
    ``pre_norm`` lists each upsampling stage's activations before its instance
    norm.  ``statistics``, a list of one ``(mean, variance)`` pair per stage,
    replaces the per-image moments (see :func:`noisegen.layers.instance_norm`).
    """
    pre_norm = []
    with layer_scope():
        for i, k in enumerate(config.tail_filters, start=1):
            with _v1.variable_scope(f"u{i}") as sc:
                x = upsample(x, k, config.upsampling, sc)
                pre_norm.append(x)
                stats = statistics[i - 1] if statistics is not None else None
                x = tf.nn.relu(instance_norm(x, statistics=stats))
        x = reflect_conv2d(x, 3, 7, 1, scope="c7s1_out")
    return tf.tanh(x), pre_norm


def upsample(x, filters, method, scope):
    """One ``u`` stage's convolution: ``[B, h, w, c] -> [B, 2h, 2w, filters]``.

    Variables ``scope/{weights,biases}``; ``weights`` is ``[3, 3, filters, c]``
    for ``"transposed"`` and ``[3, 3, c, filters]`` for ``"resize"``.
    """
    if method == "transposed":
        return slim.conv2d_transpose(x, filters, 3, 2, padding="SAME", scope=scope)
    if method != "resize":
        raise ValueError(f"upsampling must be one of {UPSAMPLING}, got {method!r}")
    size = 2 * tf.shape(x)[1:3]
    # half_pixel_centers=False with an exact factor 2 repeats every pixel 2x2.
    x = _v1.image.resize_nearest_neighbor(x, size, align_corners=False)
    return reflect_conv2d(x, filters, 3, 1, scope=scope)


def _phase_taps(method):
    """The 1-D linear map from a length-3 kernel to each output phase's
    weights on the input pixels at offsets -1, 0, +1: ``[2 * 3, 3]``.

    ``"transposed"`` (SAME, stride 2: TF pads one pixel after):
    ``out[2i] = k0 in[i] + k2 in[i-1]``, ``out[2i+1] = k1 in[i]``.
    ``"resize"`` (nearest 2x, then a 3-tap correlation):
    ``out[2i] = K0 in[i-1] + (K1 + K2) in[i]``,
    ``out[2i+1] = (K0 + K1) in[i] + K2 in[i+1]``.
    """
    taps = np.zeros((2, 3, 3))  # phase, offset (-1, 0, +1), kernel tap
    if method == "transposed":
        taps[0, 0, 2] = taps[0, 1, 0] = taps[1, 1, 1] = 1.0
    else:
        taps[0, 0, 0] = taps[0, 1, 1] = taps[0, 1, 2] = 1.0
        taps[1, 1, 0] = taps[1, 1, 1] = taps[1, 2, 2] = 1.0
    return taps.reshape(6, 3)


def resize_kernel_from_transposed(kernel):
    """The resize-convolution kernel closest to a transposed one.

    ``kernel`` ``[3, 3, out, in]`` (``slim.conv2d_transpose``) ->
    ``[3, 3, in, out]`` (the ``"resize"`` stage's ``slim.conv2d``): the
    least-squares fit of the weights each of the four output phases gives
    each input pixel.  It is exact when the transposed kernel draws no
    checkerboard (``k1 = k0 + k2`` along each axis).  Trained kernels do
    draw one, and the layers after them rely on it: converted so, the
    shipped ``street`` model decoded its validation crops at 13.2 dB instead
    of 21.7, so a converted model must be fine-tuned.
    """
    kernel = np.asarray(kernel, np.float64)
    if kernel.ndim != 4 or kernel.shape[:2] != (3, 3):
        raise ValueError(f"expected a [3, 3, out, in] kernel, got shape {kernel.shape}")
    resize, transposed = _phase_taps("resize"), _phase_taps("transposed")
    fit = np.linalg.pinv(np.kron(resize, resize)) @ np.kron(transposed, transposed)
    flat = kernel.reshape(9, -1)  # taps (row-major ky, kx) x (out, in)
    out = (fit @ flat).reshape(kernel.shape)
    return np.ascontiguousarray(out.transpose(0, 1, 3, 2)).astype(np.float32)


def decoder(w_hat, config, noise=None, semantic=None, reuse=False, scope=DECODER_SCOPE):
    """Decode ``w_hat`` ``[B, h, w, C]`` to an image ``[B, 16h, 16w, 3]`` in [-1, 1].

    ``noise`` (``[B, h, w, C]``, from the noise generator) and ``semantic``
    (``[B, h, w, semantic_channels]``, from the semantic encoder) are
    concatenated to ``w_hat`` when given.
    """
    with _v1.variable_scope(scope, reuse=reuse):
        return decoder_tail(decoder_head(w_hat, config, noise, semantic), config)[0]
