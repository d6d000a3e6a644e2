"""Losses of global generative compression (Agustsson et al. 2018, section 3; pix2pixHD).

* Least-squares GAN (Mao et al. 2017) over all discriminator scales:
  D minimises ``E[(D(x) - 1)^2] + E[D(x_hat)^2]``, G minimises
  ``E[(D(x_hat) - 1)^2]``; each summed over scales.
* Distortion: mean squared error over pixels and channels on images in
  [-1, 1] (a value of 0.01 is about 26 dB PSNR on 8-bit images).
* Feature matching: L1 between D's intermediate activations on ``x`` and on
  ``x_hat``, averaged over layers and scales; real activations are constants.
"""

import tensorflow as tf

__all__ = [
    "discriminator_loss",
    "generator_adversarial_loss",
    "distortion_loss",
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


def distortion_loss(images, reconstruction):
    """MSE on images in [-1, 1], a scalar."""
    return tf.reduce_mean(tf.square(images - reconstruction))


def feature_matching_loss(real, fake):
    """Mean L1 distance between D's features on real and reconstructed images."""
    terms = []
    for r, f in zip(real, fake, strict=True):
        for fr, ff in zip(r.features, f.features, strict=True):
            terms.append(tf.reduce_mean(tf.abs(tf.stop_gradient(fr) - ff)))
    return tf.add_n(terms) / float(len(terms))
