"""compression.rate_model: the rate term's prices of the bottleneck, per channel and in context."""


import numpy as np
import pytest
import tensorflow as tf
from test_model import DISTORTION_ONLY, TINY, smooth_batch

from compression import context_model, entropy_model
from compression.config import CompressionConfig
from compression.errors import ConfigError
from compression.model import build_training_graph
from compression.rate_model import (
    batch_context_counts,
    context_code_lengths,
    context_counts_variable,
    context_index_map,
    differentiable_bits,
    differentiable_bits_in_context,
    estimated_bits,
    estimated_bits_in_context,
    interpolated_code_lengths,
)

_v1 = tf.compat.v1


def _run(*tensors):
    with _v1.Session() as sess:
        return sess.run(list(tensors))


def _fitted(rng, channels, num_centers, maps=6, size=(5, 7)):
    """Context counts and a histogram fitted on random, neighbour-correlated maps."""
    symbols = _correlated(rng, (maps, *size, channels), num_centers)
    counts = sum(context_model.context_counts(s, num_centers) for s in symbols)
    hist = np.stack([np.bincount(symbols[..., c].ravel(), minlength=num_centers)
                     for c in range(channels)]).astype(float)
    return counts, hist


def _correlated(rng, shape, num_centers):
    """Maps whose entries mostly repeat their left neighbour: a context has something to say."""
    symbols = rng.integers(0, num_centers, size=shape)
    repeat = rng.random(shape) < 0.7
    for x in range(1, shape[2]):
        symbols[:, :, x] = np.where(repeat[:, :, x], symbols[:, :, x - 1], symbols[:, :, x])
    return symbols


@pytest.mark.parametrize("channels", [1, 2, 5])
def test_context_index_map_is_the_codecs_context_of_every_map(channels):
    rng = np.random.default_rng(channels)
    symbols = rng.integers(0, 5, size=(3, 4, 6, channels))
    with tf.Graph().as_default():
        (got,) = _run(context_index_map(tf.constant(symbols), 5))
    for b in range(3):
        np.testing.assert_array_equal(got[b], context_model.context_indices(symbols[b], 5))


def test_batch_context_counts_sum_the_codecs_counts_of_each_map():
    rng = np.random.default_rng(1)
    symbols = rng.integers(0, 4, size=(2, 3, 5, 3))
    with tf.Graph().as_default():
        (got,) = _run(batch_context_counts(tf.constant(symbols), 4, 3))
    want = sum(context_model.context_counts(s, 4) for s in symbols)
    np.testing.assert_array_equal(got, want)


def test_context_code_lengths_are_the_codecs_table():
    rng = np.random.default_rng(2)
    counts, hist = _fitted(rng, 3, 5)
    symbols = _correlated(rng, (2, 4, 6, 3), 5)
    table = context_model.context_probabilities(
        counts, entropy_model.probabilities_from_counts(hist))
    with tf.Graph().as_default():
        (got,) = _run(context_code_lengths(tf.constant(symbols), tf.constant(counts),
                                           tf.constant(hist)))
    assert got.shape == (2, 4, 6, 3, 5)
    for b in range(2):
        contexts = context_model.context_indices(symbols[b], 5)
        for c in range(3):
            np.testing.assert_allclose(got[b, :, :, c], -np.log2(table[c][contexts[..., c]]),
                                       rtol=1e-12)


def test_estimated_bits_in_context_is_what_the_coder_writes():
    rng = np.random.default_rng(3)
    counts, hist = _fitted(rng, 4, 5, maps=20, size=(8, 10))
    symbols = _correlated(rng, (1, 8, 10, 4), 5)
    table = context_model.context_probabilities(
        counts, entropy_model.probabilities_from_counts(hist))
    mask = np.ones([1, 1, 1, 4])
    mask[..., 3] = 0.0  # a file of three channels
    with tf.Graph().as_default():
        args = (tf.constant(symbols), tf.constant(counts), tf.constant(hist))
        ideal, masked, per_channel = _run(
            estimated_bits_in_context(*args), estimated_bits_in_context(*args, mask),
            estimated_bits(tf.constant(symbols), tf.constant(hist)))
    stream = context_model.encode_symbols_in_context(symbols[0, :, :, :3], table[:3])
    assert masked < ideal
    assert masked <= 8 * len(stream) <= masked + 64
    # The maps repeat their left neighbour: context prices them far below the histogram.
    assert ideal < 0.9 * per_channel


