"""Losses of global generative compression (Agustsson et al. 2018, section 3; pix2pixHD).

* Least-squares GAN (Mao et al. 2017) over all discriminator scales:
  D minimises ``E[(D(x) - 1)^2] + E[D(x_hat)^2]``, G minimises
  ``E[(D(x_hat) - 1)^2]``; each summed over scales.
* Distortion: mean squared error over pixels and channels on images in
  [-1, 1] (a value of 0.01 is about 26 dB PSNR on 8-bit images).
* Feature matching: L1 between D's intermediate activations on ``x`` and on
  ``x_hat``, averaged over layers and scales; real activations are constants.
* :func:`color_corrected`: a reconstruction as a file's colour correction
  leaves it, so the distortion terms can score what a user sees.
"""

import math

import tensorflow as tf

from compression.correction import MAX_GAIN

__all__ = [
    "discriminator_loss",
    "generator_adversarial_loss",
    "distortion_loss",
    "color_corrected",
    "ms_ssim_loss",
    "ms_ssim_scales",
    "feature_matching_loss",
]


def discriminator_loss(real, fake):
    """LSGAN D loss; ``real``/``fake`` are lists of :class:`ScaleOutput`."""
    terms = [
        tf.reduce_mean(tf.square(r.logits - 1.0)) + tf.reduce_mean(tf.square(f.logits))
        for r, f in zip(real, fake, strict=True)
    ]
    return tf.add_n(terms)


def generator_adversarial_loss(fake):
    """LSGAN G loss over scales: ``sum_s E[(D_s(x_hat) - 1)^2]``."""
    return tf.add_n([tf.reduce_mean(tf.square(f.logits - 1.0)) for f in fake])


def distortion_loss(images, reconstruction, chroma_weight=1.0):
    """MSE on images in [-1, 1] ``[B, H, W, 3]``, a scalar; chroma errors weighted.

    Each pixel's RGB error ``e`` splits orthogonally into its grey part
    ``mean(e) * (1, 1, 1)`` and its chroma part ``e - mean(e)``, so
    ``|e|^2 = 3 mean(e)^2 + |e - mean(e)|^2``.  The loss is
    ``mean(3 mean(e)^2 + chroma_weight |e - mean(e)|^2) / 3``: plain MSE at
    ``chroma_weight=1``.  Natural photographs hold about a tenth of their
    error energy in chroma, and a fixed-rate bottleneck trained on MSE spends
    its bits on luminance: the decoded colours do not depend on the input's
    at all (measured: the same decoded chroma for a photograph and its grey
    copy).  A weight above 1 makes colour worth coding.
    """
    error = images - reconstruction
    if chroma_weight == 1.0:
        return tf.reduce_mean(tf.square(error))
    grey = tf.reduce_mean(error, axis=-1, keepdims=True)
    chroma = tf.reduce_sum(tf.square(error - grey), axis=-1)
    return tf.reduce_mean(3.0 * tf.square(grey[..., 0]) + chroma_weight * chroma) / 3.0


def color_corrected(images, reconstruction, hold_gain=False):
    """``reconstruction`` ``[B, H, W, 3]`` in [-1, 1] with each example's
    channels mapped to ``gain * (y - mean(y)) + mean(x)``: what the file's
    colour correction (:mod:`compression.correction`) makes of it, with the
    gain ``sqrt(rho) * std(x) / std(y)`` unrounded and clipped to [0, 255/64].

    The mean and the gain are the image's (the crop's, in training), so a loss
    on the result does not charge the decoder for a global colour cast or a
    contrast that every file repairs for a few bytes.  ``hold_gain`` treats the
    gain as a constant for the gradient (a bottleneck optimised in place moves
    too little to change it); otherwise the gradient is the exact one of what
    the decoder will show, which is unchanged by scaling the decoder's output.
    """
    def mean(t):
        return tf.reduce_mean(t, axis=[1, 2], keepdims=True)

    mx = mean(images)
    dx, dy = images - mx, reconstruction - mean(reconstruction)
    sx, sy = tf.sqrt(mean(dx * dx) + 1e-12), tf.sqrt(mean(dy * dy) + 1e-12)
    # max, not relu + sqrt: sqrt's gradient at 0 is infinite (0 * inf = NaN).
    rho = tf.maximum(mean(dx * dy) / (sx * sy), 1e-8)
    gain = tf.clip_by_value(tf.sqrt(rho) * sx / sy, 0.0, MAX_GAIN)
    if hold_gain:
        gain = tf.stop_gradient(gain)
    return tf.clip_by_value(gain * dy + mx, -1.0, 1.0)


