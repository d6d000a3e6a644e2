"""compression.gain: gain units, rate positions and their training."""

import contextlib
import dataclasses
import io
import json
import math
import re

import numpy as np
import pytest
import tensorflow as tf

from compression import bitstream, codec
from compression.codec import (
    decode_image,
    encode_image,
    file_stats,
    noise_seed,
    read_symbols,
)
from compression.config import CompressionConfig
from compression.errors import CompressionError, ConfigError, CorruptFileError, RateError
from compression.gain import (
    GAIN_SCALE,
    POSITION_LEVELS,
    position_from_byte,
    position_of,
    position_to_byte,
    rate_weight_at,
    rate_weight_of,
    regrid_table,
    sample_positions,
)
from compression.model import build_training_graph, dequantized, encode, synthesize
from tests.conftest import TINY_MSE, TINY_VARIABLE_RATE, rewritten_copy

_v1 = tf.compat.v1

ADAPTIVE = dataclasses.replace(TINY_MSE, noise=False, lambda_rate=20.0,
                               rate_lambdas=(10.0, 20.0, 40.0, 80.0), histogram_decay=0.9)


def test_config_checks_rate_lambdas():
    for bad in ((10.0,), (20.0, 10.0), (10.0, 10.0), (0.0, 10.0), (1.0,) * 17):
        with pytest.raises(ConfigError, match="rate_lambdas"):
            dataclasses.replace(ADAPTIVE, rate_lambdas=bad)
    with pytest.raises(ConfigError, match="lambda_rate 5 must lie within rate_lambdas"):
        dataclasses.replace(ADAPTIVE, lambda_rate=5.0)
    assert ADAPTIVE.rate_adaptive and not TINY_MSE.rate_adaptive
    assert CompressionConfig.from_json(ADAPTIVE.to_json()) == ADAPTIVE
    # It changes what a model decodes, so the fingerprint sees it.
    assert ADAPTIVE.fingerprint_json() != dataclasses.replace(
        ADAPTIVE, rate_lambdas=(10.0, 20.0, 40.0)).fingerprint_json()


def test_positions_map_rate_weights_and_bytes():
    assert position_of(10.0, ADAPTIVE) == 0.0
    assert position_of(20.0, ADAPTIVE) == 1.0
    assert position_of(80.0, ADAPTIVE) == 3.0
    assert position_of(20.0 * math.sqrt(2.0), ADAPTIVE) == pytest.approx(1.5)
    with pytest.raises(ConfigError, match="outside the model's range 10-80"):
        position_of(100.0, ADAPTIVE)
    assert position_to_byte(0.0, ADAPTIVE) == 0
    assert position_to_byte(3.0, ADAPTIVE) == POSITION_LEVELS
    for value in (0, 1, 85, 200, 255):
        assert position_to_byte(position_from_byte(value, ADAPTIVE), ADAPTIVE) == value
    with pytest.raises(ConfigError, match="outside"):
        position_to_byte(3.5, ADAPTIVE)
    with tf.Graph().as_default(), _v1.Session() as sess:
        weights = sess.run(rate_weight_at(tf.constant([0.0, 1.0, 1.5, 3.0]), ADAPTIVE))
    np.testing.assert_allclose(weights, [10.0, 20.0, 20.0 * math.sqrt(2.0), 80.0])
    for position, weight in zip((0.0, 1.0, 1.5, 3.0), weights, strict=True):
        assert rate_weight_of(position, ADAPTIVE) == pytest.approx(weight)


def _images(batch=2):
    rng = np.random.default_rng(0)
    return rng.uniform(-1, 1, (batch, 32, 64, 3)).astype(np.float32)


