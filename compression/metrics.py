"""Image quality and rate metrics: PSNR, MS-SSIM and bits per pixel.

All metrics take uint8 images (``[H, W, 3]`` or ``[H, W]``) and measure on
the 8-bit scale (peak value 255), the convention of the paper's figures.

MS-SSIM on small images.  :func:`tf.image.ssim_multiscale` uses 5 scales and
an 11x11 Gaussian window; every scale halves the image, so the smaller side
must be at least ``11 * 2**4 = 176`` pixels or TensorFlow fails.  For smaller
images :func:`ms_ssim` uses the largest number of scales ``s`` (1 to 5) with
``min(H, W) / 2**(s - 1) >= 11`` and the first ``s`` standard power factors
(0.0448, 0.2856, 0.3001, 0.2363, 0.1333) divided by their sum, so the
exponents still add up to 1 and a perfect match still scores 1.0.  With one
scale that is plain SSIM.  Below 11 pixels the window shrinks to the smaller
side.  Values for images under 176 pixels are therefore not directly
comparable with full 5-scale MS-SSIM values; :func:`ms_ssim_parameters` says
which setting a size gets.
"""

import math
import threading

import numpy as np
import tensorflow as tf

__all__ = [
    "psnr",
    "chroma_error",
    "chroma_speckle",
    "ms_ssim",
    "ms_ssim_parameters",
    "bits_per_pixel",
    "MS_SSIM_POWER_FACTORS",
    "MS_SSIM_FILTER_SIZE",
]

# Wang, Simoncelli & Bovik (2003), the defaults of tf.image.ssim_multiscale.
MS_SSIM_POWER_FACTORS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MS_SSIM_FILTER_SIZE = 11
_PEAK = 255.0

_v1 = tf.compat.v1


def _as_pair(a, b, name):
    """Validate two uint8 images of equal shape -> float64 arrays."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.dtype != np.uint8 or b.dtype != np.uint8:
        raise ValueError(
            f"{name} expects uint8 images (8-bit, peak 255), got {a.dtype} and {b.dtype}; "
            "convert [-1, 1] floats with compression.image_io.to_uint8"
        )
    if a.shape != b.shape:
        raise ValueError(f"{name}: images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim not in (2, 3) or a.size == 0:
        raise ValueError(f"{name} expects images [H, W, C] or [H, W], got shape {a.shape}")
    return a, b


def psnr(a, b):
    """Peak signal-to-noise ratio in dB between uint8 images (peak 255).

    Identical images give ``inf``.  Returns a Python float.
    """
    a, b = _as_pair(a, b, "psnr")
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    if mse == 0:
        return math.inf
    return float(10.0 * math.log10(_PEAK**2 / mse))


def chroma_error(a, b):
    """Mean absolute colour error between uint8 RGB images, in 8-bit levels.

    Each pixel's chroma is its RGB value minus the mean of its three
    channels (what is left when its grey level is taken out); this is the
    mean over pixels and channels of ``|chroma(a) - chroma(b)|``.  Colour
    drift shows here while PSNR hardly moves: a reconstruction decoded in
    grey scores the original's own mean ``|chroma|``, a faithful one 0.
    Returns a Python float.
    """
    a, b = _as_pair(a, b, "chroma_error")
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"chroma_error expects RGB images [H, W, 3], got shape {a.shape}")
    return float(np.mean(np.abs(_chroma(a) - _chroma(b))))


def _chroma(image):
    """``image`` ``[H, W, 3]`` as float64 chroma: each pixel less the mean of its channels."""
    image = image.astype(np.float64)
    return image - image.mean(-1, keepdims=True)


def _chroma_roughness(image):
    """``[H-1, W-1]``: each pixel's chroma difference to its lower and right neighbours."""
    chroma = _chroma(image)
    return (np.abs(np.diff(chroma, axis=0))[:, :-1].mean(-1)
            + np.abs(np.diff(chroma, axis=1))[:-1].mean(-1))


