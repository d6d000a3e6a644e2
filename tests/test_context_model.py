"""Tests for compression.context_model: contexts, tables and context range coding."""

import numpy as np
import pytest

from compression.context_model import (
    CONTEXT_PRIOR,
    MAX_CONTEXT_CENTERS,
    context_counts,
    context_indices,
    context_probabilities,
    context_size,
    decode_symbols_in_context,
    encode_symbols_in_context,
)
from compression.entropy_model import (
    UNIFORM_MIX,
    encode_symbols,
    probabilities_from_counts,
)
from compression.errors import CorruptFileError


def smooth_map(rng, shape, centers):
    """``[h, w, C]`` symbols with the structure of a real bottleneck: flat regions,
    edges, and channels that follow each other."""
    height, width, channels = shape
    base = rng.integers(0, centers, (height // 4 + 1, width // 4 + 1))
    plane = np.kron(base, np.ones((4, 4), np.int64))[:height, :width]
    planes = []
    for _ in range(channels):
        noise = rng.random((height, width)) < 0.1
        plane = np.where(noise, rng.integers(0, centers, (height, width)), plane)
        planes.append(plane)
    return np.stack(planes, axis=-1)


def fitted(rng, shape, centers, maps=4):
    """``(marginal [C, L], table [C, K, L])`` fitted on ``maps`` maps like ``smooth_map``."""
    training = [smooth_map(rng, shape, centers) for _ in range(maps)]
    histogram = sum(np.stack([np.bincount(m[:, :, c].ravel(), minlength=centers)
                              for c in range(shape[2])]) for m in training)
    marginal = probabilities_from_counts(histogram)
    table = context_probabilities(sum(context_counts(m, centers) for m in training), marginal)
    return marginal, table


def naive_context(symbols, y, x, c, centers):
    def at(yy, xx, cc):
        h, w, _ = symbols.shape
        inside = 0 <= yy < h and 0 <= xx < w and cc >= 0
        return int(symbols[yy, xx, cc]) if inside else centers

    index = 0
    for value in (at(y, x - 1, c), at(y - 1, x, c), at(y - 1, x + 1, c), at(y, x, c - 1),
                  at(y, x, c - 2)):
        index = index * (centers + 1) + value
    return index


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 6, 2), (5, 1, 3), (4, 7, 4)])
def test_contexts_are_left_top_top_right_and_two_previous_channels(shape):
    rng = np.random.default_rng(sum(shape))
    symbols = rng.integers(0, 5, shape)
    contexts = context_indices(symbols, 5)
    assert contexts.shape == shape
    for y, x, c in np.ndindex(*shape):
        assert contexts[y, x, c] == naive_context(symbols, y, x, c, 5)
    assert contexts.max() < context_size(5) == 6**5


def test_counts_sum_to_the_symbols_and_land_in_their_contexts():
    rng = np.random.default_rng(1)
    symbols = rng.integers(0, 3, (6, 9, 2))
    counts = context_counts(symbols, 3)
    assert counts.shape == (2, context_size(3), 3)
    assert counts.sum() == symbols.size
    contexts = context_indices(symbols, 3)
    y, x, c = 4, 5, 1
    assert counts[c, contexts[y, x, c], symbols[y, x, c]] >= 1


def test_table_smooths_each_context_towards_the_channel_marginal():
    marginal = probabilities_from_counts(np.array([[3.0, 1.0]]))
    counts = np.zeros((1, context_size(2), 2))
    counts[0, 7] = [0.0, 12.0]
    table = context_probabilities(counts, marginal)
    np.testing.assert_allclose(table.sum(axis=-1), 1.0)
    assert np.all(table > 0)
    # A context never counted is the marginal itself.
    np.testing.assert_allclose(table[0, 0], (1 - UNIFORM_MIX) * marginal[0] + UNIFORM_MIX / 2)
    expected = (np.array([0.0, 12.0]) + CONTEXT_PRIOR * marginal[0]) / (12 + CONTEXT_PRIOR)
    np.testing.assert_allclose(table[0, 7], (1 - UNIFORM_MIX) * expected + UNIFORM_MIX / 2)


@pytest.mark.parametrize("centers", [2, 5, MAX_CONTEXT_CENTERS])
@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 9, 2), (9, 1, 2), (13, 17, 4)])
def test_round_trip_is_exact(shape, centers):
    rng = np.random.default_rng(centers * 100 + shape[0])
    _, table = fitted(rng, shape, centers)
    symbols = smooth_map(rng, shape, centers)
    data = encode_symbols_in_context(symbols, table)
    assert len(data) % 4 == 0
    decoded = decode_symbols_in_context(data, shape, table)
    assert decoded.dtype == np.int32
    np.testing.assert_array_equal(decoded, symbols)