def test_untrained_gains_are_one_at_every_position():
    """A model fine-tuned from a fixed-rate one starts out coding as its source did."""
    images = _images()
    with tf.Graph().as_default(), _v1.Session() as sess:
        w, q0 = encode(images, ADAPTIVE, position=0.0)
        _, q3 = encode(images, ADAPTIVE, position=3.0)
        w_hat = dequantized(q0.symbols, ADAPTIVE, position=2.0)
        sess.run(_v1.global_variables_initializer())
        names = sorted(v.op.name for v in _v1.global_variables() if "gain" in v.op.name)
        assert names == ["generator/decoder/gain", "generator/encoder/gain"]
        s0, s3, h0, dq = sess.run([q0.symbols, q3.symbols, q0.w_hat, w_hat])
    np.testing.assert_array_equal(s0, s3)
    np.testing.assert_array_equal(h0, dq)


def test_gains_scale_symbols_and_decoder_input_by_position():
    images = _images()
    with tf.Graph().as_default(), _v1.Session() as sess:
        w, q_low = encode(images, ADAPTIVE, position=0.0)
        _, q_high = encode(images, ADAPTIVE, position=3.0)
        _, q_mid = encode(images, ADAPTIVE, position=tf.constant([1.5, 1.5]))
        sess.run(_v1.global_variables_initializer())
        tables = {v.op.name: v for v in _v1.global_variables() if "gain" in v.op.name}
        # log gains: the last rate weight halves the bottleneck, the decoder doubles it back.
        enc = np.zeros((4, 4), np.float32)
        enc[3] = math.log(0.5) / GAIN_SCALE
        sess.run([tables["generator/encoder/gain"].assign(enc),
                  tables["generator/decoder/gain"].assign(-enc)])
        w_v, low, high, mid = sess.run([w, q_low, q_high, q_mid])
    centers = np.asarray(ADAPTIVE.centers)
    # Halved values sit nearer the middle centre: fewer distinct symbols, lower rate.
    assert np.mean(high.symbols == 2) > np.mean(low.symbols == 2)
    np.testing.assert_allclose(high.w_hat, centers[high.symbols] * 2.0, rtol=1e-6)
    np.testing.assert_allclose(low.w_hat, centers[low.symbols], rtol=1e-6)
    # Half way between knots 1 and 2: untouched (both knots are 1), so like position 0.
    np.testing.assert_array_equal(mid.symbols, low.symbols)


def test_training_weighs_each_example_by_its_rate_weight_and_trains_the_gains():
    images = _images()
    with tf.Graph().as_default(), _v1.Session() as sess:
        tg = build_training_graph(images, ADAPTIVE)
        sess.run(_v1.global_variables_initializer())
        tables = [v for v in _v1.trainable_variables() if v.op.name.endswith("/gain")]
        before = sess.run(tables)
        for _ in range(3):
            sess.run(tg.warmup_train_op)
        after = sess.run(tables)
        grads = _v1.gradients(tg.phase_losses["warmup"]["g_loss"], tables)
        assert all(g is not None for g in grads)
    for b, a in zip(before, after, strict=True):
        assert not np.array_equal(b, a)


def test_config_checks_the_training_restrictions():
    gains = dataclasses.replace(ADAPTIVE, trainable="gains", train_rate_range=(10.0, 20.0))
    assert CompressionConfig.from_json(gains.to_json()) == gains
    # Training only: the model's fingerprint (in every file's header) does not see them.
    assert gains.fingerprint_json() == ADAPTIVE.fingerprint_json()
    with pytest.raises(ConfigError, match="trainable must be 'all' or 'gains'"):
        dataclasses.replace(ADAPTIVE, trainable="decoder")
    with pytest.raises(ConfigError, match="this model has none"):
        dataclasses.replace(TINY_MSE, trainable="gains")
    with pytest.raises(ConfigError, match="applies to a rate-adaptive model"):
        dataclasses.replace(TINY_MSE, train_rate_range=(1.0, 2.0))
    within = r"two rising rate weights within rate_lambdas \(10-80"
    for bad in ((10.0,), (20.0, 10.0), (5.0, 20.0), (10.0, 100.0), (10.0, 20.0, 40.0)):
        with pytest.raises(ConfigError, match=within):
            dataclasses.replace(ADAPTIVE, train_rate_range=bad)
    # Written before the fields existed: everything trained, the whole range.
    data = json.loads(ADAPTIVE.to_json())
    for name in ("trainable", "train_rate_range"):
        del data["config"][name]
    old = CompressionConfig.from_json(json.dumps(data))
    assert (old.trainable, old.train_rate_range) == ("all", ())


