"""Checkpoints written before the layers moved to tf-slim load and give the same outputs.

``tests/fixtures/legacy_{plain,semantic}`` were trained with the hand-written
layers (see ``tests/fixtures/make_legacy_fixtures.py``) and hold reference
outputs of every part computed then.  The training graph built today must
have exactly their variables (names and shapes), and the same weights must
give the same outputs, the same ``.gcz`` bytes and the same decoded image.
"""

import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf
from legacy_probe import FIXTURES, probe

import compression
from compression.codec import default_seed
from compression.config import CompressionConfig
from compression.correction import apply_correction
from compression.model import build_training_graph

v1 = tf.compat.v1

RUNS = ["legacy_plain", "legacy_semantic"]


def reference(name):
    return dict(np.load(os.path.join(FIXTURES, name, "reference.npz")))


@pytest.mark.parametrize("name", RUNS)
def test_training_graph_has_exactly_the_checkpoint_variables(name):
    run_dir = os.path.join(FIXTURES, name)
    config = CompressionConfig.load(os.path.join(run_dir, "config.json"))
    stored = {n: s for n, s in tf.train.list_variables(tf.train.latest_checkpoint(run_dir))
              if not n.endswith("/ExponentialMovingAverage")}
    with tf.Graph().as_default():
        images = tf.zeros([config.batch_size, config.crop_height, config.crop_width, 3])
        labels = (tf.zeros([config.batch_size, config.crop_height, config.crop_width], tf.int32)
                  if config.semantic_classes else None)
        build_training_graph(images, config, labels=labels)
        built = {v.name.split(":")[0]: v.shape.as_list() for v in v1.global_variables()
                 if "adam" not in v.name.lower() and "ExponentialMovingAverage" not in v.name}
    assert len(built) > 100
    assert built == stored


@pytest.mark.parametrize("name", RUNS)
def test_every_part_gives_the_old_outputs(name):
    ref = reference(name)
    inputs = {k[len("input_"):]: v for k, v in ref.items() if k.startswith("input_")}
    outputs = probe(os.path.join(FIXTURES, name), inputs)
    assert set(outputs) == {k for k in ref if not k.startswith("input_")} - {"gcz", "decoded"}
    for key, value in outputs.items():
        # Quantised values and symbol-level results must match exactly.
        atol = 0.0 if key == "w_hat" else 1e-4
        np.testing.assert_allclose(value, ref[key], atol=atol, rtol=0, err_msg=key)


def test_old_run_directory_codes_the_same_file_and_image():
    ref = reference("legacy_plain")
    with compression.load_model(os.path.join(FIXTURES, "legacy_plain")) as model:
        assert model.uses_ema
        image = ((ref["input_images"][0] + 1) * 127.5).astype(np.uint8)
        # Files are now version 2 and carry the model's name; in version 1's
        # layout, without the name, the old file byte for byte.
        data = compression.encode(model, image)
        header, payload = compression.unpack(data)
        assert header.model_name == "legacy_plain" and header.version == 2
        old_header, _ = compression.unpack(ref["gcz"].tobytes())
        symbols = compression.read_symbols(model, data)[1]
        assert header.seed is None and default_seed(symbols) == old_header.seed
        as_v1 = dataclasses.replace(header, model_name="", flags=0, version=1,
                                    fingerprint=model.fingerprint, seed=old_header.seed,
                                    correction=None)
        assert compression.pack(as_v1, payload) == ref["gcz"].tobytes()
        # The old file decodes as it did, and the new one to the same image, which
        # it then corrects with the colour correction it carries.
        np.testing.assert_array_equal(compression.decode(model, ref["gcz"].tobytes()),
                                      ref["decoded"])
        np.testing.assert_array_equal(compression.decode(model, data),
                                      apply_correction(ref["decoded"], header.correction))
