"""Tests of compression.metrics: PSNR, MS-SSIM (incl. small images), bpp."""

import math

import numpy as np
import pytest
import tensorflow as tf
from skimage import data as samples

from compression import metrics
from compression.metrics import bits_per_pixel, ms_ssim, ms_ssim_parameters, psnr


@pytest.fixture(scope="module")
def astronaut():
    return samples.astronaut()  # 512x512 RGB


def _noisy(image, sigma, seed=0):
    noise = np.random.default_rng(seed).normal(0, sigma, image.shape)
    return np.clip(np.round(image + noise), 0, 255).astype(np.uint8)


def test_psnr_values():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    assert psnr(a, b) == math.inf
    b[:] = 1  # MSE 1 -> 20 log10(255)
    assert psnr(a, b) == pytest.approx(20 * math.log10(255))
    with pytest.raises(ValueError, match="shape"):
        psnr(a, b[:2])
    with pytest.raises(ValueError, match="uint8"):
        psnr(a.astype(np.float32), b.astype(np.float32))


def test_ms_ssim_identical_and_ordering(astronaut):
    assert ms_ssim(astronaut, astronaut) == pytest.approx(1.0, abs=1e-5)
    mild, strong = _noisy(astronaut, 5), _noisy(astronaut, 25)
    assert psnr(astronaut, mild) > psnr(astronaut, strong)
    s_mild, s_strong = ms_ssim(astronaut, mild), ms_ssim(astronaut, strong)
    assert isinstance(s_mild, float)
    assert 1.0 > s_mild > s_strong > 0.0


def test_ms_ssim_matches_tensorflow_default_for_large_images(astronaut):
    noisy = _noisy(astronaut, 10)
    expected = tf.image.ssim_multiscale(astronaut[None], noisy[None], max_val=255)[0]
    assert ms_ssim(astronaut, noisy) == pytest.approx(float(expected), abs=1e-5)


@pytest.mark.parametrize("size", [40, 8, 1])
def test_ms_ssim_small_images(astronaut, size):
    a = astronaut[200:200 + size, 200:200 + size]
    b = _noisy(a, 20)
    assert ms_ssim(a, a) == pytest.approx(1.0, abs=1e-5)
    assert 0.0 <= ms_ssim(a, b) < 1.0


def test_ms_ssim_grayscale():
    camera = samples.camera()[:64, :96]
    assert ms_ssim(camera, camera) == pytest.approx(1.0, abs=1e-5)
    assert ms_ssim(camera, _noisy(camera, 20)) < 0.99


def test_ms_ssim_parameters():
    assert ms_ssim_parameters(176, 1000)[:2] == (5, 11)
    assert ms_ssim_parameters(175, 175)[:2] == (4, 11)
    assert ms_ssim_parameters(40, 60)[:2] == (2, 11)  # 40/2 >= 11, 40/4 < 11
    assert ms_ssim_parameters(11, 11)[:2] == (1, 11)
    assert ms_ssim_parameters(7, 30)[:2] == (1, 7)
    scales, _, weights = ms_ssim_parameters(50, 50)
    assert len(weights) == scales == 3 and sum(weights) == pytest.approx(1.0)
    assert weights[0] / weights[1] == pytest.approx(0.0448 / 0.2856)


def test_ms_ssim_inside_a_graph_adds_no_ops(astronaut):
    noisy = _noisy(astronaut[:64, :64], 10)
    eager = ms_ssim(astronaut[:64, :64], noisy)
    with tf.Graph().as_default() as graph:
        inside = ms_ssim(astronaut[:64, :64], noisy)
        assert not graph.get_operations()
    assert inside == pytest.approx(eager, abs=1e-6)