def test_train_rate_range_bounds_the_drawn_positions():
    config = dataclasses.replace(ADAPTIVE, train_rate_range=(20.0, 40.0 * math.sqrt(2.0)))
    with tf.Graph().as_default(), _v1.Session() as sess:
        drawn = sess.run(sample_positions(4000, config))
        whole = sess.run(sample_positions(4000, ADAPTIVE))
    assert 1.0 <= drawn.min() < 1.01 and 2.49 < drawn.max() < 2.5
    assert whole.min() < 0.01 and whole.max() > 2.99


def test_trainable_gains_updates_only_the_gains_of_the_range_drawn():
    """Adding a rate: the knot and its neighbour learn, the other rates code as before."""
    config = dataclasses.replace(ADAPTIVE, trainable="gains", train_rate_range=(10.0, 20.0))
    images = _images()
    with tf.Graph().as_default(), _v1.Session() as sess:
        tg = build_training_graph(images, config)
        sess.run(_v1.global_variables_initializer())
        weights = tg.generator_variables
        tables = [v for v in weights if v.op.name.endswith("/gain")]
        others = [v for v in weights if not v.op.name.endswith("/gain")]
        assert len(tables) == 2 and others
        # Away from 1, so that a step shows in every row it reaches.
        sess.run([t.assign(np.full(t.shape, 0.001, np.float32)) for t in tables])
        before_tables, before_others = sess.run(tables), sess.run(others)
        for _ in range(3):
            sess.run(tg.warmup_train_op)
        after_tables, after_others = sess.run(tables), sess.run(others)
    for b, a in zip(before_others, after_others, strict=True):
        np.testing.assert_array_equal(b, a)
    for b, a in zip(before_tables, after_tables, strict=True):
        assert not np.array_equal(b[:2], a[:2])  # rate weights 10 and 20: trained
        np.testing.assert_array_equal(b[2:], a[2:])  # 40 and 80: as they were


def test_synthesize_accepts_gained_w_hat():
    images = _images(1)
    with tf.Graph().as_default(), _v1.Session() as sess:
        _, q = encode(images, ADAPTIVE, position=3.0)
        recon, _ = synthesize(q.w_hat, ADAPTIVE, False)
        sess.run(_v1.global_variables_initializer())
        assert sess.run(recon).shape == (1, 32, 64, 3)


# -- files ------------------------------------------------------------------

ADAPTIVE_VARIABLE = dataclasses.replace(TINY_VARIABLE_RATE, lambda_rate=20.0,
                                        rate_lambdas=(10.0, 20.0, 40.0, 80.0))


@pytest.fixture(scope="module")
def adaptive_model(tmp_path_factory):
    """An untrained rate-adaptive model whose last rate weight quarters the bottleneck
    (the decoder gain scales it back) and whose entropy model favours the middle
    centre, so lower rates code smaller files."""
    from compression.inference import initialize_run, load_model

    run = tmp_path_factory.mktemp("adaptive")
    initialize_run(ADAPTIVE_VARIABLE, run / "init", seed=3)
    log_gain = np.zeros((4, ADAPTIVE_VARIABLE.channels), np.float32)
    log_gain[3] = math.log(0.25) / GAIN_SCALE
    counts = np.tile([1.0, 10.0, 100.0, 10.0, 1.0], (ADAPTIVE_VARIABLE.channels, 1))

    def change(values):
        assert values["generator/encoder/gain"].shape == log_gain.shape
        return dict(values, **{"generator/encoder/gain": log_gain,
                               "generator/decoder/gain": -log_gain,
                               "entropy_model/symbol_counts": counts})
    (run / "init" / "run.json").write_text("{}")
    model = load_model(rewritten_copy(str(run / "init"), str(run / "model"), change))
    yield model
    model.close()


