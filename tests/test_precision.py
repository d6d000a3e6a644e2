"""compression.precision: the bfloat16 rewrite really runs, weights stay float32."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY, TINY_MSE

from compression.cli import build_parser
from compression.distribute import Replication, make_strategy, replicated_training_graph
from compression.errors import CompressionError
from compression.inference import session_config
from compression.model import LOSS_SCALE_VARIABLES, build_training_graph
from compression.precision import (
    PRECISIONS,
    apply_precision,
    check_precision,
    cpu_flags,
    loss_scale,
    native_bfloat16,
)
from compression.train import train

_v1 = tf.compat.v1

# GAN from step 1, so both optimisers (G and D) are loss-scaled in the step.
GAN_NOW = dataclasses.replace(TINY, gan_start_step=0, d_warmup_steps=0)


def test_check_precision_names_the_fix():
    assert check_precision("mixed_bfloat16") == "mixed_bfloat16"
    assert check_precision("mixed_float16", gpus=1) == "mixed_float16"
    with pytest.raises(CompressionError, match="needs a GPU .* use --precision mixed_bfloat16"):
        check_precision("mixed_float16", gpus=0)
    assert loss_scale("mixed_float16") == "dynamic" and loss_scale("mixed_bfloat16") is None
    with pytest.raises(CompressionError, match="--precision must be one of"):
        check_precision("double")
    for name in PRECISIONS:  # the CLI offers exactly these (it lists them without TF)
        args = build_parser().parse_args(["train", "--data", "d", "--out", "o",
                                          "--precision", name])
        assert args.precision == name
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--data", "d", "--out", "o",
                                   "--precision", "float16"])


def test_native_bfloat16_reads_cpu_flags(tmp_path):
    (tmp_path / "with").write_text("flags : fpu avx512f avx512_bf16\n")
    (tmp_path / "without").write_text("flags : fpu avx2\n")
    assert native_bfloat16(tmp_path / "with") is True
    assert native_bfloat16(tmp_path / "without") is False
    assert native_bfloat16(tmp_path / "missing") is None
    assert {"avx512f", "avx512_bf16"} <= cpu_flags(tmp_path / "with")
    assert cpu_flags(tmp_path / "missing") is None


def _run_conv(tf_config):
    graph = tf.Graph()
    with graph.as_default():
        x = _v1.placeholder(tf.float32, [1, 16, 16, 8])
        k = tf.Variable(tf.random.normal([3, 3, 8, 8], seed=1))
        y = tf.nn.relu(tf.nn.conv2d(x, k, 1, "SAME"))
        with _v1.Session(graph=graph, config=tf_config) as sess:
            sess.run(k.initializer)
            meta = _v1.RunMetadata()
            out = sess.run(y, {x: np.ones([1, 16, 16, 8], np.float32)},
                           options=_v1.RunOptions(output_partition_graphs=True),
                           run_metadata=meta)
    dtypes = {attr.type for g in meta.partition_graphs for node in g.node
              for attr in node.attr.values() if attr.WhichOneof("value") == "type"}
    return out, dtypes


# oneDNN's bfloat16 kernels need AVX-512; without it TensorFlow says "oneDNN
# supports DT_BFLOAT16 only on platforms with AVX-512" and leaves this conv in
# float32 (seen on an AMD EPYC without AVX-512, 2026-12-04).
@pytest.mark.skipif("avx512f" not in (cpu_flags() or ()),
                    reason="oneDNN's bfloat16 rewrite needs AVX-512")
def test_mixed_bfloat16_rewrites_the_graph():
    plain, plain_types = _run_conv(session_config(inference=False))
    mixed, mixed_types = _run_conv(apply_precision(session_config(inference=False),
                                                   "mixed_bfloat16", log=lambda *_: None))
    assert tf.bfloat16.as_datatype_enum not in plain_types
    assert tf.bfloat16.as_datatype_enum in mixed_types  # the conv ran in bfloat16
    assert mixed.dtype == np.float32  # outputs are cast back
    np.testing.assert_allclose(mixed, plain, rtol=0.05, atol=0.05 * np.abs(plain).max())


def test_train_mixed_bfloat16_keeps_float32_weights(tiny_data, tmp_path):
    lines = []
    result = train(TINY, tiny_data, str(tmp_path / "run"), 2, checkpoint_every=2,
                   summary_every=0, val_every=0, val_images=0, progress=False,
                   log=lines.append, precision="mixed_bfloat16")
    assert result.step == 2 and all(np.isfinite(v) for v in result.losses.values())
    assert "precision: mixed_bfloat16 (float32 weights)" in lines
    ckpt = tf.train.latest_checkpoint(str(tmp_path / "run"))
    dtypes = {tf.train.load_variable(ckpt, n).dtype for n, _ in tf.train.list_variables(ckpt)}
    assert np.dtype(np.float32) in dtypes and not any("16" in d.name for d in dtypes)


def _scale_state(sess, graph):
    scales = [v for v in graph.get_collection(LOSS_SCALE_VARIABLES)
              if "current_loss_scale" in v.name]
    return [float(x) for x in sess.run(scales)]


def test_float16_loss_scaling_skips_overflowing_steps():
    """The float16 path's loss scaling, run in float32 (no GPU here): a non-finite
    gradient skips the update, is not counted, and halves the scale."""
    graph = tf.Graph()
    with graph.as_default():
        images = _v1.placeholder(tf.float32, [2, 32, 64, 3])
        tg = build_training_graph(images, GAN_NOW, loss_scale="dynamic")
        scale_vars = graph.get_collection(LOSS_SCALE_VARIABLES)
        # Out of the checkpoints: a run resumes in any precision.
        assert len(scale_vars) == 4  # G's and D's scale and good-step count
        saved = {v.op.name for v in _v1.global_variables()}
        assert not saved & {v.op.name for v in scale_vars}
        init = [_v1.global_variables_initializer(), _v1.variables_initializer(scale_vars)]
        kernel = next(v for v in tg.generator_variables if "weights" in v.name)
    good = np.random.default_rng(0).uniform(-1, 1, (2, 32, 64, 3)).astype(np.float32)
    bad = good.copy()
    bad[0, 0, 0, 0] = np.inf
    with _v1.Session(graph=graph) as sess:
        sess.run(init)
        start_scale = _scale_state(sess, graph)
        before = sess.run(kernel)
        sess.run(tg.phase_ops["gan"], {images: bad})
        assert sess.run(tg.global_step) == 0  # skipped, not counted
        np.testing.assert_array_equal(sess.run(kernel), before)
        assert _scale_state(sess, graph) == [s / 2 for s in start_scale]
        sess.run(tg.phase_ops["gan"], {images: good})
        assert sess.run(tg.global_step) == 1
        assert not np.array_equal(sess.run(kernel), before)


def test_float16_loss_scaling_under_mirrored():
    """The loss-scaled step under MirroredStrategy (distortion only, for speed)."""
    images = np.random.default_rng(0).uniform(-1, 1, (2, 32, 64, 3)).astype(np.float32)
    graph = tf.Graph()
    with graph.as_default():
        strategy = make_strategy(Replication("mirrored", ("/cpu:0", "/cpu:1")))
        ds = tf.data.Dataset.from_tensors({"image": images}).repeat()
        tg, input_init = replicated_training_graph(strategy, ds, TINY_MSE, "dynamic")
        init = [_v1.global_variables_initializer(), input_init,
                _v1.variables_initializer(graph.get_collection(LOSS_SCALE_VARIABLES))]
    config = _v1.ConfigProto(device_count={"CPU": 2})
    with graph.as_default(), _v1.Session(graph=graph, config=config) as sess:
        sess.run(init)
        for _ in range(2):
            losses = sess.run([tg.phase_ops["warmup"], tg.phase_losses["warmup"]])[1]
        assert sess.run(tg.global_step) == 2
        assert all(np.isfinite(v) for v in losses.values())
