"""The multi-centre quantiser (Agustsson et al. 2018, section 3.1; Mentzer et al. 2018).

Forward: each entry of ``w`` becomes its nearest centre ``c_j``.  Backward:
the gradient of the soft assignment
``w_soft = sum_j c_j softmax(-sigma |w - c_j|)_j``, written as
``w_soft + stop_gradient(w_hard - w_soft)``.  Nothing is rounded on top (a
round has no gradient in TensorFlow, and an earlier implementation lost every
encoder gradient that way).

Beyond the outer centres this soft assignment is flat (every logit moves by
the same amount), so its gradient vanishes there and an encoder output that
drifted past them could never be pulled back; for those entries the backward
pass is the identity (straight-through) instead.  Inside the centres' range it
is exactly the soft-assignment gradient.
"""

import collections

import tensorflow as tf

__all__ = ["Quantized", "quantize", "bound", "bound_parameters", "dequantize", "symbol_counts",
           "METHODS"]

#: The quantiser's backward passes (``CompressionConfig.quantizer``).
METHODS = ("soft", "bounded_ste")

Quantized = collections.namedtuple("Quantized", ["w_hat", "symbols", "w_soft"])
Quantized.__doc__ = """Result of :func:`quantize`.

w_hat: float32 like ``w``, hard values forward, soft gradient backward.
symbols: int32 like ``w``, the centre indices ``0..L-1`` the codec stores.
w_soft: float32 like ``w``, the soft assignment.
"""


def bound(w, centers):
    """Squash ``w`` smoothly into the centres' range, half a spacing beyond each end.

    ``mid + half * tanh((w - mid) / half)`` with ``mid`` the centres' midpoint
    and ``half`` half their span plus half the mean spacing, so every centre,
    the outer ones included, is reached by finite ``w`` (as in finite scalar
    quantisation, Mentzer et al. 2023).  Identity near ``mid``.
    """
    mid, half = bound_parameters(centers)
    return mid + half * tf.tanh((w - mid) / half)


def bound_parameters(centers):
    """``(mid, half)`` of :func:`bound`: the centres' midpoint, and the half width
    of the range it squashes into."""
    lo, hi = min(centers), max(centers)
    return (lo + hi) / 2.0, (hi - lo) / 2.0 + (hi - lo) / (2.0 * (len(centers) - 1))


def quantize(w, centers, sigma=1.0, method="soft"):
    """Quantise ``w`` ``[B, h, w, C]`` to the nearest of ``centers`` (length ``L``).

    ``method="soft"`` (the paper's, and every model's before ``bounded_ste``):
    the soft-assignment gradient described in the module docstring.
    ``method="bounded_ste"``: ``w`` is first squashed by :func:`bound`, then
    the hard value passes the gradient straight through (identity).  With
    ``"soft"`` nothing keeps the encoder inside the centres' range, and
    trained encoders were seen to park most entries beyond the outer centres
    (80% of a channel's symbols at +2 or -2), which wastes the code.
    """
    if method == "bounded_ste":
        w = bound(w, centers)
        c = tf.constant(centers, tf.float32)
        dist = tf.abs(tf.expand_dims(w, -1) - c)
        symbols = tf.argmin(dist, axis=-1, output_type=tf.int32)
        w_hard = tf.gather(c, symbols)
        w_hat = w + tf.stop_gradient(w_hard - w)
        return Quantized(w_hat=w_hat, symbols=symbols, w_soft=w)
    if method != "soft":
        raise ValueError(f"quantizer method must be 'soft' or 'bounded_ste', got {method!r}")
    c = tf.constant(centers, tf.float32)
    dist = tf.abs(tf.expand_dims(w, -1) - c)  # [B, h, w, C, L]
    weights = tf.nn.softmax(-sigma * dist, axis=-1)
    w_soft = tf.reduce_sum(weights * c, axis=-1)
    symbols = tf.argmin(dist, axis=-1, output_type=tf.int32)
    w_hard = tf.gather(c, symbols)
    inside = tf.logical_and(w >= min(centers), w <= max(centers))
    w_backward = tf.where(inside, w_soft, w)
    w_hat = w_backward + tf.stop_gradient(w_hard - w_backward)
    return Quantized(w_hat=w_hat, symbols=symbols, w_soft=w_soft)


def dequantize(symbols, centers):
    """Map symbol indices (any shape, ints in ``0..L-1``) back to centre values."""
    return tf.gather(tf.constant(centers, tf.float32), tf.cast(symbols, tf.int32))


def symbol_counts(symbols, num_centers):
    """Per-channel histogram ``[C, L]`` (float64) of ``symbols`` ``[B, h, w, C]``."""
    one_hot = tf.one_hot(symbols, num_centers, dtype=tf.float64)  # [B, h, w, C, L]
    return tf.reduce_sum(one_hot, axis=[0, 1, 2])
