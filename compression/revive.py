"""Dead bottleneck channels: find them, and bring them back to life for a fine-tune.

A channel is dead when the encoder gives it one symbol everywhere.  Two
things keep it so.  The decoder's first convolution is followed by an
instance norm (:func:`compression.decoder.decoder_head`), which removes
anything constant across the image, so a constant channel is invisible to
the decoder and its distortion gradient is zero.  And the encoder's output
for it usually sits far beyond the outer centres, where the bounded
quantiser's ``tanh`` (:func:`compression.quantizer.bound`) is flat.  The
rate term is what drives a channel there (a constant costs nothing), and no
later change of the rate weight brings it back: the ``general`` shipped
before 2026-12-06's evening had channels 7 and 8 always at 0, 9 at -1 and
10 at -2 (raw means -1.05 and -5.18; docs/benchmarks.md).

:func:`revive` rescales a dead channel's output of the encoder's last
convolution to ``s * (w - mean)`` around the centres' midpoint, ``s``
making its spread a tenth of a centre spacing: every symbol becomes the
middle centre, still a constant (so the decoder decodes as before, exactly
for whole channels), and the encoder's gradient is alive again.  A
fine-tune with a small rate factor on those channels
(``train --rate-channel-weights``) can then fill them.

A bottleneck can also grow (``train --init-from RUN --channels N`` above the
source's ``C``): the ``grow_*`` functions give every variable whose shape
holds ``C`` its new shape, with the new channels born in that revived
state.  The encoder gives them the centres' midpoint everywhere (a zero
kernel), so the decoder, whose weights for them are random, sees a constant
that its instance norm removes and decodes as the source did; the
straight-through quantiser passes the encoder a gradient through those
random weights, so training fills them.  The noise map's new channels enter
the decoder with zero weights, for the same reason.  Files of ``k <= C``
channels code as before, and the model's rate can reach further (its bound
is ``N * log2(L) / 256``).
"""

import numpy as np

from compression.errors import CompressionError
from compression.quantizer import bound_parameters

__all__ = ["dead_channels", "revive", "symbols_of", "midpoint_symbol", "check_growth",
           "grown_config_fields", "grow_counts", "grow_decoder_input", "grow_encoder_output",
           "grow_fill", "grow_last_axis", "DEAD_SHARE", "REVIVED_SPREAD"]

#: A channel is dead when this share of its symbols or more is one symbol.
DEAD_SHARE = 0.999
#: A revived channel's standard deviation, in centre spacings.
REVIVED_SPREAD = 0.1


def _bound(w, centers):
    """numpy twin of :func:`compression.quantizer.bound`."""
    mid, half = bound_parameters(centers)
    return mid + half * np.tanh((w - mid) / half)


def symbols_of(latents, centers, quantizer):
    """The centre indices the quantiser gives raw encoder outputs ``latents`` ``[..., C]``."""
    w = np.asarray(latents, np.float64)
    if quantizer == "bounded_ste":
        w = _bound(w, centers)
    return np.argmin(np.abs(w[..., None] - np.asarray(centers, np.float64)), axis=-1)


def dead_channels(latents, centers, quantizer, share=DEAD_SHARE):
    """Channels of ``latents`` (raw encoder outputs ``[..., C]``) that hold one symbol.

    Returns ``{channel: symbol index}`` for every channel whose most common
    symbol is at least ``share`` of its entries.
    """
    symbols = symbols_of(latents, centers, quantizer).reshape(-1, np.shape(latents)[-1])
    dead = {}
    for c in range(symbols.shape[1]):
        counts = np.bincount(symbols[:, c], minlength=len(centers))
        if counts.max() >= share * len(symbols):
            dead[c] = int(np.argmax(counts))
    return dead


def revive(kernel, bias, latents, channels, centers):
    """The encoder's last convolution with ``channels`` revived -> ``(kernel, bias)``.

    ``kernel`` ``[kh, kw, in, C]`` and ``bias`` ``[C]`` make the raw outputs
    ``latents`` ``[..., C]`` (measured on training images); each listed
    channel's output becomes ``s * (w - mean(w))`` (plus the centres'
    midpoint, where the bound is steepest) with ``s`` such that its standard
    deviation is :data:`REVIVED_SPREAD` of the centres' spacing (never
    scaled up).  New arrays; the inputs are not changed.
    """
    kernel, bias = np.array(kernel, np.float32), np.array(bias, np.float32)
    w = np.asarray(latents, np.float64).reshape(-1, np.shape(latents)[-1])
    spacing = (max(centers) - min(centers)) / (len(centers) - 1)
    mid, _ = bound_parameters(centers)
    for c in channels:
        mean, std = w[:, c].mean(), w[:, c].std()
        s = min(1.0, REVIVED_SPREAD * spacing / std) if std > 0 else 1.0
        kernel[..., c] *= s
        bias[c] = s * (bias[c] - mean) + mid
    return kernel, bias


