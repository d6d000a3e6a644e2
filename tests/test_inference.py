"""compression.inference: loading trained runs, reproducible outputs, helpful load errors."""

import os
import shutil

import numpy as np
import pytest
from conftest import TINY

from compression.errors import ModelLoadError
from compression.image_io import read_image, to_float
from compression.inference import load_model


@pytest.fixture(scope="module")
def sample(tiny_data):
    """A 64x128 synthetic street scene as the model's float input."""
    path = os.path.join(tiny_data, "leftImg8bit", "val", "alpha",
                        "alpha_000000_000019_leftImg8bit.png")
    return to_float(read_image(path))


def test_load_run_dir(tiny_model, tiny_run):
    assert tiny_model.config == TINY
    assert os.path.basename(tiny_model.checkpoint) == "ckpt-12"
    assert tiny_model.has_learned_probabilities
    assert tiny_model.probabilities.shape == (TINY.channels, TINY.num_centers)
    np.testing.assert_allclose(tiny_model.probabilities.sum(axis=1), 1.0)
    assert len(tiny_model.fingerprint) == 16


def test_load_checkpoint_prefix(tiny_run, tiny_model, sample):
    with load_model(os.path.join(tiny_run, "ckpt-6")) as early:
        assert early.checkpoint == os.path.join(tiny_run, "ckpt-6")
        assert early.config == TINY
        # Six more steps changed the decoder: a different model, another fingerprint.
        assert early.fingerprint != tiny_model.fingerprint
        assert early.encode(sample).shape == (4, 8, TINY.channels)


def test_reload_gives_identical_outputs(tiny_run, tiny_model, sample):
    with load_model(tiny_run) as again:
        assert again.fingerprint == tiny_model.fingerprint
        np.testing.assert_array_equal(again.probabilities, tiny_model.probabilities)
        symbols = tiny_model.encode(sample)
        np.testing.assert_array_equal(again.encode(sample), symbols)
        first = tiny_model.decode(symbols, seed=7)
        np.testing.assert_array_equal(again.decode(symbols, seed=7), first)
        np.testing.assert_array_equal(tiny_model.decode(symbols, seed=7), first)
        assert first.shape == sample.shape
        assert np.all(np.abs(first) <= 1.0)
        assert not np.array_equal(again.decode(symbols, seed=8), first)


def test_fingerprint_changes_with_a_decoder_weight(tiny_model, other_model, sample):
    assert other_model.config == tiny_model.config
    assert other_model.fingerprint != tiny_model.fingerprint
    # Only a decoder bias differs: the encoder still agrees.
    np.testing.assert_array_equal(other_model.encode(sample), tiny_model.encode(sample))


def test_moved_run_dir_still_loads(tiny_run, tiny_model, tmp_path):
    copy = tmp_path / "moved"
    shutil.copytree(tiny_run, copy)
    # Runs written before relative checkpoint paths name them absolutely.
    (copy / "checkpoint").write_text(
        'model_checkpoint_path: "/no/longer/here/run/ckpt-12"\n'
        'all_model_checkpoint_paths: "/no/longer/here/run/ckpt-12"\n')
    with load_model(copy) as model:
        assert model.checkpoint == os.path.join(copy, "ckpt-12")
        assert model.fingerprint == tiny_model.fingerprint


def test_trained_index_uses_relative_paths(tiny_run):
    text = open(os.path.join(tiny_run, "checkpoint")).read()
    assert 'model_checkpoint_path: "ckpt-12"' in text


# --- errors ---------------------------------------------------------------------------


def load_error(path):
    with pytest.raises(ModelLoadError) as info:
        load_model(path)
    return str(info.value)


def test_missing_path(tmp_path):
    message = load_error(tmp_path / "nope")
    assert "does not exist" in message and "run directory" in message


def test_dir_without_checkpoint(tmp_path, tiny_run):
    shutil.copy(os.path.join(tiny_run, "config.json"), tmp_path)
    message = load_error(tmp_path)
    assert "no checkpoint" in message and "gcompress train --out" in message


def test_dir_without_config(tmp_path, tiny_run):
    for name in os.listdir(tiny_run):
        if name.startswith(("ckpt-12", "checkpoint")):
            shutil.copy(os.path.join(tiny_run, name), tmp_path)
    message = load_error(tmp_path)
    assert "config.json" in message
    assert "config.json" in load_error(tmp_path / "ckpt-12")


def test_not_a_run(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    assert "neither a run directory nor a checkpoint prefix" in load_error(path)


def test_config_that_does_not_match_the_checkpoint(tmp_path, tiny_run):
    shutil.copytree(tiny_run, tmp_path / "run")
    TINY.__class__(**{**TINY.to_dict(), "channels": 2}).save(tmp_path / "run" / "config.json")
    message = load_error(tmp_path / "run")
    assert "does not match its config.json" in message


def test_corrupt_checkpoint_files(tmp_path, tiny_run):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "ckpt-12.index").write_bytes(b"not an index")
    assert "cannot read checkpoint" in load_error(run)
    shutil.copy(os.path.join(tiny_run, "ckpt-12.index"), run)
    data = run / "ckpt-12.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:100])
    message = load_error(run)
    # The informative line of TensorFlow's error, not its "Graph execution error:" header.
    assert "ckpt-12" in message and "Graph execution error" not in message, message
