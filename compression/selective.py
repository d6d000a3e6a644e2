"""Selective compression (Agustsson et al. 2018, section 4.2): code part of the image.

A binary mask ``[B, h, w, 1]`` at the bottleneck resolution (``h = H/16``)
says which bottleneck entries are coded.  Outside it ``w_hat`` is zeroed and
the decoder synthesises the region from the label map alone, so those
entries cost no bits.  Training samples masks (:func:`sample_masks`) and
counts the distortion terms only inside them (:func:`keep_inside`); the
codec derives the mask from the label map and the classes to keep, and
stores it (:mod:`compression.mask`).
"""

import tensorflow as tf

from compression.config import DOWNSAMPLING

__all__ = ["sample_masks", "apply_mask", "pixel_mask", "keep_inside"]

#: Of the examples that get a sampled mask, this share keeps a random subset of
#: the classes present (the rest keep a random box), as the paper mixes both.
CLASS_MASK_SHARE = 0.5
#: Each class present is kept with this probability in a class mask.
CLASS_KEEP_PROBABILITY = 0.5


def _cells(one_hot):
    """float ``[B, H, W, K]`` -> ``[B, H/16, W/16, K]``: 1 where class k touches the cell."""
    return tf.nn.max_pool2d(one_hot, DOWNSAMPLING, DOWNSAMPLING, "VALID")


def sample_masks(labels_one_hot, probability, seed=None):
    """Training masks ``[B, H/16, W/16, 1]`` (float32, 1 = coded) for a batch.

    Each example independently gets, with ``probability``, a sampled mask,
    otherwise all ones (full coding, so the model stays good at it).  A
    sampled mask is, half the time, the cells touched by a random subset of
    the classes present in its label map (each kept with probability 1/2),
    else a random box of the bottleneck (the paper's "random instances or
    classes, random boxes").  ``labels_one_hot`` ``[B, H, W, K]``.
    """
    cells = _cells(labels_one_hot)
    shape = tf.shape(cells)
    batch, h, w, k = shape[0], shape[1], shape[2], shape[3]
    rng = tf.random.uniform
    chosen = tf.cast(rng(tf.stack([batch, 1, 1, k]), seed=seed) < CLASS_KEEP_PROBABILITY,
                     tf.float32)
    by_class = tf.reduce_max(cells * chosen, axis=-1, keepdims=True)

    def span(size):
        # Two uniform corners per example, sorted: a box of at least one cell.
        a = tf.cast(rng([batch, 2], 0.0, 1.0) * tf.cast(size, tf.float32), tf.int32)
        lo = tf.reduce_min(a, axis=1)
        hi = tf.reduce_max(a, axis=1) + 1
        idx = tf.range(size)[None, :]
        return tf.cast((idx >= lo[:, None]) & (idx < hi[:, None]), tf.float32)

    box = span(h)[:, :, None, None] * span(w)[:, None, :, None]
    draw = rng([batch, 1, 1, 1])
    full = tf.ones_like(by_class)
    sampled = tf.where(draw < probability * CLASS_MASK_SHARE, by_class, box)
    return tf.where(draw < probability, sampled, full)


def apply_mask(w_hat, mask):
    """``w_hat`` ``[B, h, w, C]`` zeroed where ``mask`` ``[B, h, w, 1]`` is 0 (paper 4.2)."""
    return w_hat * tf.cast(mask, w_hat.dtype)


def pixel_mask(mask):
    """A bottleneck mask ``[B, h, w, 1]`` -> the pixels it covers, ``[B, 16h, 16w, 1]``."""
    return tf.repeat(tf.repeat(mask, DOWNSAMPLING, axis=1), DOWNSAMPLING, axis=2)


def keep_inside(images, reconstruction, mask):
    """The reconstruction with the original pasted outside ``mask``: distortion terms of
    ``(images, keep_inside(...))`` count (and send gradients) only inside it."""
    m = pixel_mask(mask)
    return m * reconstruction + (1.0 - m) * tf.stop_gradient(images)