def midpoint_symbol(centers):
    """The centre index nearest the centres' midpoint: what new and revived channels hold."""
    mid, _ = bound_parameters(centers)
    return int(np.argmin(np.abs(np.asarray(centers, np.float64) - mid)))


def grow_encoder_output(old, channels, centers):
    """The encoder's last convolution, kernel ``[kh, kw, in, C]`` or bias ``[C]``, grown
    to ``channels``: new kernels 0 and new biases the centres' midpoint, so each new
    channel holds the middle symbol everywhere, where the bound is steepest."""
    old = np.asarray(old, np.float32)
    pad = np.zeros(old.shape[:-1] + (channels - old.shape[-1],), np.float32)
    if old.ndim == 1:
        pad += bound_parameters(centers)[0]
    return np.concatenate([old, pad], axis=-1)


def grow_fill(old, channels, centers):
    """The decoder's ``channel_fill`` ``[C]`` grown to ``channels``: the new channels'
    fill is the symbol they hold, so a file that drops them decodes as one that codes them."""
    old = np.asarray(old, np.float32)
    mid = np.float32(centers[midpoint_symbol(centers)])
    return np.concatenate([old, np.full(channels - len(old), mid, np.float32)])


def grow_last_axis(old, fresh):
    """``fresh`` (this graph's initial value, ``[..., N]``) with ``old`` ``[..., C]`` in its
    leading channels: the noise generator's projection keeps its trained channels, and
    its new ones start as initialised (the decoder reads them with zero weights)."""
    new = np.array(fresh, np.float32)
    new[..., :np.shape(old)[-1]] = old
    return new


def grow_decoder_input(old, fresh, source_channels, channels, noise, source_semantic):
    """The decoder's first kernel ``[kh, kw, C (+C) (+S), F]`` for a bottleneck grown from
    ``source_channels`` (``C``) to ``channels`` (``N``).

    Its input is ``w_hat``, then the noise map (``noise``), then the semantic
    features; ``fresh`` ``[kh, kw, N (+N) (+S), F]`` is this graph's initial
    value.  The source's rows keep their places in each part.  The new
    ``w_hat`` rows keep ``fresh``: they read a constant, which the instance norm
    after them removes, and pass the new channels a gradient.  The new noise
    rows are 0, and so is a semantic part the source did not have (it then
    learns from 0).  With ``N == C`` only that last case applies: a semantic
    branch added to a non-semantic source.
    """
    old, new = np.asarray(old, np.float32), np.array(fresh, np.float32)
    c, n = source_channels, channels
    new[:, :, :c] = old[:, :, :c]
    end_old, end_new = c, n
    if noise:
        new[:, :, n:n + c] = old[:, :, c:2 * c]
        new[:, :, n + c:2 * n] = 0.0
        end_old, end_new = 2 * c, 2 * n
    new[:, :, end_new:] = old[:, :, end_old:] if source_semantic else 0.0
    return new


def grow_counts(old, channels, centers):
    """Entropy counts ``[C, L]`` (the histogram) or ``[C, K, L]`` (in context) grown to
    ``channels``.  A new channel's histogram holds the middle symbol only, with the
    mean mass of the others' (what it holds, priced so: the rate term does not push
    it back), and its context counts are 0 (priced by its histogram until they fill)."""
    old = np.asarray(old, np.float64)
    pad = np.zeros((channels - old.shape[0],) + old.shape[1:], np.float64)
    if old.ndim == 2:
        pad[:, midpoint_symbol(centers)] = old.sum(axis=1).mean() if len(old) else 0.0
    return np.concatenate([old, pad])


def check_growth(source_channels, channels, name):
    """Raises :class:`CompressionError` when a fine-tune of the run ``name`` would have
    fewer bottleneck channels than it: trained channels are never dropped."""
    if channels < source_channels:
        raise CompressionError(
            f"--init-from {name}: it has {source_channels} bottleneck channels and this "
            f"config {channels}; a fine-tune can add channels (they start empty) but not "
            f"drop trained ones: give --channels {source_channels} or more")


def grown_config_fields(source, fields, name):
    """``fields`` (a fine-tune's config overrides of the ``source`` config) with the
    source's per-channel lists extended when ``fields`` grows its channels.

    ``channel_weights`` (one per ``k``) and ``rate_channel_weights`` (one per
    channel) not given anew repeat their last value for the new channels: the
    new ``k`` drawn as often as the largest, the new channels priced as the
    last.  Raises as :func:`check_growth` does.
    """
    channels = fields.get("channels", source.channels)
    check_growth(source.channels, channels, name)
    grown = dict(fields)
    extra = channels - source.channels
    for field in ("channel_weights", "rate_channel_weights"):
        values = tuple(getattr(source, field))
        if extra and values and field not in fields:
            grown[field] = values + values[-1:] * extra
    return grown
