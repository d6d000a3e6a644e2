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

__all__ = ["SCALE_SUFFIX", "quantize_int8", "dequantize_int8", "is_quantized",
           "stored_float"]

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


def stored_float(reader, key, checkpoint):
    """The float value of ``key`` from a checkpoint ``reader``: as stored, or
    dequantised from int8 with its scales under ``key + SCALE_SUFFIX``.

    ``reader`` is a ``tf.train.load_checkpoint`` reader (anything with
    ``get_tensor`` and ``has_tensor``).  Raises ValueError, naming
    ``checkpoint``, when the scales are missing or do not fit.
    """
    value = reader.get_tensor(key)
    if value.dtype != np.int8:
        return value
    if not reader.has_tensor(key + SCALE_SUFFIX):
        raise ValueError(f"checkpoint {checkpoint!r} stores {key} as int8 without its scales "
                         f"({key}{SCALE_SUFFIX}); export it again")
    try:
        return dequantize_int8(value, reader.get_tensor(key + SCALE_SUFFIX))
    except ValueError as e:
        raise ValueError(f"checkpoint {checkpoint!r}: {key}: {e}") from None
