"""The training graph's price of the bottleneck: what a file would spend on it.

The rate term of ``config.lambda_rate`` (paper section 3.1's ``beta * H(w_hat)``)
needs a code length of ``w_hat`` with a gradient.  Two models price it,
chosen by ``config.rate_model``:

* ``"histogram"``: each channel's symbols cost ``-log2 p`` under the running
  per-channel histogram ``entropy_model/symbol_counts`` ``[C, L]``.  This is
  the per-channel coder of :mod:`compression.entropy_model`.
* ``"context"``: each symbol costs ``-log2 p`` under running counts per
  channel and *context* ``entropy_model/context_counts`` ``[C, K, L]``, the
  context being the left, upper and upper-right neighbours and the two
  channels before it, exactly as :mod:`compression.context_model` codes
  files.  Files are coded in context, but a histogram-priced encoder is
  never told that a symbol its neighbours predict is cheap; under this
  price it is, so training can trade predictable symbols for rate (the
  joint training of a context model of Mentzer et al. 2018, "Conditional
  Probability Models for Deep Image Compression", with counts in place of
  their 3-D PixelCNN).

Either way the cost of an entry is interpolated linearly between the
centres' code lengths (:func:`interpolated_code_lengths`), the tables are
held constant for the gradient, and a context's own neighbours are taken as
they are (as :mod:`compression.refine` does).  Both tables are smoothed as
the codec smooths them, so at the centres the price is the ideal code
length of the payload.
"""

import math

import tensorflow as tf

from compression.config import RATE_MODELS
from compression.context_model import CONTEXT_PRIOR, context_size
from compression.entropy_model import UNIFORM_MIX

__all__ = [
    "ENTROPY_SCOPE",
    "RATE_MODELS",
    "symbol_counts_variable",
    "context_counts_variable",
    "context_index_map",
    "batch_context_counts",
    "context_code_lengths",
    "estimated_bits",
    "estimated_bits_in_context",
    "differentiable_bits",
    "differentiable_bits_in_context",
    "interpolated_code_lengths",
]

ENTROPY_SCOPE = "entropy_model"

_v1 = tf.compat.v1
_LOG2 = math.log(2.0)


def symbol_counts_variable(config):
    """The running symbol histogram ``entropy_model/symbol_counts`` ``[C, L]`` (float64).

    It is what the codec turns into per-channel probabilities, so every
    checkpoint can code files.
    """
    with _v1.variable_scope(ENTROPY_SCOPE, reuse=_v1.AUTO_REUSE):
        return _v1.get_variable(
            "symbol_counts", [config.channels, config.num_centers], dtype=tf.float64,
            initializer=_v1.zeros_initializer(), trainable=False,
            # Every replica assigns the same all-reduced value (build_training_graph).
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )


def _probabilities(counts):
    """``[C, L]`` float64: the per-channel model of ``counts``, smoothed as the codec does."""
    num_centers = int(counts.shape[-1])
    total = tf.reduce_sum(counts, axis=-1, keepdims=True)
    empirical = tf.where(
        tf.broadcast_to(total > 0, tf.shape(counts)),
        counts / tf.maximum(total, 1e-300),
        tf.fill(tf.shape(counts), tf.constant(1.0 / num_centers, tf.float64)),
    )
    return (1.0 - UNIFORM_MIX) * empirical + UNIFORM_MIX / num_centers


def estimated_bits(symbols, counts, mask=None):
    """Ideal code length in bits of ``symbols`` ``[B, h, w, C]`` under ``counts`` ``[C, L]``.

    Uses the same smoothing as :func:`compression.entropy_model.probabilities_from_counts`
    (every symbol has probability > 0), so it estimates the payload size.
    ``mask`` (float64, broadcastable to ``[B, h, w, C]``:
    :func:`compression.model.kept_channel_mask`, a selective mask
    ``[B, h, w, 1]``, or their product): count only the entries a file would code.
    """
    return _masked_sum(_at_symbols(-tf.math.log(_probabilities(counts)) / _LOG2, symbols), mask)


def differentiable_bits(w, counts, centers, mask=None):
    """A code length of the bottleneck ``w`` ``[B, h, w, C]`` that has a gradient.

    Each channel's cost of a symbol, ``-log2 p(c_l)`` under the running
    histogram ``counts`` ``[C, L]`` (held constant), is interpolated linearly
    between the centres and read at ``w`` (clipped to the centres' range).
    At a centre it is that symbol's ideal code length, what
    :func:`estimated_bits` counts; in between, its slope tells the encoder
    which neighbouring centre is cheaper.  ``mask`` as in
    :func:`estimated_bits`.  Returns a float32 scalar, bits.
    """
    lengths = tf.cast(tf.stop_gradient(-tf.math.log(_probabilities(counts)) / _LOG2),
                      tf.float32)  # [C, L]
    return _masked_sum(interpolated_code_lengths(w, lengths, centers), mask)


def interpolated_code_lengths(w, lengths, centers):
    """Each entry's code length, linear between the centres: float32 like ``w``.

    ``lengths`` (float32, ``[..., L]``, its leading axes broadcast against
    ``w``: ``[C, L]`` per channel, or ``[B, h, w, C, L]`` per entry as in
    :mod:`compression.refine`) holds the bits of each centre; ``w`` is
    clipped to the centres' range, so the length is flat beyond it.
    """
    w = tf.clip_by_value(w, centers[0], centers[-1])
    bits = lengths[..., 0]
    for j in range(len(centers) - 1):
        # How far w is across the interval [c_j, c_j+1]: 0 below, 1 above.
        across = tf.clip_by_value((w - centers[j]) / (centers[j + 1] - centers[j]), 0.0, 1.0)
        bits = bits + across * (lengths[..., j + 1] - lengths[..., j])
    return bits


