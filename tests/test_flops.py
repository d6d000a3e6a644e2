"""compression.flops: analytic FLOPs checked by hand and against TensorFlow's profiler."""

import pytest
import tensorflow as tf

from compression.config import CompressionConfig
from compression.discriminator import multiscale_discriminator
from compression.flops import (
    conv_flops,
    conv_transpose_flops,
    dense_flops,
    layer_flops,
    model_flops,
)
from compression.model import encode, synthesize

_v1 = tf.compat.v1
_COUNTED_OPS = ("Conv2D", "Conv2DBackpropInput", "MatMul")


def profiled_flops(graph):
    """FLOPs per op type from TF's profiler (its ``op`` view nests the types in a chain)."""
    opts = _v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    root = _v1.profiler.profile(graph, cmd="op", options=opts)
    per_type, stack = {}, list(root.children)
    while stack:
        node = stack.pop()
        per_type[node.name] = node.float_ops
        stack.extend(node.children)
    return per_type


def counted(per_type):
    return sum(per_type.get(name, 0) for name in _COUNTED_OPS)


def test_layer_formulas_by_hand():
    # 3x3 conv 4 -> 8 on a 16x16 output: 9 * 4 * 8 * 256 = 73728 multiply-adds.
    assert conv_flops(3, 4, 8, 16, 16) == 2 * 73728
    # 5x5 transposed conv 8 -> 4 reading 4x8: 25 * 8 * 4 * 32 = 25600 multiply-adds.
    assert conv_transpose_flops(5, 8, 4, 4, 8) == 2 * 25600
    assert dense_flops(128, 8192) == 2 * 128 * 8192


def test_conv_formula_matches_tf_profiler():
    with tf.Graph().as_default() as graph:
        x = _v1.placeholder(tf.float32, [1, 16, 24, 4])
        w = _v1.get_variable("w", [3, 3, 4, 8])
        tf.nn.conv2d(x, w, strides=2, padding="SAME")
        wt = _v1.get_variable("wt", [5, 5, 6, 4])
        tf.nn.conv2d_transpose(x, wt, [1, 32, 48, 6], strides=2, padding="SAME")
        per_type = profiled_flops(graph)
    assert per_type["Conv2D"] == conv_flops(3, 4, 8, 8, 12)
    assert per_type["Conv2DBackpropInput"] == conv_transpose_flops(5, 4, 6, 16, 24)


SMALL = dict(channels=4, width=0.125, residual_blocks=2, discriminator_width=0.125,
             discriminator_scales=3, noise_dim=16, upsample_dim=32,
             crop_height=64, crop_width=64)


@pytest.mark.parametrize("config, height, width", [
    (CompressionConfig(**SMALL), 64, 96),
    (CompressionConfig(**dict(SMALL, semantic_classes=3, noise=False)), 48, 32),
    (CompressionConfig(**dict(SMALL, upsampling="resize")), 32, 48),
])
def test_model_flops_match_profiler_per_part(config, height, width):
    """Each part built alone: the profiler's conv/matmul FLOPs equal the analytic count."""
    expected = model_flops(config, height, width)
    h, w = height // 16, width // 16

    with tf.Graph().as_default() as graph:
        encode(_v1.placeholder(tf.float32, [1, height, width, 3]), config)
        assert counted(profiled_flops(graph)) == expected["encoder"]

    with tf.Graph().as_default() as graph:
        w_hat = _v1.placeholder(tf.float32, [1, h, w, config.channels])
        z = _v1.placeholder(tf.float32, [1, config.noise_dim]) if config.noise else None
        labels = None
        if config.semantic_classes:
            labels = _v1.placeholder(tf.float32, [1, height, width, config.semantic_classes])
        synthesize(w_hat, config, False, z=z, labels_one_hot=labels)
        assert counted(profiled_flops(graph)) == expected["decode"]

    with tf.Graph().as_default() as graph:
        labels = None
        if config.semantic_classes:
            labels = _v1.placeholder(tf.float32, [1, height, width, config.semantic_classes])
        multiscale_discriminator(
            _v1.placeholder(tf.float32, [1, height, width, 3]), config, labels
        )
        assert counted(profiled_flops(graph)) == expected["discriminator"]

    assert expected["generator"] == expected["encoder"] + expected["decode"]
    assert (expected["noise_generator"] > 0) == config.noise
    assert (expected["semantic_encoder"] > 0) == bool(config.semantic_classes)


def test_layer_names_are_variable_scopes():
    config = CompressionConfig(**SMALL)
    names = [name for name, _ in layer_flops(config, 64, 64)]
    assert names[:2] == ["encoder/c7s1", "encoder/d1"]
    assert "decoder/res2/conv2" in names
    assert names[-1] == "discriminator/scale3/logits"
    assert len(names) == len(set(names))


def test_model_flops_rejects_sizes_not_multiple_of_16():
    with pytest.raises(ValueError, match="multiple of 16"):
        model_flops(CompressionConfig(**SMALL), 40, 64)