def _photo():
    from skimage import data

    return data.astronaut()[::2, ::2][:192, :224]  # 192x224


def test_files_store_their_rate_position_and_decode_with_it(adaptive_model):
    image = _photo()
    default = encode_image(adaptive_model, image)
    assert default.rate_position == position_to_byte(1.0, ADAPTIVE_VARIABLE) == 85
    files = {b: encode_image(adaptive_model, image, rate_position=b) for b in (0, 255)}
    assert len(files[255].data) < len(files[0].data)
    for byte, result in files.items():
        decoded, header = decode_image(adaptive_model, result.data)
        assert header.rate_position == byte and decoded.shape == image.shape
        assert file_stats(result.data)["rate_position"] == f"{byte} of 255"
    # The decoder applies the file's own gain: the same symbols at another position
    # decode to another image.
    header, symbols = read_symbols(adaptive_model, files[255].data)
    own = adaptive_model.decode(symbols, noise_seed(header, symbols), position=3.0)
    other = adaptive_model.decode(symbols, noise_seed(header, symbols), position=0.0)
    assert np.abs(own - other).max() > 1e-3


def test_bpp_chooses_the_highest_rate_position_that_fits(adaptive_model, monkeypatch):
    # The speckle guard may store a seed (one byte more) in this untrained model's files,
    # and the error below names files without one: the rate search is tested without it.
    monkeypatch.setattr(codec, "SPECKLE_LIMIT", math.inf)
    image = _photo()
    pixels = image.shape[0] * image.shape[1]
    high, low = (encode_image(adaptive_model, image, rate_position=b).bpp for b in (0, 255))
    target = (high + low) / 2
    result = encode_image(adaptive_model, image, bpp=target)
    assert result.bpp <= target and result.channels == ADAPTIVE_VARIABLE.channels
    assert 0 < result.rate_position < 255
    before = encode_image(adaptive_model, image, rate_position=result.rate_position - 1)
    assert 8 * len(before.data) / pixels > target  # one step more rate no longer fits
    # Below the lowest rate's file, channels are cut at the lowest rate.
    fewest = encode_image(adaptive_model, image, channels=2, rate_position=255).bpp
    cut = encode_image(adaptive_model, image, bpp=(low + fewest) / 2)
    assert cut.rate_position == 255 and cut.channels < ADAPTIVE_VARIABLE.channels
    assert cut.bpp <= (low + fewest) / 2
    assert decode_image(adaptive_model, cut.data)[0].shape == image.shape
    # Below every file: the error names the model's whole range for the image, up to
    # every channel at its highest rate (not the channels' range at its lowest).
    with pytest.raises(RateError, match=rf"range for this image is {fewest:.4f}-{high:.4f} bpp"):
        encode_image(adaptive_model, image, bpp=fewest * 0.9)


def test_rate_positions_are_checked(adaptive_model, variable_rate_model):
    image = _photo()
    for bad in (-1, 256, 1.5, True):
        with pytest.raises(ConfigError, match="rate_position is a byte"):
            encode_image(adaptive_model, image, rate_position=bad)
    with pytest.raises(ConfigError, match="codes at one rate"):
        encode_image(variable_rate_model, image, rate_position=3)
    with pytest.raises(ConfigError, match=r"rate position must be in \[0, 3\]"):
        adaptive_model.encode(np.zeros((16, 16, 3), np.float32), position=3.5)
    # A file whose header lost its position (or gained one) is inconsistent.
    data = encode_image(adaptive_model, image).data
    header, payload = bitstream.unpack(data)
    stripped = bitstream.pack(dataclasses.replace(
        header, rate_position=None, flags=header.flags & ~bitstream.FLAG_RATE_POSITION), payload)
    with pytest.raises(CorruptFileError, match="rate position is missing"):
        decode_image(adaptive_model, stripped)


