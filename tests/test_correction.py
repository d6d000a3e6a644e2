"""The colour correction a file carries: fit and apply (compression/correction.py)."""

import numpy as np
import pytest

from compression.correction import (
    CORRECTION_SIZE,
    GAIN_STEP,
    MAX_GAIN,
    apply_correction,
    fit_correction,
)


def _photo(seed=0, shape=(40, 56), contrast=40):
    rng = np.random.default_rng(seed)
    smooth = rng.normal(size=(shape[0] // 8 + 1, shape[1] // 8 + 1, 3))
    image = np.kron(smooth, np.ones((8, 8, 1)))[:shape[0], :shape[1]]
    return np.clip(128 + contrast * image + rng.normal(0, 5, (*shape, 3)), 0, 255).astype(np.uint8)


def _mse(a, b):
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def test_undoes_a_colour_cast_and_a_contrast_change():
    original = _photo(contrast=20)
    # A decoder that changed the contrast (gains 2/3, 0.8, 1.25 undo it) and shifted the
    # colours (little enough that nothing clips).
    x = original.astype(np.float64)
    decoded = np.clip(np.rint((x - x.mean((0, 1))) * [1.5, 1.25, 0.8] + [110, 140, 120]),
                      0, 255).astype(np.uint8)
    correction = fit_correction(original, decoded)
    assert len(correction) == CORRECTION_SIZE
    stored = np.frombuffer(correction, np.uint8)
    np.testing.assert_array_equal(stored[:3], np.rint(x.reshape(-1, 3).mean(0)))
    np.testing.assert_allclose(stored[3:] * GAIN_STEP, [2 / 3, 0.8, 1.25], atol=0.02)
    corrected = apply_correction(decoded, correction)
    assert corrected.dtype == np.uint8 and corrected.shape == original.shape
    assert _mse(original, corrected) < 0.05 * _mse(original, decoded)
    assert np.abs(corrected.reshape(-1, 3).mean(0) - x.reshape(-1, 3).mean(0)).max() < 1


@pytest.mark.parametrize("seed", range(4))
def test_never_worse_than_no_correction_on_a_noisy_reconstruction(seed):
    # More variance than the original: the gain lies between least squares and 1.
    original = _photo(seed)
    rng = np.random.default_rng(100 + seed)
    decoded = np.clip(original + rng.normal(0, 30, original.shape), 0, 255).astype(np.uint8)
    corrected = apply_correction(decoded, fit_correction(original, decoded))
    assert _mse(original, corrected) <= _mse(original, decoded)


def test_a_flat_reconstruction_takes_the_mean_and_gain_one():
    original = _photo(1)
    flat = np.full_like(original, 30)
    correction = fit_correction(original, flat)
    assert list(correction[3:]) == [round(1 / GAIN_STEP)] * 3
    corrected = apply_correction(flat, correction)
    np.testing.assert_array_equal(corrected[0, 0], list(correction[:3]))
    assert (corrected == corrected[0, 0]).all()


def test_gains_are_clipped_to_what_a_byte_holds():
    original = _photo(2)
    x = original.astype(np.float64)
    faint = np.rint(128 + (x - x.mean((0, 1))) / 20).astype(np.uint8)  # needs a gain of ~20
    inverted = (255 - original).astype(np.uint8)  # anti-correlated: a negative gain
    assert list(fit_correction(original, faint)[3:]) == [round(MAX_GAIN / GAIN_STEP)] * 3
    assert list(fit_correction(original, inverted)[3:]) == [0, 0, 0]


def test_bad_input_is_a_clear_error():
    image = _photo()
    with pytest.raises(ValueError, match="differ in size"):
        fit_correction(image, image[:-1])
    with pytest.raises(ValueError, match=r"uint8 \[H, W, 3\]"):
        fit_correction(image.astype(np.float32), image)
    with pytest.raises(ValueError, match="6 bytes"):
        apply_correction(image, b"\x00" * 5)


def test_large_images_are_handled_in_row_blocks_with_the_same_result(monkeypatch):
    import compression.correction as correction

    original = _photo(3, shape=(64, 48))
    decoded = np.clip(original * 0.7 + 40, 0, 255).astype(np.uint8)
    whole = fit_correction(original, decoded)
    monkeypatch.setattr(correction, "_BLOCK_PIXELS", 100)  # 2 rows a block
    assert correction._blocks(64, 48)[-1] == slice(62, 64)
    assert fit_correction(original, decoded) == whole
    blocked = apply_correction(decoded, whole)
    monkeypatch.setattr(correction, "_BLOCK_PIXELS", 1 << 20)
    np.testing.assert_array_equal(blocked, apply_correction(decoded, whole))