def context_counts_variable(config):
    """Running symbol counts per channel and context ``entropy_model/context_counts``.

    float64 ``[C, K, L]`` with ``K = (L + 1)**5`` (:func:`compression.context_model.context_size`);
    built only for ``config.rate_model == "context"``.  A run started from
    one without it starts from zeros: every context then prices as its
    channel's histogram, and the counts take over as they fill.
    """
    size = context_size(config.num_centers)
    with _v1.variable_scope(ENTROPY_SCOPE, reuse=_v1.AUTO_REUSE):
        return _v1.get_variable(
            "context_counts", [config.channels, size, config.num_centers], dtype=tf.float64,
            initializer=_v1.zeros_initializer(), trainable=False,
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )


def context_index_map(symbols, num_centers):
    """int32 ``[B, h, w, C]``: the context of every symbol of ``symbols`` ``[B, h, w, C]``.

    The graph twin of :func:`compression.context_model.context_indices`
    (the same neighbours in the same order, ``L`` for "outside the map"),
    for each map of the batch.
    """
    context_size(num_centers)  # validates L
    symbols = tf.cast(symbols, tf.int32)
    outside, base = num_centers, num_centers + 1
    padded = tf.pad(symbols, [[0, 0], [1, 0], [1, 1], [0, 0]], constant_values=outside)
    shape = tf.shape(symbols)
    # [..., c + 1] is channel c - 1, [..., c] channel c - 2.
    earlier = tf.concat([tf.fill(tf.concat([shape[:3], [2]], 0), outside),
                         symbols[..., :-1]], axis=3)
    index = padded[:, 1:, :-2]  # left
    for neighbour in (padded[:, :-1, 1:-1], padded[:, :-1, 2:],
                      earlier[..., 1:], earlier[..., :-1]):
        index = index * base + neighbour
    return index


def batch_context_counts(symbols, num_centers, channels):
    """float64 ``[C, K, L]``: the symbols of ``symbols`` ``[B, h, w, C]`` counted per context.

    The sum over the batch of :func:`compression.context_model.context_counts`.
    """
    size = context_size(num_centers)
    # Counts have no gradient; without the stop, tf.distribute's all-reduce of
    # them walks back through the quantiser's rounding to the encoder's
    # variables and fails to find their per-replica copies.
    symbols = tf.stop_gradient(tf.cast(symbols, tf.int32))
    channel = tf.range(channels, dtype=tf.int32)
    flat = (channel * size + context_index_map(symbols, num_centers)) * num_centers + symbols
    counts = tf.math.unsorted_segment_sum(
        tf.ones_like(flat, tf.float64), flat, channels * size * num_centers)
    return tf.reshape(counts, [channels, size, num_centers])


def context_code_lengths(symbols, context_counts, counts):
    """float64 ``[B, h, w, C, L]``: each centre's bits at each entry, given its neighbours.

    The table is :func:`compression.context_model.context_probabilities` of
    ``context_counts`` ``[C, K, L]`` with the marginal of ``counts`` ``[C, L]``
    (the per-channel histogram, smoothed as the codec smooths it); the row of
    entry ``[b, y, x, c]`` is its context's, read from ``symbols`` ``[B, h, w, C]``.
    """
    num_c, size, num_l = (int(d) for d in context_counts.shape)
    marginal = _probabilities(counts)  # [C, L]
    totals = tf.reduce_sum(context_counts, axis=-1, keepdims=True)
    estimate = ((context_counts + CONTEXT_PRIOR * marginal[:, None, :])
                / (totals + CONTEXT_PRIOR))
    table = (1.0 - UNIFORM_MIX) * estimate + UNIFORM_MIX / num_l
    lengths = tf.reshape(-tf.math.log(table) / _LOG2, [num_c * size, num_l])
    rows = tf.range(num_c, dtype=tf.int32) * size + context_index_map(symbols, num_l)
    return tf.gather(lengths, rows)


def estimated_bits_in_context(symbols, context_counts, counts, mask=None):
    """:func:`estimated_bits` under the context model: ideal bits of ``symbols`` ``[B, h, w, C]``.

    What :func:`compression.context_model.encode_symbols_in_context` would
    spend with the table of ``context_counts`` and ``counts`` (bar the
    coder's few bytes of overhead).  ``mask`` as in :func:`estimated_bits`.
    """
    lengths = context_code_lengths(symbols, context_counts, counts)
    return _masked_sum(_at_symbols(lengths, symbols), mask)


def differentiable_bits_in_context(w, symbols, context_counts, counts, centers, mask=None):
    """:func:`differentiable_bits` under the context model (``config.rate_model == "context"``).

    ``w`` ``[B, h, w, C]`` is priced by its entries' context rows, the
    contexts read from the hard ``symbols`` of the same map.  float32 bits.
    """
    lengths = tf.cast(tf.stop_gradient(context_code_lengths(symbols, context_counts, counts)),
                      tf.float32)
    return _masked_sum(interpolated_code_lengths(w, lengths, centers), mask)


def _at_symbols(lengths, symbols):
    """``lengths`` ``[..., L]`` read at ``symbols`` ``[...]``."""
    one_hot = tf.one_hot(symbols, int(lengths.shape[-1]), dtype=lengths.dtype)
    return tf.reduce_sum(one_hot * lengths, axis=-1)


def _masked_sum(bits, mask):
    if mask is not None:
        bits *= tf.cast(mask, bits.dtype)
    return tf.reduce_sum(bits)
