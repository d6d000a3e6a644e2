"""compression.precision: the bfloat16 rewrite really runs, weights stay float32."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY

from compression.cli import build_parser
from compression.errors import CompressionError
from compression.inference import session_config
from compression.precision import PRECISIONS, apply_precision, check_precision, native_bfloat16
from compression.train import train

_v1 = tf.compat.v1


def test_check_precision_names_the_fix():
    assert check_precision("mixed_bfloat16") == "mixed_bfloat16"
    with pytest.raises(CompressionError, match="on CPUs use mixed_bfloat16"):
        check_precision("mixed_float16")
    with pytest.raises(CompressionError, match="--precision must be one of"):
        check_precision("double")
    for name in PRECISIONS:  # the CLI offers exactly these (it lists them without TF)
        args = build_parser().parse_args(["train", "--data", "d", "--out", "o",
                                          "--precision", name])
        assert args.precision == name
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--data", "d", "--out", "o",
                                   "--precision", "mixed_float16"])


def test_native_bfloat16_reads_cpu_flags(tmp_path):
    (tmp_path / "with").write_text("flags : fpu avx512f avx512_bf16\n")
    (tmp_path / "without").write_text("flags : fpu avx2\n")
    assert native_bfloat16(tmp_path / "with") is True
    assert native_bfloat16(tmp_path / "without") is False
    assert native_bfloat16(tmp_path / "missing") is None


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
