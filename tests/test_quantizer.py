"""compression.quantizer: nearest-centre forward pass, soft-assignment gradient, histogram."""

import numpy as np
import pytest
import tensorflow as tf

from compression.quantizer import dequantize, quantize, symbol_counts

_v1 = tf.compat.v1
CENTERS = (-2.0, -1.0, 0.0, 1.0, 2.0)


def run(fetches, feed_dict=None):
    with _v1.Session() as sess:
        return sess.run(fetches, feed_dict)


def test_nearest_centre_on_hand_made_values():
    values = [-100.0, -3.7, -2.0, -1.6, -1.4, -0.49, 0.0, 0.3, 0.51, 1.49, 1.51, 2.2, 7.0]
    expected = [-2.0, -2.0, -2.0, -2.0, -1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 2.0]
    with tf.Graph().as_default():
        q = quantize(tf.constant([[[values]]]), CENTERS)
        w_hat, symbols = run([q.w_hat, q.symbols])
    np.testing.assert_array_equal(w_hat.ravel(), expected)
    np.testing.assert_array_equal(symbols.ravel(), [CENTERS.index(c) for c in expected])


def test_ties_go_to_the_lower_centre():
    """Half-way values are exactly representable; argmin keeps the first (lower) centre."""
    values = [-1.5, -0.5, 0.5, 1.5]
    with tf.Graph().as_default():
        q = quantize(tf.constant([[[values]]]), CENTERS)
        w_hat, symbols = run([q.w_hat, q.symbols])
    np.testing.assert_array_equal(w_hat.ravel(), [-2.0, -1.0, 0.0, 1.0])
    np.testing.assert_array_equal(symbols.ravel(), [0, 1, 2, 3])


def test_uneven_centres():
    centers = (-1.0, 0.0, 0.5, 3.0)
    values = [-5.0, -0.6, -0.4, 0.2, 0.3, 1.7, 1.8, 9.0]
    expected = [-1.0, -1.0, 0.0, 0.0, 0.5, 0.5, 3.0, 3.0]
    with tf.Graph().as_default():
        q = quantize(tf.constant([[[values]]]), centers)
        w_hat = run(q.w_hat)
    np.testing.assert_array_equal(w_hat.ravel(), expected)


def test_random_bottleneck_values_are_exact_centres_and_symbols_map_back():
    rng = np.random.default_rng(0)
    w = (rng.normal(size=(2, 3, 5, 4)) * 2.0).astype(np.float32)
    with tf.Graph().as_default():
        q = quantize(tf.constant(w), CENTERS, sigma=1.0)
        assert q.symbols.dtype == tf.int32
        assert q.w_hat.shape == q.symbols.shape == q.w_soft.shape == w.shape
        back = dequantize(q.symbols, CENTERS)
        w_hat, symbols, w_soft, deq = run([q.w_hat, q.symbols, q.w_soft, back])
    assert symbols.min() >= 0 and symbols.max() < len(CENTERS)
    assert set(np.unique(w_hat)) <= set(CENTERS)
    assert len(np.unique(symbols)) == len(CENTERS)  # every centre is used, negative ones too
    np.testing.assert_array_equal(w_hat, np.asarray(CENTERS, np.float32)[symbols])
    np.testing.assert_array_equal(deq, w_hat)
    # Nearest centre, checked against a brute-force distance table.
    dist = np.abs(w[..., None] - np.asarray(CENTERS, np.float32))
    np.testing.assert_array_equal(np.abs(w - w_hat), dist.min(axis=-1))
    # The soft assignment lies between the outer centres and is not the hard one.
    assert w_soft.min() > -2.0 and w_soft.max() < 2.0
    assert not np.allclose(w_soft, w_hat)


def test_dequantize_accepts_int64_and_numpy():
    with tf.Graph().as_default():
        out = run(dequantize(np.array([[4, 0], [2, 3]], np.int64), CENTERS))
    np.testing.assert_array_equal(out, [[2.0, -2.0], [0.0, 1.0]])


