"""Rate control: how many bottleneck channels a file codes, for a target bpp.

A variable-rate model (``CompressionConfig.min_channels < channels``) decodes
any leading ``k`` of its ``C`` channels, ``k >= min_channels``.  For a target
rate the encoder codes the largest ``k`` whose *whole file* (header, payload
and CRC) fits, found by coding, not by estimate: coding is about 0.3% of a
decode, and only real sizes guarantee the target.  A fixed-rate model has one
``k`` (= ``C``), so a target can only be checked.

Whole channels leave part of the budget unused: one channel of the shipped
models costs 10-20% of a 0.036 bpp file.  The rest can code the leading rows
of channel ``k + 1`` (:func:`largest_rows`; the stream's channel-major order
makes them a prefix of ``k + 1`` channels' stream, and the decoder fills the
other rows as it fills a dropped channel, ``compression.decoder``).

A rate-adaptive model (``compression.gain``) has a finer dial first: its rate
position, one byte in the file.  For a target the encoder takes the
highest-rate position whose file with every channel fits
(:func:`highest_rate_position`), and cuts channels only when even the lowest
rate is too large: a model trained for a rate beats one with channels cut to
it by about 0.01 MS-SSIM (docs/benchmarks.md).
"""

import numpy as np

from compression.errors import RateError

__all__ = ["channel_choices", "check_channels", "choose_channels", "file_bpp",
           "highest_rate_position", "largest_rows", "partial_channel"]


def channel_choices(config):
    """The channel counts a file of ``config``'s model may code, ascending."""
    return range(config.smallest_channels, config.channels + 1)


def check_channels(config, channels):
    """``channels`` if a file of ``config``'s model may code that many leading
    channels; else :class:`~compression.errors.RateError` naming the range."""
    choices = channel_choices(config)
    if channels not in choices:
        raise RateError(f"this model codes {choices.start}..{choices.stop - 1} leading "
                        f"channels, not {channels}")
    return channels


def file_bpp(size, pixels):
    """Bits per pixel of a ``size``-byte file of an image of ``pixels`` pixels."""
    return 8.0 * size / pixels


def choose_channels(code, choices, pixels, bpp, largest_bytes=None):
    """The largest ``k`` in ``choices`` whose file fits ``bpp``: ``(k, data)``.

    Args:
      code: ``k -> bytes``, the complete file coding the leading ``k`` channels.
      choices: candidate ``k``, ascending (:func:`channel_choices`).
      pixels: pixels of the original image (the rate's denominator).
      bpp: target rate of the whole file, bits per pixel; None: the largest ``k``.
      largest_bytes: size of the largest file the model writes for this image when
        that is not the largest ``k``'s (a rate-adaptive model's channels are cut
        at its lowest rate; its largest file is every channel at its highest):
        the error names the range up to it.

    Raises:
      RateError: even the smallest ``k`` gives a larger file; the message
        names the achievable range for this image.
    """
    choices = list(choices)
    if bpp is None:
        return choices[-1], code(choices[-1])
    if not bpp > 0:
        raise RateError(f"the target rate must be a positive number of bits per pixel, got {bpp}")
    largest = None
    # Downwards: file sizes grow with k, so the first fit is the largest k
    # that fits, and a generous target costs one coding.
    for k in reversed(choices):
        data = code(k)
        if largest is None:
            largest = data
        if file_bpp(len(data), pixels) <= bpp:
            return k, data
    smallest = file_bpp(len(data), pixels)
    top = file_bpp(max(len(largest), largest_bytes or 0), pixels)
    if len(choices) == 1 and largest_bytes is None:
        raise RateError(
            f"target {bpp:g} bpp is below this fixed-rate model's file for this image, "
            f"{smallest:.4f} bpp ({choices[0]} channels); ask for at least that, or use a "
            "variable-rate model (train --min-channels)")
    kept = (f"{choices[0]} of {choices[-1]} channels" if len(choices) > 1
            else "at its lowest rate")
    raise RateError(
        f"target {bpp:g} bpp is below the smallest file this model writes for this image: "
        f"{smallest:.4f} bpp ({kept}); its range for this image is {smallest:.4f}-{top:.4f} bpp")


def partial_channel(symbols, rows):
    """``symbols`` ``[h, w, k]`` as a file coding ``rows`` rows of its last channel
    decodes them: that channel's later rows are 0 (a copy)."""
    symbols = np.array(symbols)
    symbols[rows:, :, -1] = 0
    return symbols


def largest_rows(code, height, pixels, bpp):
    """The most leading rows of one more channel whose file fits ``bpp``: ``(rows, data)``.

    Args:
      code: ``rows -> bytes``, the complete file coding that many rows of the
        extra channel (``1 .. height - 1``).
      height: ``h``, the bottleneck's rows.
      pixels: pixels of the original image (the rate's denominator).
      bpp: target rate of the whole file.

    Returns ``(None, None)`` when not even one row fits.  Files grow with the
    rows (a longer prefix of the same stream), so a bisection finds them in
    about ``log2(h)`` codings.
    """
    best, low, high = (None, None), 1, height - 1
    while low <= high:
        middle = (low + high) // 2
        data = code(middle)
        if file_bpp(len(data), pixels) <= bpp:
            best, low = (middle, data), middle + 1
        else:
            high = middle - 1
    return best


def highest_rate_position(code, pixels, bpp, levels=255):
    """The smallest rate-position byte (the highest rate) whose file fits ``bpp``.

    Args:
      code: ``byte -> bytes``, the complete file at that rate position
        (``0`` the highest rate, ``levels`` the lowest).
      pixels: pixels of the original image.
      bpp: target rate of the whole file.
      levels: the largest byte.

    Returns ``levels`` when not even that fits (the caller then cuts
    channels).  Files shrink as the byte grows (not strictly: a bisection
    assumes it, and every file it returns was coded and fits, or is
    ``levels``), so about ``log2(levels)`` codings find it.
    """
    if not bpp > 0:
        raise RateError(f"the target rate must be a positive number of bits per pixel, got {bpp}")
    if file_bpp(len(code(0)), pixels) <= bpp:
        return 0
    low, high = 0, levels  # low does not fit; high fits or is the last resort
    while high - low > 1:
        middle = (low + high) // 2
        if file_bpp(len(code(middle)), pixels) <= bpp:
            high = middle
        else:
            low = middle
    return high