def test_refinement_and_the_seed_search_code_at_the_chosen_position(adaptive_model):
    image = _photo()
    low = encode_image(adaptive_model, image, rate_position=255).bpp
    result = encode_image(adaptive_model, image, bpp=low * 1.05, refine=2, seeds=2)
    assert result.bpp <= low * 1.05 and result.rate_position > 0
    decoded, header = decode_image(adaptive_model, result.data)
    assert header.rate_position == result.rate_position and decoded.shape == image.shape


def test_cli_encode_names_the_rate_and_info_shows_the_position(adaptive_model, tmp_path, capsys):
    from PIL import Image

    from compression.cli import main

    source = tmp_path / "photo.png"
    Image.fromarray(_photo()).save(source)
    low = encode_image(adaptive_model, _photo(), rate_position=255).bpp
    gcz = tmp_path / "photo.gcz"
    assert main(["encode", str(source), "--model", adaptive_model.run_dir, "--bpp",
                 f"{low * 1.05:.6f}", "-o", str(gcz)]) == 0
    out = capsys.readouterr().out
    match = re.search(r"6 of 6 channels; bound [\d.]+ bpp, rate weight ([\d.]+) "
                      r"\(position (\d+)\)\)", out)
    assert match, out
    byte = int(match[2])
    assert 0 < byte < 255
    assert float(match[1]) == pytest.approx(
        rate_weight_of(position_from_byte(byte, ADAPTIVE_VARIABLE), ADAPTIVE_VARIABLE), rel=1e-2)
    assert "the largest file this model writes" not in out
    assert main(["info", str(gcz)]) == 0
    assert f"rate_position {byte} of 255" in capsys.readouterr().out
    assert main(["decode", str(gcz), "--model", adaptive_model.run_dir, "-o",
                 str(tmp_path / "photo_decoded.png")]) == 0


@pytest.fixture(scope="module")
def adaptive_run(tiny_data, source_run, tmp_path_factory):
    """``source_run`` fine-tuned 2 steps as a rate-adaptive model: ``(run, stdout)``."""
    from compression.cli import main

    run = tmp_path_factory.mktemp("adaptive_run") / "run"
    capture = io.StringIO()
    with contextlib.redirect_stdout(capture):
        assert main(["train", "--data", str(tiny_data), "--out", str(run), "--init-from",
                     source_run, "--rate-lambdas", "0.5,1,2", "--lambda-rate", "1", "--steps",
                     "2", "--val-every", "2", "--val-images", "1", "--no-progress"]) == 0
    return run, capture.getvalue()


def test_train_a_rate_adaptive_fine_tune_from_a_fixed_rate_run(adaptive_run):
    run, out = adaptive_run
    assert "the gain units are new; they start at 1" in out, out
    assert CompressionConfig.load(run / "config.json").rate_lambdas == (0.5, 1.0, 2.0)
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    for suffix in ("", "_t0", "_t2"):  # the default rate and both ends of the range
        assert 0 < last[f"val_bpp_estimate{suffix}"] and 0 < last[f"val_ms_ssim{suffix}"]
    checkpoint = tf.train.latest_checkpoint(str(run))
    for table in ("generator/encoder/gain", "generator/decoder/gain"):
        assert np.any(tf.train.load_variable(checkpoint, table) != 0)  # trained from 0


def test_regrid_table_keeps_the_old_rates_and_extends_their_trend():
    table = np.array([[0.0, 1.0], [0.5, 3.0], [2.0, 4.0]], np.float32)  # weights 1, 2, 4
    out = regrid_table(table, (1.0, 2.0, 4.0), (0.5, 1.0, math.sqrt(2.0), 2.0, 4.0, 8.0))
    np.testing.assert_allclose(out[[1, 3, 4]], table, atol=1e-6)  # old knots unchanged
    np.testing.assert_allclose(out[2], (table[0] + table[1]) / 2, atol=1e-6)  # halfway in log
    np.testing.assert_allclose(out[0], 2 * table[0] - table[1], atol=1e-6)  # first step's trend
    np.testing.assert_allclose(out[5], 2 * table[2] - table[1], atol=1e-6)  # last step's trend
    with pytest.raises(ConfigError, match="does not fit 2 rate weights"):
        regrid_table(table, (1.0, 2.0), (1.0, 2.0))


