"""compression.weights: int8 storage of kernels for shipped models."""

import numpy as np
import pytest

from compression.weights import dequantize_int8, is_quantized, quantize_int8


def test_round_trip_error_is_at_most_half_a_step_per_output_channel():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 1, (3, 3, 16, 8)).astype(np.float32) * np.arange(1, 9, dtype=np.float32)
    q, scale = quantize_int8(w)
    assert q.dtype == np.int8 and q.shape == w.shape and scale.shape == (8,)
    assert np.abs(q).max() == 127  # each channel's peak uses the whole range
    error = np.abs(dequantize_int8(q, scale) - w)
    assert np.all(error <= scale / 2 + 1e-7)
    # Per-channel scales: the small channel is not coarsened by the large one.
    assert error[..., 0].max() < error[..., 7].max() / 4


def test_zero_channels_stay_exactly_zero():
    w = np.zeros((4, 3), np.float32)
    w[:, 1] = [0.5, -1.0, 0.25, 0.0]
    q, scale = quantize_int8(w)
    out = dequantize_int8(q, scale)
    assert np.all(out[:, [0, 2]] == 0) and scale[0] == 1.0
    np.testing.assert_allclose(out[:, 1], w[:, 1], atol=1.0 / 254)


def test_only_float_kernels_are_quantized():
    assert is_quantized(np.zeros((3, 3, 2, 2), np.float32))
    assert not is_quantized(np.zeros(8, np.float32))  # biases, norm parameters
    assert not is_quantized(np.zeros((16, 5), np.float64))  # the symbol histogram


def test_mismatched_scales_are_refused():
    q, scale = quantize_int8(np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match="4 float scales"):
        dequantize_int8(q, scale[:3])
    with pytest.raises(ValueError, match="int8"):
        dequantize_int8(q.astype(np.int16), scale)
