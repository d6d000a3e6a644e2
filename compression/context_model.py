"""Context-adaptive entropy coding of the quantised bottleneck.

:mod:`compression.entropy_model` codes every symbol of channel ``c`` with one
fixed distribution.  Neighbouring symbols of the bottleneck are far from
independent, though: at the shipped models' rates a symbol's left, upper
and upper-right neighbours and the symbols at the same place in the two
channels before it predict it well.  This module conditions each symbol's
distribution on that *context* (all five are decoded when the symbol is
reached) and codes it with ``constriction``'s range coder, in the same
channel-major, row-major order as the per-channel coder.

Measured on the shipped models (whole val images, tables fitted on the
training images, docs/benchmarks.md): 17-19% fewer payload bits on CamVid
and 14-16% on BSDS500 at k = 3 and 4 channels, which lets a file code one
more channel at the same size.

The model is a table of symbol counts ``[C, K, L]`` per channel and context
(``K = (L + 1)**5``: each of the five neighbours is one of ``L`` symbols or
"outside the map"), fitted by counting the symbols of real images
(:func:`context_counts`; ``gcompress export --entropy-data``).  Each context's
distribution is its counts smoothed towards the channel's marginal
distribution (weight :data:`CONTEXT_PRIOR` symbols) and mixed with the
uniform one as the per-channel model is, so every symbol stays codable in
every context.  Like :mod:`compression.entropy_model`, nothing here needs
TensorFlow, and the tables are computed elementwise in float64 so encoder
and decoder machines derive them bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from constriction import stream as _stream

from .entropy_model import (
    UNIFORM_MIX,
    _check_probabilities,
    _check_shape,
    _check_symbols,
    _coded_counts,
    _stream_bytes,
    _stream_words,
    check_last_rows,
    verified,
)
from .errors import CorruptFileError

__all__ = [
    "CONTEXT_PRIOR",
    "MAX_CONTEXT_CENTERS",
    "context_counts",
    "context_indices",
    "context_probabilities",
    "context_size",
    "decode_symbols_in_context",
    "encode_symbols_in_context",
    "minimum_bits_in_context",
]

#: Weight, in symbols, of the channel's marginal distribution in every
#: context's estimate: a context seen a few times in fitting leans on the
#: marginal, a frequent one on its own counts.  The payload size is flat in
#: it (CamVid val, k = 3: 3,850 bits an image at 0.5, 3,847 at 4, 3,846 at 8).
CONTEXT_PRIOR = 4.0
#: Largest ``L`` with a context model: the table has ``(L + 1)**5 * L`` entries
#: a channel (7**5 * 6 = 100,842 at 6), beyond which fitting data is too sparse.
MAX_CONTEXT_CENTERS = 6

# The neighbours, in the order their values form the context index (the left
# one varies slowest, so a row's other four give one base index per symbol).
# Chosen on the shipped models' symbols (payload bits an image at k = 4,
# tables fitted on train, scored on val; street on CamVid / general on
# BSDS500): left, top, top right, previous channel 5,025 / 5,038; + the
# channel before 4,905 / 4,925.  Without the left neighbour (top left
# instead) a whole row could decode in one call, but it costs 1.4% / 5.2%
# more; with it, each symbol is one call (under 1 us: see
# decode_symbols_in_context).
_NEIGHBOURS = ("left", "top", "top_right", "previous_channel", "channel_before_that")


def context_size(num_centers: int) -> int:
    """``K = (L + 1)**5``: contexts a channel has, for ``L`` quantiser centres."""
    num_centers = int(num_centers)
    if not 2 <= num_centers <= MAX_CONTEXT_CENTERS:
        raise ValueError(f"context models support 2..{MAX_CONTEXT_CENTERS} centres, "
                         f"got {num_centers}")
    return (num_centers + 1) ** len(_NEIGHBOURS)


def _checked(symbols: np.ndarray, num_centers: int, channels: int | None = None) -> np.ndarray:
    """Validated ``symbols`` as int64 (``channels``: the table's ``C``)."""
    context_size(num_centers)  # validates L
    return _check_symbols(symbols, num_centers, channels, "the table has").astype(np.int64)


def context_indices(symbols: np.ndarray, num_centers: int) -> np.ndarray:
    """The context of every symbol of a map.

    The context of ``symbols[y, x, c]`` is the tuple (``[y, x-1, c]``,
    ``[y-1, x, c]``, ``[y-1, x+1, c]``, ``[y, x, c-1]``, ``[y, x, c-2]``), each replaced by
    ``L`` ("outside") where it falls off the map, read as a base-``L+1``
    number.

    Args:
        symbols: integer array ``[h, w, C]`` with values in ``0 .. L-1``.
        num_centers: ``L``.

    Returns:
        int64 array ``[h, w, C]`` with values in ``0 .. K-1``.
    """
    return _contexts(_checked(symbols, num_centers), num_centers)


def _contexts(symbols: np.ndarray, num_centers: int) -> np.ndarray:
    """:func:`context_indices` of already validated int64 ``symbols``."""
    height, width, channels = symbols.shape
    outside = num_centers
    base = num_centers + 1
    padded = np.pad(symbols, ((1, 0), (1, 1), (0, 0)), constant_values=outside)
    earlier = np.concatenate(
        [np.full((height, width, 2), outside, np.int64), symbols[:, :, :max(channels - 1, 0)]],
        axis=2)  # [..., c + 1] is channel c - 1, [..., c] channel c - 2
    index = padded[1:, :-2]  # left
    for neighbour in (padded[:-1, 1:-1], padded[:-1, 2:], earlier[:, :, 1:], earlier[:, :, :-1]):
        index = index * base + neighbour
    return index


def context_counts(symbols: np.ndarray, num_centers: int) -> np.ndarray:
    """Symbol counts per channel and context of one map: float64 ``[C, K, L]``.

    Sum it over the symbol maps of many images to fit a context model.
    """
    symbols = _checked(symbols, num_centers)
    channels = symbols.shape[2]
    size = context_size(num_centers)
    contexts = _contexts(symbols, num_centers)
    channel = np.arange(channels)[None, None, :]
    flat = ((channel * size + contexts) * num_centers + symbols).ravel()
    counts = np.bincount(flat, minlength=channels * size * num_centers)
    return counts.reshape(channels, size, num_centers).astype(np.float64)


def context_probabilities(counts: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """The codable table ``[C, K, L]`` of a context model.

    ``p[c, k] = (1 - UNIFORM_MIX) * (n[c, k] + A * m[c]) / (N[c, k] + A) +
    UNIFORM_MIX / L`` with ``n[c, k]`` the counts of context ``k``, ``N`` their
    sum, ``m[c]`` the channel's marginal ``probabilities[c]`` and ``A`` =
    :data:`CONTEXT_PRIOR`.  Elementwise float64 in a fixed order, so every
    machine derives the same table from the same counts.

    Args:
        counts: ``[C, K, L]`` non-negative finite counts (:func:`context_counts`).
        probabilities: ``[C, L]`` the per-channel model (strictly positive rows).

    Raises:
        ValueError: shapes disagree, or counts negative or not finite.
    """
    marginal = _check_probabilities(probabilities)
    counts = np.asarray(counts, dtype=np.float64)
    num_c, num_l = marginal.shape
    if counts.shape != (num_c, context_size(num_l), num_l):
        raise ValueError(f"context counts must have shape {(num_c, context_size(num_l), num_l)} "
                         f"for {num_c} channels and {num_l} centres, got {counts.shape}")
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise ValueError("context counts must be finite and non-negative")
    totals = np.zeros(counts.shape[:2], dtype=np.float64)
    for j in range(num_l):
        totals = totals + counts[:, :, j]
    estimate = (counts + CONTEXT_PRIOR * marginal[:, None, :]) / (totals + CONTEXT_PRIOR)[..., None]
    return (1.0 - UNIFORM_MIX) * estimate + UNIFORM_MIX / num_l


def _check_table(table: np.ndarray) -> np.ndarray:
    table = np.ascontiguousarray(table, dtype=np.float64)
    if table.ndim != 3 or table.shape[2] < 2 or table.shape[1] != context_size(table.shape[2]):
        raise ValueError(f"a context table must have shape [C, (L+1)**5, L], got {table.shape}")
    if not np.all(np.isfinite(table)) or not np.all(table > 0.0):
        raise ValueError("a context table must be finite and strictly positive "
                         "(build it with context_probabilities)")
    return table


_FAMILY = _stream.model.Categorical(perfect=False)


def encode_symbols_in_context(symbols: np.ndarray, table: np.ndarray,
                              last_rows: int | None = None) -> bytes:
    """Range-code a symbol map, each symbol with its context's distribution.

    Args:
        symbols: integer array ``[h, w, C]`` with values in ``0 .. L-1``.
        table: ``[C, K, L]`` from :func:`context_probabilities`.
        last_rows: code only this many leading rows of the last channel (a
            row's context lies in the rows above it and the earlier channels,
            so a prefix decodes alone; None: all).

    Returns:
        The compressed stream: a whole number of big-endian 32-bit words.
    """
    table = _check_table(table)
    num_c, _, num_l = table.shape
    symbols = _checked(symbols, num_l, num_c)
    last_rows = check_last_rows(last_rows, symbols.shape[0])
    contexts = _contexts(symbols, num_l)
    encoder = _stream.queue.RangeEncoder()
    for c in range(num_c):
        rows = slice(None, last_rows if c == num_c - 1 else None)
        encoder.encode(symbols[rows, :, c].ravel().astype(np.int32), _FAMILY,
                       table[c][contexts[rows, :, c].ravel()])
    return _stream_bytes(encoder.get_compressed())


def minimum_bits_in_context(shape: Sequence[int], table: np.ndarray,
                            last_rows: int | None = None) -> float:
    """The fewest bits any ``(h, w, C)`` map can cost: each symbol its likeliest anywhere
    (the last channel's ``h`` being ``last_rows``)."""
    table = _check_table(table)
    least = -np.log2(table.reshape(table.shape[0], -1).max(axis=1))
    return float(np.dot(_coded_counts((*shape[:2], len(least)), last_rows), least))


def decode_symbols_in_context(data: bytes, shape: Sequence[int], table: np.ndarray,
                              last_rows: int | None = None) -> np.ndarray:
    """Invert :func:`encode_symbols_in_context`.

    As :func:`~compression.entropy_model.decode_symbols`, corrupt ``data``
    never crashes or hangs: a payload too short for ``shape`` is refused
    before any work, the work is linear in ``h * w * C``, and the stream must
    re-encode to exactly ``data``.

    Args:
        data: compressed stream; its length must be a multiple of 4.
        shape: ``(h, w, C)`` of the symbol map.
        table: the ``[C, K, L]`` table the encoder used.
        last_rows: as the encoder was given it; the last channel's other rows
            are 0.

    Returns:
        int32 array ``(h, w, C)``.

    Raises:
        ValueError: ``shape`` or ``table`` malformed or disagreeing.
        CorruptFileError: the data cannot be a stream the encoder wrote.
    """
    table = _check_table(table)
    shape = _check_shape(shape, table.shape[0], "the table has")
    height, width, num_c = shape
    num_l = table.shape[2]
    last_rows = check_last_rows(last_rows, height)
    needed = 0.99 * minimum_bits_in_context(shape, table, last_rows) - 64
    words = _stream_words(data, needed, shape)
    outside, base = num_l, num_l + 1
    left_stride = base ** (len(_NEIGHBOURS) - 1)
    # Channel c sits at [..., c + 2] behind two channels of "outside"; row y
    # of it needs row y - 1 of c and row y of c - 1 and c - 2: all decoded.
    symbols = np.full((height + 1, width + 2, num_c + 2), outside, np.int64)
    try:
        decoder = _stream.queue.RangeDecoder(words)
        for c in range(2, num_c + 2):
            # One concrete model per context met (at most K): decoding with it
            # is 0.6 us a symbol against 2 us for the model family with a
            # probability row, and the stream is the same.
            models, rows = {}, table[c - 2]
            for y in range(1, (last_rows if c == num_c + 1 else height) + 1):
                above = symbols[y - 1, :, c]
                known = (((above[1:-1] * base + above[2:]) * base + symbols[y, 1:-1, c - 1])
                         * base + symbols[y, 1:-1, c - 2]).tolist()
                left, decoded = outside, []
                for rest in known:
                    context = left * left_stride + rest
                    model = models.get(context)
                    if model is None:
                        model = models[context] = _stream.model.Categorical(
                            rows[context], perfect=False)
                    left = decoder.decode(model)
                    decoded.append(left)
                symbols[y, 1:-1, c] = decoded
    except (KeyboardInterrupt, SystemExit, IndexError, TypeError):
        raise  # not the data's fault
    except BaseException as exc:  # constriction: AssertionError / PanicException
        raise CorruptFileError(f"entropy-coded payload is corrupt: {exc}") from exc
    if num_c:
        symbols[last_rows + 1:, 1:-1, -1] = 0  # not coded
    result = np.ascontiguousarray(symbols[1:, 1:-1, 2:], dtype=np.int32)
    return verified(result, num_l, data,
                    lambda decoded: encode_symbols_in_context(decoded, table, last_rows))