@pytest.mark.parametrize("sigma", [1.0, 4.0])
def test_gradient_is_the_soft_assignment_gradient(sigma):
    """d w_hat / d w is the derivative of w_soft: non-zero, not None, not rounded away."""
    values = np.linspace(-1.9, 1.9, 20).astype(np.float32) + 0.013
    with tf.Graph().as_default():
        w = tf.constant(values)
        q = quantize(w, CENTERS, sigma=sigma)
        target = tf.constant(np.zeros_like(values))
        loss = tf.reduce_sum(tf.square(q.w_hat - target))
        (grad_loss,) = tf.gradients(loss, w)
        (grad_hat,) = tf.gradients(q.w_hat, w)
        (grad_soft,) = tf.gradients(q.w_soft, w)
        assert grad_loss is not None and grad_hat is not None
        eps = 1e-3
        q_plus = quantize(w + eps, CENTERS, sigma=sigma)
        q_minus = quantize(w - eps, CENTERS, sigma=sigma)
        numeric = (q_plus.w_soft - q_minus.w_soft) / (2 * eps)
        g_loss, g_hat, g_soft, g_num, w_hat = run(
            [grad_loss, grad_hat, grad_soft, numeric, q.w_hat])
    assert np.all(g_hat > 0)  # w_soft is increasing in w
    np.testing.assert_allclose(g_hat, g_soft, rtol=1e-6)
    np.testing.assert_allclose(g_hat, g_num, rtol=2e-2, atol=1e-3)
    # Chain rule: d/dw sum (w_hat)^2 = 2 w_hat * d w_hat / dw, non-zero off the zero centre.
    np.testing.assert_allclose(g_loss, 2 * w_hat * g_hat, rtol=1e-5)
    assert np.count_nonzero(g_loss) == np.count_nonzero(w_hat)


def test_gradient_beyond_the_outer_centres_is_straight_through():
    """With the spec's |w - c| distance every softmax logit moves by the same amount
    once w is past an outer centre, so the soft assignment is flat there; the
    quantiser passes the gradient straight through instead, so such outputs still
    learn (an earlier run had 11% of encoder outputs out there)."""
    with tf.Graph().as_default():
        w = tf.constant([-9.0, -3.0, -2.5, 2.5, 3.0, 7.0])
        q = quantize(w, CENTERS)
        (grad,) = tf.gradients(q.w_hat, w)
        (soft_grad,) = tf.gradients(q.w_soft, w)
        np.testing.assert_allclose(run(soft_grad), 0.0, atol=1e-5)
        np.testing.assert_allclose(run(grad), 1.0)
        np.testing.assert_allclose(run(q.w_hat), [-2, -2, -2, 2, 2, 2])


def test_round_would_have_killed_the_gradient():
    """Why the quantiser does not round: TensorFlow gives tf.round no gradient at all."""
    with tf.Graph().as_default():
        w = tf.constant([0.3, 1.2])
        assert tf.gradients(tf.round(w), w) == [None]


def test_symbol_counts_matches_numpy_histogram():
    rng = np.random.default_rng(1)
    num_centers, channels = 5, 3
    symbols = rng.integers(0, num_centers, size=(2, 4, 6, channels)).astype(np.int32)
    symbols[..., 2] = 4  # a channel that uses one symbol only
    with tf.Graph().as_default():
        counts_t = symbol_counts(tf.constant(symbols), num_centers)
        assert counts_t.dtype == tf.float64
        counts = run(counts_t)
    expected = np.stack([np.bincount(symbols[..., c].ravel(), minlength=num_centers)
                         for c in range(channels)])
    assert counts.shape == (channels, num_centers)
    np.testing.assert_array_equal(counts, expected)
    np.testing.assert_array_equal(counts.sum(axis=1), [2 * 4 * 6] * channels)


def test_bounded_ste_keeps_codes_in_range_and_passes_gradients():
    from compression.quantizer import bound

    centers = (-2.0, -1.0, 0.0, 1.0, 2.0)
    w = tf.constant([[-50.0, -2.2, -0.4, 0.0, 0.6, 1.6, 50.0]])
    with tf.GradientTape() as tape:
        tape.watch(w)
        q = quantize(w, centers, method="bounded_ste")
        y = tf.reduce_sum(q.w_hat)
    grad = tape.gradient(y, w).numpy()
    b = bound(w, centers).numpy()
    assert np.all(np.abs(b) <= 2.5) and np.all(np.diff(b) >= 0)  # monotone, within +-2.5
    np.testing.assert_array_equal(q.w_hat.numpy(), np.array(centers)[q.symbols.numpy()])
    assert q.symbols.numpy()[0, 0] == 0 and q.symbols.numpy()[0, -1] == 4  # ends reachable
    # Straight through the squashing: d tanh, largest at 0, vanishing far out; never NaN.
    assert np.all(np.isfinite(grad)) and grad[0, 3] == pytest.approx(1.0)
    assert grad[0, 0] < 1e-6 and grad[0, -1] < 1e-6


def test_unknown_quantizer_method_is_an_error():
    with pytest.raises(ValueError, match="bounded_ste"):
        quantize(tf.zeros([1, 2]), (-1.0, 0.0, 1.0), method="round")
