"""compression.losses: LSGAN terms, distortion, feature matching."""

import numpy as np
import pytest
import tensorflow as tf

from compression.discriminator import ScaleOutput
from compression.losses import (
    discriminator_loss,
    distortion_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)

_v1 = tf.compat.v1


def run(fetches):
    with _v1.Session() as sess:
        return sess.run(fetches)


def scale(logits, features=()):
    return ScaleOutput(logits=tf.constant(logits, tf.float32),
                       features=[tf.constant(f, tf.float32) for f in features])


def test_lsgan_values_on_hand_made_logits():
    with tf.Graph().as_default():
        real = [scale([[1.0, 3.0]]), scale([[0.0]])]
        fake = [scale([[0.0, 2.0]]), scale([[1.0]])]
        d_loss = discriminator_loss(real, fake)
        g_loss = generator_adversarial_loss(fake)
        d_val, g_val = run([d_loss, g_loss])
    # D, scale 1: mean((1-1)^2, (3-1)^2) = 2, mean(0^2, 2^2) = 2; scale 2: 1 + 1.
    assert d_val == pytest.approx(6.0)
    # G, scale 1: mean((0-1)^2, (2-1)^2) = 1; scale 2: (1-1)^2 = 0.
    assert g_val == pytest.approx(1.0)


def test_lsgan_optima_are_zero():
    with tf.Graph().as_default():
        ones, zeros = np.ones((2, 3, 3, 1)), np.zeros((2, 3, 3, 1))
        d_perfect = discriminator_loss([scale(ones)] * 3, [scale(zeros)] * 3)
        g_perfect = generator_adversarial_loss([scale(ones)] * 3)
        g_worst = generator_adversarial_loss([scale(zeros)] * 3)
        assert run([d_perfect, g_perfect, g_worst]) == pytest.approx([0.0, 0.0, 3.0])


def test_discriminator_loss_gradient_reaches_real_and_fake_logits():
    with tf.Graph().as_default():
        r = tf.constant([[0.5]])
        f = tf.constant([[0.5]])
        loss = discriminator_loss([ScaleOutput(r, [])], [ScaleOutput(f, [])])
        g_r, g_f = run(tf.gradients(loss, [r, f]))
    assert g_r == pytest.approx(-1.0)  # d/dr (r-1)^2 at 0.5
    assert g_f == pytest.approx(1.0)   # d/df f^2 at 0.5


def test_distortion_is_mse():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (2, 8, 16, 3)).astype(np.float32)
    y = rng.uniform(-1, 1, (2, 8, 16, 3)).astype(np.float32)
    with tf.Graph().as_default():
        value, same = run([distortion_loss(x, y), distortion_loss(x, x)])
    assert value == pytest.approx(np.mean((x - y) ** 2), rel=1e-6)
    assert same == 0.0
    # All-black vs all-white in [-1, 1] is the maximum, 4.
    with tf.Graph().as_default():
        assert run(distortion_loss(-np.ones((1, 2, 2, 3)), np.ones((1, 2, 2, 3)))) == 4.0


def test_feature_matching_values():
    a1, a2 = np.zeros((1, 2, 2, 4)), np.ones((1, 1, 1, 8))
    with tf.Graph().as_default():
        real = [scale([[0.0]], [a1, a2]), scale([[0.0]], [a1, a2])]
        identical = feature_matching_loss(real, real)
        # Layer 1 differs by 2 everywhere, layer 2 by 0; scale 2 identical.
        fake = [scale([[0.0]], [a1 + 2.0, a2]), scale([[0.0]], [a1, a2])]
        different = feature_matching_loss(real, fake)
        assert run([identical, different]) == pytest.approx([0.0, 2.0 / 4])


def test_feature_matching_gradient_flows_into_fake_only():
    with tf.Graph().as_default():
        fr = tf.constant(np.full((1, 2, 2, 3), 1.0, np.float32))
        ff = tf.constant(np.full((1, 2, 2, 3), 0.5, np.float32))
        loss = feature_matching_loss([ScaleOutput(tf.zeros([1, 1]), [fr])],
                                     [ScaleOutput(tf.zeros([1, 1]), [ff])])
        g_real, g_fake = tf.gradients(loss, [fr, ff])
        assert g_real is None
        g_fake = run(g_fake)
    np.testing.assert_allclose(g_fake, -1.0 / 12)  # d/dff mean|fr - ff| with ff < fr