def test_differentiable_bits_in_context_is_the_code_length_at_the_centres_and_slopes_to_cheaper():
    centers = (-2.0, -1.0, 0.0, 1.0, 2.0)
    rng = np.random.default_rng(4)
    counts, hist = _fitted(rng, 3, 5)
    symbols = _correlated(rng, (2, 4, 6, 3), 5)
    with tf.Graph().as_default():
        args = (tf.constant(counts), tf.constant(hist))
        w = tf.constant(np.array(centers, np.float32)[symbols])
        at_centres = differentiable_bits_in_context(w, tf.constant(symbols), *args, centers)
        ideal = estimated_bits_in_context(tf.constant(symbols), *args)
        # Nudged up from each centre, each entry's slope is its own context row's step.
        nudged = w + 0.25
        lengths = context_code_lengths(tf.constant(symbols), *args)
        bits = differentiable_bits_in_context(nudged, tf.constant(symbols), *args, centers)
        grad = tf.gradients(bits, nudged)[0]
        got, want, got_grad, rows = _run(at_centres, ideal, grad, lengths)
    assert got == pytest.approx(want, rel=1e-5)
    inside = symbols < 4
    step = np.take_along_axis(rows, np.minimum(symbols + 1, 4)[..., None], -1)[..., 0] - \
        np.take_along_axis(rows, symbols[..., None], -1)[..., 0]
    np.testing.assert_allclose(got_grad[inside], step[inside], rtol=1e-4, atol=1e-5)
    assert np.all(got_grad[~inside] == 0.0)  # beyond the last centre the price is flat


def test_context_rate_model_counts_every_step_and_prices_in_context():
    cfg = CompressionConfig(**TINY, noise=False, lambda_rate=5.0, rate_model="context",
                            histogram_decay=0.5, **DISTORTION_ONLY)
    images = smooth_batch(2, 64, 64, seed=6)
    with tf.Graph().as_default():
        g = build_training_graph(tf.constant(images), cfg)
        contexts = context_counts_variable(cfg)
        with _v1.Session() as sess:
            sess.run(_v1.global_variables_initializer())
            first = sess.run({"symbols": g.endpoints["symbols"], "op": g.warmup_train_op})
            after_one = sess.run(contexts)
            second = sess.run({"symbols": g.endpoints["symbols"], "op": g.warmup_train_op,
                               **g.phase_losses["warmup"]})
            after_two, hist = sess.run([contexts, g.symbol_counts])
            symbols, bpp = sess.run([g.endpoints["symbols"], g.metrics["bpp_estimate"]])
    count = lambda maps: sum(context_model.context_counts(s, 5) for s in maps)  # noqa: E731
    np.testing.assert_allclose(after_one, count(first["symbols"]))
    np.testing.assert_allclose(after_two, 0.5 * after_one + count(second["symbols"]))
    assert "rate" in second and second["rate"] > 0
    table = context_model.context_probabilities(
        after_two, entropy_model.probabilities_from_counts(hist))
    want = sum(-np.log2(np.take_along_axis(
        table[np.arange(cfg.channels)[None, None, :], context_model.context_indices(s, 5)],
        s[..., None], -1)).sum() for s in symbols)
    assert bpp * 2 * 64 * 64 == pytest.approx(want, rel=1e-6)


def test_context_rate_term_trains_the_encoder_to_code_fewer_bits():
    images = smooth_batch(2, 64, 64, seed=4)
    bits = {}
    for weight in (0.0, 20.0):
        cfg = CompressionConfig(**TINY, noise=False, lambda_rate=weight, rate_model="context",
                                histogram_decay=0.9, **DISTORTION_ONLY)
        with tf.Graph().as_default():
            _v1.set_random_seed(1)
            g = build_training_graph(tf.constant(images), cfg)
            with _v1.Session() as sess:
                sess.run(_v1.global_variables_initializer())
                for _ in range(40):
                    sess.run(g.warmup_train_op)
                bits[weight] = sess.run(g.metrics["bpp_estimate"])
    assert bits[20.0] < 0.9 * bits[0.0], bits


def test_rate_model_is_validated_and_defaults_to_what_old_configs_meant():
    with pytest.raises(ConfigError, match="rate_model must be 'histogram' or 'context'"):
        CompressionConfig(**TINY, rate_model="hyperprior")
    with pytest.raises(ConfigError, match="at most 6 centres"):
        CompressionConfig(**TINY, rate_model="context", centers=tuple(range(7)))
    cfg = CompressionConfig(**TINY, rate_model="context")
    old = cfg.to_dict()
    del old["rate_model"]
    assert CompressionConfig.from_dict(old).rate_model == "histogram"
    # Training only: what a model decodes, and so its fingerprint, does not depend on it.
    assert cfg.fingerprint_json() == CompressionConfig(**TINY).fingerprint_json()
    assert CompressionConfig.from_json(cfg.to_json()) == cfg


def test_histogram_rate_model_makes_no_context_counts():
    cfg = CompressionConfig(**TINY, noise=False, lambda_rate=5.0, **DISTORTION_ONLY)
    with tf.Graph().as_default():
        build_training_graph(tf.constant(smooth_batch(2, 32, 32)), cfg)
        names = [v.op.name for v in _v1.global_variables()]
    assert "entropy_model/symbol_counts" in names
    assert "entropy_model/context_counts" not in names