def test_init_from_other_rate_weights_regrids_the_gain_tables(adaptive_run):
    from compression.train import _initializer_from

    run = adaptive_run[0]
    source = CompressionConfig.load(run / "config.json")
    config = dataclasses.replace(source, rate_lambdas=(0.25, 0.5, 1.0, 2.0, 4.0))
    checkpoint = tf.train.latest_checkpoint(str(run))
    logs = []
    with tf.Graph().as_default(), _v1.Session() as sess:
        build_training_graph(_images(), config)
        restore, _, _, fresh = _initializer_from(str(run), _v1.global_variables(), config,
                                                 log=logs.append)
        sess.run(_v1.global_variables_initializer())
        restore(sess)
        for name in ("generator/encoder/gain", "generator/decoder/gain"):
            assert name not in fresh
            stored = tf.train.load_variable(checkpoint, name)
            value = sess.run(_v1.global_variables(name)[0])
            assert value.shape == (5, source.channels)
            np.testing.assert_allclose(value[1:4], stored, atol=1e-6)  # 0.5, 1, 2 as before
            np.testing.assert_allclose(value[4], 2 * stored[2] - stored[1], atol=1e-6)
    assert any("gain tables move from rate weights 0.5, 1, 2 to 0.25" in m for m in logs), logs


def test_init_from_with_more_channels_grows_the_gain_tables(adaptive_run):
    from compression.train import _initializer_from

    run = adaptive_run[0]
    source = CompressionConfig.load(run / "config.json")
    config = dataclasses.replace(source, channels=source.channels + 2)
    checkpoint = tf.train.latest_checkpoint(str(run))
    with tf.Graph().as_default(), _v1.Session() as sess:
        build_training_graph(_images(), config)
        restore, _, _, fresh = _initializer_from(str(run), _v1.global_variables(), config,
                                                 log=lambda *_: None)
        sess.run(_v1.global_variables_initializer())
        restore(sess)
        for name in ("generator/encoder/gain", "generator/decoder/gain"):
            value = sess.run(_v1.global_variables(name)[0])
            np.testing.assert_array_equal(value[:, :source.channels],
                                          tf.train.load_variable(checkpoint, name))
            np.testing.assert_array_equal(value[:, source.channels:], 0)  # gain 1
    with pytest.raises(CompressionError, match="in two fine-tunes"):
        _initializer_from(str(run), [], dataclasses.replace(config, rate_lambdas=(0.5, 2.0)))


def test_cli_adds_a_rate_by_training_the_gains_alone(adaptive_run, tiny_data, tmp_path):
    from compression.cli import main

    source, run = adaptive_run[0], tmp_path / "top"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["train", "--data", str(tiny_data), "--out", str(run), "--init-from",
                     str(source), "--rate-lambdas", "0.25,0.5,1,2", "--trainable", "gains",
                     "--train-rate-range", "0.25,0.5", "--steps", "2", "--val-every", "0",
                     "--no-progress"]) == 0
    config = CompressionConfig.load(run / "config.json")
    assert (config.trainable, config.train_rate_range) == ("gains", (0.25, 0.5))
    old, new = tf.train.latest_checkpoint(str(source)), tf.train.latest_checkpoint(str(run))
    old_names = dict(tf.train.list_variables(old))
    frozen = [n for n in old_names if n.startswith("generator/") and "adam" not in n
              and "ExponentialMovingAverage" not in n and not n.endswith("/gain")]
    averaged = [n for n in frozen if f"{n}/ExponentialMovingAverage" in old_names]
    assert averaged and len(averaged) < len(frozen)  # the decoder side, not the encoder
    for name in frozen:
        # What the source decodes with: its average where it has one (both the
        # weight and the new run's average of it), else the weight itself.
        want = tf.train.load_variable(old, f"{name}/ExponentialMovingAverage"
                                      if name in averaged else name)
        np.testing.assert_array_equal(tf.train.load_variable(new, name), want)
        if name in averaged:
            np.testing.assert_array_equal(
                tf.train.load_variable(new, f"{name}/ExponentialMovingAverage"), want)
    table = tf.train.load_variable(new, "generator/encoder/gain")
    source_table = tf.train.load_variable(old, "generator/encoder/gain")
    np.testing.assert_allclose(table[2:], source_table[1:], atol=1e-6)  # weights 1 and 2
    decoder = "generator/decoder/gain"
    decoded_with = tf.train.load_variable(old, f"{decoder}/ExponentialMovingAverage")
    assert not np.allclose(decoded_with, tf.train.load_variable(old, decoder), atol=1e-6)
    for key in (decoder, f"{decoder}/ExponentialMovingAverage"):
        np.testing.assert_allclose(tf.train.load_variable(new, key)[2:], decoded_with[1:],
                                   atol=1e-6)
    # The new knot learned from where the regrid put it (the trend beyond weight 0.5).
    assert not np.allclose(table[0], 2 * source_table[0] - source_table[1], atol=1e-6)
    # A run from it trains everything again, over its whole range, unless told.
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "next"),
                     "--init-from", str(run), "--steps", "1", "--val-every", "0",
                     "--no-progress"]) == 0
    after = CompressionConfig.load(tmp_path / "next" / "config.json")
    assert (after.trainable, after.train_rate_range, after.rate_lambdas) == (
        "all", (), config.rate_lambdas)


