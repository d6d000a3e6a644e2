"""Tests for noisegen.portability: loading a trained generator elsewhere, and exporting it."""

import os
import types

import numpy as np
import pytest
import tensorflow as tf

from noisegen import (
    SCOPE,
    dcgan_generator,
    export_graph_def,
    export_saved_model,
    generator_variables,
    load_generator_weights,
)

v1 = tf.compat.v1

NOISE_DIM = 16
UP = 32
C = 4
SIZES = [(32, 64), (23, 37)]
HPARAMS = {"noise_dim": NOISE_DIM, "upsample_dim": UP, "kernel_size": 5, "C": C}


def randomise(sess, variables, rng):
    for v in variables:
        shape = v.shape.as_list()
        if v.name.endswith(("moving_variance:0", "gamma:0")):
            value = rng.uniform(0.5, 2.0, shape)
        elif len(shape) >= 2:  # weights: keep activations O(1)
            value = rng.normal(0.0, 1.0 / np.sqrt(np.prod(shape[:-1])), shape)
        else:
            value = rng.normal(0.0, 0.3, shape)
        sess.run(v.assign(value.astype(np.float32)))


def names(variables):
    return [v.name.split(":")[0] for v in variables]


def inference_outputs(sess, z_ph, outs, z):
    return {size: sess.run(t, {z_ph: z}) for size, t in outs.items()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Checkpoints of a randomised 'trained' compressor, and reference outputs.

    The training graph holds the generator under ``generator/`` (built in
    training mode, then again for inference with ``reuse=True``), a second
    generator under ``teacher/``, unrelated variables, and an EMA of the
    generator's trainable variables.  Three checkpoints are written:
    ``plain`` (generator + unrelated), ``ema`` (plus the EMA shadows) and
    ``two`` (both generators).
    """
    root = tmp_path_factory.mktemp("ckpt")
    rng = np.random.default_rng(42)
    z = rng.standard_normal((3, NOISE_DIM)).astype(np.float32)
    refs = {}
    with tf.Graph().as_default():
        z_ph = v1.placeholder(tf.float32, [None, NOISE_DIM], name="z")
        with v1.variable_scope("encoder"):
            v1.get_variable("conv/weights", [3, 3, 3, 8])
        global_step = v1.train.get_or_create_global_step()
        outs = {}
        for outer in ("generator", "teacher"):
            with v1.variable_scope(outer):
                dcgan_generator(z_ph, None, True, C, upsample_dim=UP)
            with v1.variable_scope(outer, reuse=True):
                outs[outer] = {
                    size: dcgan_generator(z_ph, None, False, C, upsample_dim=UP, output_size=size)
                    for size in SIZES
                }
        gen_vars = generator_variables("generator")
        teacher_vars = generator_variables("teacher")
        assert len(gen_vars) == len(teacher_vars) == 26
        ema = v1.train.ExponentialMovingAverage(0.999)
        trainable = [v for v in gen_vars if v.trainable]
        ema_op = ema.apply(trainable)
        shadows = [ema.average(v) for v in trainable]
        assert names(shadows)[0].endswith("/ExponentialMovingAverage")
        others = [v for v in v1.global_variables() if v not in gen_vars + teacher_vars + shadows]
        assert global_step in others and len(others) == 2
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            sess.run(ema_op)
            randomise(sess, v1.global_variables(), rng)
            refs["plain"] = inference_outputs(sess, z_ph, outs["generator"], z)
            refs["teacher"] = inference_outputs(sess, z_ph, outs["teacher"], z)
            paths = {}
            for name, var_list in [
                ("plain", gen_vars + others),
                ("ema", gen_vars + others + shadows),
                ("two", gen_vars + teacher_vars + others),
            ]:
                os.makedirs(root / name)
                paths[name] = v1.train.Saver(var_list).save(
                    sess, str(root / name / "model.ckpt"), global_step=100
                )
            # The EMA reference: the same network with the shadow values.
            sess.run([v.assign(s) for v, s in zip(trainable, shadows, strict=True)])
            refs["ema"] = inference_outputs(sess, z_ph, outs["generator"], z)
    assert not np.allclose(refs["plain"][SIZES[0]], refs["ema"][SIZES[0]])
    assert not np.allclose(refs["plain"][SIZES[0]], refs["teacher"][SIZES[0]])
    return types.SimpleNamespace(root=root, paths=paths, z=z, refs=refs)


def load_outputs(trained, checkpoint, **kwargs):
    with tf.Graph().as_default():
        z_ph = v1.placeholder(tf.float32, [None, NOISE_DIM])
        with v1.variable_scope("other/scope"):
            outs = {
                size: dcgan_generator(
                    z_ph, None, False, C, reuse=v1.AUTO_REUSE, upsample_dim=UP, output_size=size
                )
                for size in SIZES
            }
        with v1.Session() as sess:
            # No initializer: loading must fill every generator variable.
            restored = load_generator_weights(sess, checkpoint, **kwargs)
            assert sess.run(v1.report_uninitialized_variables()).size == 0
            return restored, inference_outputs(sess, z_ph, outs, trained.z)


def assert_same(outputs, reference):
    for size in SIZES:
        assert outputs[size].shape == (3, *size, C)
        np.testing.assert_allclose(outputs[size], reference[size], atol=1e-5)


# --- load_generator_weights ----------------------------------------------------


def test_load_into_other_scope_reproduces_outputs(trained):
    restored, outputs = load_outputs(trained, trained.paths["plain"])
    assert_same(outputs, trained.refs["plain"])
    assert len(restored) == 26
    assert (
        restored[f"other/scope/{SCOPE}/upsample2/BatchNorm/moving_mean"]
        == f"generator/{SCOPE}/upsample2/BatchNorm/moving_mean"
    )
    assert all(v.startswith(f"generator/{SCOPE}/") for v in restored.values())


def test_load_from_run_directory(trained):
    _, outputs = load_outputs(trained, os.path.dirname(trained.paths["plain"]))
    assert_same(outputs, trained.refs["plain"])


def test_load_prefers_ema_weights(trained):
    restored, outputs = load_outputs(trained, trained.paths["ema"])
    assert_same(outputs, trained.refs["ema"])
    assert (
        restored[f"other/scope/{SCOPE}/fc1/weights"]
        == f"generator/{SCOPE}/fc1/weights/ExponentialMovingAverage"
    )
    # Moving statistics have no shadow: they come from the variables themselves.
    assert (
        restored[f"other/scope/{SCOPE}/fc1/BatchNorm/moving_mean"]
        == f"generator/{SCOPE}/fc1/BatchNorm/moving_mean"
    )


def test_load_from_an_int8_export(trained, tmp_path):
    """Shipped models store kernels as int8 with per-channel scales, the rest float16."""
    from compression.weights import SCALE_SUFFIX, dequantize_int8, is_quantized, quantize_int8

    source = trained.paths["plain"]
    stored = {}
    for name, _ in tf.train.list_variables(source):
        value = tf.train.load_variable(source, name)
        if is_quantized(value):
            stored[name], stored[name + SCALE_SUFFIX] = quantize_int8(value)
        else:
            stored[name] = value.astype(np.float16) if value.dtype == np.float32 else value
    with tf.Graph().as_default():
        variables = {k: tf.Variable(v) for k, v in stored.items()}
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            prefix = v1.train.Saver(var_list=variables).save(sess, str(tmp_path / "ckpt"))
    restored, outputs = load_outputs(trained, prefix)
    assert len(restored) == 26
    for size in SIZES:  # the int8 model's noise is close to the float one's
        np.testing.assert_allclose(outputs[size], trained.refs["plain"][size], atol=0.05)
    kernel = f"generator/{SCOPE}/fc1/weights"
    with tf.Graph().as_default():
        z_ph = v1.placeholder(tf.float32, [None, NOISE_DIM])
        with v1.variable_scope("other/scope"):
            dcgan_generator(z_ph, None, False, C, upsample_dim=UP)
        with v1.Session() as sess:
            load_generator_weights(sess, prefix)
            var, = [v for v in v1.global_variables()
                    if v.op.name == f"other/scope/{SCOPE}/fc1/weights"]
            loaded = sess.run(var)
    np.testing.assert_array_equal(
        loaded, dequantize_int8(stored[kernel], stored[kernel + SCALE_SUFFIX]))


def test_load_without_ema(trained):
    restored, outputs = load_outputs(trained, trained.paths["ema"], prefer_ema=False)
    assert_same(outputs, trained.refs["plain"])
    assert not any(name.endswith("ExponentialMovingAverage") for name in restored.values())


def test_load_with_different_c_raises(trained):
    with tf.Graph().as_default():
        dcgan_generator(tf.zeros([1, NOISE_DIM]), None, False, C + 1, upsample_dim=UP)
        with v1.Session() as sess:
            with pytest.raises(ValueError, match=r"shape mismatch.*conv_out"):
                load_generator_weights(sess, trained.paths["plain"])


def test_load_with_different_noise_dim_raises(trained):
    with tf.Graph().as_default():
        dcgan_generator(tf.zeros([1, NOISE_DIM + 1]), None, False, C, upsample_dim=UP)
        with v1.Session() as sess:
            with pytest.raises(ValueError, match=r"shape mismatch.*fc1/weights"):
                load_generator_weights(sess, trained.paths["plain"])


def test_two_generators_need_checkpoint_scope(trained):
    with pytest.raises(ValueError, match="checkpoint_scope"):
        load_outputs(trained, trained.paths["two"])
    _, outputs = load_outputs(trained, trained.paths["two"], checkpoint_scope="generator")
    assert_same(outputs, trained.refs["plain"])
    _, outputs = load_outputs(trained, trained.paths["two"], checkpoint_scope="teacher/")
    assert_same(outputs, trained.refs["teacher"])
    with pytest.raises(ValueError, match="no noise generator variables"):
        load_outputs(trained, trained.paths["two"], checkpoint_scope="nowhere")


@pytest.mark.parametrize("count", [2, 3])
def test_load_fills_every_generator_in_the_graph(trained, count):
    """scope=None loads all generators (before, only the last one got the weights)."""
    with tf.Graph().as_default():
        z_ph = v1.placeholder(tf.float32, [None, NOISE_DIM])
        outs = []
        for i in range(count):
            with v1.variable_scope(f"copy{i}"):
                outs.append(dcgan_generator(z_ph, None, False, C, upsample_dim=UP))
        with v1.Session() as sess:
            restored = load_generator_weights(sess, trained.paths["ema"])
            assert sess.run(v1.report_uninitialized_variables()).size == 0
            values = sess.run(outs, {z_ph: trained.z})
    assert len(restored) == 26 * count
    for value in values:
        np.testing.assert_allclose(value, trained.refs["ema"][(32, 64)], atol=1e-5)


def test_load_into_one_of_several_generators(trained):
    with tf.Graph().as_default():
        z_ph = v1.placeholder(tf.float32, [None, NOISE_DIM])
        outs = {}
        for outer in ("a", "b"):
            with v1.variable_scope(outer):
                outs[outer] = dcgan_generator(z_ph, None, False, C, upsample_dim=UP)
        with v1.Session() as sess:
            restored = load_generator_weights(sess, trained.paths["plain"], scope="a")
            assert all(name.startswith(f"a/{SCOPE}/") for name in restored)
            uninitialised = {n.decode() for n in sess.run(v1.report_uninitialized_variables())}
            assert uninitialised == set(names(generator_variables("b")))
            value = sess.run(outs["a"], {z_ph: trained.z})
    np.testing.assert_allclose(value, trained.refs["plain"][(32, 64)], atol=1e-5)


def test_load_into_training_graph_with_optimizer_and_ema(trained):
    # Warm-starting a generator inside a training graph: Adam slots and EMA
    # shadows live under generator/noise_generator/ too, but are not generator
    # weights and are not expected in the checkpoint.
    with tf.Graph().as_default():
        z_ph = v1.placeholder(tf.float32, [None, NOISE_DIM])
        with v1.variable_scope("generator"):
            train_out = dcgan_generator(z_ph, None, True, C, upsample_dim=UP)
        with v1.variable_scope("generator", reuse=True):
            infer_out = dcgan_generator(z_ph, None, False, C, upsample_dim=UP)
        v1.train.AdamOptimizer(1e-3).minimize(tf.reduce_mean(tf.square(train_out)))
        v1.train.ExponentialMovingAverage(0.99).apply(v1.trainable_variables())
        assert len(v1.global_variables()) > 26
        assert len(generator_variables()) == 26
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            restored = load_generator_weights(sess, trained.paths["plain"])
            value = sess.run(infer_out, {z_ph: trained.z})
    assert len(restored) == 26
    assert not [n for n in restored if n.endswith(("Adam", "Adam_1", "ExponentialMovingAverage"))]
    np.testing.assert_allclose(value, trained.refs["plain"][(32, 64)], atol=1e-5)


def test_missing_checkpoint_raises(trained, tmp_path):
    with tf.Graph().as_default():
        dcgan_generator(tf.zeros([1, NOISE_DIM]), None, False, C, upsample_dim=UP)
        with v1.Session() as sess:
            with pytest.raises(FileNotFoundError, match="not a checkpoint"):
                load_generator_weights(sess, str(tmp_path / "nothing" / "model.ckpt-1"))
            with pytest.raises(FileNotFoundError, match="no checkpoint"):
                load_generator_weights(sess, tmp_path)


def test_graph_without_generator_raises(trained):
    with tf.Graph().as_default():
        v1.get_variable("encoder/weights", [3])
        with v1.Session() as sess:
            with pytest.raises(ValueError, match="no noise generator"):
                load_generator_weights(sess, trained.paths["plain"])


def test_scope_without_generator_raises(trained):
    with tf.Graph().as_default():
        with v1.variable_scope("generator"):
            dcgan_generator(tf.zeros([1, NOISE_DIM]), None, False, C, upsample_dim=UP)
        with v1.Session() as sess:
            with pytest.raises(ValueError, match="under scope 'elsewhere'"):
                load_generator_weights(sess, trained.paths["plain"], scope="elsewhere")


# --- exports -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_model(trained):
    export_dir = str(trained.root / "exports" / "saved_model")
    hp = export_saved_model(trained.paths["plain"], export_dir)
    return export_dir, hp


@pytest.fixture(scope="module")
def frozen(trained):
    path = str(trained.root / "exports" / "generator.pb")
    hp = export_graph_def(trained.paths["plain"], path)
    return path, hp


@pytest.mark.parametrize("size", SIZES + [(5, 3)])
def test_saved_model_in_eager_matches_source(trained, saved_model, size):
    export_dir, hp = saved_model
    assert hp == HPARAMS
    fn = tf.saved_model.load(export_dir).signatures["serving_default"]
    result = fn(z=tf.constant(trained.z), height=tf.constant(size[0]), width=tf.constant(size[1]))
    noise = result["noise"].numpy()
    assert noise.shape == (3, *size, C)
    if size in trained.refs["plain"]:
        np.testing.assert_allclose(noise, trained.refs["plain"][size], atol=1e-5)
    else:
        assert np.all(np.isfinite(noise))


def test_saved_model_rows_are_independent(trained, saved_model):
    fn = tf.saved_model.load(saved_model[0]).signatures["serving_default"]
    size = {"height": tf.constant(32), "width": tf.constant(64)}
    one = fn(z=tf.constant(trained.z[:1]), **size)["noise"].numpy()
    np.testing.assert_allclose(one[0], trained.refs["plain"][(32, 64)][0], atol=1e-5)


def test_graph_def_import_matches_source(trained, frozen):
    path, hp = frozen
    assert hp == HPARAMS
    with open(path, "rb") as f:
        graph_def = v1.GraphDef.FromString(f.read())
    assert not [n for n in graph_def.node if n.op in ("VarHandleOp", "VariableV2")]
    with tf.Graph().as_default():
        my_z = v1.placeholder(tf.float32, [None, NOISE_DIM], name="my_z")
        (noise,) = v1.import_graph_def(
            graph_def, input_map={"z:0": my_z}, return_elements=["noise:0"], name="imported"
        )
        my_h = v1.placeholder(tf.int32, [])
        my_w = v1.placeholder(tf.int32, [])
        (odd,) = v1.import_graph_def(
            graph_def,
            input_map={"z:0": my_z, "height:0": my_h, "width:0": my_w},
            return_elements=["noise:0"],
            name="imported_odd",
        )
        assert v1.global_variables() == []
        with v1.Session() as sess:
            default = sess.run(noise, {my_z: trained.z})
            sized = sess.run(odd, {my_z: trained.z, my_h: 23, my_w: 37})
    np.testing.assert_allclose(default, trained.refs["plain"][(32, 64)], atol=1e-5)
    np.testing.assert_allclose(sized, trained.refs["plain"][(23, 37)], atol=1e-5)


def test_exports_use_ema_weights_when_present(trained, tmp_path):
    path = tmp_path / "ema.pb"
    export_graph_def(trained.paths["ema"], path)
    graph_def = v1.GraphDef.FromString(path.read_bytes())
    with tf.Graph().as_default():
        z = tf.constant(trained.z)
        (noise,) = v1.import_graph_def(graph_def, input_map={"z:0": z}, return_elements=["noise:0"])
        with v1.Session() as sess:
            value = sess.run(noise)
    np.testing.assert_allclose(value, trained.refs["ema"][(32, 64)], atol=1e-5)


def test_export_from_two_generator_checkpoint_needs_scope(trained, tmp_path):
    with pytest.raises(ValueError, match="checkpoint_scope"):
        export_graph_def(trained.paths["two"], tmp_path / "two.pb")
    assert not (tmp_path / "two.pb").exists()
    export_graph_def(trained.paths["two"], tmp_path / "teacher.pb", checkpoint_scope="teacher")
    graph_def = v1.GraphDef.FromString((tmp_path / "teacher.pb").read_bytes())
    with tf.Graph().as_default():
        (noise,) = v1.import_graph_def(
            graph_def, input_map={"z:0": tf.constant(trained.z)}, return_elements=["noise:0"]
        )
        with v1.Session() as sess:
            value = sess.run(noise)
    np.testing.assert_allclose(value, trained.refs["teacher"][(32, 64)], atol=1e-5)


def test_exports_refuse_to_overwrite(trained, saved_model, frozen, tmp_path):
    export_dir, _ = saved_model
    before = sorted(os.listdir(export_dir))
    with pytest.raises(FileExistsError, match="already exists"):
        export_saved_model(trained.paths["plain"], export_dir)
    assert sorted(os.listdir(export_dir)) == before
    path, _ = frozen
    content = open(path, "rb").read()
    with pytest.raises(FileExistsError, match="already exists"):
        export_graph_def(trained.paths["plain"], path)
    assert open(path, "rb").read() == content
    # An existing empty directory is not silently reused either.
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileExistsError):
        export_saved_model(trained.paths["plain"], empty)


def test_exports_missing_checkpoint_raise(tmp_path):
    with pytest.raises(FileNotFoundError):
        export_saved_model(tmp_path / "none" / "model.ckpt", tmp_path / "sm")
    with pytest.raises(FileNotFoundError):
        export_graph_def(tmp_path / "none" / "model.ckpt", tmp_path / "g.pb")
    assert not (tmp_path / "sm").exists() and not (tmp_path / "g.pb").exists()


def test_exports_overwrite_replaces_an_earlier_export(trained, tmp_path):
    export_dir, path = str(tmp_path / "sm"), str(tmp_path / "g.pb")
    export_saved_model(trained.paths["plain"], export_dir)
    export_graph_def(trained.paths["plain"], path)
    export_saved_model(trained.paths["ema"], export_dir, overwrite=True)
    fn = tf.saved_model.load(export_dir).signatures["serving_default"]
    value = fn(z=tf.constant(trained.z), height=tf.constant(32), width=tf.constant(64))["noise"]
    np.testing.assert_allclose(value.numpy(), trained.refs["ema"][(32, 64)], atol=1e-5)
    export_graph_def(trained.paths["ema"], path, overwrite=True)
    export_graph_def(trained.paths["ema"], path, overwrite=True)  # twice in a row
    graph_def = v1.GraphDef.FromString(open(path, "rb").read())
    with tf.Graph().as_default():
        (noise,) = v1.import_graph_def(
            graph_def, input_map={"z:0": tf.constant(trained.z)}, return_elements=["noise:0"])
        with v1.Session() as sess:
            np.testing.assert_allclose(sess.run(noise), trained.refs["ema"][(32, 64)],
                                       atol=1e-5)
    assert sorted(os.listdir(tmp_path)) == ["g.pb", "sm"]  # no staging debris


def test_exports_overwrite_never_replaces_other_data(trained, tmp_path):
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="not an earlier export"):
        export_saved_model(trained.paths["plain"], mine, overwrite=True)
    with pytest.raises(FileExistsError, match="not an earlier export"):
        export_graph_def(trained.paths["plain"], mine, overwrite=True)
    assert (mine / "holiday.jpg").read_bytes() == b"precious"
    assert sorted(os.listdir(tmp_path)) == ["photos"]
