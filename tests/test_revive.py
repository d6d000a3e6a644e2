"""compression.revive: dead bottleneck channels found, and revived without changing the decode."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from conftest import (
    TINY_VARIABLE_RATE,
    first_val_image,
    grown_as_source,
    rewritten_copy,
    train_cli,
)
from test_train import assert_clean_error

from compression.cli import main
from compression.errors import CompressionError
from compression.inference import load_model
from compression.revive import (
    REVIVED_SPREAD,
    dead_channels,
    grow_counts,
    grow_decoder_input,
    grow_encoder_output,
    grow_fill,
    grown_config_fields,
    revive,
    symbols_of,
)

CENTERS = (-2.0, -1.0, 0.0, 1.0, 2.0)
OUTPUT = "generator/encoder/c3s1_out/"


def test_dead_channels_are_those_with_one_symbol():
    rng = np.random.default_rng(0)
    n = 5000
    latents = np.stack([rng.normal(0, 1, n),           # alive
                        rng.normal(-4.3, 0.5, n),      # saturated below the last centre
                        rng.normal(0.0, 0.05, n),      # always the middle centre
                        rng.normal(0.0, 0.3, n)], -1)  # mostly 0, but not only
    for quantizer in ("bounded_ste", "soft"):
        assert dead_channels(latents, CENTERS, quantizer) == {1: 0, 2: 2}
    assert dead_channels(latents, CENTERS, "bounded_ste", share=0.9) == {1: 0, 2: 2, 3: 2}


def test_revive_centres_a_dead_channel_with_a_small_spread_and_leaves_the_others():
    rng = np.random.default_rng(1)
    inputs = rng.normal(size=(4000, 6))
    kernel = rng.normal(size=(1, 1, 6, 3)).astype(np.float32)
    bias = np.array([0.0, -5.0, 0.3], np.float32)
    outputs = lambda k, b: inputs @ k[0, 0] + b  # noqa: E731  (a 1x1 convolution)
    before = outputs(kernel, bias)
    kept = kernel.copy(), bias.copy()
    new_kernel, new_bias = revive(kernel, bias, before, [1], CENTERS)
    np.testing.assert_array_equal(kernel, kept[0])  # the inputs are not changed
    np.testing.assert_array_equal(bias, kept[1])
    after = outputs(new_kernel, new_bias)
    np.testing.assert_allclose(after[:, [0, 2]], before[:, [0, 2]], rtol=1e-5, atol=1e-5)
    assert abs(after[:, 1].mean()) < 1e-3
    assert after[:, 1].std() == pytest.approx(REVIVED_SPREAD, rel=1e-3)
    assert set(np.unique(symbols_of(after[:, 1], CENTERS, "bounded_ste"))) == {2}


def test_a_constant_channel_is_invisible_to_the_decoder(tiny_model):
    """Why a dead channel can be revived: the decoder's first instance norm removes any
    constant, so one symbol everywhere decodes as any other symbol everywhere."""
    rng = np.random.default_rng(2)
    symbols = rng.integers(0, 5, (3, 4, 4)).astype(np.int32)
    decoded = {}
    for fill in (0, 4):
        symbols[..., 3] = fill
        decoded[fill] = tiny_model.decode(symbols, seed=7)
    np.testing.assert_allclose(decoded[0], decoded[4], atol=1e-5)
    symbols[..., 3] = rng.integers(0, 5, (3, 4))  # a channel that varies is seen
    assert np.abs(tiny_model.decode(symbols, seed=7) - decoded[0]).max() > 1e-3


def test_train_revives_the_dead_channels_of_its_source(tiny_run, tiny_data, tmp_path, capsys):
    def kill_last_channel(values):
        # Every output of channel 4 far above the last centre: one symbol, no gradient.
        values[OUTPUT + "weights"][..., 3] = 0.0
        values[OUTPUT + "biases"][3] = 50.0
        return values
    source = rewritten_copy(tiny_run, str(tmp_path / "dead"), kill_last_channel)
    image = np.random.default_rng(3).uniform(-1, 1, (32, 64, 3)).astype(np.float32)
    with load_model(source) as model:
        assert set(np.unique(model.encode(image)[..., 3])) == {4}
    run = tmp_path / "revived"
    assert train_cli(tiny_data, run, "--init-from", source, "--revive-channels", "--no-gan",
                     steps=1) == 0
    assert "revived channels 4 (every symbol 2)" in capsys.readouterr().out
    with load_model(str(run)) as model:
        latents = model.latents(image)[..., 3]
    assert np.abs(latents).max() < 0.5  # back in the middle, where the bound is steep


def test_revive_channels_needs_a_new_run_from_init_from(tiny_data, tmp_path, capsys):
    assert train_cli(tiny_data, tmp_path / "run", "--revive-channels", steps=1) == 2
    assert_clean_error(capsys, "--revive-channels", "--init-from")
    assert not (tmp_path / "run").exists()


# --- growing the bottleneck: train --init-from RUN --channels N ---------------------


def test_grow_decoder_input_keeps_each_part_in_its_place():
    """The decoder reads [w_hat C | noise C | semantic S]; grown to N, each source row
    keeps its part, new w_hat rows keep the fresh values, new noise rows are 0."""
    c, n, s = 2, 4, 3
    old = np.arange(3 * 3 * (2 * c + s) * 5, dtype=np.float32).reshape(3, 3, 2 * c + s, 5) + 1
    fresh = np.full((3, 3, 2 * n + s, 5), -7.0, np.float32)
    new = grow_decoder_input(old, fresh, c, n, noise=True, source_semantic=True)
    np.testing.assert_array_equal(new[:, :, :c], old[:, :, :c])           # w_hat
    np.testing.assert_array_equal(new[:, :, c:n], fresh[:, :, c:n])       # new w_hat
    np.testing.assert_array_equal(new[:, :, n:n + c], old[:, :, c:2 * c])  # noise
    assert not new[:, :, n + c:2 * n].any()                               # new noise
    np.testing.assert_array_equal(new[:, :, 2 * n:], old[:, :, 2 * c:])   # semantic
    # No noise; a semantic branch the source lacks starts at 0.
    old = old[:, :, :c]
    new = grow_decoder_input(old, fresh[:, :, :n + s], c, n, noise=False, source_semantic=False)
    np.testing.assert_array_equal(new[:, :, :c], old)
    np.testing.assert_array_equal(new[:, :, c:n], fresh[:, :, c:n])
    assert not new[:, :, n:].any()


def test_new_channels_hold_the_middle_symbol_priced_as_they_are():
    kernel, bias = np.ones((3, 3, 8, 2), np.float32), np.array([0.5, -1.0], np.float32)
    grown = grow_encoder_output(kernel, 5, CENTERS)
    assert grown.shape == (3, 3, 8, 5) and not grown[..., 2:].any()
    np.testing.assert_array_equal(grown[..., :2], kernel)
    np.testing.assert_array_equal(grow_encoder_output(bias, 5, CENTERS), [0.5, -1, 0, 0, 0])
    # Off-centre centres: the bias is the midpoint, the fill the centre it quantises to.
    np.testing.assert_allclose(grow_encoder_output(bias, 3, (0.0, 1.0, 3.0))[2], 1.5)
    np.testing.assert_array_equal(grow_fill([0.25], 3, (0.0, 1.0, 3.0)), [0.25, 1.0, 1.0])
    counts = np.array([[1.0, 2, 3, 2, 2], [0, 0, 30, 0, 0]])
    grown = grow_counts(counts, 4, CENTERS)
    np.testing.assert_array_equal(grown[:2], counts)
    np.testing.assert_array_equal(grown[2:], [[0, 0, 20, 0, 0]] * 2)  # the mean mass
    context = np.ones((2, 6, 5))
    assert grow_counts(context, 3, CENTERS).shape == (3, 6, 5)
    assert not grow_counts(context, 3, CENTERS)[2].any()


def test_grown_config_fields_extend_the_per_channel_lists():
    source = dataclasses.replace(TINY_VARIABLE_RATE, channel_weights=(1.0, 2, 3, 4, 5),
                                 rate_channel_weights=(1.0, 1, 1, 1, 0.5, 0.25))
    fields = grown_config_fields(source, {"channels": 8}, "'src'")
    assert fields["channel_weights"] == (1, 2, 3, 4, 5, 5, 5)
    assert fields["rate_channel_weights"] == (1, 1, 1, 1, 0.5, 0.25, 0.25, 0.25)
    dataclasses.replace(source, **fields)  # a valid config
    given = {"channels": 8, "rate_channel_weights": (1.0,) * 8}
    assert grown_config_fields(source, given, "'src'")["rate_channel_weights"] == (1.0,) * 8
    assert grown_config_fields(source, {}, "'src'") == {}
    with pytest.raises(CompressionError, match="--channels 6 or more"):
        grown_config_fields(source, {"channels": 5}, "'src'")


def test_train_grows_the_bottleneck_and_decodes_as_its_source(tiny_data, raw_source_run,
                                                               tmp_path, capsys):
    """--channels above the source's: channels 5-6 are new, hold one symbol, get a
    gradient, and the grown model decodes as its source did."""
    from compression.codec import decode_image, encode_image

    source = raw_source_run
    grown = tmp_path / "grown"
    assert train_cli(tiny_data, grown, "--init-from", str(source), "--channels", "6",
                     "--lr", "0", "--lambda-rate", "1", steps=1) == 0
    out = capsys.readouterr().out
    assert "bottleneck channels 5-6 are new" in out
    # Priced by the rate term, new channels may never fill: the log says how to free them.
    assert "--rate-channel-weights with 0 for channels 5-6" in out
    after = tf.train.latest_checkpoint(str(grown))
    kernel = tf.train.load_variable(after, OUTPUT + "weights")
    assert kernel.shape[-1] == 6 and not kernel[..., 4:].any()
    np.testing.assert_array_equal(tf.train.load_variable(after, OUTPUT + "biases")[4:], 0.0)
    # Adam's first moment moves at learning rate 0 too: the new channels have a gradient.
    assert np.abs(tf.train.load_variable(after, OUTPUT + "weights/g_adam")[..., 4:]).max() > 0
    as_source = grown_as_source(source, grown, tmp_path / "as_source")
    image = first_val_image(tiny_data)
    decoded, files = {}, {}
    for name, run in (("source", str(source)), ("grown", as_source)):
        with load_model(run) as model:
            symbols = model.encode(image.astype(np.float32) / 127.5 - 1.0)
            if name == "grown":
                assert symbols.shape[-1] == 6 and set(np.unique(symbols[..., 4:])) == {2}
                assert (symbols[..., :4] == decoded["source"][0]).all()
            decoded[name] = symbols, model.decode(symbols, seed=7)
            files[name] = decode_image(model, encode_image(model, image, seed=7).data)[0]
    # The decoder's first convolution sums over more inputs: float rounding only.
    np.testing.assert_allclose(decoded["grown"][1], decoded["source"][1], atol=1e-5)
    assert np.abs(files["source"].astype(int) - files["grown"].astype(int)).max() <= 1
    # Fewer channels than the source: a clean error, nothing written.
    assert main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "fewer"),
                 "--init-from", str(grown), "--channels", "4", "--steps", "1",
                 "--no-progress"]) == 2
    assert_clean_error(capsys, "6 bottleneck channels", "--channels 6 or more")
    assert not (tmp_path / "fewer").exists()
