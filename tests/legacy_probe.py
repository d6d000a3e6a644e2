"""Probe outputs of the checkpoints in ``tests/fixtures/legacy_*`` (see make_legacy_fixtures.py).

``probe(run_dir, inputs)`` builds every trained part of a model through the
public graph functions (encoder, noise generator in both modes, semantic
branch, decoder, multiscale discriminator) in a fresh graph, restores the
run's checkpoint and returns the outputs.  The fixtures were written, and
their reference outputs computed, by this same function on the code before
the layers moved to tf-slim, so the compatibility tests compare old and new
implementations on the same weights.
"""

import json
import os

import numpy as np
import tensorflow as tf

from compression.config import CompressionConfig
from compression.discriminator import multiscale_discriminator
from compression.model import GENERATOR_SCOPE, encode, synthesize
from compression.semantic import one_hot_labels
from noisegen import dcgan_generator

v1 = tf.compat.v1

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def make_inputs(config, seed=0):
    """Deterministic probe inputs for ``config``: two 32x48 images, z, labels."""
    rng = np.random.default_rng(seed)
    inputs = {
        "images": rng.uniform(-1, 1, (2, 32, 48, 3)).astype(np.float32),
        "z": rng.standard_normal((2, config.noise_dim)).astype(np.float32),
    }
    if config.semantic_classes:
        inputs["labels"] = rng.integers(0, config.semantic_classes, (2, 32, 48)).astype(np.int32)
    return inputs


def probe(run_dir, inputs):
    """``{name: array}`` of every part's output for ``inputs`` under ``run_dir``'s weights."""
    config = CompressionConfig.load(os.path.join(run_dir, "config.json"))
    with open(os.path.join(run_dir, "checkpoint_name.json")) as f:
        prefix = os.path.join(run_dir, json.load(f)["prefix"])
    graph = tf.Graph()
    with graph.as_default():
        images = tf.constant(inputs["images"])
        z = tf.constant(inputs["z"])
        one_hot = (one_hot_labels(tf.constant(inputs["labels"]), config.semantic_classes)
                   if config.semantic_classes else None)
        w, q = encode(images, config)
        fetches = {"w": w, "w_hat": q.w_hat}
        for mode, training in (("infer", False), ("train", True)):
            recon, noise = synthesize(q.w_hat, config, training, z=z, labels_one_hot=one_hot)
            fetches[f"reconstruction_{mode}"] = recon
            fetches[f"noise_{mode}"] = noise
        with v1.variable_scope(GENERATOR_SCOPE, reuse=True):
            # Another bottleneck size through the same variables (resampled grid, crop).
            fetches["noise_odd_size"] = dcgan_generator(
                z, config, False, config.channels, reuse=True, output_size=(3, 5))
        for s, out in enumerate(multiscale_discriminator(images, config, one_hot)):
            fetches[f"d_logits_{s}"] = out.logits
            fetches[f"d_features_{s}_last"] = out.features[-1]
        variables = {v.name.split(":")[0]: v for v in v1.global_variables()}
        with v1.Session() as sess:
            # Training mode updates the moving statistics: restore, then fetch
            # the inference outputs before any training-mode fetch.
            v1.train.Saver(var_list=variables).restore(sess, prefix)
            infer = {k: v for k, v in fetches.items() if not k.endswith("_train")}
            out = sess.run(infer)
            out.update(sess.run({k: v for k, v in fetches.items() if k.endswith("_train")}))
    return {k: np.asarray(v) for k, v in out.items()}
