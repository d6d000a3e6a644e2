"""Tests for compression.entropy_model: probability tables and range coding."""

import math

import numpy as np
import pytest

from compression.entropy_model import (
    UNIFORM_MIX,
    bound_bits,
    decode_symbols,
    encode_symbols,
    estimated_bits,
    minimum_bits,
    probabilities_from_counts,
    uniform_probabilities,
)
from compression.errors import CorruptFileError


def skewed_counts(rng: np.random.Generator, channels: int, centers: int) -> np.ndarray:
    """Histogram ``[C, L]`` of a peaked per-channel distribution, as training makes."""
    probs = rng.dirichlet(np.full(centers, 0.3), size=channels)
    return np.round(probs * 1e6)


def sample_symbols(
    rng: np.random.Generator, shape: tuple[int, int, int], probs: np.ndarray
) -> np.ndarray:
    """Draw ``[h, w, C]`` symbols, channel c from ``probs[c]``."""
    height, width, channels = shape
    planes = [
        rng.choice(probs.shape[1], size=(height, width), p=probs[c] / probs[c].sum())
        for c in range(channels)
    ]
    return np.stack(planes, axis=-1).astype(np.int64)


SHAPES = [(1, 1, 1), (1, 1, 4), (3, 5, 2), (7, 1, 3), (1, 9, 1), (17, 23, 8), (32, 64, 8)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("centers", [2, 5, 7])
def test_round_trip_is_exact(shape, centers):
    rng = np.random.default_rng(hash((shape, centers)) % 2**32)
    probs = probabilities_from_counts(skewed_counts(rng, shape[2], centers))
    symbols = sample_symbols(rng, shape, probs)
    data = encode_symbols(symbols, probs)
    assert isinstance(data, bytes)
    assert len(data) % 4 == 0
    decoded = decode_symbols(data, shape, probs)
    assert decoded.dtype == np.int32
    assert decoded.shape == shape
    np.testing.assert_array_equal(decoded, symbols)


def test_large_map_round_trip():
    rng = np.random.default_rng(7)
    shape = (256, 512, 16)
    probs = probabilities_from_counts(skewed_counts(rng, shape[2], 5))
    symbols = sample_symbols(rng, shape, probs)
    decoded = decode_symbols(encode_symbols(symbols, probs), shape, probs)
    np.testing.assert_array_equal(decoded, symbols)


def test_channels_use_their_own_probabilities():
    # Channel 0 is almost always 0, channel 1 almost always 4: coding must be
    # cheap only if each channel is coded with its own row.
    counts = np.array([[1000.0, 0, 0, 0, 0], [0, 0, 0, 0, 1000.0]])
    probs = probabilities_from_counts(counts)
    symbols = np.zeros((40, 40, 2), dtype=np.int32)
    symbols[..., 1] = 4
    data = encode_symbols(symbols, probs)
    assert len(data) * 8 < 0.02 * bound_bits(symbols.shape, 5)
    np.testing.assert_array_equal(decode_symbols(data, symbols.shape, probs), symbols)


def test_coded_size_below_bound_and_near_estimate():
    rng = np.random.default_rng(3)
    shape = (32, 64, 8)
    probs = probabilities_from_counts(skewed_counts(rng, shape[2], 5))
    symbols = sample_symbols(rng, shape, probs)
    coded_bits = 8 * len(encode_symbols(symbols, probs))
    ideal = estimated_bits(symbols, probs)
    assert coded_bits < bound_bits(shape, 5)
    # Range coding costs at most a couple of 32-bit words plus a tiny
    # relative loss from the fixed-point probabilities.
    assert ideal <= coded_bits <= 1.005 * ideal + 64


def test_uniform_symbols_cost_about_the_bound():
    rng = np.random.default_rng(4)
    shape = (20, 30, 4)
    probs = probabilities_from_counts(None, num_channels=4, num_centers=5)
    symbols = rng.integers(0, 5, size=shape)
    coded_bits = 8 * len(encode_symbols(symbols, probs))
    bound = bound_bits(shape, 5)
    assert estimated_bits(symbols, probs) == pytest.approx(bound)
    assert bound <= coded_bits <= 1.005 * bound + 64


def test_zero_count_symbols_are_codable():
    counts = np.array([[500.0, 500.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 7.0]])
    probs = probabilities_from_counts(counts)
    assert np.all(probs > 0)
    # Only symbols that never occurred in training.
    symbols = np.empty((6, 5, 2), dtype=np.int32)
    symbols[..., 0] = np.arange(30).reshape(6, 5) % 3 + 2
    symbols[..., 1] = np.arange(30).reshape(6, 5) % 4
    data = encode_symbols(symbols, probs)
    np.testing.assert_array_equal(decode_symbols(data, symbols.shape, probs), symbols)
    # Each unseen symbol costs log2(L / UNIFORM_MIX) bits, not infinity.
    per_symbol = math.log2(5 / UNIFORM_MIX)
    assert estimated_bits(symbols, probs) == pytest.approx(60 * per_symbol, rel=1e-3)


def test_probabilities_are_positive_normalised_and_deterministic():
    rng = np.random.default_rng(5)
    counts = skewed_counts(rng, 16, 5)
    counts[3, 1] = 0.0
    probs = probabilities_from_counts(counts)
    assert probs.dtype == np.float64
    assert probs.shape == (16, 5)
    assert np.all(probs > 0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)
    again = probabilities_from_counts(counts.copy())
    assert probs.tobytes() == again.tobytes()
    # Scale invariant: a normalised histogram gives (nearly) the same table.
    scaled = probabilities_from_counts(counts / counts.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(scaled, probs, rtol=1e-12)


def test_uniform_fallbacks():
    uniform = uniform_probabilities(3, 5)
    assert uniform.shape == (3, 5)
    assert uniform.dtype == np.float64
    np.testing.assert_array_equal(uniform, 0.2)
    np.testing.assert_array_equal(probabilities_from_counts(None, 3, 5), uniform)
    np.testing.assert_allclose(probabilities_from_counts(np.zeros((3, 5))), uniform)
    # Only the empty channel falls back to uniform.
    counts = np.array([[0.0] * 5, [10.0, 0, 0, 0, 0]])
    probs = probabilities_from_counts(counts)
    np.testing.assert_allclose(probs[0], 0.2)
    assert probs[1, 0] > 0.99


def test_negative_counts_are_treated_as_zero():
    probs = probabilities_from_counts(np.array([[-3.0, 1.0, 1.0]]))
    expected = probabilities_from_counts(np.array([[0.0, 1.0, 1.0]]))
    np.testing.assert_array_equal(probs, expected)


@pytest.mark.parametrize(
    ("counts", "kwargs"),
    [
        (None, {}),
        (None, {"num_channels": 2}),
        (np.ones(5), {}),
        (np.ones((2, 1)), {}),
        (np.ones((0, 5)), {}),
        (np.array([[1.0, np.nan]]), {}),
        (np.array([[1.0, np.inf]]), {}),
        (np.ones((2, 5)), {"num_channels": 3}),
        (np.ones((2, 5)), {"num_centers": 4}),
    ],
)
def test_probabilities_from_counts_rejects_bad_input(counts, kwargs):
    with pytest.raises(ValueError):
        probabilities_from_counts(counts, **kwargs)


def test_uniform_probabilities_rejects_bad_sizes():
    with pytest.raises(ValueError, match="num_channels"):
        uniform_probabilities(0, 5)
    with pytest.raises(ValueError, match="num_centers"):
        uniform_probabilities(2, 1)


def test_encode_rejects_bad_symbols():
    probs = uniform_probabilities(2, 5)
    with pytest.raises(ValueError, match="0..4"):
        encode_symbols(np.full((2, 2, 2), 5), probs)
    with pytest.raises(ValueError, match="0..4"):
        encode_symbols(np.full((2, 2, 2), -1), probs)
    with pytest.raises(ValueError, match="channels"):
        encode_symbols(np.zeros((2, 2, 3), dtype=int), probs)
    with pytest.raises(ValueError, match="integers"):
        encode_symbols(np.zeros((2, 2, 2)), probs)
    with pytest.raises(ValueError, match="shape"):
        encode_symbols(np.zeros((2, 2), dtype=int), probs)
    with pytest.raises(ValueError, match="strictly positive"):
        encode_symbols(np.zeros((2, 2, 2), dtype=int), np.array([[1.0, 0.0]] * 2))


def test_decode_rejects_bad_arguments():
    probs = uniform_probabilities(2, 5)
    with pytest.raises(ValueError, match="channels"):
        decode_symbols(b"\0" * 8, (2, 2, 3), probs)
    with pytest.raises(ValueError, match="shape"):
        decode_symbols(b"\0" * 8, (2, 2), probs)
    with pytest.raises(CorruptFileError, match="multiple of 4"):
        decode_symbols(b"\0" * 7, (2, 2, 2), probs)


def test_decoding_garbage_returns_symbols_or_raises_corrupt():
    rng = np.random.default_rng(6)
    probs = probabilities_from_counts(skewed_counts(rng, 3, 5))
    shape = (9, 11, 3)
    outcomes = {"decoded": 0, "corrupt": 0}
    for trial in range(300):
        length = int(rng.integers(0, 40)) * 4
        data = rng.bytes(length) if trial % 3 else bytes(length)
        try:
            symbols = decode_symbols(data, shape, probs)
        except CorruptFileError:
            outcomes["corrupt"] += 1
            continue
        outcomes["decoded"] += 1
        assert symbols.shape == shape
        assert symbols.min() >= 0
        assert symbols.max() < 5
    assert sum(outcomes.values()) == 300


# --- the end-of-stream check and the size a payload must justify -----------------


def _stream():
    rng = np.random.default_rng(8)
    probs = probabilities_from_counts(skewed_counts(rng, 4, 5))
    symbols = sample_symbols(rng, (12, 20, 4), probs)
    return symbols, probs, encode_symbols(symbols, probs)


def test_appended_or_missing_words_are_refused():
    symbols, probs, data = _stream()
    np.testing.assert_array_equal(decode_symbols(data, symbols.shape, probs), symbols)
    for bad in (data + bytes(4), data + b"\x01\x02\x03\x04", data[:-4], data[4:]):
        with pytest.raises(CorruptFileError, match="corrupt|too short"):
            decode_symbols(bad, symbols.shape, probs)


def test_an_empty_payload_cannot_claim_a_large_map():
    _, probs, _ = _stream()
    with pytest.raises(CorruptFileError, match="too short"):
        decode_symbols(b"", (1000, 1000, 4), probs)
    # The least a map can cost: every symbol its channel's likeliest.
    likeliest = np.tile(np.argmax(probs, 1)[None, None], (100, 100, 1))
    assert 8 * len(encode_symbols(likeliest, probs)) >= minimum_bits((100, 100, 4), probs)


def test_altered_payloads_rarely_decode_silently():
    symbols, probs, data = _stream()
    rng = np.random.default_rng(9)
    silent = 0
    for _ in range(400):
        bad = bytearray(data)
        bad[rng.integers(len(bad))] ^= 1 << int(rng.integers(8))
        try:
            decode_symbols(bytes(bad), symbols.shape, probs)
        except CorruptFileError:
            continue
        silent += 1
    # Before the check 575 of 918 such flips (63%) decoded to other symbols;
    # what still does is a flip that turns the stream into another valid one.
    print(f"{silent} of 400 single-bit payload flips decoded silently")
    assert silent <= 20, silent


def test_bound_and_estimate():
    assert bound_bits((2, 3, 4), 5) == pytest.approx(24 * math.log2(5))
    assert bound_bits((1, 1, 1), 2) == 1.0
    probs = np.array([[0.5, 0.25, 0.25], [0.125, 0.125, 0.75]])
    symbols = np.array([[[0, 0], [1, 1]]])  # shape [1, 2, 2]
    # channel 0: symbols 0, 1 -> 1 + 2 bits; channel 1: 0, 1 -> 3 + 3 bits
    assert estimated_bits(symbols, probs) == pytest.approx(9.0)


def test_a_partial_last_channel_is_a_prefix_that_decodes_alone():
    rng = np.random.default_rng(11)
    probs = probabilities_from_counts(rng.random((3, 5)) * 10 + 1)
    symbols = rng.integers(0, 5, (9, 7, 3))
    sizes = []
    for rows in (1, 4, 8, 9, None):
        data = encode_symbols(symbols, probs, last_rows=rows)
        expected = symbols.copy()
        expected[rows or 9:, :, -1] = 0  # rows not coded decode as 0
        np.testing.assert_array_equal(decode_symbols(data, symbols.shape, probs, rows), expected)
        sizes.append(len(data))
    assert sizes == sorted(sizes) and sizes[-2] == sizes[-1]  # 9 rows of 9 are all of them
    assert len(encode_symbols(symbols[:, :, :2], probs[:2])) <= sizes[0]
    assert bound_bits((9, 7, 3), 5, 4) == pytest.approx((2 * 63 + 4 * 7) * math.log2(5))
    assert minimum_bits((9, 7, 3), probs, 4) < minimum_bits((9, 7, 3), probs)
    for bad in (0, 10, 1.0):
        with pytest.raises(ValueError, match=r"last_rows must be a whole number of rows in 1\.\.9"):
            encode_symbols(symbols, probs, last_rows=bad)