def chroma_speckle(original, decoded, tile=32):
    """Colour speckle a decode adds: ``(worst, typical)`` over its tiles, in 8-bit levels.

    Speckle is the chroma difference between neighbouring pixels (chroma as in
    :func:`chroma_error`); each ``tile`` x ``tile`` tile (at half-tile steps)
    scores the mean of the decode's speckle less the original's, and this
    returns the worst tile's score and the median's.  A decoder fed an unlucky
    noise map can paint a patch of coloured checkerboard onto a smooth region
    (docs/benchmarks.md, twenty-ninth session): worst 7-13 with a typical
    tile near 0.  Faithful decodes of val photographs score worst 0-5; a
    decode speckled everywhere (an untrained model's) has a high typical
    score too.  Images smaller than a tile score their whole area as one.
    """
    a, b = _as_pair(original, decoded, "chroma_speckle")
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"chroma_speckle expects RGB images [H, W, 3], got shape {a.shape}")
    if min(a.shape[:2]) < 2:
        return 0.0, 0.0
    excess = _chroma_roughness(b) - _chroma_roughness(a)
    tile = max(1, min(int(tile), *excess.shape))
    # Tile sums from an integral image: every tile at half-tile steps in one pass.
    total = np.pad(excess.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    step = max(1, tile // 2)
    rows = np.arange(0, excess.shape[0] - tile + 1, step)[:, None]
    cols = np.arange(0, excess.shape[1] - tile + 1, step)[None]
    means = (total[rows + tile, cols + tile] - total[rows, cols + tile]
             - total[rows + tile, cols] + total[rows, cols]) / (tile * tile)
    return float(means.max()), float(np.median(means))


def ms_ssim_parameters(height, width):
    """``(scales, filter_size, power_factors)`` that :func:`ms_ssim` uses for a size.

    See the module docstring for the rule.
    """
    side = min(int(height), int(width))
    if side < 1:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    if side < MS_SSIM_FILTER_SIZE:
        scales, filter_size = 1, side
    else:
        filter_size = MS_SSIM_FILTER_SIZE
        scales = 1
        # Scale s (1-based) sees the image downsampled by 2**(s-1).
        while (scales < len(MS_SSIM_POWER_FACTORS)
               and side / 2**scales >= MS_SSIM_FILTER_SIZE):
            scales += 1
    weights = MS_SSIM_POWER_FACTORS[:scales]
    total = sum(weights)
    return scales, filter_size, tuple(w / total for w in weights)


def _ms_ssim_op(a, b, filter_size, power_factors):
    """The MS-SSIM op on float32 tensors ``[1, H, W, C]`` valued 0..255."""
    return tf.image.ssim_multiscale(
        a, b, max_val=_PEAK, power_factors=power_factors, filter_size=filter_size,
    )[0]


# Graph-mode fallback: one graph and session per (shape, setting), built once,
# because building a graph per call would cost far more than running it.
_graph_cache = {}
_graph_lock = threading.Lock()
_GRAPH_CACHE_SIZE = 8


def _ms_ssim_graph(a, b, filter_size, power_factors):
    """Compute MS-SSIM in a private graph and session (used when eager is disabled)."""
    key = (a.shape, filter_size, power_factors)
    with _graph_lock:
        entry = _graph_cache.get(key)
        if entry is None:
            if len(_graph_cache) >= _GRAPH_CACHE_SIZE:
                # Drop the oldest entry (dicts keep insertion order) and free its session.
                old_key = next(iter(_graph_cache))
                _graph_cache.pop(old_key)[1].close()
            graph = tf.Graph()
            with graph.as_default():
                pa = _v1.placeholder(tf.float32, a.shape)
                pb = _v1.placeholder(tf.float32, b.shape)
                out = _ms_ssim_op(pa, pb, filter_size, power_factors)
            entry = (graph, _v1.Session(graph=graph), pa, pb, out)
            _graph_cache[key] = entry
    _, sess, pa, pb, out = entry
    return sess.run(out, {pa: a, pb: b})


def ms_ssim(a, b):
    """Multi-scale SSIM between uint8 images (``max_val`` 255) as a Python float.

    Uses :func:`tf.image.ssim_multiscale`, with fewer scales for images whose
    smaller side is under 176 pixels (see the module docstring).  Identical
    images give 1.0.

    Works in any TensorFlow context: it never adds ops to the caller's
    default graph.  When eager execution is available (the TF2 default, also
    inside ``with tf.Graph().as_default():`` or a ``tf.function``) it runs
    eagerly; if eager execution was disabled globally it runs in a private
    graph and session cached per image shape.
    """
    a, b = _as_pair(a, b, "ms_ssim")
    if a.ndim == 2:
        a, b = a[:, :, None], b[:, :, None]
    _, filter_size, power_factors = ms_ssim_parameters(a.shape[0], a.shape[1])
    a = a[None].astype(np.float32)
    b = b[None].astype(np.float32)
    # init_scope leaves any graph the caller has entered and goes to the
    # outermost context, which is eager unless eager was disabled.
    with tf.init_scope():
        if tf.executing_eagerly():
            value = _ms_ssim_op(tf.constant(a), tf.constant(b), filter_size, power_factors)
            return float(value.numpy())
    return float(_ms_ssim_graph(a, b, filter_size, power_factors))


def bits_per_pixel(num_bytes, height, width):
    """Rate of a file of ``num_bytes`` bytes for an ``height`` x ``width`` image."""
    if int(height) < 1 or int(width) < 1:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    if num_bytes < 0:
        raise ValueError(f"num_bytes must be >= 0, got {num_bytes}")
    return 8.0 * num_bytes / (int(height) * int(width))
