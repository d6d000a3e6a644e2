"""Lossless entropy coding of the quantised bottleneck.

The encoder maps an image to integer symbols ``symbols`` of shape
``[h, w, C]`` with values in ``0 .. L-1`` (``L`` quantiser centres).  We model
every channel ``c`` as i.i.d. symbols drawn from a fixed categorical
distribution ``probabilities[c]`` (shape ``[L]``), learned as a histogram
during training, and code them with ``constriction``'s range coder.

Stream layout (see ``docs/format.md``): the symbols are coded channel-major,
i.e. in the order of ``symbols.transpose(2, 0, 1).ravel()`` -- all of channel 0
in row-major ``(y, x)`` order, then channel 1, and so on.  The range coder's
compressed ``uint32`` words are serialised big-endian.

A stream may code only the first ``last_rows`` rows of its last channel (a
file that fills its rate budget with part of one more channel,
:mod:`compression.rate_control`): that is a prefix of the same order, and
the rows it leaves out decode as symbol 0.

Nothing here needs TensorFlow; everything is numpy + constriction, so the
encoder and decoder machines compute bit-identical probability tables from the
same ``counts``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from constriction import stream as _stream

from .errors import CorruptFileError

__all__ = [
    "UNIFORM_MIX",
    "bound_bits",
    "check_last_rows",
    "decode_symbols",
    "encode_symbols",
    "estimated_bits",
    "minimum_bits",
    "probabilities_from_counts",
    "uniform_probabilities",
    "verified",
]

#: Weight of the uniform distribution mixed into every learned distribution:
#: ``p = (1 - UNIFORM_MIX) * counts / sum(counts) + UNIFORM_MIX / L``.
#: A power of two so the arithmetic is exact-ish and trivially reproducible.
#: With L = 5 every symbol gets p >= 2**-10 / 5 ~ 2e-4 (at most ~12.3 bits for a
#: symbol never seen in training) while a well-modelled symbol pays only
#: ``-log2(1 - 2**-10)`` ~ 0.0014 extra bits.  Mixing (rather than adding a
#: constant pseudo-count) is scale invariant: it behaves the same whether
#: ``counts`` holds raw counts in the millions or an already-normalised
#: histogram summing to one.
UNIFORM_MIX = 2.0**-10

# Serialisation of the coder's 32-bit words: fixed big-endian so a file written
# on any machine decodes on any other.
_WORD_DTYPE = np.dtype(">u4")


def uniform_probabilities(num_channels: int, num_centers: int) -> np.ndarray:
    """Return the uniform table used when a model has no learned statistics.

    Args:
        num_channels: ``C >= 1``.
        num_centers: ``L >= 2``.

    Returns:
        float64 array of shape ``[C, L]``, every entry ``1 / L``.
    """
    num_channels = int(num_channels)
    num_centers = int(num_centers)
    if num_channels < 1:
        raise ValueError(f"num_channels must be >= 1, got {num_channels}")
    if num_centers < 2:
        raise ValueError(f"num_centers must be >= 2, got {num_centers}")
    return np.full((num_channels, num_centers), 1.0 / num_centers, dtype=np.float64)


def probabilities_from_counts(
    counts: np.ndarray | None,
    num_channels: int | None = None,
    num_centers: int | None = None,
) -> np.ndarray:
    """Turn a per-channel symbol histogram into a codable probability table.

    Each row is normalised and mixed with the uniform distribution
    (weight :data:`UNIFORM_MIX`) so every symbol has probability > 0 and can be
    coded even if it never occurred in training.  Negative entries are treated
    as zero (``max(count, 0)``); a row that sums to zero becomes uniform.

    The computation is plain float64 numpy with the row sums accumulated
    column by column (not via ``np.sum``, whose pairwise/SIMD summation order
    is an implementation detail), so every machine derives the same table
    bit for bit from the same counts.

    Args:
        counts: float array ``[C, L]`` of non-negative (possibly all-zero)
            counts, or ``None`` for "no learned statistics".
        num_channels: ``C``; required when ``counts`` is ``None``, otherwise
            optional and checked against ``counts.shape[0]``.
        num_centers: ``L``; as ``num_channels``, for ``counts.shape[1]``.

    Returns:
        float64 array ``[C, L]``; each row is strictly positive and sums to 1
        up to rounding.

    Raises:
        ValueError: wrong shape, non-finite counts, or missing ``C``/``L``.
    """
    if counts is None:
        if num_channels is None or num_centers is None:
            raise ValueError("counts is None: num_channels and num_centers are required")
        return uniform_probabilities(num_channels, num_centers)

    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] < 1 or counts.shape[1] < 2:
        raise ValueError(f"counts must have shape [C >= 1, L >= 2], got {counts.shape}")
    num_c, num_l = counts.shape
    if num_channels is not None and int(num_channels) != num_c:
        raise ValueError(f"counts has {num_c} channels, expected {num_channels}")
    if num_centers is not None and int(num_centers) != num_l:
        raise ValueError(f"counts has {num_l} centres, expected {num_centers}")
    if not np.all(np.isfinite(counts)):
        raise ValueError("counts must be finite (found NaN or inf)")

    counts = np.maximum(counts, 0.0)
    # Sequential, elementwise (hence IEEE-exact and order-fixed) row sums.
    totals = np.zeros(num_c, dtype=np.float64)
    for j in range(num_l):
        totals = totals + counts[:, j]

    empty = totals <= 0.0
    # Divide by 1 for empty rows to avoid 0/0; they are replaced below.
    safe_totals = np.where(empty, 1.0, totals)
    empirical = counts / safe_totals[:, None]
    empirical[empty, :] = 1.0 / num_l
    probs = (1.0 - UNIFORM_MIX) * empirical + UNIFORM_MIX / num_l
    return probs


def _check_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """Validate a ``[C, L]`` table and return it as contiguous float64."""
    probs = np.ascontiguousarray(probabilities, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] < 1 or probs.shape[1] < 2:
        raise ValueError(f"probabilities must have shape [C >= 1, L >= 2], got {probs.shape}")
    if not np.all(np.isfinite(probs)) or not np.all(probs > 0.0):
        raise ValueError(
            "probabilities must be finite and strictly positive "
            "(build them with probabilities_from_counts)"
        )
    return probs


def _models(probs: np.ndarray) -> list:
    """One concrete constriction ``Categorical`` per channel.

    ``perfect=False`` is the fast, documented-stable quantisation; encoder and
    decoder must agree on it.  A concrete model per channel (rather than one
    model family fed an ``[N, L]`` per-symbol table) gives the identical bit
    stream while avoiding an N x L float64 temporary (80 MB for a 256x512x16
    map) and is ~10x faster to encode.
    """
    return [_stream.model.Categorical(row, perfect=False) for row in probs]


def check_last_rows(last_rows: int | None, height: int) -> int:
    """The rows of a map's last channel a stream codes: ``height`` for None.

    Raises ValueError unless ``last_rows`` is an int in ``1 .. height``.
    """
    if last_rows is None:
        return int(height)
    if (isinstance(last_rows, bool) or not isinstance(last_rows, (int, np.integer))
            or not 1 <= last_rows <= height):
        raise ValueError(f"last_rows must be a whole number of rows in 1..{height} (the map's "
                         f"height), got {last_rows!r}")
    return int(last_rows)


def _coded_counts(shape: Sequence[int], last_rows: int | None = None) -> list[int]:
    """How many symbols of each channel of an ``(h, w, C)`` map a stream codes, in order."""
    height, width, channels = (int(s) for s in shape)
    last = check_last_rows(last_rows, height) * width
    return [height * width] * (channels - 1) + [last] if channels else []


def _coded_rows(symbols: np.ndarray, last_rows: int) -> list[np.ndarray]:
    """Each channel's coded symbols in stream order (the last one's first ``last_rows`` rows)."""
    channels = symbols.shape[2]
    return [np.ascontiguousarray(symbols[:last_rows if c == channels - 1 else None, :, c],
                                 dtype=np.int32).ravel() for c in range(channels)]


def encode_symbols(symbols: np.ndarray, probabilities: np.ndarray,
                   last_rows: int | None = None) -> bytes:
    """Range-code a symbol map, channel ``c`` with ``probabilities[c]``.

    Args:
        symbols: integer array ``[h, w, C]`` with values in ``0 .. L-1``.
        probabilities: float array ``[C, L]``, strictly positive rows.
        last_rows: code only this many leading rows of the last channel
            (:func:`check_last_rows`; None: all).

    Returns:
        The compressed stream: a whole number of big-endian 32-bit words.

    Raises:
        ValueError: shapes disagree, non-integer dtype, or a symbol outside
            ``0 .. L-1``.
    """
    probs = _check_probabilities(probabilities)
    num_c, num_l = probs.shape
    symbols = _check_symbols(symbols, num_l, num_c, "probabilities have")
    last_rows = check_last_rows(last_rows, symbols.shape[0])

    # Channel-major so each channel is one contiguous run for its own model.
    encoder = _stream.queue.RangeEncoder()
    for row, model in zip(_coded_rows(symbols, last_rows), _models(probs), strict=True):
        encoder.encode(row, model)
    return _stream_bytes(encoder.get_compressed())


def _check_symbols(symbols: np.ndarray, num_centers: int, channels: int | None = None,
                   model: str = "") -> np.ndarray:
    """``symbols`` as an integer array ``[h, w, C]`` with values in ``0 .. L-1``.

    ``channels``: the ``C`` a ``model`` (e.g. ``"probabilities have"``) expects.
    Raises ValueError naming what is wrong.
    """
    symbols = np.asarray(symbols)
    if symbols.ndim != 3:
        raise ValueError(f"symbols must have shape [h, w, C], got {symbols.shape}")
    if not np.issubdtype(symbols.dtype, np.integer):
        raise ValueError(f"symbols must be integers, got dtype {symbols.dtype}")
    if channels is not None and symbols.shape[2] != channels:
        raise ValueError(f"symbols have {symbols.shape[2]} channels but {model} {channels}")
    if symbols.size and (symbols.min() < 0 or symbols.max() >= num_centers):
        raise ValueError(
            f"symbols must lie in 0..{num_centers - 1}, found range "
            f"{symbols.min()}..{symbols.max()}"
        )
    return symbols


def _stream_bytes(words: np.ndarray) -> bytes:
    """The coder's ``uint32`` words as the stream's bytes (big-endian)."""
    return words.astype(_WORD_DTYPE, copy=False).tobytes()


def _check_shape(shape: Sequence[int], channels: int, model: str) -> tuple[int, int, int]:
    """``shape`` as ints ``(h, w, C)``, checked against the ``channels`` of a ``model``."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 0:
        raise ValueError(f"shape must be (h, w, C) with non-negative sizes, got {shape}")
    if shape[2] != channels:
        raise ValueError(f"shape has {shape[2]} channels but {model} {channels}")
    return shape