def test_differentiable_bits_is_the_code_length_at_the_centres_and_slopes_between():
    centers = (-2.0, -1.0, 0.0, 1.0, 2.0)
    rng = np.random.default_rng(3)
    counts = rng.integers(1, 500, size=(3, 5)).astype(float)
    symbols = rng.integers(0, 5, size=(2, 4, 6, 3))
    mask = np.ones([2, 1, 1, 3])
    mask[1, ..., 2] = 0.0  # the second example codes two channels
    lengths = -np.log2(entropy_model.probabilities_from_counts(counts))  # [C, L]
    with tf.Graph().as_default():
        w = tf.constant(np.array(centers, np.float32)[symbols])
        counts_t = tf.constant(counts)
        at_centres = differentiable_bits(w, counts_t, centers, mask)
        ideal = estimated_bits(tf.constant(symbols), counts_t, mask)
        # Off-centre, below and beyond the range: the slope toward the cheaper neighbour.
        probe = tf.constant([[[[0.25, -3.0, 2.7]]]], tf.float32)
        probe_bits = differentiable_bits(probe, counts_t, centers)
        grad = tf.gradients(probe_bits, probe)[0]
        with _v1.Session() as sess:
            got, want, got_probe, got_grad = sess.run([at_centres, ideal, probe_bits, grad])
    assert got == pytest.approx(want, rel=1e-5)
    assert got_probe == pytest.approx(
        0.75 * lengths[0, 2] + 0.25 * lengths[0, 3] + lengths[1, 0] + lengths[2, 4], rel=1e-5)
    np.testing.assert_allclose(got_grad.ravel(), [lengths[0, 3] - lengths[0, 2], 0.0, 0.0],
                               rtol=1e-5)


def test_per_entry_code_lengths_interpolate_each_entry_on_its_own_table():
    # compression.refine prices each entry with its own context's lengths [B, h, w, C, L].
    centers = (-1.0, 0.0, 1.0)
    lengths = np.array([[[[[1.0, 2.0, 3.0]], [[6.0, 4.0, 1.0]]]]], np.float32)  # [1,1,2,1,3]
    with tf.Graph().as_default():
        w = tf.constant([[[[0.5], [-0.5]]]], tf.float32)
        bits = interpolated_code_lengths(w, tf.constant(lengths), centers)
        grad = tf.gradients(tf.reduce_sum(bits), w)[0]
        with _v1.Session() as sess:
            got, got_grad = sess.run([bits, grad])
    np.testing.assert_allclose(got.ravel(), [2.5, 5.0])
    np.testing.assert_allclose(got_grad.ravel(), [1.0, -2.0])


def _first_rate(factors, images):
    """The rate term and bpp estimate of a fixed start, its channels priced by ``factors``."""
    cfg = CompressionConfig(**TINY, noise=False, lambda_rate=5.0, rate_channel_weights=factors,
                            **DISTORTION_ONLY)
    with tf.Graph().as_default():
        _v1.set_random_seed(3)
        g = build_training_graph(tf.constant(images), cfg)
        with _v1.Session() as sess:
            sess.run(_v1.global_variables_initializer())
            return sess.run([g.phase_losses["warmup"]["rate"], g.metrics["bpp_estimate"]])


def test_rate_channel_weights_price_each_channel_by_its_factor():
    images = smooth_batch(2, 64, 64, seed=2)
    whole, bpp = _first_rate((), images)
    first, bpp_first = _first_rate((1, 0, 0, 0), images)
    rest, _ = _first_rate((0, 1, 1, 1), images)
    half, _ = _first_rate((0.5, 0.5, 0.5, 0.5), images)
    assert 0 < first < whole
    assert first + rest == pytest.approx(whole, rel=1e-5)
    assert half == pytest.approx(whole / 2, rel=1e-5)
    # What a file costs does not change with the price the encoder is taught.
    assert bpp_first == pytest.approx(bpp, rel=1e-9)


def test_rate_channel_weights_are_validated_training_only_and_round_trip():
    cfg = CompressionConfig(**TINY, rate_channel_weights=[1, 1, 0.2, 0])
    assert cfg.rate_channel_weights == (1.0, 1.0, 0.2, 0.0)
    assert CompressionConfig.from_json(cfg.to_json()) == cfg
    assert cfg.fingerprint_json() == CompressionConfig(**TINY).fingerprint_json()
    old = cfg.to_dict()
    del old["rate_channel_weights"]
    assert CompressionConfig.from_dict(old).rate_channel_weights == ()
    for factors, fragment in (([1, 1], r"one factor per channel \(4 values\), got 2"),
                              ([1, -1, 1, 1], ">= 0"),
                              ("1,1,1,1", "list of finite numbers"),
                              ([1, float("inf"), 1, 1], "list of finite numbers")):
        with pytest.raises(ConfigError, match=fragment):
            CompressionConfig(**TINY, rate_channel_weights=factors)