# Wang et al. (2003) weights of the five MS-SSIM scales, finest first.
_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _gaussian_taps(size=11, sigma=1.5):
    """The 1-D Gaussian of the 11x11 SSIM window (which is its outer product), float64."""
    x = tf.range(size, dtype=tf.float64) - (size - 1) / 2.0
    g = tf.exp(-tf.square(x) / (2.0 * sigma**2))
    return g / tf.reduce_sum(g)


def ms_ssim_scales(side):
    """How many scales :func:`ms_ssim_loss` uses on images whose smaller side is ``side``."""
    return max(1, min(5, 1 + int(math.floor(math.log2(side / 11.0)))))


def ms_ssim_loss(images, reconstruction, scales=None):
    """``1 - MS-SSIM`` (Wang et al. 2003) on images ``[B, H, W, 3]`` in [-1, 1], batch mean.

    Written out here rather than ``tf.image.ssim_multiscale``, whose
    ``relu(cs) ** weight`` has an infinite gradient at 0 and turns a training
    step into NaN; each scale's term is clipped to ``[1e-6, 1]`` instead.
    Five scales need sides of at least 176 pixels (an 11x11 window at 1/16);
    smaller crops use as many scales as fit, with the weights renormalised.
    ``scales``: how many, for images whose static shape does not say it
    (one graph for many sizes): :func:`ms_ssim_scales` of their smaller side.

    The local statistics are computed in float64 and the result returned as
    float32.  ``sxx = blur(x*x) - blur(x)**2`` cancels catastrophically in
    low precision, and ``train --precision mixed_bfloat16`` (or
    ``mixed_float16``) rewrites every float32 convolution, this blur
    included, to 16 bits: the variances came out negative or zero and the
    loss NaN at the first step.  The mixed-precision rewrites leave float64
    ops alone, and the blur is a few hundred MFLOP against the model's tens
    of GFLOP.
    """
    if scales is None:
        scales = ms_ssim_scales(min(int(images.shape[1]), int(images.shape[2])))
    weights = _MS_SSIM_WEIGHTS[:scales]
    weights = [w / sum(weights) for w in weights]
    c1, c2 = (0.01 * 2.0) ** 2, (0.03 * 2.0) ** 2  # dynamic range 2 ([-1, 1])
    x = tf.cast(images, tf.float64)
    y = tf.cast(tf.clip_by_value(reconstruction, -1.0, 1.0), tf.float64)
    channels = int(images.shape[-1])
    taps = _gaussian_taps()
    size = int(taps.shape[0])
    # The window is separable: a row pass and a column pass cost 22 multiplies a
    # pixel against 121 for the 11x11 window, and the five local statistics are
    # blurred in one call (float64 depthwise convolutions are slow on CPUs).
    rows = tf.tile(tf.reshape(taps, [1, size, 1, 1]), [1, 1, 5 * channels, 1])
    cols = tf.tile(tf.reshape(taps, [size, 1, 1, 1]), [1, 1, 5 * channels, 1])

    def blur(t):
        t = tf.nn.depthwise_conv2d(t, rows, [1, 1, 1, 1], "VALID")
        return tf.nn.depthwise_conv2d(t, cols, [1, 1, 1, 1], "VALID")

    score = 1.0
    for i, weight in enumerate(weights):
        mx, my, bxx, byy, bxy = tf.split(
            blur(tf.concat([x, y, x * x, y * y, x * y], axis=-1)), 5, axis=-1)
        sxx = bxx - mx * mx
        syy = byy - my * my
        sxy = bxy - mx * my
        cs = tf.reduce_mean((2.0 * sxy + c2) / (sxx + syy + c2), axis=[1, 2, 3])
        term = cs
        if i == len(weights) - 1:
            luminance = (2.0 * mx * my + c1) / (mx * mx + my * my + c1)
            term = tf.reduce_mean(luminance * (2.0 * sxy + c2) / (sxx + syy + c2),
                                  axis=[1, 2, 3])
        score = score * tf.pow(tf.clip_by_value(term, 1e-6, 1.0), weight)
        if i < len(weights) - 1:
            x = tf.nn.avg_pool2d(x, 2, 2, "VALID")
            y = tf.nn.avg_pool2d(y, 2, 2, "VALID")
    return tf.cast(1.0 - tf.reduce_mean(score), tf.float32)


def feature_matching_loss(real, fake):
    """Mean L1 distance between D's features on real and reconstructed images."""
    terms = []
    for r, f in zip(real, fake, strict=True):
        for fr, ff in zip(r.features, f.features, strict=True):
            terms.append(tf.reduce_mean(tf.abs(tf.stop_gradient(fr) - ff)))
    return tf.add_n(terms) / float(len(terms))
