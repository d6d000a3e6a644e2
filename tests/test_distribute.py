"""compression.distribute: MirroredStrategy training matches one device, checkpoints travel."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY
from test_cli import run_cli

from compression.distribute import check_strategy, session_devices
from compression.errors import CompressionError
from compression.train import train

# Deterministic apart from the replication: no noise vector, one rate, GAN from step 1
# (step 0 is the distortion warm-up, steps 1-2 the G+D step).
DETERMINISTIC = dataclasses.replace(TINY, noise=False, gan_start_step=1)
CPUS = ["/cpu:0", "/cpu:1"]


def _quiet(*_):
    pass


def _train(config, data, run_dir, steps, **kwargs):
    return train(config, data, str(run_dir), steps, checkpoint_every=steps, summary_every=0,
                 val_every=0, val_images=0, progress=False, log=_quiet, **kwargs)


def _values(run_dir):
    ckpt = tf.train.latest_checkpoint(str(run_dir))
    return {name: tf.train.load_variable(ckpt, name) for name, _ in tf.train.list_variables(ckpt)}


def test_mirrored_on_two_cpus_matches_one_device(tiny_data, tmp_path):
    """3 steps on 2 logical CPUs = 3 steps on one device, within 5% of each update."""
    # Both runs start from the same weights (every variable, D and Adam slots included).
    start = tmp_path / "start"
    _train(DETERMINISTIC, tiny_data, start, 1)
    single, mirrored = tmp_path / "single", tmp_path / "mirrored"
    _train(DETERMINISTIC, tiny_data, single, 3, init_from=str(start))
    result = _train(DETERMINISTIC, tiny_data, mirrored, 3, init_from=str(start),
                    strategy="mirrored", devices=CPUS)
    assert result.step == 3
    before, a, b = _values(start), _values(single), _values(mirrored)
    assert a.keys() == b.keys()  # the same variable names: checkpoints do not depend on it
    assert a["global_step"] == b["global_step"] == 3
    # The histogram adds the whole global batch on every replica, not replica 0's half.
    counts = "entropy_model/symbol_counts"
    np.testing.assert_allclose(b[counts], a[counts], rtol=1e-6)
    assert b[counts].sum() > before[counts].sum()
    compared = 0
    for name, value in a.items():
        if value.dtype.kind != "f" or name == counts:
            continue
        # Shifts that a following norm removes (conv biases, and norm betas before
        # conv + norm) have no true gradient: their Adam updates are float noise
        # (relative differences of order 1 on updates of ~1e-4; seen to flake), so
        # only kernels, norm scales, their EMA shadows and Adam moments are compared.
        if "biases" in name or "beta" in name:
            continue
        step_single, step_mirrored = value - before[name], b[name] - before[name]
        scale = np.linalg.norm(step_single)
        if scale == 0:
            np.testing.assert_array_equal(step_mirrored, 0, err_msg=name)
            continue
        # Gradients are the global batch's mean (Adam's moments would be twice as
        # large if the replicas' gradients were summed unscaled, 100% off).  Adam
        # normalises each element, so elements with near-zero gradients take
        # lr-sized steps whose sign is float noise: up to ~2% seen, hence 5%.
        assert np.linalg.norm(step_mirrored - step_single) <= 0.05 * scale, name
        compared += 1
    assert compared > 60


def test_resume_with_another_strategy(tiny_data, tmp_path):
    run = tmp_path / "run"
    _train(DETERMINISTIC, tiny_data, run, 2, strategy="mirrored", devices=CPUS)
    assert _train(DETERMINISTIC, tiny_data, run, 3, resume=True).step == 3
    assert _train(DETERMINISTIC, tiny_data, run, 4, resume=True, strategy="mirrored",
                  devices=["/cpu:0", "/device:CPU:1"]).step == 4


def test_strategy_errors_name_the_fix(tiny_data, tmp_path, capsys):
    with pytest.raises(CompressionError, match="does not divide over 2 replicas"):
        check_strategy("mirrored", ["/cpu:0", "/cpu:1"], batch_size=3)
    with pytest.raises(CompressionError, match="not a local device name"):
        check_strategy("mirrored", ["/job:worker/cpu:0"])
    with pytest.raises(CompressionError, match="names a device twice"):
        check_strategy("mirrored", ["/cpu:0", "/CPU:0"])
    with pytest.raises(CompressionError, match="--devices needs --strategy mirrored"):
        check_strategy("none", ["/cpu:0"])
    if not tf.config.list_physical_devices("GPU"):
        with pytest.raises(CompressionError, match="found no GPU; name the devices"):
            check_strategy("mirrored")
    assert session_devices(["/cpu:0", "/cpu:1"]) == {"CPU": 2}
    assert session_devices(["/gpu:0"]) == {}
    code, _, err = run_cli(capsys, "train", "--data", tiny_data, "--out", tmp_path / "r",
                           "--strategy", "mirrored", "--devices", "/cpu:0,/cpu:1",
                           "--batch", "3", "--steps", "1", "--no-progress")
    assert code != 0 and "--batch 3 does not divide over 2 replicas" in err
    assert not (tmp_path / "r").exists()  # refused before the run directory is made


def test_mirrored_cli_trains_and_validates(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", "--data", tiny_data, "--out", run,
                             "--channels", "4", "--width", "0.0625", "--residual-blocks", "1",
                             "--d-scales", "2", "--crop", "32x64", "--batch", "2",
                             "--strategy", "mirrored", "--devices", "/cpu:0,/cpu:1",
                             "--steps", "2", "--val-every", "2", "--val-images", "2",
                             "--no-progress")
    assert code == 0, err
    assert "mirrored over 2 replicas (/cpu:0, /cpu:1), 1 images each" in out
    assert "val_psnr" in out
    assert "deprecat" not in err.lower() and "Warning" not in err