def _stream_words(data: bytes, needed_bits: float, shape: Sequence[int]) -> np.ndarray:
    """The ``uint32`` words of a stream that claims to code a map of ``shape``.

    A file must justify its size before any work: a stream shorter than
    ``needed_bits`` (what even the likeliest symbols would cost, less the
    coder's rounding) cannot hold ``shape``, so a few bytes cannot claim
    millions of symbols.
    """
    if len(data) % _WORD_DTYPE.itemsize:
        raise CorruptFileError(
            f"entropy-coded payload is {len(data)} bytes, not a multiple of 4"
        )
    if 8 * len(data) < needed_bits:
        height, width, num_c = shape
        raise CorruptFileError(
            f"entropy-coded payload is {len(data)} bytes, too short for "
            f"{height}x{width}x{num_c} symbols: even the most probable ones need "
            f"{math.ceil(needed_bits / 8)} bytes"
        )
    return np.frombuffer(data, dtype=_WORD_DTYPE).astype(np.uint32)


def decode_symbols(
    data: bytes, shape: Sequence[int], probabilities: np.ndarray, last_rows: int | None = None
) -> np.ndarray:
    """Invert :func:`encode_symbols`.

    Arbitrary (corrupt) ``data`` never crashes or hangs: a payload shorter
    than :func:`minimum_bits` allows is refused before any work, the work is
    linear in ``h * w * C``, and the result is the symbols whose encoding
    ``data`` is exactly, or a :class:`CorruptFileError`.

    Args:
        data: compressed stream; its length must be a multiple of 4.
        shape: ``(h, w, C)`` of the symbol map to reconstruct.
        probabilities: the same ``[C, L]`` table the encoder used.
        last_rows: as the encoder was given it; the last channel's other rows
            are 0.

    Returns:
        int32 array of shape ``(h, w, C)`` with values in ``0 .. L-1``.

    Raises:
        ValueError: ``shape`` or ``probabilities`` are malformed / disagree.
        CorruptFileError: the data cannot be a stream produced by the encoder.
    """
    probs = _check_probabilities(probabilities)
    shape = _check_shape(shape, probs.shape[0], "probabilities have")
    height, width, num_c = shape
    last_rows = check_last_rows(last_rows, height)
    # Even if every symbol were its channel's most probable one, the stream
    # could not be shorter than this (less a little for the coder's rounding).
    words = _stream_words(data, 0.99 * minimum_bits(shape, probs, last_rows) - 64, shape)
    counts = _coded_counts(shape, last_rows)
    try:
        decoder = _stream.queue.RangeDecoder(words)
        rows = [decoder.decode(model, count) for model, count in zip(_models(probs), counts,
                                                                     strict=True)]
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        # constriction reports invalid data with AssertionError and Rust panics
        # surface as pyo3's PanicException, which derives from BaseException;
        # all of them mean "this is not a stream we wrote".
        raise CorruptFileError(f"entropy-coded payload is corrupt: {exc}") from exc

    per_channel = np.zeros((num_c, height * width), np.int32)
    for c, row in enumerate(rows):
        per_channel[c, :len(row)] = row
    per_channel = per_channel.reshape(num_c, height, width)
    symbols = np.ascontiguousarray(per_channel.transpose(1, 2, 0))
    return verified(symbols, probs.shape[1], data,
                    lambda decoded: encode_symbols(decoded, probs, last_rows))


