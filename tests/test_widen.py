"""Widening a trained decoder's upsampling stages: ``train --init-from --decoder-tail-width``."""

import numpy as np
import tensorflow as tf
from conftest import decode_source_and_grown
from test_train import assert_clean_error

from compression import widen
from compression.cli import main
from compression.config import CompressionConfig


def test_copies_cover_every_old_filter_round_robin():
    source, count = widen.copies(4, 10)
    np.testing.assert_array_equal(source, [0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    np.testing.assert_array_equal(count, [3, 3, 2, 2])
    source, count = widen.copies(3, 3)
    np.testing.assert_array_equal(count, [1, 1, 1])


def test_tail_width_defaults_to_width_and_old_fingerprints_stay():
    config = CompressionConfig(width=0.25)
    assert config.decoder_tail_width == 0.25
    assert config.tail_filters == (120, 60, 30, 15)
    assert "decoder_tail_width" not in config.fingerprint_json()
    wide = CompressionConfig(width=0.25, decoder_tail_width=0.5)
    assert wide.tail_filters == (240, 120, 60, 30)
    assert wide.fingerprint_json() != config.fingerprint_json()
    # A config saved before the field decodes as it did.
    data = config.to_dict()
    del data["decoder_tail_width"]
    assert CompressionConfig.from_dict(data).tail_filters == config.tail_filters


def test_init_from_widens_the_decoder_tail(tiny_data, raw_source_run, tmp_path, capsys):
    """The wider decoder starts out decoding nearly as the source did: each new
    filter copies an old one, and the next stage splits its weights among the copies."""
    mse = raw_source_run
    source = tf.train.latest_checkpoint(mse)
    wide = tmp_path / "wide"
    assert main(["train", "--data", str(tiny_data), "--out", str(wide), "--init-from", str(mse),
                 "--decoder-tail-width", "0.125", "--lr", "0", "--steps", "1",
                 "--val-images", "0", "--no-progress"]) == 0
    assert "widen from [30, 15, 8, 4] to [60, 30, 15, 8] filters" in capsys.readouterr().out
    assert CompressionConfig.load(wide / "config.json").tail_filters == (60, 30, 15, 8)
    after = tf.train.latest_checkpoint(str(wide))
    old, new = (tf.train.load_variable(source, "generator/decoder/u1/weights"),
                tf.train.load_variable(after, "generator/decoder/u1/weights"))
    assert new.shape == (3, 3, 60, 60)  # transposed: [h, w, out, in]
    np.testing.assert_array_equal(new[:, :, :30], old)  # the originals are kept as they were
    gap = np.abs(new[:, :, 30:] - old).max()  # the copies carry a little noise
    assert 0 < gap < 0.1 * np.abs(old).max()
    # u4's input: the 15 filters of u3 read 8 old ones, weights split among the copies.
    old4, new4 = (tf.train.load_variable(source, "generator/decoder/u4/weights"),
                  tf.train.load_variable(after, "generator/decoder/u4/weights"))
    assert new4.shape == (3, 3, 8, 15)
    np.testing.assert_allclose(new4[:, :, :4, :8].sum(axis=-1) + new4[:, :, :4, 8:].sum(axis=-1),
                               old4.sum(axis=-1), atol=1e-6)
    decoded = decode_source_and_grown(tiny_data, mse, wide, tmp_path / "wide_as_source")
    difference = np.abs(decoded[0].astype(int) - decoded[1].astype(int))
    # Random new filters would move every pixel; copies move a few by a level or two.
    assert difference.max() <= 4 and difference.mean() < 0.5, (difference.max(), difference.mean())
    # Narrower than the source would drop trained filters: a clean error, nothing written.
    assert main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "narrow"),
                 "--init-from", str(wide), "--decoder-tail-width", "0.0625", "--steps", "1",
                 "--no-progress"]) == 2
    assert_clean_error(capsys, "[60, 30, 15, 8]", "--decoder-tail-width 0.125 or more")
    assert not (tmp_path / "narrow").exists()
    # Widening and converting the stages to resize at once: refused, one at a time.
    assert main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "both"),
                 "--init-from", str(mse), "--decoder-tail-width", "0.125", "--upsampling",
                 "resize", "--steps", "1", "--no-progress"]) == 2
    assert_clean_error(capsys, "in two fine-tunes, not one")
    assert not (tmp_path / "both").exists()