def test_ms_ssim_loss_matches_the_metric_and_has_finite_gradients():
    from skimage import data

    from compression.losses import ms_ssim_loss
    from compression.metrics import ms_ssim

    a = data.astronaut()[:256, :256]
    rng = np.random.default_rng(0)
    b = np.clip(a.astype(float) + rng.normal(0, 25, a.shape), 0, 255).astype(np.uint8)
    with tf.Graph().as_default():
        x = tf.constant(a[None] / 127.5 - 1, tf.float32)
        y = tf.Variable(b[None] / 127.5 - 1, dtype=tf.float32)
        loss = ms_ssim_loss(x, y)
        same = ms_ssim_loss(x, x)
        # Anti-correlated content drives some scales' terms below 0: clipped, not NaN.
        opposite = ms_ssim_loss(x, -x)
        grads = tf.gradients([loss + opposite], [y])[0]
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            value, same_value, opposite_value, g = sess.run([loss, same, opposite, grads])
    assert abs((1 - value) - ms_ssim(a, b)) < 0.01
    assert abs(same_value) < 1e-5
    assert 0.9 < opposite_value <= 1.0
    assert np.all(np.isfinite(g)) and np.any(g != 0)


def test_chroma_weight_splits_the_error_into_grey_and_colour():
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (2, 8, 8, 3)).astype(np.float32)
    b = rng.uniform(-1, 1, (2, 8, 8, 3)).astype(np.float32)
    grey_shift = a + 0.25  # the same error on every channel: no chroma
    colour_shift = a + np.array([0.3, -0.15, -0.15], np.float32)  # no grey part
    with tf.compat.v1.Session(graph=tf.Graph()) as sess:
        def loss(x, y, w):
            return sess.run(distortion_loss(tf.constant(x), tf.constant(y), w))

        assert np.isclose(loss(a, b, 1.0), np.mean((a - b) ** 2), rtol=1e-6)  # plain MSE
        assert np.isclose(loss(a, b, 1.0 + 1e-9), loss(a, b, 1.0), rtol=1e-5)  # one formula
        assert np.isclose(loss(a, grey_shift, 4.0), loss(a, grey_shift, 1.0), rtol=1e-6)
        assert np.isclose(loss(a, colour_shift, 4.0), 4 * loss(a, colour_shift, 1.0), rtol=1e-5)
        # The gradient reaches every channel of the reconstruction.
        y = tf.constant(b)
        grad = sess.run(tf.gradients(distortion_loss(tf.constant(a), y, 4.0), y)[0])
        assert np.all(np.abs(grad).sum(axis=(0, 1, 2)) > 0)


def test_ms_ssim_loss_is_tensorflows_where_both_are_defined():
    # The separable window and the batched blur compute the 11x11 Gaussian
    # window of Wang et al.; tf.image.ssim_multiscale is the reference.
    from skimage import data

    from compression.losses import ms_ssim_loss

    a = data.astronaut()[:256, :320].astype(np.float32) / 127.5 - 1
    b = np.clip(a + np.random.default_rng(0).normal(0, 0.2, a.shape), -1, 1).astype(np.float32)
    ours = float(ms_ssim_loss(tf.constant(a[None]), tf.constant(b[None])))
    theirs = 1.0 - float(tf.image.ssim_multiscale(a[None], b[None], max_val=2.0)[0])
    assert 0.1 < ours < 0.3 and abs(ours - theirs) < 2e-4