def verified(symbols: np.ndarray, num_centers: int, data: bytes, encode) -> np.ndarray:
    """``symbols`` a decoder read from ``data``, once they prove to be what it holds.

    Belt and braces: never hand out-of-range indices to the dequantiser.  And
    the end-of-stream check: the coders are deterministic, so a stream one
    wrote is exactly ``encode(symbols)`` of the symbols it decodes to.  Extra,
    missing or altered words (which a range decoder reads without noticing)
    fail here; re-encoding costs about as much as decoding did.

    Raises:
        CorruptFileError: either check fails.
    """
    if symbols.size and (symbols.min() < 0 or symbols.max() >= num_centers):
        raise CorruptFileError("entropy-coded payload decoded to out-of-range symbols")
    if encode(symbols) != bytes(data):
        raise CorruptFileError(
            "entropy-coded payload is corrupt: it is not the stream of the symbols it "
            "decodes to (bytes altered, missing or appended)"
        )
    return symbols


def minimum_bits(shape: Sequence[int], probabilities: np.ndarray,
                 last_rows: int | None = None) -> float:
    """The fewest bits any ``(h, w, C)`` symbol map can cost: all symbols the likeliest.

    ``h * w * sum_c -log2 max_l p[c, l]`` (the last channel's ``h`` being
    ``last_rows``); the coder's real stream is never shorter than this by more
    than its rounding.
    """
    probs = _check_probabilities(probabilities)
    least = -np.log2(probs.max(axis=1))
    return float(np.dot(_coded_counts((*shape[:2], len(least)), last_rows), least))


def bound_bits(shape: Sequence[int], num_centers: int, last_rows: int | None = None) -> float:
    """Bits of a fixed-length code: ``h * w * C * log2(L)``.

    Args:
        shape: ``(h, w, C)``.
        num_centers: ``L``.
        last_rows: the last channel's coded rows (None: all ``h``).
    """
    return float(sum(_coded_counts(shape, last_rows)) * math.log2(int(num_centers)))


def estimated_bits(symbols: np.ndarray, probabilities: np.ndarray) -> float:
    """Ideal code length ``-sum log2 p(symbol)`` under the model.

    Args:
        symbols: integer array ``[h, w, C]`` with values in ``0 .. L-1``.
        probabilities: float array ``[C, L]``.

    Returns:
        The information content in bits (float); the real stream is a few
        bits to a word longer.
    """
    probs = _check_probabilities(probabilities)
    symbols = np.asarray(symbols)
    if symbols.ndim != 3 or symbols.shape[2] != probs.shape[0]:
        raise ValueError(
            f"symbols shape {symbols.shape} does not fit probabilities {probs.shape}"
        )
    channel = np.arange(probs.shape[0])[None, None, :]
    return float(-np.log2(probs[channel, symbols]).sum())
