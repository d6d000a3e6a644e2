"""Colour correction: a per-channel gain and mean that a file carries in 6 bytes.

The decoder's instance norms normalise away each feature map's mean and
scale, so the global colour and contrast of an image must be rebuilt from
the bottleneck's spatial patterns.  On photographs unlike the training set
they come out wrong: on BSDS500 val the shipped ``general`` model decoded
with a mean colour 18 levels off on average (a colour cast), where street
scenes are off by 4 (docs/benchmarks.md).  HiFiC replaced instance norm by
ChannelNorm against such shifts (Mentzer et al. 2020, "High-Fidelity
Generative Image Compression"), which needs retraining; this repairs trained
decoders at the codec level instead.

The encoder decodes its own file and maps each RGB channel of the
reconstruction ``y`` to ``gain * (y - mean(y)) + mean(x)``, ``x`` the
original; it stores ``mean(x)`` (one byte a channel) and the gain (one byte,
in steps of :data:`GAIN_STEP`).  The gain is ``sqrt(rho) * std(x) / std(y)``
(``rho`` the correlation of ``x`` and ``y``, 0 when negative): the geometric
mean of the least-squares gain ``rho * std(x) / std(y)``, which minimises
the squared error but flattens texture the decoder drew where it does not
match the original, and ``std(x) / std(y)``, which restores the original's
contrast (what MS-SSIM's contrast term and a generator's texture want).  On
the shipped ``general`` model it was within 0.05 dB of least squares and
better in MS-SSIM (docs/benchmarks.md).  The
decoder applies it to what it decoded, with the mean of its own output, so
the correction holds even where another machine's arithmetic decodes a
slightly different ``y``.  This is what a video codec's adaptive loop filter
does with a few coefficients a frame.  A 3x3 or 5x5 filter a channel
gained at most 0.11 dB more than this gain and mean, and a full 3x4 colour
matrix at most 0.12 dB (docs/benchmarks.md), for 2 to 13 times the values.
"""

import numpy as np

from compression.bitstream import CORRECTION_SIZE

__all__ = ["fit_correction", "apply_correction", "GAIN_STEP", "MAX_GAIN", "CORRECTION_SIZE"]

#: Resolution of a stored gain: 1/64 moves a 50-level contrast by under 1 level.
GAIN_STEP = 1.0 / 64
#: Largest stored gain (byte 255).
MAX_GAIN = 255 * GAIN_STEP


#: Pixels handled at once: a whole-image float64 copy of a 16-megapixel decode
#: would be 400 MB, where the tiled decoder bounds its own memory.
_BLOCK_PIXELS = 1 << 20


def _check(image, what):
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or not image.size:
        raise ValueError(f"expected a uint8 [H, W, 3] {what}, got {image.dtype} {image.shape}")
    return image


def _blocks(height, width):
    """Row slices of at most about :data:`_BLOCK_PIXELS` pixels covering ``height`` rows."""
    rows = max(1, _BLOCK_PIXELS // width)
    return [slice(top, min(top + rows, height)) for top in range(0, height, rows)]


def _float(block):
    return block.reshape(-1, 3).astype(np.float64)


def fit_correction(original, decoded):
    """The correction that brings ``decoded`` to ``original``'s colours -> 6 bytes.

    Both are uint8 ``[H, W, 3]`` of the same size.  Per channel: the
    original's mean, rounded, and the gain ``sqrt(rho) * std(x) / std(y)``
    (see the module docstring), rounded to :data:`GAIN_STEP` and clipped to
    ``[0, MAX_GAIN]``; a flat decoded channel keeps gain 1.
    """
    original, decoded = _check(original, "original"), _check(decoded, "decoded image")
    if original.shape != decoded.shape:
        raise ValueError(f"original and decoded images differ in size: "
                         f"{original.shape} vs {decoded.shape}")
    h, w = original.shape[:2]
    n = float(h * w)
    sums = np.zeros((5, 3))  # x, y, x^2, y^2, xy
    for rows in _blocks(h, w):
        x, y = _float(original[rows]), _float(decoded[rows])
        sums += [x.sum(0), y.sum(0), (x * x).sum(0), (y * y).sum(0), (x * y).sum(0)]
    mx, my = sums[0] / n, sums[1] / n
    sx = np.sqrt(np.maximum(sums[2] / n - mx * mx, 0.0))
    sy = np.sqrt(np.maximum(sums[3] / n - my * my, 0.0))
    covariance = sums[4] / n - mx * my
    flat = (sx == 0) | (sy == 0)
    rho = np.where(flat, 0.0, covariance / np.where(flat, 1.0, sx * sy))
    gains = np.where(sy > 0, np.sqrt(np.maximum(rho, 0.0)) * sx / np.where(sy > 0, sy, 1.0), 1.0)
    stored_means = np.clip(np.rint(mx), 0, 255)
    stored_gains = np.clip(np.rint(gains / GAIN_STEP), 0, 255)
    return bytes(np.concatenate([stored_means, stored_gains]).astype(np.uint8))


def apply_correction(decoded, correction):
    """``decoded`` (uint8 ``[H, W, 3]``) with a stored ``correction`` applied -> uint8.

    ``out = gain * (decoded - mean(decoded)) + mean``, per channel, rounded
    and clipped to 0..255.
    """
    if len(correction) != CORRECTION_SIZE:
        raise ValueError(f"a colour correction is {CORRECTION_SIZE} bytes, "
                         f"got {len(correction)}")
    decoded = _check(decoded, "decoded image")
    h, w = decoded.shape[:2]
    stored = np.frombuffer(bytes(correction), np.uint8).astype(np.float64)
    means, gains = stored[:3], stored[3:] * GAIN_STEP
    blocks = _blocks(h, w)
    mean = sum(_float(decoded[rows]).sum(0) for rows in blocks) / (h * w)
    out = np.empty_like(decoded)
    for rows in blocks:
        corrected = (_float(decoded[rows]) - mean) * gains + means
        out[rows] = np.clip(np.rint(corrected), 0, 255).astype(np.uint8).reshape(
            decoded[rows].shape)
    return out
