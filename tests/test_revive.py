"""compression.revive: dead bottleneck channels found, and revived without changing the decode."""

import numpy as np
import pytest
from conftest import rewritten_copy
from test_train import assert_clean_error, train_cli

from compression.inference import load_model
from compression.revive import REVIVED_SPREAD, dead_channels, revive, symbols_of

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
