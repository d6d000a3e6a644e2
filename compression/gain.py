"""Gain units: one model coding at a continuous range of rates.

Cui et al. 2021 ("Asymmetric Gained Deep Image Compression With Continuous
Rate Adaptation", section 3): a learned gain vector per rate weight scales
the bottleneck channel by channel before the quantiser, and a second one
scales the dequantised values before the decoder.  A smaller encoder gain
puts more of the bottleneck on the middle centre, so fewer bits; the decoder
gain undoes the scaling.  Between two trained rate weights the gains are
interpolated geometrically, which gives a continuous rate.

Here the rate weights are ``config.rate_lambdas`` (``K`` of them, ascending)
and a *rate position* ``t`` in ``[0, K-1]`` names a point on them: integer
``t`` is a trained weight, fractional ``t`` the log-linear interpolation of
the weights and of the two gain tables ``[K, C]`` (stored as log gains,
initialised to 0, so a model fine-tuned from a fixed-rate one starts out
decoding exactly as its source at every position).  Training draws ``t``
uniformly per example, so every position is trained, not only the knots.

A file stores its position as one byte (:data:`POSITION_LEVELS` steps over
``[0, K-1]``); the encoder quantises the position before it encodes, so both
ends use the same gains.

Variables: ``generator/encoder/gain`` (the encoder side: raw weights, no
moving average, like the encoder) and ``generator/decoder/gain``.
"""

import math

import numpy as np
import tensorflow as tf

from compression.errors import ConfigError

__all__ = ["GAIN_NAME", "GAIN_SCALE", "POSITION_LEVELS", "byte_for_weight", "default_byte",
           "default_position", "gain_variables", "gained", "position_from_byte", "position_of",
           "position_to_byte", "rate_weight_at", "rate_weight_of", "regrid_table",
           "sample_positions", "weight_of_byte"]

GAIN_NAME = "gain"

#: The tables hold log gains divided by this.  Adam's steps are about its
#: learning rate whatever a gradient's size, so a log gain stored as it is
#: would move 5e-5 a step at the shipped models' fine-tuning rate: 10,000
#: steps to halve a gain (measured: 250 steps from `general` left the rates
#: of weights 2.5 and 80 within 1% of each other).  Stored so, it moves 100
#: times faster than the weights.
GAIN_SCALE = 100.0

#: A file's rate position is one byte: ``t = byte * (K - 1) / POSITION_LEVELS``.
POSITION_LEVELS = 255

_v1 = tf.compat.v1


def _log_interpolated(table, position):
    """``table`` ``[K, ...]`` interpolated linearly at ``position`` ``[B]`` in ``[0, K-1]``."""
    knots = tf.shape(table)[0]
    position = tf.clip_by_value(tf.cast(position, table.dtype), 0.0,
                                tf.cast(knots - 1, table.dtype))
    low = tf.minimum(tf.cast(tf.floor(position), tf.int32), knots - 2)
    frac = position - tf.cast(low, table.dtype)
    frac = tf.reshape(frac, [-1] + [1] * (len(table.shape) - 1))
    return (1.0 - frac) * tf.gather(table, low) + frac * tf.gather(table, low + 1)


def rate_weight_at(position, config):
    """float64 ``[B]``: the rate weight at each ``position`` ``[B]`` (log-linear between knots)."""
    logs = tf.math.log(tf.constant(config.rate_lambdas, tf.float64))
    return tf.exp(_log_interpolated(logs, position))


def position_of(rate_weight, config):
    """The rate position (a float in ``[0, K-1]``) of a rate weight within
    ``config.rate_lambdas``."""
    knots = config.rate_lambdas
    if not knots[0] <= rate_weight <= knots[-1]:
        raise ConfigError(f"rate weight {rate_weight:g} is outside the model's range "
                          f"{knots[0]:g}-{knots[-1]:g}")
    for i in range(len(knots) - 1):
        if rate_weight <= knots[i + 1]:
            return i + math.log(rate_weight / knots[i]) / math.log(knots[i + 1] / knots[i])
    return float(len(knots) - 1)


def rate_weight_of(position, config):
    """The rate weight at a rate position (a float): :func:`rate_weight_at` without TensorFlow."""
    knots = config.rate_lambdas
    low = min(int(position), len(knots) - 2)
    frac = position - low
    return math.exp((1.0 - frac) * math.log(knots[low]) + frac * math.log(knots[low + 1]))


