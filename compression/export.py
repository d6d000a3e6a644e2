"""Inference-only export of a trained run: the weights that encode and decode, nothing else.

A training checkpoint holds the optimiser's moments, the discriminator and
the raw decoder weights beside their averages (247 MB at width 0.25).  What
coding needs is the encoder (raw: the entropy model is the histogram of its
symbols), the noise generator and the decoder (their EMA averages when the
run kept them, as :func:`compression.inference.load_model` would load) and
the symbol histogram.  :func:`export_model` writes those, optionally as
float16, with the config and a model card, as a directory that
:func:`~compression.inference.load_model` and ``gcompress --model`` load
like a run directory.

float16 rounds the weights, so an exported model is a (very slightly)
different model: its fingerprint differs from the run's, and files must be
decoded with the model that encoded them.  ``dtype="float32"`` keeps the
weights and the fingerprint exactly; ``dtype="int8"`` stores kernels in 8 bits
(:mod:`compression.weights`), a quarter of float32, for the shipped models.
"""

import datetime
import json
import os

import numpy as np

from compression.errors import CompressionError
from compression.files import write_atomic
from compression.inference import CARD_NAME, CONFIG_NAME, checkpoint_step, load_model
from compression.weights import SCALE_SUFFIX, is_quantized, quantize_int8

__all__ = ["export_model", "CARD_NAME", "DTYPES"]
#: Storage of the float weights; int8 keeps biases and norm parameters in float16.
DTYPES = {"float16": np.float16, "float32": np.float32, "int8": np.float16}


def _stored(values, dtype):
    """``{checkpoint key: array}`` of inference ``values`` stored as ``dtype``."""
    stored = {}
    for name, value in values.items():
        if dtype == "int8" and is_quantized(value):
            stored[name], stored[name + SCALE_SUFFIX] = quantize_int8(value)
        elif value.dtype == np.float32:
            stored[name] = value.astype(DTYPES[dtype])
        else:  # the histogram stays float64
            stored[name] = value
    return stored


def export_model(run, out_dir, dtype="float16", overwrite=False, card=None):
    """Write the inference weights of ``run`` (run directory or checkpoint) to ``out_dir``.

    ``out_dir`` gets ``config.json``, a checkpoint ``ckpt-<step>`` with one
    tensor per inference variable (float weights in ``dtype``, int8 kernels
    with their scales beside them; the histogram stays float64) and
    ``card.json``: source, step, dtype, parameter count, size, the
    fingerprint and the ``name`` files will carry (the source's: see
    :func:`~compression.inference.model_name`), plus the fields of ``card``
    (a dict, e.g. data, validation figures or another ``name``).
    Returns the card.

    Raises:
        CompressionError: ``out_dir`` exists and is not empty (without
            ``overwrite``), or an unknown ``dtype``.
        ModelLoadError: ``run`` cannot be loaded.
    """
    import tensorflow as tf

    if dtype not in DTYPES:
        raise CompressionError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise CompressionError(f"{out_dir} exists and is not a directory")
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
        raise CompressionError(f"{out_dir} is not empty; choose a new directory or pass --force")
    with load_model(run) as model:
        values = model.inference_weights()
        config = model.config
        source, fingerprint, name = model.checkpoint, model.fingerprint.hex(), model.name
    step = max(checkpoint_step(source), 0)
    stored = _stored(values, dtype)
    os.makedirs(out_dir, exist_ok=True)
    config.save(os.path.join(out_dir, CONFIG_NAME))
    variables = {name: tf.Variable(value, trainable=False) for name, value in stored.items()}
    prefix = tf.compat.v1.train.Saver(var_list=variables, save_relative_paths=True).save(
        None, os.path.join(out_dir, "ckpt"), global_step=step, write_meta_graph=False)
    size = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir)
               if f.startswith(os.path.basename(prefix)))
    parameters = int(sum(v.size for k, v in values.items() if v.dtype == np.float32))
    exported = {
        "format": "gcompress-export", "version": 1,
        "source": os.path.abspath(source), "step": step, "dtype": dtype,
        "parameters": parameters, "weights_bytes": size,
        "source_fingerprint": fingerprint, "name": name,
        "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **(card or {}),
    }
    with load_model(out_dir) as reloaded:
        exported["fingerprint"] = reloaded.fingerprint.hex()
    write_atomic(os.path.join(out_dir, CARD_NAME), json.dumps(exported, indent=2) + "\n",
                 overwrite=True)
    return exported

