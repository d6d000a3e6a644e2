"""8-bit storage of inference weights (``gcompress export --dtype int8``).

Shipped models live inside the package, whose budget is 40 MB; a width-0.25
model is 12.3M parameters, 24.7 MB in float16, so two of them need smaller
weights.  Every kernel (a weight of two or more dimensions: 99.8% of the
parameters) is stored as int8 with one float32 scale per slice along its last
axis (symmetric, ``w ~= q * scale`` with ``|q| <= 127``); biases and norm
parameters stay float16.  Loading multiplies back to float32, so the graph,
its variable names and the session API do not change: only the values are
rounded, like float16 but coarser (docs/benchmarks.md has what it costs).
"""

import numpy as np

__all__ = ["SCALE_SUFFIX", "quantize_int8", "dequantize_int8", "is_quantized"]

#: A kernel ``name`` stored as int8 has its scales under ``name + SCALE_SUFFIX``.
SCALE_SUFFIX = "/int8_scale"
_LEVELS = 127


def is_quantized(value):
    """Whether ``value`` (float32) is a kernel that int8 export stores as int8."""
    return value.dtype == np.float32 and value.ndim >= 2


def quantize_int8(value):
    """``(q, scale)``: int8 ``q`` of ``value``'s shape and float32 ``scale`` of its last axis.

    Each slice ``value[..., j]`` is scaled so its largest magnitude maps to
    127; an all-zero slice gets scale 1 (it stays exactly zero).
    """
    value = np.asarray(value, np.float32)
    peak = np.max(np.abs(value.reshape(-1, value.shape[-1])), axis=0)
    scale = np.where(peak > 0, peak / _LEVELS, 1.0).astype(np.float32)
    q = np.clip(np.rint(value / scale), -_LEVELS, _LEVELS).astype(np.int8)
    return q, scale


def dequantize_int8(q, scale):
    """float32 ``q * scale`` (``scale`` broadcasts over ``q``'s last axis)."""
    q, scale = np.asarray(q), np.asarray(scale, np.float32)
    if q.dtype != np.int8 or scale.shape != (q.shape[-1],):
        raise ValueError(f"int8 weights of shape {q.shape} ({q.dtype}) need {q.shape[-1]} "
                         f"float scales, got shape {scale.shape}")
    return q.astype(np.float32) * scale
