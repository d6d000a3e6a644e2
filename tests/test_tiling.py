"""Tiled decoding (CompressionModel.decode_tiled): seam-free and bounded in memory."""

import numpy as np
import pytest

from compression.codec import decode_image, encode_image
from compression.image_io import to_uint8


@pytest.fixture(scope="module")
def symbols(tiny_model):
    rng = np.random.default_rng(3)
    return rng.integers(0, tiny_model.config.num_centers, size=(11, 14, tiny_model.config.channels))


@pytest.mark.parametrize("tile", [3, 5, 8])
def test_tiled_decode_matches_one_pass(tiny_model, symbols, tile):
    full = tiny_model.decode(symbols, 7, tile=0)
    tiled = tiny_model.decode(symbols, 7, tile=tile)
    assert tiled.shape == full.shape == (16 * 11, 16 * 14, 3)
    # Whole-image moments are accumulated in float64 instead of float32 moments:
    # the values agree to float rounding, and 8-bit pixels by at most one level.
    np.testing.assert_allclose(tiled, full, atol=2e-3)
    assert np.abs(to_uint8(tiled).astype(int) - to_uint8(full).astype(int)).max() <= 1


def test_tiled_decode_has_no_seams(tiny_model, symbols):
    """Differences to the one-pass decode are not concentrated on tile borders."""
    full = tiny_model.decode(symbols, 7, tile=0)
    tiled = tiny_model.decode(symbols, 7, tile=4)
    diff = np.abs(tiled - full).max(axis=2)
    border_rows = [16 * r + d for r in (4, 8) for d in (-1, 0)]
    assert diff[border_rows].max() <= diff.max() + 1e-7
    assert diff.max() < 2e-3


def test_large_images_are_tiled_automatically(tiny_model, symbols, monkeypatch):
    """Above tile_threshold the codec decodes in tiles, deterministically."""
    calls = []
    original = type(tiny_model).decode_tiled

    def spy(self, features, tile, as_uint8=False):
        calls.append(tile)
        return original(self, features, tile, as_uint8=as_uint8)

    monkeypatch.setattr(type(tiny_model), "decode_tiled", spy)
    monkeypatch.setattr(tiny_model, "tile_threshold", 64 * 64)
    monkeypatch.setattr(tiny_model, "tile_size", 4)
    image = (np.arange(150 * 170 * 3) % 251).astype(np.uint8).reshape(150, 170, 3)
    data = encode_image(tiny_model, image).data
    assert calls == [4]  # the encoder decodes its file once, for the colour correction
    first, _ = decode_image(tiny_model, data)
    second, _ = decode_image(tiny_model, data)
    assert calls == [4, 4, 4]
    assert first.shape == image.shape
    np.testing.assert_array_equal(first, second)


def test_tile_for_says_what_decode_does(tiny_model, monkeypatch):
    monkeypatch.setattr(tiny_model, "tile_threshold", 64 * 64)
    monkeypatch.setattr(tiny_model, "tile_size", 4)
    assert tiny_model.tile_for(4, 4) == 0          # 4096 pixels: at the threshold, one pass
    assert tiny_model.tile_for(5, 4) == 4          # above it and larger than one tile
    assert tiny_model.tile_for(2, 40) == 4         # wide strips are tiled too
    monkeypatch.setattr(tiny_model, "tile_size", 64)
    assert tiny_model.tile_for(5, 4) == 0          # above the threshold but fits one tile


def test_large_images_use_smaller_tiles(tiny_model, monkeypatch):
    # Smaller tiles bound the peak memory of the largest images (docs/reliability.md).
    monkeypatch.setattr(tiny_model, "tile_threshold", 64 * 64)
    monkeypatch.setattr(tiny_model, "tile_size", 8)
    monkeypatch.setattr(tiny_model, "large_image", 256 * 16 * 16)
    monkeypatch.setattr(tiny_model, "large_tile_size", 4)
    assert tiny_model.tile_for(12, 12) == 8        # up to large_image: the usual tiles
    assert tiny_model.tile_for(20, 20) == 4        # above it: the small ones


@pytest.fixture(scope="module")
def resize_model(tiny_data, tmp_path_factory):
    """TINY with resize-convolution upsampling, 2 steps: its own graph in inference."""
    import dataclasses

    from conftest import TINY

    from compression.inference import load_model
    from compression.train import train

    run_dir = str(tmp_path_factory.mktemp("resize") / "run")
    train(dataclasses.replace(TINY, upsampling="resize"), tiny_data, run_dir, steps=2,
          checkpoint_every=2, summary_every=0, val_every=0, val_images=0, progress=False,
          log=lambda *_: None)
    model = load_model(run_dir)
    yield model
    model.close()


def test_resize_upsampling_decodes_whole_files_and_in_seamless_tiles(resize_model, symbols):
    assert resize_model.config.upsampling == "resize"
    full = resize_model.decode(symbols[..., :resize_model.config.channels], 7, tile=0)
    tiled = resize_model.decode(symbols[..., :resize_model.config.channels], 7, tile=4)
    assert full.shape == (16 * 11, 16 * 14, 3)
    np.testing.assert_allclose(tiled, full, atol=2e-3)
    image = (np.random.default_rng(5).uniform(0, 255, (40, 56, 3))).astype(np.uint8)
    decoded, _ = decode_image(resize_model, encode_image(resize_model, image).data)
    assert decoded.shape == image.shape
