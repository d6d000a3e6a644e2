"""Tests for noisegen.dcgan_generator and noisegen.sample_noise."""

import types

import numpy as np
import pytest
import tensorflow as tf

import noisegen
from noisegen import DEFAULT_OUTPUT_SIZE, SCOPE, dcgan_generator, sample_noise

v1 = tf.compat.v1

# Small sizes keep the tests fast; the default table is checked separately.
NOISE_DIM = 16
UP = 32
C = 4

LAYERS = ("fc1", "upsample1", "upsample2", "upsample3")
PARAMS = ("weights", "biases")
BN_PARAMS = ("BatchNorm/beta", "BatchNorm/gamma")
BN_STATS = ("BatchNorm/moving_mean", "BatchNorm/moving_variance")


def documented_names(prefix=""):
    names = {f"{prefix}{SCOPE}/conv_out/{p}" for p in PARAMS}
    for layer in LAYERS:
        names |= {f"{prefix}{SCOPE}/{layer}/{p}" for p in PARAMS + BN_PARAMS + BN_STATS}
    return names


def var_names(variables):
    return {v.name.split(":")[0] for v in variables}


def var_by_name(name):
    (found,) = [v for v in v1.global_variables() if v.name == name + ":0"]
    return found


def z_values(batch=3, noise_dim=NOISE_DIM, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, noise_dim)).astype(np.float32)


def small(z, training=False, **kwargs):
    kwargs.setdefault("upsample_dim", UP)
    return dcgan_generator(z, None, training, kwargs.pop("C", C), **kwargs)


def randomise(sess, variables, seed=0):
    """Give every variable random values (positive ones for variances)."""
    rng = np.random.default_rng(seed)
    for v in variables:
        shape = v.shape.as_list()
        if v.name.endswith("moving_variance:0"):
            value = rng.uniform(0.5, 2.0, shape)
        elif v.name.endswith("gamma:0"):
            value = rng.uniform(0.5, 1.5, shape)
        elif len(shape) >= 2:  # weights: keep activations O(1)
            value = rng.normal(0.0, 1.0 / np.sqrt(np.prod(shape[:-1])), shape)
        else:
            value = rng.normal(0.0, 0.3, shape)
        sess.run(v.assign(value.astype(np.float32)))


def bn_output(graph, layer_scope):
    """The tensor a layer's BatchNorm hands on to the rest of the network."""
    inside = f"{layer_scope}/BatchNorm/"
    outs = []
    for op in graph.get_operations():
        if not op.name.startswith(inside):
            continue
        for t in op.outputs:
            if any(not c.name.startswith(inside) for c in t.consumers()):
                outs.append(t)
    assert len(outs) == 1, [t.name for t in outs]
    return outs[0]


# --- shapes ------------------------------------------------------------------


def test_default_call_is_the_layer_table():
    assert DEFAULT_OUTPUT_SIZE == (32, 64)
    with tf.Graph().as_default() as graph:
        z = v1.placeholder(tf.float32, [None, 128], name="z")
        out = dcgan_generator(z, None, False, 8)
        stages = {
            "fc1": bn_output(graph, f"{SCOPE}/fc1"),
            "grid": graph.get_tensor_by_name(f"{SCOPE}/Reshape:0"),
            "upsample1": bn_output(graph, f"{SCOPE}/upsample1"),
            "upsample2": bn_output(graph, f"{SCOPE}/upsample2"),
            "upsample3": bn_output(graph, f"{SCOPE}/upsample3"),
            "out": out,
        }
        expected = {
            "fc1": [None, 4 * 8 * 256],
            "grid": [None, 4, 8, 256],
            "upsample1": [None, 8, 16, 128],
            "upsample2": [None, 16, 32, 64],
            "upsample3": [None, 32, 64, 32],
            "out": [None, 32, 64, 8],
        }
        assert {k: t.shape.as_list() for k, t in stages.items()} == expected
        # The 4x8 grid feeds upsample1 directly: no resampling at the default size.
        assert not [op for op in graph.get_operations() if "resize" in op.name.lower()]
        pad = graph.get_tensor_by_name(f"{SCOPE}/conv_out/MirrorPad:0")
        assert pad.shape.as_list() == [None, 38, 70, 32]
        shapes = {v.name.split(":")[0]: v.shape.as_list() for v in v1.global_variables()}
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            values = sess.run(stages, {z: z_values(2, 128)})
    for key, value in values.items():
        assert list(value.shape) == [2] + expected[key][1:], key
    assert shapes[f"{SCOPE}/fc1/weights"] == [128, 8192]
    assert shapes[f"{SCOPE}/upsample1/weights"] == [5, 5, 128, 256]
    assert shapes[f"{SCOPE}/upsample2/weights"] == [5, 5, 64, 128]
    assert shapes[f"{SCOPE}/upsample3/weights"] == [5, 5, 32, 64]
    assert shapes[f"{SCOPE}/conv_out/weights"] == [7, 7, 32, 8]
    assert shapes[f"{SCOPE}/conv_out/biases"] == [8]


