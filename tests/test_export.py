"""compression.export / ``gcompress export``: inference-only weights that load like a run."""

import json
import os

import numpy as np
import pytest

from compression.cli import main
from compression.codec import decode, encode
from compression.errors import CompressionError, ModelLoadError, ModelMismatchError
from compression.export import export_model
from compression.image_io import pad_to_multiple, to_float
from compression.inference import load_model


def _image():
    return np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)


def test_float32_export_is_the_same_model(tiny_run, tiny_model, tmp_path):
    card = export_model(tiny_run, tmp_path / "m32", dtype="float32")
    assert card["fingerprint"] == card["source_fingerprint"] == tiny_model.fingerprint.hex()
    with load_model(tmp_path / "m32") as exported:
        data = encode(tiny_model, _image(), seed=3)
        assert encode(exported, _image(), seed=3) == data  # byte-identical files
        np.testing.assert_array_equal(decode(exported, data), decode(tiny_model, data))
    # Only inference weights: no optimiser moments, no discriminator.
    checkpoint = os.path.join(tmp_path / "m32", f"ckpt-{card['step']}.data-00000-of-00001")
    trained = [f for f in os.listdir(tiny_run) if f.endswith(".data-00000-of-00001")][0]
    assert os.path.getsize(checkpoint) < os.path.getsize(os.path.join(tiny_run, trained)) / 2


def test_float16_export_halves_the_weights_and_is_another_model(tiny_run, tiny_model,
                                                                tmp_path, capsys):
    assert main(["export", str(tiny_run), str(tmp_path / "m16")]) == 0
    assert "float16 weights" in capsys.readouterr().out
    card = json.loads((tmp_path / "m16" / "card.json").read_text())
    assert card["dtype"] == "float16" and card["fingerprint"] != card["source_fingerprint"]
    with load_model(tmp_path / "m16") as exported:
        image = _image()
        # float16 rounding only: the decoders agree on the same symbols, and the
        # encoders on nearly every symbol (one that sat on a decision boundary
        # may flip, and then the whole picture around it changes; seen with the
        # barely trained tiny model, so the images are not compared end to end).
        padded = to_float(pad_to_multiple(image, 16)[0])
        symbols = tiny_model.encode(padded)
        assert np.mean(exported.encode(padded) == symbols) > 0.95
        ours = exported.decode(symbols, seed=5, as_uint8=True)
        theirs = tiny_model.decode(symbols, seed=5, as_uint8=True)
        assert np.abs(ours.astype(int) - theirs).mean() < 2
        with pytest.raises(ModelMismatchError):  # files name the model that wrote them
            decode(exported, encode(tiny_model, image))
    with pytest.raises(CompressionError, match="not empty"):
        export_model(tiny_run, tmp_path / "m16")
    with pytest.raises(CompressionError, match="dtype"):
        export_model(tiny_run, tmp_path / "other", dtype="int4")


def test_int8_export_quarters_the_kernels_and_decodes_alike(tiny_run, tiny_model, tmp_path):
    card32 = export_model(tiny_run, tmp_path / "m32", dtype="float32")
    card8 = export_model(tiny_run, tmp_path / "m8", dtype="int8")
    assert card8["dtype"] == "int8" and card8["fingerprint"] != card8["source_fingerprint"]
    assert card8["parameters"] == card32["parameters"]
    assert card8["weights_bytes"] < card32["weights_bytes"] * 0.3
    with load_model(tmp_path / "m8") as exported:
        padded = to_float(pad_to_multiple(_image(), 16)[0])
        symbols = tiny_model.encode(padded)
        assert np.mean(exported.encode(padded) == symbols) > 0.9
        ours = exported.decode(symbols, seed=5, as_uint8=True)
        theirs = tiny_model.decode(symbols, seed=5, as_uint8=True)
        assert np.abs(ours.astype(int) - theirs).mean() < 3
        data = encode(exported, _image(), seed=1)
        assert decode(exported, data).shape == _image().shape


def test_int8_export_without_its_scales_is_a_clear_load_error(tiny_run, tmp_path):
    import tensorflow as tf

    export_model(tiny_run, tmp_path / "m8", dtype="int8")
    prefix = tf.train.latest_checkpoint(str(tmp_path / "m8"))
    reader = tf.train.load_checkpoint(prefix)
    kept = {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            if not k.endswith("/int8_scale")}
    with tf.Graph().as_default():
        variables = {k: tf.compat.v1.Variable(v, trainable=False) for k, v in kept.items()}
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver(var_list=variables).save(sess, prefix,
                                                              write_meta_graph=False)
    with pytest.raises(ModelLoadError, match="without its scales"):
        load_model(tmp_path / "m8")
