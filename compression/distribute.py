"""Data-parallel training with TensorFlow's own engine, ``tf.distribute`` (graph mode).

``gcompress train --strategy mirrored`` replicates the training graph of
:func:`compression.model.build_training_graph` over local devices with
``tf.compat.v1.distribute.MirroredStrategy``: every replica gets an equal
slice of the global batch (``config.batch_size``), the optimisers all-reduce
(sum) the replicas' gradients of ``loss / replicas``, so a step is the
global batch's mean as on one device.  What the step keeps besides weights
is aggregated too, never taken from replica 0 alone:

* the entropy model's histogram: every replica adds the all-reduced counts
  of the global batch (:func:`compression.model.build_training_graph`);
* the EMA of the decoder weights and the noise generator's batch-norm
  moving statistics: ``assign_moving_average`` in a replica context
  averages the replicas' values before it updates (TensorFlow's own rule);
* the reported losses and metrics: means over replicas.

Variables are mirrored under their single-device names, so checkpoints,
``config.json`` and everything that loads them are the same whatever the
strategy: a run resumes with another strategy or replica count.

What may legitimately differ from one device with the same global batch:
per-replica random draws (the noise vector ``z``, nested-dropout ``k``),
batch-norm statistics of the noise generator over each replica's own ``z``
batch, and float summation order.  Instance norm is per example, so it is
the same.  ``tests/test_distribute.py`` measures the rest.
"""

import threading
import warnings

import tensorflow as tf
from tensorflow.python.util import deprecation

from compression.errors import CompressionError
from compression.model import TrainingGraph, build_training_graph

__all__ = ["STRATEGIES", "check_strategy", "make_strategy", "replicated_training_graph",
           "session_devices"]

#: ``--strategy`` values: one device, or MirroredStrategy over local devices.
STRATEGIES = ("none", "mirrored")

_v1 = tf.compat.v1


def _normalise(device):
    name = device.strip().lower()
    if name.startswith("/"):
        name = name[1:]
    if name.startswith("device:"):
        name = name[len("device:"):]
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "gpu") or not index.isdigit():
        raise CompressionError(
            f"device {device!r} is not a local device name; use /cpu:N or /gpu:N "
            "(e.g. --devices /gpu:0,/gpu:1)")
    return f"/{kind}:{int(index)}"


def session_devices(devices):
    """``ConfigProto.device_count`` for ``devices``: logical CPUs need ``{"CPU": n}``."""
    cpus = [d for d in devices if d.startswith("/cpu:")]
    return {"CPU": max(int(d.split(":")[1]) for d in cpus) + 1} if cpus else {}


def check_strategy(name, devices=None, batch_size=None):
    """The replica devices of ``--strategy name``, validated: ``[]`` for ``"none"``.

    Args:
      name: one of :data:`STRATEGIES`.
      devices: for ``"mirrored"``, local device names (``/gpu:0``, ``/cpu:1``);
        default every GPU TensorFlow sees.
      batch_size: the global batch; it must divide evenly over the replicas
        (an uneven split would weight some examples more than others).

    Raises:
      CompressionError: an unknown name, bad device names, no GPU and no
        devices named, or a batch that does not divide over the replicas.
    """
    if name not in STRATEGIES:
        raise CompressionError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")
    if name == "none":
        if devices:
            raise CompressionError("--devices needs --strategy mirrored")
        return []
    if devices:
        devices = [_normalise(d) for d in devices]
        if len(set(devices)) != len(devices):
            raise CompressionError(f"--devices names a device twice: {', '.join(devices)}")
    else:
        devices = [f"/gpu:{i}" for i in range(len(tf.config.list_physical_devices("GPU")))]
        if not devices:
            raise CompressionError(
                "--strategy mirrored found no GPU; name the devices to replicate over "
                "(e.g. --devices /cpu:0,/cpu:1 for two CPU replicas, which share the cores)")
    if batch_size is not None and batch_size % len(devices):
        raise CompressionError(
            f"--batch {batch_size} does not divide over {len(devices)} replicas "
            f"({', '.join(devices)}); --batch is the global batch: use a multiple of "
            f"{len(devices)}")
    return devices


def make_strategy(devices):
    """``MirroredStrategy`` over ``devices`` (from :func:`check_strategy`), or None for ``[]``.

    Call it inside the training graph: the strategy binds to the default graph.
    """
    return _v1.distribute.MirroredStrategy(devices) if devices else None


def replicated_training_graph(strategy, dataset, config):
    """Build the training graph once per replica of ``strategy`` and join them.

    Args:
      strategy: from :func:`make_strategy`.
      dataset: a ``tf.data.Dataset`` of global batches (dicts with ``image``
        ``[B, H, W, 3]`` and, for semantic models, ``labels``), as
        :func:`compression.data.make_dataset` makes for training.
      config: the :class:`~compression.config.CompressionConfig`.

    Returns:
      ``(TrainingGraph, input_initializer)``.  The graph's ``phase_ops`` run
      every replica's step; ``phase_losses``, ``losses`` and ``metrics`` are
      means over replicas; ``endpoints`` are replica 0's (for image
      summaries); variables, ``ema`` and ``symbol_counts`` are the mirrored ones.
      Run ``input_initializer`` once per session before the first step.
    """
    replicas = strategy.num_replicas_in_sync
    per_replica = config.batch_size // replicas
    built = {}
    lock = threading.Lock()

    with strategy.scope(), deprecation.silence(), warnings.catch_warnings():
        # TF's own v1 input code warns about its own internals (dataset options in
        # graph mode, its iterator's initializer); nothing a user can act on.
        warnings.filterwarnings("ignore", message="To make it possible to preserve tf.data")
        iterator = strategy.make_dataset_iterator(dataset)
        input_initializer = iterator.initializer
        _v1.train.get_or_create_global_step()

        def step_fn(batch):
            images = batch["image"]
            images.set_shape([per_replica, config.crop_height, config.crop_width, 3])
            tg = build_training_graph(images, config, labels=batch.get("labels"))
            replica = int(tf.get_static_value(
                tf.distribute.get_replica_context().replica_id_in_sync_group))
            with lock:  # replicas build in their own threads
                built[replica] = tg
            return {"ops": tg.phase_ops, "losses": tg.phase_losses, "metrics": tg.metrics,
                    "endpoints": {k: v for k, v in tg.endpoints.items() if v is not None}}

        out = strategy.extended.call_for_each_replica(step_fn, args=(iterator.get_next(),))

        def mean(value):
            return strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)

        def first(value):
            return strategy.experimental_local_results(value)[0]

        phase_ops = {p: strategy.group(op) for p, op in out["ops"].items()}
        phase_losses = {p: {k: mean(v) for k, v in losses.items()}
                        for p, losses in out["losses"].items()}
        metrics = {k: mean(v) if k != "bpp_bound" else first(v)
                   for k, v in out["metrics"].items()}
    endpoints = {k: first(v) for k, v in out["endpoints"].items()}
    endpoints.setdefault("noise", None)
    base = built[0]
    graph = TrainingGraph(
        config=config, endpoints=endpoints, losses=phase_losses["gan"], metrics=metrics,
        g_train_op=None, d_train_op=None, train_op=phase_ops["gan"],
        global_step=base.global_step, symbol_counts=base.symbol_counts,
        generator_variables=base.generator_variables,
        discriminator_variables=base.discriminator_variables, ema=base.ema,
        warmup_train_op=phase_ops["warmup"], d_warmup_op=phase_ops["d_warmup"],
        phase_ops=phase_ops, phase_losses=phase_losses)
    return graph, input_initializer