def byte_for_weight(rate_weight, config):
    """The rate-position byte nearest a rate weight (``encode --rate-weight``)."""
    if not config.rate_adaptive:
        raise ConfigError("this model codes at one rate; --rate-weight applies to models "
                          "trained with --rate-lambdas")
    return position_to_byte(position_of(rate_weight, config), config)


def position_to_byte(position, config):
    """The byte a file stores for ``position`` (rounded to the nearest of 256 steps)."""
    span = len(config.rate_lambdas) - 1
    if not 0.0 <= position <= span:
        raise ConfigError(f"rate position {position} is outside [0, {span}]")
    return int(round(position * POSITION_LEVELS / span))


def position_from_byte(value, config):
    """The rate position a file's byte stands for."""
    return value * (len(config.rate_lambdas) - 1) / POSITION_LEVELS


def weight_of_byte(value, config):
    """The rate weight a file's rate-position byte stands for."""
    return rate_weight_of(position_from_byte(value, config), config)


def default_position(config):
    """The rate position files of a rate-adaptive model take by default: ``lambda_rate``'s,
    on the byte grid files store."""
    return position_from_byte(default_byte(config), config)


def default_byte(config):
    """The rate-position byte a file of ``config``'s model stores by default (None: the
    model has one rate)."""
    if not config.rate_adaptive:
        return None
    return position_to_byte(position_of(config.lambda_rate, config), config)


def gained(values, position, config, scope):
    """``values`` ``[B, h, w, C]`` times the gain of ``scope`` at ``position`` (scalar or ``[B]``).

    Creates (or reuses) the table ``scope/gain`` ``[K, C]`` of log gains over
    :data:`GAIN_SCALE` in the current variable scope's ``scope`` sub-scope;
    call it inside ``variable_scope(GENERATOR_SCOPE)``.
    """
    with _v1.variable_scope(scope):
        table = _v1.get_variable(
            GAIN_NAME, [len(config.rate_lambdas), config.channels], tf.float32,
            initializer=_v1.zeros_initializer())
    position = tf.reshape(tf.cast(position, tf.float32), [-1])
    log_gain = GAIN_SCALE * _log_interpolated(table, position)  # [B or 1, C]
    return values * tf.exp(log_gain)[:, tf.newaxis, tf.newaxis, :]


def regrid_table(table, source_lambdas, lambdas):
    """A gain table ``[K_source, C]`` trained for ``source_lambdas``, moved to ``lambdas``
    ``[K, C]`` (``train --init-from`` with other ``--rate-lambdas``).

    Each row is the source's log gains at that rate weight: interpolated
    linearly in log rate weight between the source's knots, as coding
    between them does, and extrapolated along the nearest two knots beyond
    them (halving the rate weight past the lowest knot scales the gains as
    the last halving did), so the model starts out coding every old rate as
    before and the new ends as the trend of the old ones.
    """
    table = np.asarray(table, np.float64)
    old = np.log(np.asarray(source_lambdas, np.float64))
    if table.ndim != 2 or table.shape[0] != len(old) or len(old) < 2:
        raise ConfigError(f"a gain table of shape {list(table.shape)} does not fit "
                          f"{len(old)} rate weights")
    rows = []
    for x in np.log(np.asarray(lambdas, np.float64)):
        i = int(np.clip(np.searchsorted(old, x) - 1, 0, len(old) - 2))
        frac = (x - old[i]) / (old[i + 1] - old[i])
        rows.append((1.0 - frac) * table[i] + frac * table[i + 1])
    return np.stack(rows).astype(np.float32)


def gain_variables(variables):
    """The gain tables among ``variables`` (``generator/{encoder,decoder}/gain``)."""
    return [v for v in variables if v.op.name.rsplit("/", 1)[-1] == GAIN_NAME]


def sample_positions(batch, config):
    """float32 ``[batch]``: a rate position per training example, uniform on ``[0, K-1]``,
    or between the positions of ``config.train_rate_range`` when it is set."""
    low, high = 0.0, float(len(config.rate_lambdas) - 1)
    if config.train_rate_range:
        low, high = (position_of(w, config) for w in config.train_rate_range)
    return tf.random.uniform([batch], low, high)