def test_leading_channels_code_with_the_leading_rows_of_the_table():
    # A variable-rate file codes the first k channels with table[:k].
    rng = np.random.default_rng(2)
    _, table = fitted(rng, (12, 16, 4), 5)
    symbols = smooth_map(rng, (12, 16, 4), 5)[:, :, :2]
    data = encode_symbols_in_context(symbols, table[:2])
    np.testing.assert_array_equal(decode_symbols_in_context(data, symbols.shape, table[:2]),
                                  symbols)


def test_contexts_beat_the_per_channel_model_on_structured_maps():
    rng = np.random.default_rng(3)
    shape = (24, 32, 4)
    marginal, table = fitted(rng, shape, 5, maps=8)
    symbols = smooth_map(rng, shape, 5)
    in_context = len(encode_symbols_in_context(symbols, table))
    per_channel = len(encode_symbols(symbols, marginal))
    assert in_context < 0.7 * per_channel


def test_bad_arguments_are_value_errors():
    rng = np.random.default_rng(4)
    marginal, table = fitted(rng, (4, 4, 2), 3)
    with pytest.raises(ValueError, match="centres"):
        context_size(MAX_CONTEXT_CENTERS + 1)
    with pytest.raises(ValueError, match="shape"):
        context_probabilities(np.zeros((2, 5, 3)), marginal)
    with pytest.raises(ValueError, match="non-negative"):
        context_probabilities(-np.ones((2, context_size(3), 3)), marginal)
    with pytest.raises(ValueError, match="channels"):
        encode_symbols_in_context(np.zeros((2, 2, 3), np.int64), table)
    with pytest.raises(ValueError, match="0..2"):
        encode_symbols_in_context(np.full((2, 2, 2), 3), table)
    with pytest.raises(ValueError, match="strictly positive"):
        encode_symbols_in_context(np.zeros((2, 2, 2), np.int64), table * 0)
    with pytest.raises(ValueError, match="channels"):
        decode_symbols_in_context(b"", (2, 2, 3), table)


def test_damaged_streams_are_corrupt_file_errors():
    rng = np.random.default_rng(5)
    shape = (10, 12, 3)
    _, table = fitted(rng, shape, 5)
    symbols = smooth_map(rng, shape, 5)
    data = encode_symbols_in_context(symbols, table)
    for bad in (data[:-4], data + b"\0\0\0\0", data[:3]):
        with pytest.raises(CorruptFileError):
            decode_symbols_in_context(bad, shape, table)
    silent = 0
    for _ in range(200):
        flipped = bytearray(data)
        flipped[rng.integers(len(flipped))] ^= 1 << int(rng.integers(8))
        try:
            decoded = decode_symbols_in_context(bytes(flipped), shape, table)
        except CorruptFileError:
            continue
        # What decodes silently is another valid stream (the container's CRC catches it).
        assert encode_symbols_in_context(decoded, table) == bytes(flipped)
        silent += 1
    assert silent <= 20, silent


def test_a_short_stream_cannot_claim_a_huge_map():
    rng = np.random.default_rng(6)
    _, table = fitted(rng, (8, 8, 2), 5)
    with pytest.raises(CorruptFileError, match="too short"):
        decode_symbols_in_context(b"\0" * 8, (4000, 4000, 2), table)


def test_random_bytes_never_raise_anything_else():
    rng = np.random.default_rng(7)
    _, table = fitted(rng, (6, 6, 2), 5)
    for n in range(60):
        data = rng.integers(0, 256, 4 * (n % 12), dtype=np.uint8).tobytes()
        try:
            decode_symbols_in_context(data, (3, 5, 2), table)
        except CorruptFileError:
            pass


@pytest.mark.parametrize("rows", [1, 5, 11, 12])
def test_a_partial_last_channel_is_a_prefix_that_decodes_alone(rows):
    # A file filling its rate budget codes the first rows of one more channel.
    rng = np.random.default_rng(rows)
    _, table = fitted(rng, (12, 16, 4), 5)
    symbols = smooth_map(rng, (12, 16, 4), 5)
    data = encode_symbols_in_context(symbols, table, last_rows=rows)
    expected = symbols.copy()
    expected[rows:, :, -1] = 0  # rows not coded decode as 0
    np.testing.assert_array_equal(decode_symbols_in_context(data, symbols.shape, table, rows),
                                  expected)
    # Its size lies between the whole channels before it and all of them.
    assert (len(encode_symbols_in_context(symbols[:, :, :3], table[:3])) <= len(data)
            <= len(encode_symbols_in_context(symbols, table)))


def test_partial_rows_outside_the_map_are_refused():
    rng = np.random.default_rng(5)
    _, table = fitted(rng, (6, 8, 2), 5)
    symbols = smooth_map(rng, (6, 8, 2), 5)
    for bad in (0, 7, -1, 2.5, True):
        with pytest.raises(ValueError, match=r"last_rows must be a whole number of rows in 1\.\.6"):
            encode_symbols_in_context(symbols, table, last_rows=bad)
        with pytest.raises(ValueError, match="last_rows"):
            decode_symbols_in_context(b"\0" * 8, symbols.shape, table, bad)
