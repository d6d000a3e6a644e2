"""A learned context model: each symbol's distribution from a wider causal neighbourhood.

The count table of :mod:`compression.context_model` conditions a symbol on
five neighbours, as many as a table can hold (``6^5`` contexts a channel).
A small network sees more: the twelve decoded symbols of its own channel in
the two rows above it (``x-2 .. x+2``) and the two to its left, and the 3x3
neighbourhoods at its place in the three channels before it (39 symbols).
Each is one of ``L`` symbols, "outside the map" or "no such channel"; the
network sums one learned vector per (position, value), adds its channel's,
and maps that through one hidden layer to ``L`` logits.  On the shipped
`general` model's symbols (fitted on the training images, scored on the val
images) it codes 7% fewer bits than the count table on BSDS500 and CamVid
(docs/benchmarks.md).

Files must decode on any machine, so the network runs in integer
arithmetic: weights are fixed point (:data:`FRACTION_BITS`), activations are
clipped to :data:`ACTIVATION_LIMIT`, the one matrix product runs in float64
on integers whose every partial sum stays below ``2^53`` (exact, whatever
order a BLAS sums in), and logits become probabilities through the model's
stored integer table of ``exp`` (:attr:`ContextNet.exp_table`) and float64
division, which IEEE arithmetic rounds the same everywhere.

Order: each channel's symbols are coded by wavefronts ``t = 3y + x`` (``y``
increasing within one): every neighbour a symbol reads has a smaller ``t``,
so the decoder decodes a whole wavefront in one step (``3h + w`` steps a
channel, not ``h * w``).  Channels are coded one after another; a partly
coded last channel (its first ``r`` rows) is coded as a map of ``r`` rows.

A rate-adaptive model's files code at any rate position
(:mod:`compression.gain`), and the symbols' statistics shift with it (a
table fitted over all positions codes the ends of the range 3% longer than
one fitted at each, measured on a gain model's symbols): its net adds a
learned vector per band of rate positions (``rate_bias``, :data:`RATE_ROWS`
bands of the file's position byte), so one net codes every rate.

Nothing here but :func:`fit_context_net` needs TensorFlow.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

import numpy as np
from constriction import stream as _stream

from .entropy_model import (
    UNIFORM_MIX,
    _check_symbols,
    _stream_bytes,
    _stream_words,
    check_last_rows,
    verified,
)
from .errors import CorruptFileError

__all__ = [
    "ContextNet",
    "CURRENT_OFFSETS",
    "PREVIOUS_OFFSETS",
    "PREVIOUS_CHANNELS",
    "decode_symbols_with_net",
    "encode_symbols_with_net",
    "fit_context_net",
    "from_float",
    "net_bits",
    "positions",
]

#: Neighbours ``(dy, dx)`` read in the symbol's own channel: all decoded before it.
CURRENT_OFFSETS = tuple([(-2, dx) for dx in range(-2, 3)] + [(-1, dx) for dx in range(-2, 3)]
                        + [(0, -2), (0, -1)])
#: Neighbours read at the symbol's place in each earlier channel (decoded whole).
PREVIOUS_OFFSETS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))
#: How many earlier channels the network reads.
PREVIOUS_CHANNELS = 3
#: Fixed point of weights and activations: ``2^-FRACTION_BITS``.
FRACTION_BITS = 10
#: Logits are in units of ``2^-LOGIT_BITS`` nats.
LOGIT_BITS = 6
#: Activations are clipped to ``[0, ACTIVATION_LIMIT]`` and weights to
#: ``|w| < 2^15``, so a sum of ``width`` products stays below ``2^53``.
ACTIVATION_LIMIT = 2**21 - 1
WEIGHT_LIMIT = 2**15 - 1
#: Widest hidden layer: 2^21 * 2^15 * 2^10 stays below 2^53 (exact float64 products).
MAX_WIDTH = 1024
#: Default Adam steps of :func:`fit_context_net` (about 10 minutes on 2 cores).
FIT_STEPS = 6000
#: Entries of the ``exp`` table: logit gaps beyond it (64 nats) share its last entry.
EXP_SIZE = 4096
#: ``exp_table[0]``: ``round(EXP_ONE * exp(-d / 2^LOGIT_BITS))``.
EXP_ONE = 2**24
_PAD = 2  # the widest offset
_WAVE = 3  # t = 3y + x: (y-1, x+2) and (y, x-1) come one wavefront earlier
_FAMILY = _stream.model.Categorical(perfect=False)
#: Channels' distributions a net keeps for maps it codes again (rate control's searches).
_CACHE_SIZE = 32
#: Arrays of a net, with the checkpoint keys they are stored under.
KEYS = ("embedding", "channel_bias", "hidden_kernel", "hidden_bias", "output_kernel",
        "output_bias", "exp_table")
#: Stored only by a rate-conditioned net (nets without it hash as before).
RATE_KEY = "rate_bias"
#: Bands of the rate-position byte a rate-conditioned net tells apart (16 bytes each).
RATE_ROWS = 16
KEY_PREFIX = "entropy_model/context_net/"


def positions() -> int:
    """How many neighbours the network reads (``P``)."""
    return len(CURRENT_OFFSETS) + PREVIOUS_CHANNELS * len(PREVIOUS_OFFSETS)


@dataclasses.dataclass(frozen=True, eq=False)
class ContextNet:
    """The integer weights of a learned context model for ``C`` channels, ``L`` centres.

    Attributes (all int64 numpy arrays, fixed point ``2^-FRACTION_BITS``
    unless said):
      embedding: ``[P * (L + 2), D]``, one vector per (position, value); the
        positions are :data:`CURRENT_OFFSETS` then :data:`PREVIOUS_OFFSETS`
        of channels ``c-1``, ``c-2``, ``c-3``; values ``0 .. L-1`` symbols,
        ``L`` outside the map, ``L + 1`` no such channel.
      channel_bias: ``[C, D]`` added for the symbol's channel.
      hidden_kernel: ``[D, D]``; hidden_bias ``[D]`` (``2^-2F``).
      output_kernel: ``[C, D, L]``; output_bias ``[C, L]`` (``2^-2F``).
      exp_table: ``[EXP_SIZE]`` positive, non-increasing integers.
      rate_bias: ``[R, D]`` added for the band of the file's rate-position
        byte (a rate-adaptive model's net; ``[0, D]``: not conditioned).
    """

    embedding: np.ndarray
    channel_bias: np.ndarray
    hidden_kernel: np.ndarray
    hidden_bias: np.ndarray
    output_kernel: np.ndarray
    output_bias: np.ndarray
    exp_table: np.ndarray
    rate_bias: np.ndarray = None

    def __post_init__(self):
        if self.rate_bias is None:
            width = np.shape(self.channel_bias)[-1] if np.ndim(self.channel_bias) == 2 else 0
            object.__setattr__(self, "rate_bias", np.zeros((0, width), np.int64))
        for key in (*KEYS, RATE_KEY):
            value = np.asarray(getattr(self, key))
            if not np.issubdtype(value.dtype, np.integer) and not (
                    np.all(np.isfinite(value)) and np.all(value == np.round(value))):
                raise ValueError(f"context net {key} must hold integers")
            object.__setattr__(self, key, value.astype(np.int64))
        channels, width = self.channel_bias.shape if self.channel_bias.ndim == 2 else (0, 0)
        if not channels or not 1 <= width <= MAX_WIDTH:
            raise ValueError(f"context net channel_bias must be [C, D] with 1 <= D <= "
                             f"{MAX_WIDTH}, got {self.channel_bias.shape}")
        if self.output_kernel.ndim != 3 or self.output_kernel.shape[:2] != (channels, width):
            raise ValueError(f"context net output_kernel must be [{channels}, {width}, L], "
                             f"got {self.output_kernel.shape}")
        centers = self.output_kernel.shape[2]
        expected = {"embedding": (positions() * (centers + 2), width),
                    "hidden_kernel": (width, width), "hidden_bias": (width,),
                    "output_bias": (channels, centers), "exp_table": (EXP_SIZE,)}
        if self.rate_bias.shape[0]:
            expected[RATE_KEY] = (RATE_ROWS, width)
        else:
            expected[RATE_KEY] = (0, width)
        for key, shape in expected.items():
            if getattr(self, key).shape != shape:
                raise ValueError(f"context net {key} must have shape {shape}, got "
                                 f"{getattr(self, key).shape}")
        for key in ("embedding", "channel_bias", "hidden_kernel", "output_kernel", RATE_KEY):
            if getattr(self, key).size and np.abs(getattr(self, key)).max() > WEIGHT_LIMIT:
                raise ValueError(f"context net {key} exceeds the fixed-point range "
                                 f"(|w| <= {WEIGHT_LIMIT})")
        for key in ("hidden_bias", "output_bias"):
            if np.abs(getattr(self, key)).max() > 2**40:
                raise ValueError(f"context net {key} exceeds the fixed-point range")
        object.__setattr__(self, "_cache", {})
        table = self.exp_table
        if table.min() < 1 or table[0] > EXP_ONE or np.any(np.diff(table) > 0):
            raise ValueError("context net exp_table must be positive, non-increasing and at "
                             f"most {EXP_ONE}")

    @property
    def channels(self) -> int:
        return self.channel_bias.shape[0]

    @property
    def num_centers(self) -> int:
        return self.output_kernel.shape[2]

    @property
    def rate_conditioned(self) -> bool:
        """Whether the net conditions on the file's rate position (``rate_bias``)."""
        return bool(self.rate_bias.shape[0])

    def _rate_row(self, rate: int | None) -> int | None:
        """The ``rate_bias`` row of a rate-position byte (None: the net is not conditioned)."""
        if not self.rate_conditioned:
            return None
        if rate is None or not 0 <= int(rate) <= 255:
            raise ValueError(f"this context net conditions on the rate position: pass the "
                             f"file's rate-position byte (0-255), got {rate!r}")
        return int(rate) * RATE_ROWS // 256

    def arrays(self) -> dict[str, np.ndarray]:
        """``{checkpoint key: array}`` to store the net (int32, int64 for biases)."""
        keys = (*KEYS, RATE_KEY) if self.rate_conditioned else KEYS
        return {KEY_PREFIX + key: getattr(self, key).astype(
            np.int64 if key.endswith("bias") or key == "exp_table" else np.int32) for key in keys}

    @classmethod
    def from_arrays(cls, get, has=None) -> ContextNet:
        """The net stored under :data:`KEY_PREFIX` (``get(key)`` -> array; ``has(key)``:
        whether the optional ``rate_bias`` is stored, default no)."""
        arrays = {key: get(KEY_PREFIX + key) for key in KEYS}
        if has is not None and has(KEY_PREFIX + RATE_KEY):
            arrays[RATE_KEY] = get(KEY_PREFIX + RATE_KEY)
        return cls(**arrays)

    # -- evaluation ----------------------------------------------------------

    def _previous_part(self, padded: np.ndarray, c: int, row: int | None = None) -> np.ndarray:
        """``[h, w, D]``: the channel's vector (and the rate band's, ``row``) plus the
        earlier channels' embeddings."""
        values = self.num_centers + 2
        bias = self.channel_bias[c] if row is None else self.channel_bias[c] + self.rate_bias[row]
        total = bias + np.zeros(
            (*_plane_shape(padded), self.channel_bias.shape[1]), np.int64)
        for position, v in enumerate(_previous_values(padded, c, self.num_centers),
                                     start=len(CURRENT_OFFSETS)):
            total += self.embedding[position * values + v]
        return total

    def _current_part(self, plane: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """``[n, D]``: the embeddings of the own-channel neighbours of ``(ys, xs)``, summed."""
        values = self.num_centers + 2
        total = np.zeros((len(ys), self.channel_bias.shape[1]), np.int64)
        for i, (dy, dx) in enumerate(CURRENT_OFFSETS):  # one [n, D] at a time: bounded memory
            total += self.embedding[i * values + plane[_PAD + ys + dy, _PAD + xs + dx]]
        return total

    def _probabilities(self, first: np.ndarray, c: int) -> np.ndarray:
        """float64 ``[n, L]`` from the summed first-layer inputs ``[n, D]`` (int64)."""
        hidden = np.clip(first, 0, ACTIVATION_LIMIT).astype(np.float64)
        # Exact: |products| < 2^21 * 2^15 and D of them sum below 2^53.
        hidden = (hidden @ self.hidden_kernel.astype(np.float64)).astype(np.int64)
        hidden = np.clip((hidden + self.hidden_bias) >> FRACTION_BITS, 0, ACTIVATION_LIMIT)
        logits = (hidden.astype(np.float64) @ self.output_kernel[c].astype(np.float64))
        logits = (logits.astype(np.int64) + self.output_bias[c]) >> (
            2 * FRACTION_BITS - LOGIT_BITS)
        gaps = np.minimum(logits.max(axis=1, keepdims=True) - logits, EXP_SIZE - 1)
        weights = self.exp_table[gaps].astype(np.float64)
        total = weights[:, 0].copy()
        for j in range(1, weights.shape[1]):  # a fixed order, as the count tables
            total = total + weights[:, j]
        return (1.0 - UNIFORM_MIX) * (weights / total[:, None]) + UNIFORM_MIX / weights.shape[1]

    def probabilities(self, symbols: np.ndarray, rate: int | None = None) -> np.ndarray:
        """float64 ``[h, w, C, L]``: each symbol's coding distribution given its neighbours
        (and, for a rate-conditioned net, the file's rate-position byte ``rate``)."""
        symbols = _check_symbols(symbols, self.num_centers)
        return _check_net(self, symbols.shape)._map_probabilities(symbols, rate)

    def _map_probabilities(self, symbols: np.ndarray, rate: int | None = None) -> np.ndarray:
        """:meth:`probabilities` of a map its caller has checked."""
        row = self._rate_row(rate)
        symbols = symbols.astype(np.int64)
        height, width, channels = symbols.shape
        padded = _padded(symbols, self.num_centers)
        ys, xs = np.divmod(np.arange(height * width), width)
        out = np.empty((height * width, channels, self.num_centers))
        for c in range(channels):
            # Rate control codes the same leading channels many times over: channel c's
            # distributions depend on channels 0..c only.
            key = (c, row, height, width,
                   hashlib.blake2b(np.ascontiguousarray(symbols[..., :c + 1]).tobytes(),
                                   digest_size=16).digest())
            cached = self._cache.get(key)
            if cached is None:
                first = self._previous_part(padded, c, row).reshape(
                    -1, self.channel_bias.shape[1])
                first = first + self._current_part(padded[..., c], ys, xs)
                cached = self._probabilities(first, c)
                if len(self._cache) >= _CACHE_SIZE:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[key] = cached
            out[:, c] = cached
        return out.reshape(height, width, channels, self.num_centers)


def _padded(symbols: np.ndarray, num_centers: int) -> np.ndarray:
    return np.pad(symbols.astype(np.int64), ((_PAD, _PAD), (_PAD, _PAD), (0, 0)),
                  constant_values=num_centers)


def _plane_shape(padded: np.ndarray) -> tuple[int, int]:
    return padded.shape[0] - 2 * _PAD, padded.shape[1] - 2 * _PAD


def _shifted(padded: np.ndarray, c: int, dy: int, dx: int) -> np.ndarray:
    """``[h, w]``: every symbol's neighbour at ``(dy, dx)`` in channel ``c``."""
    height, width = _plane_shape(padded)
    return padded[_PAD + dy:_PAD + dy + height, _PAD + dx:_PAD + dx + width, c]


def _previous_values(padded: np.ndarray, c: int, num_centers: int) -> list[np.ndarray]:
    """``[h, w]`` maps of the earlier channels' neighbours of channel ``c``, in the net's
    order (after :data:`CURRENT_OFFSETS`): the one place that order is written."""
    absent = np.full(_plane_shape(padded), num_centers + 1, np.int64)
    return [_shifted(padded, c - j, dy, dx) if c - j >= 0 else absent
            for j in range(1, PREVIOUS_CHANNELS + 1) for dy, dx in PREVIOUS_OFFSETS]


def _wave_order(height: int, width: int) -> np.ndarray:
    """Flat indices ``y * w + x`` of a map in wavefront order (``3y + x``, then ``y``)."""
    ys, xs = np.divmod(np.arange(height * width), width)
    return np.lexsort((ys, _WAVE * ys + xs))


def _centers(net: ContextNet) -> int:
    if not isinstance(net, ContextNet):
        raise TypeError(f"net must be a ContextNet, got {type(net).__name__}")
    return net.num_centers


def _check_net(net: ContextNet, shape) -> ContextNet:
    """``net``, checked to code maps of ``shape`` (at most its channels: a file's leading ones)."""
    _centers(net)
    if shape[2] > net.channels:
        raise ValueError(f"the map has {shape[2]} channels but the context net {net.channels}")
    return net


def _coded_planes(symbols: np.ndarray, last_rows: int):
    """``(channel, rows coded)`` of each channel."""
    channels = symbols.shape[2]
    return [(c, last_rows if c == channels - 1 else symbols.shape[0]) for c in range(channels)]


def encode_symbols_with_net(symbols: np.ndarray, net: ContextNet,
                            last_rows: int | None = None, rate: int | None = None) -> bytes:
    """Range-code a symbol map ``[h, w, C]`` with the distributions ``net`` predicts.

    ``last_rows``: code only this many leading rows of the last channel
    (None: all).  ``rate``: the file's rate-position byte, which a
    rate-conditioned net needs (and others ignore).  Returns a whole number
    of big-endian 32-bit words.
    """
    symbols = _check_symbols(symbols, _centers(net))
    net = _check_net(net, symbols.shape)
    last_rows = check_last_rows(last_rows, symbols.shape[0])
    if last_rows != symbols.shape[0]:
        symbols = symbols.copy()
        symbols[last_rows:, :, -1] = 0  # not coded; the decoder's fill
    probabilities = net._map_probabilities(symbols, rate)
    encoder = _stream.queue.RangeEncoder()
    for c, rows in _coded_planes(symbols, last_rows):
        order = _wave_order(rows, symbols.shape[1])
        encoder.encode(symbols[:rows, :, c].reshape(-1)[order].astype(np.int32), _FAMILY,
                       probabilities[:rows, :, c].reshape(-1, net.num_centers)[order])
    return _stream_bytes(encoder.get_compressed())


def net_bits(symbols: np.ndarray, net: ContextNet, rate: int | None = None) -> float:
    """Ideal code length in bits of a whole map under ``net`` (what a file spends, near
    enough); ``rate`` as for :func:`encode_symbols_with_net`."""
    symbols = _check_symbols(symbols, _centers(net))
    p = _check_net(net, symbols.shape)._map_probabilities(symbols, rate)
    chosen = np.take_along_axis(p, symbols.astype(np.int64)[..., None], axis=-1)
    return float(-np.log2(chosen).sum())


def decode_symbols_with_net(data: bytes, shape: Sequence[int], net: ContextNet,
                            last_rows: int | None = None, rate: int | None = None) -> np.ndarray:
    """Invert :func:`encode_symbols_with_net`.

    As the other decoders, corrupt ``data`` never crashes or hangs: a payload
    too short for ``shape`` is refused before any work, the work is linear in
    ``h * w * C``, and the stream must re-encode to exactly ``data``.

    Returns:
        int32 ``(h, w, C)``; the last channel's rows from ``last_rows`` on are 0.

    Raises:
        ValueError: ``shape`` malformed or more channels than ``net`` has.
        CorruptFileError: the data cannot be a stream the encoder wrote.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 0:
        raise ValueError(f"shape must be (h, w, C) with non-negative sizes, got {shape}")
    net = _check_net(net, shape)
    height, width, channels = shape
    last_rows = check_last_rows(last_rows, height)
    row = net._rate_row(rate)
    top = np.log2(1.0 - UNIFORM_MIX + UNIFORM_MIX / net.num_centers)
    coded = height * width * max(channels - 1, 0) + (last_rows * width if channels else 0)
    words = _stream_words(data, -0.99 * coded * top - 64, shape)
    padded = np.full((height + 2 * _PAD, width + 2 * _PAD, channels), net.num_centers, np.int64)
    try:
        decoder = _stream.queue.RangeDecoder(words)
        for c in range(channels):
            rows = last_rows if c == channels - 1 else height
            previous = net._previous_part(padded, c, row)
            plane = padded[..., c]
            for t in range(_WAVE * (rows - 1) + width if rows else 0):
                ys = np.arange(max(0, -(-(t - width + 1) // _WAVE)), min(rows - 1, t // _WAVE) + 1)
                xs = t - _WAVE * ys
                first = previous[ys, xs] + net._current_part(plane, ys, xs)
                plane[_PAD + ys, _PAD + xs] = decoder.decode(_FAMILY, net._probabilities(first, c))
    except (KeyboardInterrupt, SystemExit, IndexError, TypeError):
        raise  # not the data's fault
    except BaseException as exc:  # constriction: AssertionError / PanicException
        raise CorruptFileError(f"entropy-coded payload is corrupt: {exc}") from exc
    result = padded[_PAD:-_PAD, _PAD:-_PAD]
    if channels:
        result[last_rows:, :, -1] = 0
    return verified(np.ascontiguousarray(result, dtype=np.int32), net.num_centers, data,
                    lambda decoded: encode_symbols_with_net(decoded, net, last_rows, rate))


# -- fitting ---------------------------------------------------------------


def _features(symbols: np.ndarray, num_centers: int):
    """``(rows [n, P] int16, channel [n] int8, symbol [n] int8)`` of every symbol of a map."""
    height, width, channels = symbols.shape
    padded = _padded(symbols, num_centers)
    values = num_centers + 2
    rows, chans, targets = [], [], []
    for c in range(channels):
        cols = ([_shifted(padded, c, dy, dx) for dy, dx in CURRENT_OFFSETS]
                + _previous_values(padded, c, num_centers))
        index = np.stack(cols, -1).reshape(-1, len(cols)) + np.arange(len(cols)) * values
        rows.append(index.astype(np.int16))
        chans.append(np.full(height * width, c, np.int8))
        targets.append(symbols[:, :, c].reshape(-1).astype(np.int8))
    return np.concatenate(rows), np.concatenate(chans), np.concatenate(targets)


def fit_context_net(symbol_maps: Sequence[np.ndarray], num_centers: int,
                    steps: int = FIT_STEPS,
                    width: int = 96, batch: int = 4096, seed: int = 0, log=None,
                    rates: Sequence[int] | None = None) -> ContextNet:
    """Fit a :class:`ContextNet` to the symbol maps ``[h, w, C]`` of real images.

    Adam on the cross-entropy of every symbol (sampled uniformly), learning
    rate 2e-3 then 5e-4 for the last 30% of ``steps``, in float32; the
    result is rounded to the fixed point the coder evaluates.  ``rates``:
    each map's rate-position byte (a rate-adaptive model's maps, coded at
    many positions): the net learns a vector per band of them (``rate_bias``).
    """
    import tensorflow as tf

    if not symbol_maps:
        raise ValueError("fit_context_net needs at least one symbol map")
    channels = symbol_maps[0].shape[2]
    if any(m.ndim != 3 or m.shape[2] != channels for m in symbol_maps):
        raise ValueError("every symbol map must be [h, w, C] with the same C")
    if rates is not None and (len(rates) != len(symbol_maps)
                              or not all(0 <= int(r) <= 255 for r in rates)):
        raise ValueError("rates needs one rate-position byte (0-255) per symbol map")
    parts = [_features(np.asarray(m, np.int64), num_centers) for m in symbol_maps]
    rows, chans, targets = (np.concatenate([p[i] for p in parts]) for i in range(3))
    bands = np.concatenate([np.full(len(p[2]), 0 if rates is None else int(r) * RATE_ROWS // 256,
                                    np.int8) for p, r in zip(parts, rates or [0] * len(parts),
                                                             strict=True)])
    v1 = tf.compat.v1
    rng = np.random.default_rng(seed)
    inputs = rows.shape[1]
    with tf.Graph().as_default() as graph:
        v1.set_random_seed(seed)
        r_in = v1.placeholder(tf.int32, [None, inputs])
        c_in = v1.placeholder(tf.int32, [None])
        b_in = v1.placeholder(tf.int32, [None])
        y_in = v1.placeholder(tf.int32, [None])
        lr = v1.placeholder(tf.float32, [])
        init = v1.initializers.random_normal(stddev=0.05)
        embedding = v1.get_variable("embedding", [inputs * (num_centers + 2), width],
                                    initializer=init)
        channel_bias = v1.get_variable("channel_bias", [channels, width],
                                       initializer=v1.zeros_initializer())
        hidden_kernel = v1.get_variable(
            "hidden_kernel", [width, width],
            initializer=v1.initializers.random_normal(stddev=1 / np.sqrt(width)))
        hidden_bias = v1.get_variable("hidden_bias", [width], initializer=v1.zeros_initializer())
        output_kernel = v1.get_variable("output_kernel", [channels, width, num_centers],
                                        initializer=v1.zeros_initializer())
        output_bias = v1.get_variable("output_bias", [channels, num_centers],
                                      initializer=v1.zeros_initializer())
        first = tf.reduce_sum(tf.gather(embedding, r_in), 1) + tf.gather(channel_bias, c_in)
        rate_bias = v1.get_variable("rate_bias", [RATE_ROWS if rates is not None else 0, width],
                                    initializer=v1.zeros_initializer())
        if rates is not None:
            first += tf.gather(rate_bias, b_in)
        hidden = tf.nn.relu(tf.nn.relu(first) @ hidden_kernel + hidden_bias)
        logits = (tf.einsum("nd,ndl->nl", hidden, tf.gather(output_kernel, c_in))
                  + tf.gather(output_bias, c_in))
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y_in, logits))
        train = v1.train.AdamOptimizer(lr).minimize(loss)
        variables = [embedding, channel_bias, hidden_kernel, hidden_bias, output_kernel,
                     output_bias, rate_bias]
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            for step in range(steps):
                pick = rng.integers(0, len(targets), min(batch, len(targets)))
                value, _ = sess.run([loss, train], {
                    r_in: rows[pick], c_in: chans[pick], b_in: bands[pick], y_in: targets[pick],
                    lr: 2e-3 if step < 0.7 * steps else 5e-4})
                if log and (step + 1) % 1000 == 0:
                    log(f"context net: step {step + 1} of {steps}, "
                        f"{value / np.log(2):.3f} bits a symbol")
            values = sess.run(variables)
    return from_float(*values)


def from_float(embedding, channel_bias, hidden_kernel, hidden_bias, output_kernel,
               output_bias, rate_bias=None) -> ContextNet:
    """The :class:`ContextNet` of float weights (the arrays :func:`fit_context_net` trains),
    rounded to the coder's fixed point, with the ``exp`` table."""
    one, two = 2.0**FRACTION_BITS, 2.0**(2 * FRACTION_BITS)

    def weight(a):
        return np.clip(np.round(np.asarray(a, np.float64) * one), -WEIGHT_LIMIT, WEIGHT_LIMIT)

    gaps = np.arange(EXP_SIZE) / 2.0**LOGIT_BITS
    return ContextNet(
        embedding=weight(embedding), channel_bias=weight(channel_bias),
        hidden_kernel=weight(hidden_kernel), hidden_bias=np.round(np.asarray(hidden_bias) * two),
        output_kernel=weight(output_kernel), output_bias=np.round(np.asarray(output_bias) * two),
        exp_table=np.maximum(np.round(EXP_ONE * np.exp(-gaps)), 1),
        rate_bias=None if rate_bias is None else weight(rate_bias))