def test_ms_ssim_graph_fallback_matches_eager(astronaut):
    # The path used when eager execution is disabled globally; calling it
    # directly avoids switching eager off for the whole test session.
    a = astronaut[:48, :80]
    b = _noisy(a, 10)
    _, filter_size, weights = ms_ssim_parameters(48, 80)
    args = (a[None].astype(np.float32), b[None].astype(np.float32), filter_size, weights)
    first = metrics._ms_ssim_graph(*args)
    assert metrics._ms_ssim_graph(*args) == pytest.approx(first)  # cached session
    assert float(first) == pytest.approx(ms_ssim(a, b), abs=1e-5)


def test_bits_per_pixel():
    assert bits_per_pixel(1000, 100, 80) == pytest.approx(1.0)
    assert bits_per_pixel(0, 16, 16) == 0.0
    with pytest.raises(ValueError):
        bits_per_pixel(10, 0, 16)


def test_chroma_speckle_finds_a_patch_of_coloured_checkerboard():
    photo = samples.coffee()
    assert metrics.chroma_speckle(photo, photo) == (0, 0)
    # A smooth decode adds no speckle: every tile is as rough as the original or less.
    blurred = ((photo[:-1:2, :-1:2].astype(np.uint16) + photo[1::2, 1::2]) // 2).astype(np.uint8)
    smooth = np.repeat(np.repeat(blurred, 2, 0), 2, 1)
    original = photo[:smooth.shape[0], :smooth.shape[1]]
    worst, typical = metrics.chroma_speckle(original, smooth)
    assert worst < 1 and typical < 0  # smoother than the original
    # A 48x48 patch whose neighbouring pixels alternate red and green, on the same decode.
    def checker(height, width, even=(150, 90, 90), odd=(90, 150, 90)):
        return np.where((np.indices((height, width)).sum(0) % 2 == 0)[..., None],
                        even, odd).astype(np.uint8)

    speckled = smooth.copy()
    speckled[100:148, 200:248] = checker(48, 48)
    patch, rest = metrics.chroma_speckle(original, speckled)
    assert patch > 6 > worst and rest == pytest.approx(typical, abs=0.1)  # codec.SPECKLE_LIMIT
    # Speckle everywhere is no patch: the typical tile is as bad.
    everywhere = checker(*smooth.shape[:2])
    worst_everywhere, typical_everywhere = metrics.chroma_speckle(original, everywhere)
    assert typical_everywhere > 6 and worst_everywhere - typical_everywhere < 6
    # Brightness alone is not colour: a grey checkerboard adds none.
    grey = smooth.copy()
    grey[100:148, 200:248] = checker(48, 48, even=(150,) * 3, odd=(90,) * 3)
    assert metrics.chroma_speckle(original, grey)[0] < 1
    # Images smaller than a tile score as one tile; one pixel has no neighbours.
    assert metrics.chroma_speckle(original[:20, :20], speckled[:20, :20])[0] < 1
    assert metrics.chroma_speckle(photo[:1, :1], photo[:1, :1]) == (0, 0)
    with pytest.raises(ValueError, match="RGB"):
        metrics.chroma_speckle(photo[..., 0], photo[..., 0])


def test_chroma_error_measures_colour_not_grey_level():
    photo = samples.coffee()
    grey = np.repeat(photo.mean(axis=-1, keepdims=True).round().astype(np.uint8), 3, axis=-1)
    assert metrics.chroma_error(photo, photo) == 0
    # A grey copy loses exactly the photograph's own colourfulness.
    f = photo.astype(np.float64)
    colourfulness = np.mean(np.abs(f - f.mean(-1, keepdims=True)))
    assert metrics.chroma_error(photo, grey) == pytest.approx(colourfulness, abs=0.5)
    brighter = np.clip(photo.astype(np.int16) + 10, 0, 255).astype(np.uint8)
    assert metrics.chroma_error(photo, brighter) < 0.5 < colourfulness  # grey level: no error
    with pytest.raises(ValueError, match="RGB"):
        metrics.chroma_error(photo[..., 0], grey[..., 0])
