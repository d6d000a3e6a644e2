"""``gcompress train``: run directories, resume/force, signals, bad data, validation metrics."""

import dataclasses
import glob
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import (
    PYTHON,
    REPO_ROOT,
    TINY,
    TINY_CLI,
    TINY_MSE,
    decode_source_and_grown,
    subprocess_env,
    train_cli,
    write_tiny_data,
)

from compression.cli import main
from compression.config import CompressionConfig
from compression.data import SkippedFileWarning, find_examples, make_dataset
from compression.inference import load_model


def global_step(run_dir):
    return int(tf.train.load_variable(tf.train.latest_checkpoint(run_dir), "global_step"))


def checkpoint_steps(run_dir):
    return sorted(int(os.path.basename(p)[len("ckpt-"):-len(".index")])
                  for p in glob.glob(os.path.join(run_dir, "ckpt-*.index")))


def assert_clean_error(capsys, *fragments):
    err = capsys.readouterr().err
    assert err.startswith("gcompress: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err
    return err


# --- the run directory: new, resume, refuse, force ----------------------------------


def test_train_resume_refuse_force(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert train_cli(tiny_data, run, "--no-gan", steps=3) == 0
    names = os.listdir(run)
    assert {"config.json", "run.json", "checkpoint"} <= set(names)
    assert any(n.startswith("events.out.tfevents.") for n in names)
    assert checkpoint_steps(run) == [3]
    assert global_step(run) == 3
    saved = CompressionConfig.load(run / "config.json")
    assert (saved.channels, saved.crop_size, saved.gan_start_step) == (4, (32, 64), 4)
    assert saved.lambda_gan == 0.0
    info = json.loads((run / "run.json").read_text())
    assert info["data"] == os.path.abspath(tiny_data) and info["seed"] == 0

    # --resume alone continues with the saved config, from step 3.
    capsys.readouterr()
    assert main(["train", "--data", str(tiny_data), "--out", str(run), "--resume",
                 "--steps", "5", "--val-images", "0", "--no-progress"]) == 0
    assert "resumed from ckpt-3 at step 3" in capsys.readouterr().out
    assert checkpoint_steps(run) == [3, 5]
    assert global_step(run) == 5

    # The same dir without --resume: refused, naming both ways out; nothing touched.
    before = sorted(os.listdir(run))
    assert train_cli(tiny_data, run, steps=7) == 2
    assert_clean_error(capsys, "--resume", "--force", "ckpt-5")
    assert sorted(os.listdir(run)) == before

    # A different config with --resume: refused with the difference spelled out.
    assert main(["train", "--data", str(tiny_data), "--out", str(run), "--resume",
                 "--steps", "7", "--channels", "2", "--no-progress"]) == 2
    err = assert_clean_error(capsys, "different config", "channels")
    assert "width" not in err  # options left out keep the run's values
    assert global_step(run) == 5
    # Options that agree with the saved config are accepted.
    assert main(["train", "--data", str(tiny_data), "--out", str(run), "--resume",
                 "--steps", "6", "--channels", "4", "--val-images", "0", "--no-progress"]) == 0
    assert global_step(run) == 6
    before = sorted(os.listdir(run))

    # --force moves the old run aside, whole, and starts over from step 0.
    assert train_cli(tiny_data, run, "--force", "--no-gan", steps=1) == 0
    aside = glob.glob(str(run) + ".replaced-*")
    assert len(aside) == 1
    assert sorted(os.listdir(aside[0])) == before
    assert global_step(aside[0]) == 6
    assert checkpoint_steps(run) == [1]
    assert global_step(run) == 1


def test_resume_continues_the_same_batch_stream(tiny_data):
    """Batch s of a stream started at step 0 equals the first batch of one started at s."""
    examples = find_examples(tiny_data, "train")

    def batches(start, count):
        ds = make_dataset(examples, crop_size=(32, 64), batch_size=2, training=True, seed=3,
                          start_step=start)
        return [b["image"].numpy() for b in ds.take(count)]

    whole = batches(0, 5)
    resumed = batches(3, 2)
    np.testing.assert_array_equal(resumed[0], whole[3])
    np.testing.assert_array_equal(resumed[1], whole[4])
    assert not np.array_equal(whole[0], whole[1])


def test_the_seed_fixes_a_new_runs_weights(tiny_data, tmp_path):
    """The same --seed trains the same model; another seed starts from other weights."""
    kernel = "generator/encoder/c7s1/weights"

    def first_step(name, *seed):
        assert train_cli(tiny_data, tmp_path / name, "--no-gan", *seed, steps=1) == 0
        return tf.train.load_variable(tf.train.latest_checkpoint(tmp_path / name), kernel)

    a, again, other = first_step("a"), first_step("again"), first_step("other", "--seed", "1")
    # One Adam step moves a weight by about the learning rate: a different start is far more.
    np.testing.assert_allclose(a, again, atol=1e-6)
    assert np.abs(a - other).max() > 0.05
    # A resumed run draws fresh noise instead of replaying the first steps' streams.
    from compression.train import _graph_seed

    assert _graph_seed(0, 0) != _graph_seed(0, 1) != _graph_seed(1, 0)


# --- signals ----------------------------------------------------------------------------


def start_training(data, run, *extra):
    cmd = [PYTHON, "-m", "compression.cli", "train", "--data", str(data), "--out", str(run),
           "--steps", "1000", "--checkpoint-every", "2", "--summary-every", "0",
           "--val-every", "0", "--val-images", "0", *TINY_CLI, *extra]
    return subprocess.Popen(cmd, cwd=REPO_ROOT, env=subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(proc, run, at_least, timeout=120):
    """Poll until ``run``'s checkpoint index names a checkpoint >= ``at_least``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"training exited early ({proc.returncode}):\n{out}\n{err}")
        ckpt = tf.train.latest_checkpoint(str(run)) if os.path.isdir(run) else None
        if ckpt and int(ckpt.rsplit("-", 1)[1]) >= at_least:
            return
        time.sleep(0.2)
    pytest.fail(f"no checkpoint >= {at_least} in {run} after {timeout} s")


@pytest.fixture
def processes():
    """Started subprocesses, killed at the end of the test if still running."""
    procs = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_sigkill_resume_then_sigterm(tiny_data, tmp_path, processes):
    """A killed run resumes from its last checkpoint; SIGTERM saves one more and exits 130.

    Both halves share one run (each subprocess costs a TensorFlow start-up).
    """
    run = tmp_path / "run"
    processes.append(killed := start_training(tiny_data, run))
    wait_for_checkpoint(killed, run, 2)
    os.kill(killed.pid, signal.SIGKILL)
    killed.communicate(timeout=30)
    assert killed.returncode == -signal.SIGKILL

    saved = global_step(run)
    assert saved >= 2 and saved % 2 == 0
    with load_model(run) as model:  # whatever moment the kill hit, the last checkpoint loads
        assert os.path.basename(model.checkpoint) == f"ckpt-{saved}"

    processes.append(resumed := start_training(tiny_data, run, "--resume"))
    wait_for_checkpoint(resumed, run, saved + 2)
    resumed.send_signal(signal.SIGTERM)
    out, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 130, err
    assert "Traceback" not in err
    assert f"resumed from ckpt-{saved} at step {saved}" in out
    stopped_at = global_step(run)
    assert stopped_at >= saved + 2
    assert f"stopped by signal {int(signal.SIGTERM)} at step {stopped_at}" in out
    assert checkpoint_steps(run)[-1] == stopped_at


# --- damaged runs ------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    """A tiny run with intact checkpoints at steps 2 and 4 (copied by each test)."""
    from compression.train import train

    root = tmp_path_factory.mktemp("damaged")
    data = write_tiny_data(root / "data")
    run = root / "run"
    train(TINY_MSE, data, str(run), steps=4, checkpoint_every=2, val_images=0, progress=False,
          log=lambda *_: None)
    assert checkpoint_steps(run) == [2, 4]
    return data, run


def _resume(data, run, steps=5):
    from compression.train import train

    lines = []
    result = train(None, data, str(run), steps=steps, resume=True, checkpoint_every=0,
                   val_images=0, progress=False, log=lines.append)
    return result, "\n".join(lines)


@pytest.mark.parametrize("damage", ["half data", "truncated index", "missing index"])
def test_resume_falls_back_past_a_damaged_newest_checkpoint(two_checkpoints, tmp_path, damage):
    import shutil

    data, source = two_checkpoints
    run = tmp_path / "run"
    shutil.copytree(source, run)
    newest = run / "ckpt-4"
    if damage == "half data":
        blob = (run / "ckpt-4.data-00000-of-00001").read_bytes()
        (run / "ckpt-4.data-00000-of-00001").write_bytes(blob[:len(blob) // 2])
    elif damage == "truncated index":
        blob = (run / "ckpt-4.index").read_bytes()
        (run / "ckpt-4.index").write_bytes(blob[:len(blob) // 3])
    else:
        os.remove(str(newest) + ".index")
    result, log = _resume(data, run)
    assert "resumed from ckpt-2 at step 2" in log, log  # never from step 0
    if damage != "missing index":
        assert "ckpt-4 is damaged" in log
    assert result.step == 5


def test_resume_without_the_checkpoint_index_and_with_debris(two_checkpoints, tmp_path):
    import shutil

    data, source = two_checkpoints
    run = tmp_path / "run"
    shutil.copytree(source, run)
    os.remove(run / "checkpoint")
    stale = run / "ckpt-6.data-00000-of-00001.tempstate8071712870"
    stale.write_bytes(bytes(1000))
    result, log = _resume(data, run)
    assert "resumed from ckpt-4 at step 4" in log, log
    assert "removed 1 leftover files" in log and not stale.exists()


def test_resume_refuses_to_start_over_and_names_damage(two_checkpoints, tmp_path, capsys):
    import shutil

    from compression.errors import CompressionError

    data, source = two_checkpoints
    run = tmp_path / "run"
    shutil.copytree(source, run)
    for step in (2, 4):
        (run / f"ckpt-{step}.data-00000-of-00001").write_bytes(b"")
    with pytest.raises(CompressionError, match="none of them can be restored.*--force"):
        _resume(data, run)
    (run / "run.json").write_text('{"data": "/x", "se')
    assert main(["train", "--data", str(data), "--out", str(run), "--resume", "--steps", "5",
                 "--no-progress"]) == 2
    assert_clean_error(capsys, "run.json is damaged")


# --- data problems ------------------------------------------------------------------


def test_semantic_training_skips_a_corrupt_image(tmp_path):
    """--semantic --classes 4 trains; a damaged image is skipped with a warning.

    (One run for both: every training run costs a graph build.)
    """
    data = write_tiny_data(tmp_path / "data", train=3, val=0, num_classes=4)
    bad = sorted(glob.glob(os.path.join(data, "leftImg8bit", "train", "*", "*.png")))[1]
    with open(bad, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n this is not really a png" * 3)
    run = tmp_path / "run"
    # 2 steps x batch 2 = 4 examples out of 3 images: the bad one is met for sure.
    with pytest.warns(SkippedFileWarning, match="skipping .*" + os.path.basename(bad)):
        assert train_cli(data, run, "--semantic", "--classes", "4", "--no-gan", steps=2) == 0
    assert CompressionConfig.load(run / "config.json").semantic_classes == 4
    assert global_step(run) == 2


def test_missing_data_dir_is_a_clean_error(tmp_path, capsys):
    missing = tmp_path / "no-such-data"
    run = tmp_path / "run"
    assert train_cli(missing, run, steps=2) == 2
    assert_clean_error(capsys, "does not exist", str(missing))
    # Nothing is created, so the corrected command then works as a new run.
    assert not run.exists()


def test_semantic_needs_classes(tiny_data, tmp_path, capsys):
    assert train_cli(tiny_data, tmp_path / "run", "--semantic", steps=2) == 2
    assert_clean_error(capsys, "--semantic needs --classes")
    assert not (tmp_path / "run").exists()


def test_steps_must_be_positive(tiny_data, tmp_path, capsys):
    assert train_cli(tiny_data, tmp_path / "run", steps=0) == 2
    assert_clean_error(capsys, "--steps")


# --- what the shared run recorded ---------------------------------------------------


def test_shared_run_metrics_and_summaries(tiny_run):
    lines = [json.loads(line) for line in open(os.path.join(tiny_run, "metrics.jsonl"))]
    assert [line["step"] for line in lines] == [6, 12]
    for line in lines:
        for key in ("val_psnr", "val_ms_ssim", "val_bpp_estimate"):
            assert np.isfinite(line[key]), (key, line)
        assert line["val_images"] == 2
        assert 0 < line["val_bpp_estimate"] <= TINY.bpp_bound() * 1.01
    assert checkpoint_steps(tiny_run) == [6, 12]
    events = glob.glob(os.path.join(tiny_run, "events.out.tfevents.*"))
    assert events
    tags = set()
    for event in tf.compat.v1.train.summary_iterator(events[0]):
        tags.update(v.tag for v in event.summary.value)
    assert {"train/distortion", "val/psnr", "val/ms_ssim", "val/bpp_estimate"} <= tags


def _generator_inputs(tensor):
    """Names of the generator variables (raw or EMA shadow) that ``tensor`` reads."""
    seen, stack, found = set(), [tensor.op], set()
    while stack:
        op = stack.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        if op.type in ("VariableV2", "VarHandleOp") and op.name.startswith("generator/"):
            found.add(op.name)
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    return found


@pytest.mark.parametrize("ema_decay", [0.0, 0.99])
def test_validation_scores_the_weights_inference_loads(tiny_data, ema_decay):
    from compression.model import build_training_graph
    from compression.train import _Validator

    config = dataclasses.replace(TINY_MSE, ema_decay=ema_decay)
    with tf.Graph().as_default():
        images = tf.zeros([2, config.crop_height, config.crop_width, 3])
        tg = build_training_graph(images, config)
        examples = find_examples(tiny_data, "val")
        validator = _Validator(config, examples, None, tg.symbol_counts, tg.ema)
        used = _generator_inputs(validator.fetches["reconstruction"])
    weights = {n for n in used if n.endswith("/weights") or
               n.endswith("/weights/ExponentialMovingAverage")}
    assert weights
    shadows = {n for n in weights if n.endswith("/ExponentialMovingAverage")}
    encoder = {n for n in weights if n.startswith("generator/encoder/")}
    assert encoder
    # With an EMA every decoder-side weight read is a shadow (what load_model
    # restores) and the encoder is raw (its symbols are what the histogram
    # counted); without an EMA, no shadows.
    assert not {n for n in encoder if n in shadows}
    assert shadows == ((weights - encoder) if ema_decay else set())


def test_validation_scores_whole_images(tiny_data):
    """Validation decodes each val image nearly whole (the size files code),
    not a training-size crop: crop-trained models score differently there."""
    from compression.data import whole_window
    from compression.model import build_training_graph
    from compression.train import _Validator

    with tf.Graph().as_default():
        images = tf.zeros([2, TINY_MSE.crop_height, TINY_MSE.crop_width, 3])
        tg = build_training_graph(images, TINY_MSE)
        validator = _Validator(TINY_MSE, find_examples(tiny_data, "val"), None,
                               tg.symbol_counts, tg.ema)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            sess.run(validator.iterator.initializer)
            out = sess.run(validator.fetches)
            figures = validator.run(sess)
    assert (TINY_MSE.crop_height, TINY_MSE.crop_width) != (64, 128)
    assert out["image"].shape[:2] == whole_window(64, 128)
    assert out["reconstruction"].shape == out["image"].shape
    assert figures["val_images"] == 2 and np.isfinite(figures["val_psnr"])


def test_keep_applies_across_resumes(tiny_data, tmp_path):
    from compression.train import train

    run = tmp_path / "run"
    kwargs = dict(checkpoint_every=1, keep=2, summary_every=0, val_every=0, val_images=0,
                  progress=False, log=lambda *_: None)
    train(TINY_MSE, tiny_data, run, steps=3, **kwargs)
    assert checkpoint_steps(run) == [2, 3]
    train(None, tiny_data, run, steps=5, resume=True, **kwargs)
    assert checkpoint_steps(run) == [4, 5]
    assert load_model(run).checkpoint.endswith("ckpt-5")


# --- the training recipe's options ---------------------------------------------------


def test_no_gan_trains_an_mse_model_without_discriminator(tiny_data, tmp_path):
    run = tmp_path / "run"
    assert train_cli(tiny_data, run, "--no-gan", "--lambda-ms-ssim", "0.5",
                     "--lambda-rate", "2", steps=3) == 0
    saved = CompressionConfig.load(run / "config.json")
    assert (saved.lambda_gan, saved.lambda_fm, saved.lambda_ms_ssim) == (0.0, 0.0, 0.5)
    assert saved.lambda_rate == 2.0
    names = [n for n, _ in tf.train.list_variables(tf.train.latest_checkpoint(str(run)))]
    assert not [n for n in names if n.startswith(("discriminator", "d_adam"))]
    with load_model(str(run)) as model:  # an MSE model codes files like any other
        assert model.config == saved


def test_recipe_options_reach_the_config(tiny_data, tmp_path):
    run = tmp_path / "run"
    assert train_cli(tiny_data, run, "--gan-ramp-steps", "7", "--d-warmup-steps", "2",
                     "--freeze-encoder", "--lambda-gan", "0.5", "--lr-decay-step", "2",
                     "--lr-decay-factor", "0.5", steps=5) == 0
    saved = CompressionConfig.load(run / "config.json")
    assert (saved.gan_ramp_steps, saved.d_warmup_steps, saved.freeze_encoder,
            saved.lambda_gan, saved.lr_decay_step, saved.lr_decay_factor) == (
        7, 2, True, 0.5, 2, 0.5)
    # gan_start_step 4 (TINY_CLI), D warm-up from step 2: D was trained.
    names = [n for n, _ in tf.train.list_variables(tf.train.latest_checkpoint(str(run)))]
    assert [n for n in names if n.startswith("discriminator/") and n.endswith("/d_adam")]


def test_context_rate_model_resumes_with_its_counts_and_codes_files(tiny_data, tmp_path):
    from skimage import data

    from compression.codec import decode_image, encode_image

    run = tmp_path / "run"
    assert train_cli(tiny_data, run, "--no-gan", "--lambda-rate", "2", "--rate-model", "context",
                     steps=2) == 0
    assert CompressionConfig.load(run / "config.json").rate_model == "context"

    def counts():
        reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(run)))
        return reader.get_tensor("entropy_model/context_counts")

    first = counts()
    assert first.shape == (4, 6**5, 5) and first.sum() > 0
    assert main(["train", "--data", str(tiny_data), "--out", str(run), "--resume",
                 "--steps", "3", "--val-every", "0", "--val-images", "0", "--no-progress"]) == 0
    # Restored, decayed and added to, not started again from zeros.
    decay = CompressionConfig.load(run / "config.json").histogram_decay
    assert counts().sum() > first.sum() * decay
    image = data.astronaut()[::8, ::8]
    with load_model(str(run)) as model:  # inference never needs the context counts
        decoded, _ = decode_image(model, encode_image(model, image).data)
    assert decoded.shape == image.shape


def test_channel_and_rate_weights_reach_the_config_or_fail_cleanly(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    factors = "1,1,1,0.2"  # TINY_CLI's four channels
    assert train_cli(tiny_data, run, "--min-channels", "2", "--channel-weights", "1,3,0",
                     "--rate-channel-weights", factors, "--lambda-rate", "5", "--no-gan",
                     steps=2) == 0
    saved = CompressionConfig.load(run / "config.json")
    assert saved.channel_weights == (1.0, 3.0, 0.0)
    assert saved.rate_channel_weights == (1.0, 1.0, 1.0, 0.2)
    for option, value, message in (("--channel-weights", "1;3", "one weight per k"),
                                   ("--rate-channel-weights", "1;3", "one factor per channel")):
        with pytest.raises(SystemExit) as exit_:
            train_cli(tiny_data, tmp_path / "a", "--min-channels", "2", option, value)
        assert exit_.value.code == 2
        assert message in capsys.readouterr().err
    assert train_cli(tiny_data, tmp_path / "b", "--channel-weights", "1,3", steps=2) == 2
    assert_clean_error(capsys, "variable-rate models only", "--min-channels")
    assert train_cli(tiny_data, tmp_path / "c", "--rate-channel-weights", "1,3", steps=2) == 2
    assert_clean_error(capsys, "one factor per channel")
    assert not any((tmp_path / name).exists() for name in "abc")


def test_no_gan_contradicting_weights_is_a_clean_error(tiny_data, tmp_path, capsys):
    assert train_cli(tiny_data, tmp_path / "run", "--no-gan", "--lambda-gan", "1",
                     steps=2) == 2
    assert_clean_error(capsys, "--no-gan")
    assert not (tmp_path / "run").exists()


def test_init_from_fine_tunes_a_distortion_only_run(tiny_data, source_run, tmp_path, capsys):
    mse = Path(source_run)
    source = tf.train.latest_checkpoint(source_run)
    # The source's config is the base; the options given override it.
    gan = tmp_path / "gan"
    assert main(["train", "--data", str(tiny_data), "--out", str(gan), "--init-from", str(mse),
                 "--lambda-gan", "0.1", "--lambda-fm", "1", "--freeze-encoder",
                 "--gan-start-step", "0", "--steps", "1", "--val-images", "0",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "initialised" in out and "start fresh" in out, out
    saved = CompressionConfig.load(gan / "config.json")
    base = CompressionConfig.load(mse / "config.json")
    assert (saved.lambda_gan, saved.lambda_fm, saved.freeze_encoder) == (0.1, 1.0, True)
    assert (saved.width, saved.channels, saved.crop_size) == (base.width, base.channels,
                                                              base.crop_size)
    assert json.loads((gan / "run.json").read_text())["init_from"] == os.path.abspath(mse)
    after = tf.train.latest_checkpoint(str(gan))
    assert global_step(gan) == 1  # the new run counts its own steps
    # One GAN step with a frozen encoder: the encoder is the source's exactly,
    # the decoder has moved on from it, and D exists.
    names = dict(tf.train.list_variables(after))
    enc = [n for n in names if n.startswith("generator/encoder/") and "adam" not in n]
    dec = [n for n in names if n.startswith("generator/decoder/") and "adam" not in n
           and "ExponentialMovingAverage" not in n]
    assert enc and dec and any(n.startswith("discriminator/") for n in names)
    for n in enc:
        np.testing.assert_array_equal(tf.train.load_variable(after, n),
                                      tf.train.load_variable(source, n))
    assert any(not np.array_equal(tf.train.load_variable(after, n),
                                  tf.train.load_variable(source, n)) for n in dec)


def test_init_from_a_different_architecture_is_a_clean_error(tiny_data, source_run, tmp_path,
                                                             capsys):
    from compression.errors import CompressionError
    from compression.train import train

    mse = Path(source_run)
    run = tmp_path / "wide"
    with pytest.raises(CompressionError, match="does not fit this config"):
        train(dataclasses.replace(TINY_MSE, width=0.125), tiny_data, str(run), steps=1,
              progress=False, log=lambda *_: None, init_from=str(mse))
    assert not run.exists()  # nothing left that the corrected command would refuse
    assert main(["train", "--data", str(tiny_data), "--out", str(run), "--steps", "1",
                 "--init-from", str(tmp_path / "nowhere"), "--no-progress"]) == 2
    assert_clean_error(capsys, "nowhere")
    assert main(["train", "--data", str(tiny_data), "--out", str(run), "--steps", "1",
                 "--init-from", str(mse), "--bpp", "0.036", "--no-progress"]) == 2
    assert_clean_error(capsys, "--bpp")


def test_validation_holds_out_val_splits_and_says_when_it_cannot(tiny_data, tmp_path):
    from PIL import Image

    from compression.train import _find_data

    plain = tmp_path / "photos"  # a plain folder without val/: nothing of it is held out
    plain.mkdir()
    for i in range(3):
        Image.new("RGB", (16, 16), (i, 0, 0)).save(plain / f"p{i}.png")
    lines = []
    examples, val = _find_data([tiny_data, plain], TINY_MSE, 16, lines.append)
    assert len(examples) == len(find_examples(tiny_data, "train")) + 3
    assert val == find_examples(tiny_data, "val")  # only the held-out images
    assert lines[0].startswith(f"{len(examples)} training images, {len(val)} held-out ")
    assert f"no val split in {plain} " in lines[1] and "draws from the 1 that have" in lines[1]
    lines.clear()
    examples, val = _find_data([plain], TINY_MSE, 2, lines.append)
    assert val == examples[:2]
    assert lines[0].startswith("3 training images, 2 TRAINING validation images"), lines
    assert "validation scores training images" in lines[1]


def test_training_on_several_datasets(tiny_data, tmp_path):
    from compression.data import write_synthetic_cityscapes

    plain = tmp_path / "photos"  # a plain folder with train/ and val/, like BSDS500
    write_synthetic_cityscapes(tmp_path / "tree", splits={"train": 3, "val": 2}, num_classes=0,
                               seed=5)
    for split in ("train", "val"):
        os.makedirs(plain / split)
        for i, path in enumerate(sorted(glob.glob(str(tmp_path / "tree" / "leftImg8bit" / split
                                                      / "*" / "*.png")))):
            os.replace(path, plain / split / f"p{i}.png")
    lines = []
    run = tmp_path / "run"
    from compression.train import train

    result = train(TINY_MSE, [tiny_data, plain], str(run), steps=2, val_every=2, val_images=3,
                   checkpoint_every=0, summary_every=0, progress=False, log=lines.append)
    assert result.step == 2
    assert any(line.startswith("9 training images, 3 held-out validation images")
               for line in lines), lines
    info = json.loads((run / "run.json").read_text())
    assert info["data"] == [os.path.abspath(tiny_data), os.path.abspath(plain)]
    # --resume reads both back from run.json when the paths given are gone.
    resumed = train(None, [tmp_path / "moved"], str(run), steps=3, resume=True,
                    checkpoint_every=0, summary_every=0, val_every=0, progress=False,
                    log=lines.append)
    assert resumed.step == 3
    assert "9 training images" in " ".join(lines[-3:])


def test_init_from_an_int8_export(tiny_data, source_run, tmp_path, capsys):
    """A shipped (exported, int8) model seeds a new run: its kernels are dequantised."""
    from compression.export import export_model
    from compression.weights import SCALE_SUFFIX, dequantize_int8

    exported = tmp_path / "exported"
    export_model(source_run, str(exported), dtype="int8")
    stored = tf.train.latest_checkpoint(str(exported))
    capsys.readouterr()
    gan = tmp_path / "gan"
    assert main(["train", "--data", str(tiny_data), "--out", str(gan), "--init-from",
                 str(exported), "--lambda-gan", "0.1", "--freeze-encoder",
                 "--gan-start-step", "0", "--steps", "1", "--val-images", "0",
                 "--no-progress"]) == 0
    assert "initialised" in capsys.readouterr().out
    after = tf.train.latest_checkpoint(str(gan))
    kernels = [n for n, _ in tf.train.list_variables(after)
               if n.startswith("generator/encoder/") and n.endswith("weights")
               and "adam" not in n]
    assert kernels
    for n in kernels:  # the frozen encoder holds the export's dequantised kernels exactly
        np.testing.assert_array_equal(
            tf.train.load_variable(after, n),
            dequantize_int8(tf.train.load_variable(stored, n),
                            tf.train.load_variable(stored, n + SCALE_SUFFIX)))
    # The export has no EMA shadows: each starts as its variable, not as its random
    # initial value (a tenth of which a first step's average would still hold).
    shadows = [n for n, _ in tf.train.list_variables(after)
               if n.endswith("/ExponentialMovingAverage")]
    assert len(shadows) > 20
    for n in shadows:
        base = tf.train.load_variable(after, n.rsplit("/", 1)[0])
        np.testing.assert_allclose(tf.train.load_variable(after, n), base, atol=2e-5, err_msg=n)


def test_init_from_seeds_a_selective_semantic_model(tiny_data, source_run, tmp_path, capsys):
    """A non-semantic run seeds a semantic one: the semantic branch starts fresh and the
    decoder's first kernel is the source's, with zeros for the semantic channels."""
    mse = source_run
    source = tf.train.latest_checkpoint(mse)
    sem = tmp_path / "selective"
    assert main(["train", "--data", str(tiny_data), "--out", str(sem), "--init-from", str(mse),
                 "--semantic", "--classes", "sky,road,car,person", "--selective", "0.5",
                 "--lambda-gan", "0.1", "--lr", "0", "--steps", "1", "--val-images", "0",
                 "--no-progress"]) == 0
    assert "keeps the source's kernel with zeros" in capsys.readouterr().out
    saved = CompressionConfig.load(sem / "config.json")
    assert saved.class_names == ("sky", "road", "car", "person")
    assert saved.selective_probability == 0.5 and saved.semantic_classes == 4
    after = tf.train.latest_checkpoint(str(sem))
    name = "generator/decoder/c3s1/weights"
    old, new = tf.train.load_variable(source, name), tf.train.load_variable(after, name)
    assert new.shape[2] == old.shape[2] + saved.semantic_channels
    np.testing.assert_array_equal(new[:, :, :old.shape[2]], old)   # learning rate 0
    assert not new[:, :, old.shape[2]:].any()
    assert any(n.startswith("generator/semantic_encoder/") for n, _ in
               tf.train.list_variables(after))
    assert main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "bad"),
                 "--selective", "0.5", "--steps", "1", "--no-progress"]) == 2
    assert_clean_error(capsys, "--selective needs a semantic model")


def test_init_from_adds_residual_blocks_as_the_identity(tiny_data, raw_source_run, tmp_path,
                                                        capsys):
    """--residual-blocks above the source's: the new blocks start as the identity, so
    the deeper model decodes as the source did; fewer blocks are refused."""
    mse = raw_source_run
    source = tf.train.latest_checkpoint(mse)
    deep = tmp_path / "deep"
    assert main(["train", "--data", str(tiny_data), "--out", str(deep), "--init-from", str(mse),
                 "--residual-blocks", "3", "--lr", "0", "--steps", "1", "--val-images", "0",
                 "--no-progress"]) == 0
    assert "residual blocks 2, 3 are new" in capsys.readouterr().out
    after = tf.train.latest_checkpoint(str(deep))
    names = dict(tf.train.list_variables(after))
    for i in (2, 3):
        assert not tf.train.load_variable(after, f"generator/decoder/res{i}/norm2/gamma").any()
        assert tf.train.load_variable(after, f"generator/decoder/res{i}/conv1/weights").any()
    for n in names:
        if n.startswith("generator/decoder/res1/") and "adam" not in n:
            np.testing.assert_array_equal(tf.train.load_variable(after, n),
                                          tf.train.load_variable(source, n))
    source_decode, deep_decode = decode_source_and_grown(tiny_data, mse, deep,
                                                         tmp_path / "deep_as_source")
    # A random new block would move everything.
    np.testing.assert_array_equal(source_decode, deep_decode)
    # A shallower fine-tune would drop trained blocks: a clean error, nothing written.
    assert main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "shallow"),
                 "--init-from", str(deep), "--residual-blocks", "1", "--steps", "1",
                 "--no-progress"]) == 2
    assert_clean_error(capsys, "3 residual blocks", "--residual-blocks 3 or more")
    assert not (tmp_path / "shallow").exists()


def test_init_from_converts_transposed_upsampling_to_resize(tiny_data, source_run, tmp_path,
                                                            capsys):
    """--upsampling resize seeded from a transposed-convolution run: every u
    stage's kernel, and its EMA shadow, is the least-squares resize fit."""
    from compression.decoder import resize_kernel_from_transposed

    mse = source_run
    source = tf.train.latest_checkpoint(mse)
    resized = tmp_path / "resize"
    assert main(["train", "--data", str(tiny_data), "--out", str(resized), "--init-from",
                 str(mse), "--upsampling", "resize", "--lr", "0", "--steps", "1",
                 "--val-images", "0", "--no-progress"]) == 0
    assert "least-squares resize-convolution fit" in capsys.readouterr().out
    assert CompressionConfig.load(resized / "config.json").upsampling == "resize"
    after = tf.train.latest_checkpoint(str(resized))
    names = dict(tf.train.list_variables(after))
    for i in range(1, 5):
        name = f"generator/decoder/u{i}/weights"
        shadow = f"{name}/ExponentialMovingAverage"
        want, want_shadow = (resize_kernel_from_transposed(tf.train.load_variable(source, n))
                             for n in (name, shadow))
        assert names[name] == names[shadow] == list(want.shape)
        np.testing.assert_allclose(tf.train.load_variable(after, name), want, atol=1e-6)
        # The shadow starts at the source's converted shadow and its step moves
        # it towards the (unchanged) weights; a fresh one would be random.
        gap = np.abs(want_shadow - want).max()
        assert 0 < gap < 0.01
        np.testing.assert_allclose(tf.train.load_variable(after, shadow), want, atol=gap + 1e-6)
    # And back is not a conversion this bridges: a clean error naming the variables.
    assert main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "back"),
                 "--init-from", str(resized), "--upsampling", "transposed", "--steps", "1",
                 "--no-progress"]) == 2
    assert_clean_error(capsys, "decoder/u1/weights")


def test_corrected_loss_trains_on_what_files_show(tiny_data, tmp_path):
    from skimage import data

    from compression.codec import decode_image, encode_image
    from compression.errors import ConfigError

    run = tmp_path / "run"
    # Distortion steps, then a GAN step whose D sees the corrected decode, then
    # validation; corrected_loss is the default.
    assert main(["train", "--data", str(tiny_data), "--out", str(run), "--steps", "5",
                 "--val-every", "5", "--val-images", "2", *TINY_CLI]) == 0
    assert CompressionConfig.load(run / "config.json").corrected_loss
    figures = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any(np.isfinite(f.get("val_psnr", np.nan)) for f in figures)
    assert all(np.isfinite(f["g_loss"]) for f in figures if "g_loss" in f)
    image = data.astronaut()[::8, ::8]
    with load_model(run) as model:
        with pytest.raises(ConfigError, match="trained with corrected_loss.*correct=True"):
            encode_image(model, image, correct=False)
        result = encode_image(model, image)
        assert result.corrected
        decoded, header = decode_image(model, result.data)
        assert decoded.shape == image.shape and header.correction is not None
