"""compression.export / ``gcompress export``: inference-only weights that load like a run."""

import dataclasses
import json
import os

import numpy as np
import pytest

from compression.cli import main
from compression.codec import decode, encode
from compression.errors import (
    CompressionError,
    CorruptFileError,
    ModelLoadError,
    ModelMismatchError,
)
from compression.export import export_model
from compression.image_io import pad_to_multiple, to_float
from compression.inference import load_model


def _rewrite_checkpoint(model_dir, change):
    """Replace the tensors of ``model_dir``'s checkpoint by ``change({key: array})``."""
    import tensorflow as tf

    prefix = tf.train.latest_checkpoint(str(model_dir))
    reader = tf.train.load_checkpoint(prefix)
    tensors = change({k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()})
    with tf.Graph().as_default():
        variables = {k: tf.compat.v1.Variable(v, trainable=False) for k, v in tensors.items()}
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver(var_list=variables).save(sess, prefix,
                                                              write_meta_graph=False)


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
    export_model(tiny_run, tmp_path / "m8", dtype="int8")
    _rewrite_checkpoint(tmp_path / "m8", lambda tensors: {
        k: v for k, v in tensors.items() if not k.endswith("/int8_scale")})
    with pytest.raises(ModelLoadError, match="without its scales"):
        load_model(tmp_path / "m8")


def _train_images(tiny_data):
    from compression.data import find_examples

    return [ex.image_path for ex in find_examples(tiny_data, "train")]


@pytest.fixture(scope="module")
def context_export(tiny_run, tiny_data, tmp_path_factory):
    """TINY exported (float32) with its entropy model refitted on its training images."""
    out = tmp_path_factory.mktemp("context") / "model"
    card = export_model(tiny_run, out, dtype="float32", entropy_data=_train_images(tiny_data),
                        context_net_steps=0)
    return out, card


def test_entropy_data_fits_histogram_and_context_counts(context_export, tiny_model, tiny_data):
    from compression.context_model import context_size
    from compression.image_io import read_image

    out, card = context_export
    assert card["entropy_data"] == {"images": 6, "skipped": 0, "context_model": True,
                                    "context_net_steps": 0}
    # The weights are the run's, the entropy model is new: another fingerprint.
    assert card["fingerprint"] != card["source_fingerprint"] == tiny_model.fingerprint.hex()
    images = [read_image(p) for p in _train_images(tiny_data)]
    with load_model(out) as model:
        cells = sum(np.prod(pad_to_multiple(im, 16)[0].shape[:2]) // 256 for im in images)
        assert model.context_counts.shape == (4, context_size(5), 5)
        assert model.context_counts.sum() == cells * 4
        counts = np.stack([np.bincount(model.encode(to_float(pad_to_multiple(im, 16)[0]))[
            :, :, c].ravel(), minlength=5) for im in images for c in range(4)])
        np.testing.assert_array_equal(model.inference_weights()["entropy_model/symbol_counts"],
                                      counts.reshape(len(images), 4, 5).sum(axis=0))


def test_the_writer_keeps_the_shorter_stream_and_context_files_decode(context_export,
                                                                     tiny_data):
    from compression import bitstream
    from compression.codec import encode_image, file_stats, read_symbols
    from compression.context_model import encode_symbols_in_context
    from compression.entropy_model import encode_symbols
    from compression.image_io import read_image

    out, _ = context_export
    image = np.tile(read_image(_train_images(tiny_data)[0]), (2, 2, 1))  # 128x256
    with load_model(out) as model:
        result = encode_image(model, image, seed=2)
        header, payload = bitstream.unpack(result.data)
        symbols = model.encode(to_float(image))
        contextual = encode_symbols_in_context(symbols, model.context_table)
        per_channel = encode_symbols(symbols, model.probabilities)
        in_context = len(contextual) < len(per_channel)
        assert bool(header.flags & bitstream.FLAG_CONTEXT_CODED) == in_context
        assert payload == (contextual if in_context else per_channel)
        # A context-coded file (whichever this barely trained model's writer chose)
        # decodes to exactly its symbols, through the whole decoder.
        flagged = dataclasses.replace(header, flags=header.flags | bitstream.FLAG_CONTEXT_CODED)
        data = bitstream.pack(flagged, contextual)
        np.testing.assert_array_equal(read_symbols(model, data)[1], symbols)
        assert file_stats(data)["entropy"] == "context"
        assert decode(model, data).shape == image.shape
        # The flag decides the coder: read without it, the context-coded stream is
        # refused, or read as other symbols (a range decoder reads most streams as
        # some symbols, and the re-encoding check passes when they code to it).
        plain = dataclasses.replace(header, flags=header.flags & ~bitstream.FLAG_CONTEXT_CODED)
        try:
            misread = read_symbols(model, bitstream.pack(plain, contextual))[1]
        except CorruptFileError:
            pass
        else:
            assert not np.array_equal(misread, symbols)


def test_reexport_keeps_the_context_model(context_export, tmp_path):
    out, card = context_export
    again = export_model(out, tmp_path / "again", dtype="float32")
    assert "entropy_data" not in again
    assert again["fingerprint"] == card["fingerprint"]


def test_entropy_data_skips_unreadable_images_and_needs_one(tiny_run, tiny_data, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    card = export_model(tiny_run, tmp_path / "m", dtype="float32",
                        entropy_data=[str(broken)] + _train_images(tiny_data)[:1],
                        context_net_steps=0)
    assert card["entropy_data"]["images"] == 1 and card["entropy_data"]["skipped"] == 1
    with pytest.raises(CompressionError, match="could be read"):
        export_model(tiny_run, tmp_path / "n", dtype="float32", entropy_data=[str(broken)])
    with pytest.raises(CompressionError, match="empty"):
        export_model(tiny_run, tmp_path / "o", dtype="float32", entropy_data=[])


def test_damaged_context_counts_are_a_clear_load_error(context_export, tmp_path):
    import shutil

    out, _ = context_export
    shutil.copytree(out, tmp_path / "m")
    key = "entropy_model/context_counts"
    _rewrite_checkpoint(tmp_path / "m", lambda tensors: {**tensors, key: -tensors[key]})
    with pytest.raises(ModelLoadError, match="context counts"):
        load_model(tmp_path / "m")


def test_cli_entropy_data_checks_its_directory(tiny_run, tiny_data, tmp_path, capsys):
    assert main(["export", str(tiny_run), str(tmp_path / "x"), "--entropy-data",
                 str(tmp_path / "missing")]) == 2
    assert "--entropy-data" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert main(["export", str(tiny_run), str(tmp_path / "y"), "--dtype", "float32",
                 "--entropy-data", str(tiny_data), "--context-net-steps", "40"]) == 0
    assert "entropy model fitted on 6 images; context net 40 steps" in capsys.readouterr().out
    with load_model(tmp_path / "y") as model:
        assert model.context_net is not None


@pytest.mark.parametrize("args, message", [
    (["--context-net-steps", "-1"], "steps >= 0"),
    (["--context-net-steps", "10"], "give --entropy-data DIR too"),
])
def test_cli_context_net_steps_are_checked_first(tiny_run, tmp_path, capsys, args, message):
    assert main(["export", str(tiny_run), str(tmp_path / "z"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "z").exists()
