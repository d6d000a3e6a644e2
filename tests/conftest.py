"""Shared fixtures: one tiny trained run, built once per test run (see :func:`built_once`).

Building and training graphs is the slow part of the end-to-end tests, so
``tiny_run`` trains a very small compressor for 12 steps once and every test
that needs a trained model reuses it (read-only: tests that train further
copy it first).  ``other_model`` is the same run with one decoder weight
changed, for the model-mismatch and fingerprint tests.
"""

import dataclasses
import json
import os
import shutil
import sys

import pytest

try:
    import fcntl
except ImportError:  # not POSIX: every worker builds its own fixtures
    fcntl = None

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from compression.config import CompressionConfig  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: A compressor small enough to train a dozen steps in a few seconds on 2 cores.
TINY = CompressionConfig(
    channels=4, width=0.0625, residual_blocks=1, discriminator_width=0.125,
    discriminator_scales=2, noise_dim=16, upsample_dim=32, crop_height=32, crop_width=64,
    batch_size=2, gan_start_step=4,
    # The GAN phase of these tests: full weights at once, encoder trained.
    lambda_gan=1.0, lambda_fm=10.0, gan_ramp_steps=0, d_warmup_steps=0, freeze_encoder=False,
    # The codec tests compare files with and without the colour correction,
    # which a corrected_loss model refuses to write.
    corrected_loss=False,
)
#: TINY without the GAN phase, for tests that need no discriminator: a training
#: launch builds half the graph, in about half the time.
TINY_MSE = dataclasses.replace(TINY, lambda_gan=0.0, lambda_fm=0.0)

#: The same architecture as command-line options of ``gcompress train`` (noise_dim
#: and upsample_dim are not options, so CLI runs use the defaults for those).
TINY_CLI = [
    "--channels", "4", "--width", "0.0625", "--residual-blocks", "1", "--d-width", "0.125",
    "--d-scales", "2", "--crop", "32x64", "--batch", "2", "--gan-start-step", "4",
    "--gan-ramp-steps", "0", "--d-warmup-steps", "0", "--no-freeze-encoder",
    "--no-progress",
]

TRAIN_STEPS = 12


def _silent(*_args, **_kwargs):
    pass


def write_tiny_data(root, train=6, val=2, num_classes=4, seed=0):
    from compression.data import write_synthetic_cityscapes

    return write_synthetic_cityscapes(
        root, splits={"train": train, "val": val}, size=(64, 128), num_classes=num_classes,
        seed=seed,
    )


def subprocess_env():
    """Environment for ``python -m compression.cli`` children: repo importable, TF quiet."""
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["PYTHONUNBUFFERED"] = "1"
    return env


PYTHON = sys.executable


