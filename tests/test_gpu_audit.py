"""scripts/gpu_audit.py: every op that training and inference build has a GPU kernel."""

import dataclasses
import sys

import pytest
import tensorflow as tf
from conftest import REPO_ROOT, TINY

sys.path.insert(0, f"{REPO_ROOT}/scripts")
import gpu_audit  # noqa: E402

pytestmark = pytest.mark.skipif(not gpu_audit.gpu_kernels_registered(),
                                reason="this TensorFlow build registers no GPU kernels")


def test_training_and_inference_ops_have_gpu_kernels(tmp_path):
    # Every feature that adds ops: noise, variable rate, semantic labels, all phases,
    # the MS-SSIM term (float64 statistics) and resize upsampling.
    config = dataclasses.replace(TINY, channels=6, min_channels=2, semantic_classes=4,
                                 gan_start_step=1, d_warmup_steps=1, lambda_ms_ssim=0.1,
                                 upsampling="resize")
    cache = {}
    for graph in (gpu_audit.training_graph(config), gpu_audit.inference_graph(config, tmp_path)):
        missing, host = gpu_audit.audit_graph(graph, cache)
        assert missing == [], missing
    assert "RestoreV2" in {op for op, _ in host}  # host-side ops are listed apart


def test_audit_finds_an_op_without_a_gpu_kernel():
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [4])
        tf.numpy_function(lambda a: a * 2, [x], tf.float32)  # a Python op: host only
        tf.math.cumsum(tf.cast(x, tf.int32))  # int cumsum: GPU kernels exist
    missing, _ = gpu_audit.audit_graph(graph)
    assert [op for op, _ in missing] == ["PyFunc"]