def test_ms_ssim_loss_stays_finite_under_the_bfloat16_rewrite():
    """train --precision mixed_bfloat16 rewrites float32 convolutions to 16 bits;
    the blur's variances (E[x^2] - E[x]^2) then cancelled to <= 0 and the loss
    was NaN at the first step.  The statistics must stay out of its reach."""
    from skimage import data

    from compression.inference import session_config
    from compression.losses import ms_ssim_loss
    from compression.precision import apply_precision

    a = data.astronaut()[:256, :256]
    rng = np.random.default_rng(1)
    b = np.clip(a.astype(float) + rng.normal(0, 3, a.shape), 0, 255).astype(np.uint8)
    values = []
    for precision in ("float32", "mixed_bfloat16"):
        config = apply_precision(session_config(inference=False), precision, log=lambda *_: None)
        with tf.Graph().as_default():
            x = tf.constant(a[None] / 127.5 - 1, tf.float32)
            y = tf.Variable(b[None] / 127.5 - 1, dtype=tf.float32)
            # A convolution before the loss, as in the model, so the rewrite has work.
            kernel = tf.constant(np.eye(3, dtype=np.float32)[None, None])
            loss = ms_ssim_loss(x, tf.nn.conv2d(y, kernel, 1, "SAME"))
            grad = tf.gradients(loss, [y])[0]
            with _v1.Session(config=config) as sess:
                sess.run(_v1.global_variables_initializer())
                values.append(sess.run([loss, grad]))
    (plain, plain_grad), (mixed, mixed_grad) = values
    assert np.isfinite(mixed) and np.all(np.isfinite(mixed_grad))
    assert 0 < plain < 0.05 and abs(mixed - plain) < 0.1 * plain


def test_color_corrected_is_what_the_file_correction_makes_of_a_decode():
    from skimage import data

    from compression.correction import apply_correction, fit_correction
    from compression.losses import color_corrected

    a = data.astronaut()[:128, :160]
    rng = np.random.default_rng(0)
    # A decode with a colour cast, half the contrast and noise of its own.
    cast = 0.5 * a.astype(float) + np.array([60.0, 10.0, 40.0]) + rng.normal(0, 6, a.shape)
    b = np.clip(cast, 0, 255).astype(np.uint8)
    with tf.Graph().as_default():
        x = tf.constant(a[None] / 127.5 - 1, tf.float32)
        y = tf.constant(b[None] / 127.5 - 1, tf.float32)
        for hold_gain in (False, True):
            out = (run(color_corrected(x, y, hold_gain=hold_gain))[0] + 1) * 127.5
            # The file's correction rounds its means and gains: within a level or two.
            expected = apply_correction(b, fit_correction(a, b)).astype(float)
            assert np.abs(out - expected).mean() < 1.0
            assert np.abs(out - a).mean() < 0.4 * np.abs(b.astype(float) - a).mean()


def test_color_corrected_loss_charges_no_cast_or_contrast():
    """The exact gradient does not move a decode's channel means or scale, and is finite."""
    from compression.losses import color_corrected

    rng = np.random.default_rng(1)
    x_values = rng.uniform(-0.8, 0.8, (2, 16, 16, 3))
    y_values = 0.4 * x_values + 0.1 + rng.normal(0, 0.1, x_values.shape)
    with tf.Graph().as_default():
        x = tf.constant(x_values, tf.float32)
        y = tf.constant(y_values, tf.float32)
        exact = tf.gradients(distortion_loss(x, color_corrected(x, y)), y)[0]
        held = tf.gradients(distortion_loss(x, color_corrected(x, y, hold_gain=True)), y)[0]
        # A flat decode (std 0) and an anti-correlated one: clipped gains, finite gradients.
        flat = tf.zeros_like(x) + 0.3
        edge = tf.gradients(distortion_loss(x, color_corrected(x, flat))
                            + distortion_loss(x, color_corrected(x, -x)), flat)[0]
        g, h, e = run([exact, held, edge])
    centred = y_values - y_values.mean(axis=(1, 2), keepdims=True)
    scale = np.abs(g).sum()
    assert scale > 0 and np.all(np.isfinite(e))
    # No component along each example's channel mean ...
    assert np.abs(g.sum(axis=(1, 2))).max() < 1e-4 * scale
    assert np.abs(h.sum(axis=(1, 2))).max() < 1e-4 * scale
    # ... and, with the gain differentiated, none along its contrast either.
    assert np.abs((g * centred).sum(axis=(1, 2))).max() < 1e-4 * np.abs(g * centred).sum()
    assert np.abs((h * centred).sum(axis=(1, 2))).max() > 1e-2 * np.abs(h * centred).sum()
