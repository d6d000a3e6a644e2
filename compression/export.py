"""Inference-only export of a trained run: the weights that encode and decode, nothing else.

A training checkpoint holds the optimiser's moments, the discriminator and
the raw decoder weights beside their averages (247 MB at width 0.25).  What
coding needs is the encoder (raw: the entropy model is the histogram of its
symbols), the noise generator and the decoder (their EMA averages when the
run kept them, as :func:`compression.inference.load_model` would load) and
the symbol histogram.  With ``entropy_data`` it refits the entropy model
on those images instead, whole and as the exported weights code them: the
per-channel histogram and the context counts of
:mod:`compression.context_model` (payloads 11-21% smaller on the shipped
models).  :func:`export_model` writes those, optionally as
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
import math
import os

import numpy as np

from compression.config import DOWNSAMPLING
from compression.context_model import MAX_CONTEXT_CENTERS, context_counts
from compression.context_net import FIT_STEPS, fit_context_net
from compression.context_net import KEY_PREFIX as CONTEXT_NET_PREFIX
from compression.errors import CompressionError, ImageReadError
from compression.files import write_atomic
from compression.gain import POSITION_LEVELS, position_from_byte
from compression.image_io import pad_to_multiple, read_image, to_float
from compression.inference import (
    CARD_NAME,
    CONFIG_NAME,
    CONTEXT_COUNTS_KEY,
    checkpoint_step,
    load_model,
)
from compression.weights import SCALE_SUFFIX, is_quantized, quantize_int8

__all__ = ["export_model", "fit_entropy_model", "CARD_NAME", "CONTEXT_NET_STEPS", "DTYPES"]
#: Checkpoint key of the per-channel histogram (:func:`compression.model.symbol_counts_variable`).
_HISTOGRAM_KEY = "entropy_model/symbol_counts"
#: Storage of the float weights; int8 keeps biases and norm parameters in float16.
DTYPES = {"float16": np.float16, "float32": np.float32, "int8": np.float16}
#: Default training steps of the learned context model fitted with ``entropy_data``.
CONTEXT_NET_STEPS = FIT_STEPS


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


def fit_entropy_model(model, image_paths, log=None, maps=None, rates=None):
    """Count the symbols ``model`` codes ``image_paths`` to: its entropy statistics.

    Each image is coded whole (reflect-padded to a multiple of 16, as the
    codec does).  Unreadable images are skipped and counted.  ``maps``: a
    list that gets every image's symbol map ``[h, w, C]`` (int8), to fit a
    :class:`~compression.context_net.ContextNet` on.  A rate-adaptive
    model's files code at any rate position (:mod:`compression.gain`), so
    image ``i`` is coded at position ``frac(i * 0.618...)`` of its range (a
    low-discrepancy sequence: any run of images spreads over the range) and
    the statistics are those of every rate alike; ``rates`` (a list) gets
    each map's rate-position byte.

    Returns:
        ``(histogram [C, L], context counts [C, K, L] or None, images used,
        images skipped)``; the context counts are None for models with more
        than :data:`~compression.context_model.MAX_CONTEXT_CENTERS` centres.

    Raises:
        CompressionError: no image could be read.
    """
    cfg = model.config
    in_context = cfg.num_centers <= MAX_CONTEXT_CENTERS
    histogram = np.zeros((cfg.channels, cfg.num_centers), np.float64)
    contexts, used, skipped = None, 0, []
    for i, path in enumerate(image_paths):
        try:
            image = read_image(path)
        except ImageReadError as e:
            skipped.append(str(e))
            continue
        byte = _spread_byte(cfg, i)
        symbols = model.encode(to_float(pad_to_multiple(image, DOWNSAMPLING)[0]),
                               None if byte is None else position_from_byte(byte, cfg))
        histogram += np.stack([np.bincount(symbols[:, :, c].ravel(), minlength=cfg.num_centers)
                               for c in range(cfg.channels)])
        if maps is not None:
            maps.append(symbols.astype(np.int8))
        if rates is not None:
            rates.append(byte)
        if in_context:
            counts = context_counts(symbols, cfg.num_centers)
            contexts = counts if contexts is None else contexts + counts
        used += 1
        if log and (i + 1) % 100 == 0:
            log(f"entropy model: {i + 1} of {len(image_paths)} images counted")
    if not used:
        raise CompressionError(f"none of the {len(image_paths)} entropy-data images could be "
                               f"read (first: {skipped[0] if skipped else 'none given'})")
    return histogram, contexts, used, skipped


def _spread_byte(config, index):
    """The rate-position byte :func:`fit_entropy_model` codes image ``index`` at (None: the
    model has one rate)."""
    if not config.rate_adaptive:
        return None
    golden = (math.sqrt(5.0) - 1.0) / 2.0
    return round((index * golden) % 1.0 * POSITION_LEVELS)


def _save(stored, out_dir, step):
    """Write ``stored`` as the checkpoint ``out_dir/ckpt-<step>``; returns its prefix."""
    import tensorflow as tf

    with tf.Graph().as_default():
        variables = {name: tf.Variable(value, trainable=False) for name, value in stored.items()}
        saver = tf.compat.v1.train.Saver(var_list=variables, save_relative_paths=True)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.variables_initializer(list(variables.values())))
            return saver.save(sess, os.path.join(out_dir, "ckpt"), global_step=step,
                              write_meta_graph=False)


def export_model(run, out_dir, dtype="float16", overwrite=False, card=None,
                 entropy_data=None, log=None, context_net_steps=CONTEXT_NET_STEPS):
    """Write the inference weights of ``run`` (run directory or checkpoint) to ``out_dir``.

    ``out_dir`` gets ``config.json``, a checkpoint ``ckpt-<step>`` with one
    tensor per inference variable (float weights in ``dtype``, int8 kernels
    with their scales beside them; the histogram stays float64) and
    ``card.json``: source, step, dtype, parameter count, size, the
    fingerprint and the ``name`` files will carry (the source's: see
    :func:`~compression.inference.model_name`), plus the fields of ``card``
    (a dict, e.g. data, validation figures or another ``name``).

    ``entropy_data``: image paths to refit the entropy model on
    (:func:`fit_entropy_model`, with the exported weights); the card records
    how many.  With it, and ``context_net_steps`` > 0, a learned context
    model (:func:`~compression.context_net.fit_context_net`, that many steps,
    a few minutes on 2 cores for the default) is fitted on those images'
    symbols too, and the model codes in context with it.  Without
    ``entropy_data`` the source's statistics are kept, context counts and
    net included when it has them.  Returns the card.

    Raises:
        CompressionError: ``out_dir`` exists and is not empty (without
            ``overwrite``), an unknown ``dtype``, or no readable entropy-data image.
        ModelLoadError: ``run`` cannot be loaded.
    """
    if dtype not in DTYPES:
        raise CompressionError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise CompressionError(f"{out_dir} exists and is not a directory")
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
        raise CompressionError(f"{out_dir} is not empty; choose a new directory or pass --force")
    if entropy_data is not None and not len(entropy_data):
        raise CompressionError("entropy_data is empty: give the images to fit the entropy "
                               "model on, or None to keep the source's")
    with load_model(run) as model:
        values = model.inference_weights()
        config = model.config
        source, fingerprint, name = model.checkpoint, model.fingerprint.hex(), model.name
        source_contexts = model.context_counts
        source_net = model.context_net
    step = max(checkpoint_step(source), 0)
    stored = _stored(values, dtype)
    if source_contexts is not None:
        stored[CONTEXT_COUNTS_KEY] = source_contexts.astype(np.float32)
    if source_net is not None:
        stored.update(source_net.arrays())
    os.makedirs(out_dir, exist_ok=True)
    config.save(os.path.join(out_dir, CONFIG_NAME))
    prefix = _save(stored, out_dir, step)
    fitted = {}
    if entropy_data is not None:
        # Fitted with the weights as exported: int8 kernels code slightly other symbols.
        maps = [] if context_net_steps else None
        rates = [] if context_net_steps and config.rate_adaptive else None
        with load_model(out_dir) as exported_model:
            histogram, contexts, used, skipped = fit_entropy_model(exported_model,
                                                                   entropy_data, log, maps, rates)
        stored[_HISTOGRAM_KEY] = histogram
        stored = {k: v for k, v in stored.items()
                  if k != CONTEXT_COUNTS_KEY and not k.startswith(CONTEXT_NET_PREFIX)}
        if contexts is not None:
            # Counts of whole images stay below 2**24, exact in float32 (half the bytes).
            stored[CONTEXT_COUNTS_KEY] = contexts.astype(np.float32)
        if maps:
            # A rate-adaptive model's net conditions on the file's rate position.
            stored.update(fit_context_net(maps, config.num_centers, steps=context_net_steps,
                                          log=log, rates=rates).arrays())
        prefix = _save(stored, out_dir, step)
        fitted = {"entropy_data": {"images": used, "skipped": len(skipped),
                                   "context_model": contexts is not None,
                                   "context_net_steps": context_net_steps if maps else 0}}
    size = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir)
               if f.startswith(os.path.basename(prefix)))
    parameters = int(sum(v.size for k, v in values.items() if v.dtype == np.float32))
    exported = {
        "format": "gcompress-export", "version": 1,
        "source": os.path.abspath(source), "step": step, "dtype": dtype,
        "parameters": parameters, "weights_bytes": size,
        "source_fingerprint": fingerprint, "name": name,
        "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **fitted,
        **(card or {}),
    }
    with load_model(out_dir) as reloaded:
        exported["fingerprint"] = reloaded.fingerprint.hex()
    write_atomic(os.path.join(out_dir, CARD_NAME), json.dumps(exported, indent=2) + "\n",
                 overwrite=True)
    return exported
