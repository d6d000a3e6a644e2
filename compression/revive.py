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
"""

import numpy as np

from compression.quantizer import bound_parameters

__all__ = ["dead_channels", "revive", "symbols_of", "DEAD_SHARE", "REVIVED_SPREAD"]

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