def built_once(tmp_path_factory, name, build):
    """``build(directory)`` (which returns a path in it) once per test run.

    Under pytest-xdist every worker is a test session of its own, so each would
    train its own copy of a session fixture: the same work twice under ``-n 2``.
    The first worker to ask builds it in the directory all workers share while
    the others wait on a lock, then all read it.  The fixtures are seeded (data,
    data order and graph), so which worker builds them does not matter.  A build
    that fails leaves no result behind, and the next worker tries on its own.
    """
    if os.environ.get("PYTEST_XDIST_WORKER") is None or fcntl is None:
        return build(tmp_path_factory.mktemp(name))
    shared = tmp_path_factory.getbasetemp().parent  # this run's, one per xdist worker below it
    directory, done = shared / name, shared / f"{name}.json"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(directory, ignore_errors=True)  # a build that failed
            directory.mkdir()
            done.write_text(json.dumps(str(build(directory))))
        return json.loads(done.read_text())


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A synthetic Cityscapes tree: 6 train + 2 val images of 64x128, 4 classes."""
    return built_once(tmp_path_factory, "tiny_data", lambda d: write_tiny_data(d / "data"))


def _train_tiny(directory, config, data, steps):
    """``config`` trained ``steps`` steps on ``data`` in ``directory/run``, a checkpoint
    every 6 steps."""
    from compression.train import train

    run_dir = str(directory / "run")
    result = train(config, data, run_dir, steps=steps, checkpoint_every=6,
                   summary_every=3, val_every=6, val_images=2, progress=False, log=_silent)
    assert result.step == steps
    return run_dir


def train_cli(data, out, *extra, steps=3):
    """``gcompress train`` of the TINY_CLI architecture on ``data`` into ``out``; its exit code."""
    from compression.cli import main

    return main(["train", "--data", str(data), "--out", str(out), "--steps", str(steps),
                 "--summary-every", "1", "--val-every", "0", "--val-images", "0",
                 *TINY_CLI, *extra])


def _train_source(directory, data, *extra):
    run = directory / "run"
    assert train_cli(data, run, "--no-gan", *extra, steps=2) == 0
    return str(run)


@pytest.fixture(scope="session")
def source_run(tiny_data, tmp_path_factory):
    """A distortion-only TINY_CLI run of 2 steps (EMA shadows kept): what the
    ``train --init-from`` tests fine-tune.  Do not modify."""
    return built_once(tmp_path_factory, "source_run", lambda d: _train_source(d, tiny_data))


@pytest.fixture(scope="session")
def raw_source_run(tiny_data, tmp_path_factory):
    """``source_run`` with no EMA (``--ema 0``), for the tests that check a grown model
    decodes as its source did: both decode with their raw weights.  Do not modify."""
    return built_once(tmp_path_factory, "raw_source_run",
                      lambda d: _train_source(d, tiny_data, "--ema", "0"))


@pytest.fixture(scope="session")
def tiny_run(tiny_data, tmp_path_factory):
    """Run directory of TINY trained for 12 steps (checkpoints at 6 and 12).  Do not modify."""
    return built_once(tmp_path_factory, "tiny_run", lambda d: _train_tiny(
        d, TINY, tiny_data, TRAIN_STEPS))


#: A variable-rate TINY: files code any leading 2..6 of its 6 channels (MSE only, for speed).
TINY_VARIABLE_RATE = CompressionConfig(
    channels=6, min_channels=2, width=0.0625, residual_blocks=1, noise_dim=16, upsample_dim=32,
    crop_height=32, crop_width=64, batch_size=2, lambda_gan=0.0, lambda_fm=0.0,
    corrected_loss=False,
)


@pytest.fixture(scope="session")
def variable_rate_run(tiny_data, tmp_path_factory):
    """Run directory of TINY_VARIABLE_RATE trained for 6 steps.  Do not modify."""
    return built_once(tmp_path_factory, "variable_rate_run", lambda d: _train_tiny(
        d, TINY_VARIABLE_RATE, tiny_data, 6))


@pytest.fixture(scope="session")
def variable_rate_model(variable_rate_run):
    from compression.inference import load_model

    model = load_model(variable_rate_run)
    yield model
    model.close()


@pytest.fixture(scope="session")
def tiny_model(tiny_run):
    """``load_model(tiny_run)``, shared by every test (the session is never closed)."""
    from compression.inference import load_model

    model = load_model(tiny_run)
    yield model
    model.close()


def perturbed_copy(run_dir, dest, variable="generator/decoder/c3s1/biases", delta=0.01):
    """Copy ``run_dir``'s last checkpoint to ``dest`` with one decoder weight changed.

    A different model of the same config without training one.
    """
    # Inference loads the EMA shadow when the run has one: shift both.
    changed = (variable, variable + "/ExponentialMovingAverage")

    def shift(values):
        assert variable in values, sorted(values)
        return {k: v + delta if k in changed else v for k, v in values.items()}
    return rewritten_copy(run_dir, dest, shift)


def rewritten_copy(run_dir, dest, change):
    """Copy ``run_dir`` to ``dest`` with its last checkpoint's tensors ``change({name: array})``.

    The checkpoint is rewritten eagerly, every variable not changed as it was.
    """
    import tensorflow as tf

    os.makedirs(dest)
    for name in ("config.json", "run.json"):
        shutil.copy(os.path.join(run_dir, name), dest)
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(run_dir))
    values = change({name: reader.get_tensor(name)
                     for name in sorted(reader.get_variable_to_shape_map())})
    tf.compat.v1.train.Saver(var_list={k: tf.Variable(v) for k, v in values.items()},
                             save_relative_paths=True).save(
        None, os.path.join(dest, "ckpt-1"), write_meta_graph=False)
    return dest


def first_val_image(data):
    """The first val image of a tiny Cityscapes tree, as a uint8 array."""
    import glob

    from compression.image_io import read_image

    return read_image(sorted(glob.glob(os.path.join(str(data), "leftImg8bit", "val", "*",
                                                     "*.png")))[0])


def grown_as_source(source_run, grown_run, dest):
    """Copy the run ``grown_run`` grew from ``source_run`` (``--init-from``) to ``dest``,
    every variable the source has in the same shape put back to the source's value.

    The step at learning rate 0 that made the grown run still moved the noise
    generator's batch-norm statistics (by up to 3 levels of the decode on some
    machines): with them put back, only what the growth added tells the two apart.
    """
    import tensorflow as tf

    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(source_run)))
    kept = reader.get_variable_to_shape_map()
    return rewritten_copy(str(grown_run), str(dest), lambda values: {
        n: reader.get_tensor(n) if list(kept.get(n, ())) == list(v.shape) else v
        for n, v in values.items()})


def decode_source_and_grown(data, source_run, grown_run, dest):
    """Decode ``data``'s first val image with an ``--init-from`` source run and with
    the run grown from it (as :func:`grown_as_source` copies it to ``dest``), as
    uint8 arrays (seed 7, each run's raw weights)."""
    from compression.codec import decode_image, encode_image
    from compression.inference import load_model

    image = first_val_image(data)
    decoded = []
    for run in (str(source_run), grown_as_source(source_run, grown_run, dest)):
        model = load_model(run)
        decoded.append(decode_image(model, encode_image(model, image, seed=7).data)[0])
        model.close()
    return decoded


@pytest.fixture(scope="session")
def other_run(tiny_run, tmp_path_factory):
    """The tiny run with one decoder bias shifted: same config, a different model."""
    return built_once(tmp_path_factory, "other_run",
                      lambda d: perturbed_copy(tiny_run, str(d / "run")))


@pytest.fixture(scope="session")
def other_model(other_run):
    from compression.inference import load_model

    model = load_model(other_run)
    yield model
    model.close()