@pytest.mark.parametrize("size", [(23, 37), (1, 1), (5, 3), (100, 7), (32, 64), (8, 8), (33, 65)])
def test_any_output_size(size):
    h, w = size
    with tf.Graph().as_default():
        z = v1.placeholder(tf.float32, [None, NOISE_DIM])
        out = small(z, output_size=size)
        assert out.shape.as_list() == [None, h, w, C]
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            value = sess.run(out, {z: z_values(2)})
    assert value.shape == (2, h, w, C)
    assert np.all(np.isfinite(value))


def test_output_size_as_scalar_tensors():
    with tf.Graph().as_default():
        z = v1.placeholder(tf.float32, [None, NOISE_DIM])
        h = v1.placeholder(tf.int32, [], name="h")
        w = v1.placeholder(tf.int32, [], name="w")
        dynamic = small(z, output_size=(h, w))
        assert dynamic.shape.as_list() == [None, None, None, C]
        static = small(z, output_size=(23, 37), reuse=True)
        default = small(z, reuse=True)
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            zv = z_values(2)
            for size in [(23, 37), (1, 1), (5, 3), (100, 7), (32, 64)]:
                value = sess.run(dynamic, {z: zv, h: size[0], w: size[1]})
                assert value.shape == (2, *size, C)
            # Same weights, same size: the tensor-sized map equals the int-sized one.
            np.testing.assert_allclose(
                sess.run(dynamic, {z: zv, h: 23, w: 37}), sess.run(static, {z: zv}), atol=1e-5
            )
            np.testing.assert_allclose(
                sess.run(dynamic, {z: zv, h: 32, w: 64}), sess.run(default, {z: zv}), atol=1e-5
            )


def test_int64_size_tensors_and_mixed_sizes():
    with tf.Graph().as_default():
        z = v1.placeholder(tf.float32, [None, NOISE_DIM])
        h = v1.placeholder(tf.int64, [])
        out = small(z, output_size=(h, 7))
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            assert sess.run(out, {z: z_values(1), h: 11}).shape == (1, 11, 7, C)


# --- call form and config ------------------------------------------------------