def test_export_fits_a_rate_conditioned_context_net(adaptive_run, tiny_data, tmp_path):
    from compression.data import find_examples
    from compression.export import export_model
    from compression.inference import load_model

    images = [ex.image_path for ex in find_examples(tiny_data, "train")]
    export_model(str(adaptive_run[0]), tmp_path / "model", dtype="float32",
                 entropy_data=images, context_net_steps=30)
    photo = _photo()
    with load_model(tmp_path / "model") as model:
        assert model.context_net.rate_conditioned
        for byte in (0, 255):
            result = encode_image(model, photo, rate_position=byte)
            assert bitstream.unpack(result.data)[0].flags & bitstream.FLAG_CONTEXT_CODED
            decoded, header = decode_image(model, result.data)
            assert header.rate_position == byte and decoded.shape == photo.shape


def test_evaluate_reports_the_rate_weight_each_file_took(adaptive_model, tmp_path):
    from PIL import Image

    from compression.evaluate import evaluate

    path = tmp_path / "photo.png"
    Image.fromarray(_photo()).save(path)
    low = encode_image(adaptive_model, _photo(), rate_position=255).bpp
    rows = evaluate(adaptive_model, [str(path)], warm_up=False, bpp=low * 1.05)
    assert 10.0 < rows[0]["rate_weight"] < 80.0


def test_rate_weight_option_codes_at_that_weight(adaptive_model, variable_rate_run, tmp_path,
                                                 capsys):
    from PIL import Image

    from compression.cli import main
    from compression.evaluate import evaluate

    source = tmp_path / "photo.png"
    Image.fromarray(_photo()).save(source)
    assert main(["encode", str(source), "--model", adaptive_model.run_dir, "--rate-weight",
                 "40", "-o", str(tmp_path / "a.gcz")]) == 0
    assert "rate weight 40 (position 170)" in capsys.readouterr().out
    rows = evaluate(adaptive_model, [str(source)], warm_up=False, rate_weight=80.0)
    assert rows[0]["rate_weight"] == 80.0
    assert main(["encode", str(source), "--model", adaptive_model.run_dir, "--rate-weight",
                 "100", "-o", str(tmp_path / "b.gcz")]) == 2
    assert "rate weight 100 is outside the model's range 10-80" in capsys.readouterr().err
    assert main(["encode", str(source), "--model", variable_rate_run, "--rate-weight",
                 "40", "-o", str(tmp_path / "c.gcz")]) == 2
    assert "--rate-weight applies to models trained with --rate-lambdas" in (
        capsys.readouterr().err)
    assert not (tmp_path / "b.gcz").exists() and not (tmp_path / "c.gcz").exists()