def test_tf1_positional_call_form():
    with tf.Graph().as_default() as graph:
        z = v1.placeholder(tf.float32, [None, NOISE_DIM])
        out = dcgan_generator(z, None, False, 3, False, tf.nn.tanh, 3, UP)
        assert out.shape.as_list() == [None, 32, 64, 3]
        shapes = {v.name.split(":")[0]: v.shape.as_list() for v in v1.global_variables()}
        op_types = [op.type for op in graph.get_operations()]
    assert shapes[f"{SCOPE}/fc1/weights"] == [NOISE_DIM, 4 * 8 * UP]
    assert shapes[f"{SCOPE}/upsample1/weights"] == [3, 3, UP // 2, UP]
    assert shapes[f"{SCOPE}/upsample3/weights"] == [3, 3, UP // 8, UP // 4]
    assert shapes[f"{SCOPE}/conv_out/weights"] == [7, 7, UP // 8, 3]
    # actv after fc1 and after each of the three upsamplings, none after conv_out.
    assert op_types.count("Tanh") == 4 and "Relu" not in op_types
    assert out.op.type == "BiasAdd"


def test_tf1_call_form_with_keywords_and_defaults():
    with tf.Graph().as_default():
        z = tf.zeros([2, 128])
        out = dcgan_generator(
            z, None, True, 8, reuse=False, actv=tf.nn.relu, kernel_size=5, upsample_dim=256
        )
        assert out.shape.as_list() == [2, 32, 64, 8]


def test_config_supplies_noise_dim_and_upsample_dim():
    config = types.SimpleNamespace(noise_dim=NOISE_DIM, upsample_dim=UP, unrelated="x")
    with tf.Graph().as_default():
        out = dcgan_generator(tf.zeros([2, NOISE_DIM]), config, False, C)
        shapes = {v.name.split(":")[0]: v.shape.as_list() for v in v1.global_variables()}
    assert out.shape.as_list() == [2, 32, 64, C]
    assert shapes[f"{SCOPE}/fc1/weights"] == [NOISE_DIM, 4 * 8 * UP]
    assert shapes[f"{SCOPE}/upsample3/weights"] == [5, 5, UP // 8, UP // 4]


def test_config_without_fields_uses_defaults():
    class Config:
        batch_size = 4

    with tf.Graph().as_default():
        dcgan_generator(tf.zeros([1, NOISE_DIM]), Config(), False, C)
        shapes = {v.name.split(":")[0]: v.shape.as_list() for v in v1.global_variables()}
    assert shapes[f"{SCOPE}/fc1/weights"] == [NOISE_DIM, 4 * 8 * 256]


def test_config_noise_dim_mismatch_raises():
    config = types.SimpleNamespace(noise_dim=128, upsample_dim=UP)
    with tf.Graph().as_default():
        with pytest.raises(ValueError, match="noise_dim"):
            dcgan_generator(tf.zeros([1, NOISE_DIM]), config, False, C)
        assert v1.global_variables() == []


# --- variable names ------------------------------------------------------------


def test_variable_names_are_documented():
    with tf.Graph().as_default():
        small(tf.zeros([1, NOISE_DIM]), training=True)
        assert var_names(v1.global_variables()) == documented_names()
        assert len(v1.global_variables()) == 26
        trainable = var_names(v1.trainable_variables())
        moving = var_names(v1.moving_average_variables())
    assert trainable == {n for n in documented_names() if "moving_" not in n}
    assert moving == {n for n in documented_names() if "moving_" in n}


def test_variable_names_inside_outer_scope():
    with tf.Graph().as_default():
        with v1.variable_scope("generator"):
            small(tf.zeros([1, NOISE_DIM]))
        assert var_names(v1.global_variables()) == documented_names("generator/")
        assert var_names(noisegen.generator_variables("generator")) == documented_names(
            "generator/"
        )


def test_custom_scope_name():
    with tf.Graph().as_default():
        small(tf.zeros([1, NOISE_DIM]), scope="my_noise")
        names = var_names(v1.global_variables())
    assert names == {n.replace(SCOPE, "my_noise", 1) for n in documented_names()}


# --- reuse -----------------------------------------------------------------------


@pytest.mark.parametrize("reuse", [True, v1.AUTO_REUSE])
@pytest.mark.parametrize("outer", [None, "generator"])
def test_reuse_shares_every_variable(reuse, outer):
    zv = z_values(2)
    with tf.Graph().as_default():
        z = v1.placeholder(tf.float32, [None, NOISE_DIM])

        def build(**kwargs):
            if outer is None:
                return small(z, **kwargs)
            # The TF1 idiom: the reuse flag on the outer scope, or on the call.
            with v1.variable_scope(outer, reuse=kwargs.get("reuse") or None):
                return small(z, **kwargs)

        first = build(training=True, reuse=False if reuse is True else reuse)
        count = len(v1.global_variables())
        second = build(reuse=reuse)
        third = build(reuse=reuse, output_size=(23, 37))
        fourth = build(reuse=reuse, output_size=(23, 37))
        assert len(v1.global_variables()) == count == 26
        prefix = "" if outer is None else outer + "/"
        assert var_names(v1.global_variables()) == documented_names(prefix)
        assert first.shape.as_list() == [None, 32, 64, C]
        assert third.shape.as_list() == [None, 23, 37, C]
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            randomise(sess, v1.global_variables())
            a, b, c = sess.run([second, third, fourth], {z: zv})
            again = sess.run(second, {z: zv})
    np.testing.assert_array_equal(a, again)
    np.testing.assert_array_equal(b, c)


def test_reuse_false_twice_refuses_to_share():
    with tf.Graph().as_default():
        small(tf.zeros([1, NOISE_DIM]))
        with pytest.raises(ValueError, match="already exists"):
            small(tf.zeros([1, NOISE_DIM]))


def test_reuse_true_without_variables_fails():
    with tf.Graph().as_default():
        with pytest.raises(ValueError, match="does not exist"):
            small(tf.zeros([1, NOISE_DIM]), reuse=True)


# --- gradients -------------------------------------------------------------------


@pytest.mark.parametrize("as_tensor", [False, True])
def test_gradients_reach_every_trainable_variable(as_tensor):
    with tf.Graph().as_default():
        training = tf.constant(True) if as_tensor else True
        out = small(tf.constant(z_values(4)), training=training, output_size=(23, 37))
        target = tf.constant(np.random.default_rng(1).standard_normal((4, 23, 37, C)), tf.float32)
        loss = tf.reduce_mean(tf.square(out - target))
        variables = v1.trainable_variables()
        assert len(variables) == 18
        grads = tf.gradients(loss, variables)
        missing = [v.name for v, g in zip(variables, grads, strict=True) if g is None]
        assert missing == []
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            values = sess.run(grads)
    for v, g in zip(variables, values, strict=True):
        assert np.all(np.isfinite(g)), v.name
        assert np.any(g != 0), v.name


# --- batch norm ------------------------------------------------------------------


def moving_stats():
    return [v for v in v1.global_variables() if "moving_" in v.name]


def test_training_normalises_by_batch_and_updates_moving_stats():
    zv = z_values(4)
    other = zv.copy()
    other[1:] = z_values(3, seed=9) * 3.0
    with tf.Graph().as_default():
        z = v1.placeholder(tf.float32, [None, NOISE_DIM])
        out = small(z, training=True)
        stats = moving_stats()
        assert len(stats) == 8
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            randomise(sess, v1.trainable_variables())
            before = sess.run(stats)
            a = sess.run(out, {z: zv})
            after_one = sess.run(stats)
            b = sess.run(out, {z: other})
            after_two = sess.run(stats)
    # Row 0 is the same input, but its batch changed: batch statistics at work.
    assert np.max(np.abs(a[0] - b[0])) > 1e-3
    for x, y, w in zip(before, after_one, after_two, strict=True):
        assert np.any(x != y)
        assert np.any(y != w)


def test_training_update_needs_no_update_ops():
    with tf.Graph().as_default():
        out = small(tf.constant(z_values(4)), training=True)
        assert v1.get_collection(v1.GraphKeys.UPDATE_OPS) == []
        loss = tf.reduce_mean(tf.square(out))
        step = v1.train.GradientDescentOptimizer(0.01).minimize(loss)
        stats = moving_stats()
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            before = sess.run(stats)
            sess.run(step)
            after = sess.run(stats)
    for x, y in zip(before, after, strict=True):
        assert np.any(x != y)


def test_inference_uses_moving_stats_and_is_per_example():
    zv = z_values(4)
    other = zv.copy()
    other[1:] = z_values(3, seed=9) * 3.0
    with tf.Graph().as_default():
        z = v1.placeholder(tf.float32, [None, NOISE_DIM])
        out = small(z, training=False)
        stats = moving_stats()
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            randomise(sess, v1.global_variables())
            before = sess.run(stats)
            a = sess.run(out, {z: zv})
            b = sess.run(out, {z: other})
            alone = sess.run(out, {z: zv[:1]})
            after = sess.run(stats)
            # The moving statistics really are what normalises: changing them
            # changes the output.
            randomise(sess, stats, seed=5)
            c = sess.run(out, {z: zv})
    np.testing.assert_allclose(a[0], b[0], atol=1e-5)
    np.testing.assert_allclose(a[0], alone[0], atol=1e-5)
    for x, y in zip(before, after, strict=True):
        np.testing.assert_array_equal(x, y)
    assert np.max(np.abs(a - c)) > 1e-3


def test_training_placeholder_switches_mode():
    zv = z_values(4)
    other = zv.copy()
    other[1:] = z_values(3, seed=9) * 3.0
    with tf.Graph().as_default():
        z = v1.placeholder(tf.float32, [None, NOISE_DIM])
        training = v1.placeholder(tf.bool, [], name="training")
        out = small(z, training=training, output_size=(23, 37))
        assert out.shape.as_list() == [None, 23, 37, C]
        infer = small(z, training=False, reuse=True, output_size=(23, 37))
        stats = moving_stats()
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            randomise(sess, v1.global_variables())
            s0 = sess.run(stats)
            a = sess.run(out, {z: zv, training: False})
            b = sess.run(out, {z: other, training: False})
            reference = sess.run(infer, {z: zv})
            s1 = sess.run(stats)
            c = sess.run(out, {z: zv, training: True})
            s2 = sess.run(stats)
            d = sess.run(out, {z: other, training: True})
    np.testing.assert_allclose(a[0], b[0], atol=1e-5)
    np.testing.assert_allclose(a, reference, atol=1e-5)
    for x, y, w in zip(s0, s1, s2, strict=True):
        np.testing.assert_array_equal(x, y)
        assert np.any(y != w)
    assert np.max(np.abs(c[0] - d[0])) > 1e-3
    assert np.max(np.abs(a - c)) > 1e-3


def test_training_placeholder_with_default():
    with tf.Graph().as_default():
        training = v1.placeholder_with_default(False, [])
        out = small(tf.constant(z_values(2)), training=training)
        stats = moving_stats()
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            before = sess.run(stats)
            sess.run(out)
            unchanged = sess.run(stats)
            sess.run(out, {training: True})
            changed = sess.run(stats)
    for x, y, w in zip(before, unchanged, changed, strict=True):
        np.testing.assert_array_equal(x, y)
        assert np.any(y != w)


@pytest.mark.parametrize(
    "make_training",
    [
        lambda: tf.constant([True, False]),
        lambda: v1.placeholder(tf.bool, [None]),
        lambda: v1.placeholder(tf.bool, [1]),
    ],
)
def test_non_scalar_training_raises(make_training):
    with tf.Graph().as_default():
        with pytest.raises(ValueError, match="training"):
            small(tf.zeros([2, NOISE_DIM]), training=make_training())


# --- argument errors -------------------------------------------------------------


@pytest.mark.parametrize("shape", [[NOISE_DIM], [2, 4, NOISE_DIM], [], [1, 1, 1, NOISE_DIM]])
def test_wrong_z_rank_raises(shape):
    with tf.Graph().as_default():
        with pytest.raises(ValueError, match="z must have rank 2"):
            small(tf.zeros(shape))
        assert v1.global_variables() == []


def test_z_with_unknown_noise_dim_or_int_dtype_raises():
    with tf.Graph().as_default():
        with pytest.raises(ValueError, match="noise_dim"):
            small(v1.placeholder(tf.float32, [None, None]))
        with pytest.raises(ValueError, match="float"):
            small(tf.zeros([2, NOISE_DIM], tf.int32))


@pytest.mark.parametrize("bad_c", [0, -3, 2.0, 2.5, "4", True, None])
def test_bad_c_raises(bad_c):
    with tf.Graph().as_default():
        with pytest.raises(ValueError, match="C "):
            dcgan_generator(tf.zeros([1, NOISE_DIM]), None, False, bad_c, upsample_dim=UP)
        assert v1.global_variables() == []


@pytest.mark.parametrize(
    "size, match",
    [
        ((0, 5), "output_size height"),
        ((5, 0), "output_size width"),
        ((-1, 4), "output_size height"),
        ((2.5, 4), "output_size height"),
        ((4, "x"), "output_size width"),
        ((None, 4), "output_size height"),
        ((5,), "output_size"),
        ((1, 2, 3), "output_size"),
        (7, "output_size"),
        (None, "output_size"),
    ],
)
def test_bad_output_size_raises(size, match):
    with tf.Graph().as_default():
        with pytest.raises(ValueError, match=match):
            small(tf.zeros([1, NOISE_DIM]), output_size=size)
        assert v1.global_variables() == []


@pytest.mark.parametrize("bad", [12, 4, 0, -8, 33, 32.0, "32"])
def test_bad_upsample_dim_raises(bad):
    with tf.Graph().as_default():
        with pytest.raises(ValueError, match="upsample_dim"):
            dcgan_generator(tf.zeros([1, NOISE_DIM]), None, False, C, upsample_dim=bad)
        config = types.SimpleNamespace(upsample_dim=bad)
        with pytest.raises(ValueError, match="upsample_dim"):
            dcgan_generator(tf.zeros([1, NOISE_DIM]), config, False, C)


@pytest.mark.parametrize("bad", [0, -1, 2.0])
def test_bad_kernel_size_raises(bad):
    with tf.Graph().as_default():
        with pytest.raises(ValueError, match="kernel_size"):
            small(tf.zeros([1, NOISE_DIM]), kernel_size=bad)


# --- sample_noise ----------------------------------------------------------------


def graph_noise(batch, noise_dim, seed):
    with tf.Graph().as_default():
        z = sample_noise(batch, noise_dim, seed)
        assert z.shape.as_list() == [batch, noise_dim]
        assert z.dtype == tf.float32
        with v1.Session() as sess:
            return sess.run(z)


def test_sample_noise_same_seed_same_z_everywhere():
    first = graph_noise(3, 128, 1234)
    second = graph_noise(3, 128, 1234)
    eager = sample_noise(3, 128, 1234)
    assert isinstance(eager, tf.Tensor)
    assert first.shape == (3, 128)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, eager.numpy())
    # A seed given as an int64 tensor fed at run time gives the same z.
    with tf.Graph().as_default():
        seed = v1.placeholder(tf.int64, [])
        z = sample_noise(3, 128, seed)
        with v1.Session() as sess:
            np.testing.assert_array_equal(sess.run(z, {seed: 1234}), first)


def test_sample_noise_seeds_differ_and_look_normal():
    a = sample_noise(64, 128, 0).numpy()
    b = sample_noise(64, 128, 1).numpy()
    big = sample_noise(1, 7, 2**63 - 1).numpy()
    assert big.shape == (1, 7)
    assert not np.allclose(a, b)
    assert abs(a.mean()) < 0.05
    assert abs(a.std() - 1.0) < 0.05
    # Rows are not copies of each other.
    assert not np.allclose(a[0], a[1])


@pytest.mark.parametrize(
    "args, match",
    [
        ((0, 4, 1), "batch_size"),
        ((-2, 4, 1), "batch_size"),
        ((2.0, 4, 1), "batch_size"),
        ((True, 4, 1), "batch_size"),
        ((2, 0, 1), "noise_dim"),
        ((2, "4", 1), "noise_dim"),
        ((2, 4, -1), "seed"),
        ((2, 4, 2**63), "seed"),
    ],
)
def test_sample_noise_bad_args_raise(args, match):
    with pytest.raises(ValueError, match=match):
        sample_noise(*args)


# --- tf-slim arg_scope -----------------------------------------------------------


def test_enclosing_arg_scope_reaches_the_generator():
    """Initialisers and regularisers come from a user's slim.arg_scope; the architecture not."""
    from noisegen.slim_compat import slim

    layers = [slim.fully_connected, slim.conv2d, slim.conv2d_transpose]
    with tf.Graph().as_default() as graph:
        with slim.arg_scope(layers, weights_initializer=v1.constant_initializer(0.01),
                            weights_regularizer=slim.l2_regularizer(1.0),
                            activation_fn=tf.nn.tanh), \
                slim.arg_scope([slim.conv2d, slim.conv2d_transpose], padding="VALID"), \
                slim.arg_scope([slim.batch_norm], decay=0.5, param_regularizers={
                    "gamma": slim.l2_regularizer(1.0)}):
            out = dcgan_generator(tf.ones([2, 16]), None, True, 4, upsample_dim=32)
        weights = [v for v in v1.global_variables() if v.name.endswith("/weights:0")]
        losses = v1.get_collection(v1.GraphKeys.REGULARIZATION_LOSSES)
        op_types = {op.type for op in graph.get_operations()}
        fc1 = graph.get_tensor_by_name(f"{SCOPE}/fc1/fc1/Relu:0")
        moving = next(v for v in v1.global_variables()
                      if v.name.endswith("fc1/BatchNorm/moving_mean:0"))
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            values = sess.run(weights)
            _, activation = sess.run([out, fc1])
            moving = sess.run(moving)
    assert len(weights) == 5 and all(np.all(w == 0.01) for w in values)
    assert len(losses) == 5 + 4  # weights of 5 layers, gamma of 4 batch norms
    # Fixed: the activation (actv), the padding (the layer table's shapes), the BN decay.
    assert "Tanh" not in op_types
    assert out.shape.as_list() == [2, 32, 64, 4]
    np.testing.assert_allclose(moving, 0.01 * activation.mean(axis=0), rtol=1e-4, atol=1e-7)
