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

``--strategy multiworker`` does the same across machines with
``tf.compat.v1.distribute.experimental.MultiWorkerMirroredStrategy``
(collective all-reduce), each worker described by the standard
``TF_CONFIG`` environment variable.  Every worker runs the same command
with the same ``--out`` on shared storage: each reads its own slice of every
global batch, only the chief (task ``chief``, else ``worker`` 0) writes
checkpoints, ``config.json``, summaries and validation, and ``--resume``
makes every worker restore the chief's newest checkpoint.  A step that
waits longer than ``step_timeout`` seconds for the others (a worker died or
is unreachable) ends the job with a clear error instead of a hang; where a
wait is expected (a launch's first step, the others' step after the chief
validates or saves) the deadline is ``start_timeout``.

What may legitimately differ from one device with the same global batch:
per-replica random draws (the noise vector ``z``, nested-dropout ``k``),
batch-norm statistics of the noise generator over each replica's own ``z``
batch, and float summation order.  Instance norm is per example, so it is
the same.  ``tests/test_distribute.py`` measures the rest.
"""

import dataclasses
import json
import os
import threading
import warnings

import tensorflow as tf
from tensorflow.python.util import deprecation

from compression.errors import CompressionError
from compression.model import TrainingGraph, build_training_graph

__all__ = ["STRATEGIES", "Replication", "check_strategy", "make_strategy", "open_session",
           "replicated_training_graph"]

#: ``--strategy`` values: one device, MirroredStrategy over local devices, or
#: MultiWorkerMirroredStrategy over the machines of ``TF_CONFIG``.
STRATEGIES = ("none", "mirrored", "multiworker")

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


@dataclasses.dataclass(frozen=True)
class Replication:
    """Where a training step runs (from :func:`check_strategy`).

    ``kind`` is one of :data:`STRATEGIES`; ``devices`` the local replicas of
    ``mirrored``; ``cluster``, ``task_type`` and ``task_id`` the parsed
    ``TF_CONFIG`` of ``multiworker``.
    """

    kind: str = "none"
    devices: tuple = ()
    cluster: dict = None
    task_type: str = None
    task_id: int = 0

    @property
    def is_chief(self):
        """Whether this process writes the run directory (all but multiworker non-chiefs)."""
        if self.kind != "multiworker":
            return True
        if "chief" in self.cluster:
            return self.task_type == "chief"
        return self.task_type == "worker" and self.task_id == 0

    @property
    def workers(self):
        return sum(len(self.cluster.get(job, ())) for job in ("chief", "worker"))

    def describe(self):
        if self.kind == "mirrored":
            return f"mirrored over {', '.join(self.devices)}"
        if self.kind == "multiworker":
            role = "the chief" if self.is_chief else "not the chief: it writes nothing"
            return (f"multiworker, {self.task_type} {self.task_id} of {self.workers} "
                    f"workers ({role})")
        return "one device"


def _tf_config():
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise CompressionError(
            "--strategy multiworker needs the TF_CONFIG environment variable, e.g. "
            'TF_CONFIG=\'{"cluster": {"worker": ["host1:2222", "host2:2222"]}, '
            '"task": {"type": "worker", "index": 0}}\' (see README, training on a cluster)')
    try:
        parsed = json.loads(text)
        cluster, task = parsed["cluster"], parsed["task"]
        task_type, task_id = task["type"], int(task["index"])
        jobs = {job: list(addresses) for job, addresses in cluster.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CompressionError(
            f"TF_CONFIG is not a cluster description ({type(e).__name__}: {e}); it must be "
            'JSON like {"cluster": {"worker": ["host1:2222", "host2:2222"]}, '
            '"task": {"type": "worker", "index": 0}}') from None
    if task_type not in ("chief", "worker"):
        raise CompressionError(
            f"TF_CONFIG task type {task_type!r}: training runs on 'chief' and 'worker' tasks")
    if not 0 <= task_id < len(jobs.get(task_type, ())):
        raise CompressionError(
            f"TF_CONFIG task {task_type} {task_id} is not in its cluster {jobs}")
    unknown = sorted(set(jobs) - {"chief", "worker"})
    if unknown or len(jobs.get("chief", ())) > 1:
        raise CompressionError(
            f"TF_CONFIG cluster {jobs}: only one 'chief' and any number of 'worker' "
            "tasks are used here (no parameter servers: gradients are all-reduced)")
    return jobs, task_type, task_id


def check_strategy(name, devices=None, batch_size=None):
    """Validate ``--strategy name`` (and ``--devices``) -> :class:`Replication`.

    Args:
      name: one of :data:`STRATEGIES`.
      devices: for ``"mirrored"``, local device names (``/gpu:0``, ``/cpu:1``);
        default every GPU TensorFlow sees.
      batch_size: the global batch; it must divide evenly over the replicas
        (an uneven split would weight some examples more than others).

    Raises:
      CompressionError: an unknown name, bad device names, no GPU and no
        devices named, a missing or malformed ``TF_CONFIG``, or a batch that
        does not divide over the replicas.
    """
    if name not in STRATEGIES:
        raise CompressionError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")
    if name != "mirrored" and devices:
        raise CompressionError("--devices needs --strategy mirrored")
    if name == "none":
        return Replication()
    if name == "multiworker":
        cluster, task_type, task_id = _tf_config()
        plan = Replication("multiworker", (), cluster, task_type, task_id)
        # Every worker replicates over its local GPUs, or its CPU.
        replicas = plan.workers * max(1, len(tf.config.list_physical_devices("GPU")))
        where = f"{plan.workers} workers"
    else:
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
        plan = Replication("mirrored", tuple(devices))
        replicas, where = len(devices), ", ".join(devices)
    if batch_size is not None and batch_size % replicas:
        raise CompressionError(
            f"--batch {batch_size} does not divide over {replicas} replicas ({where}); "
            f"--batch is the global batch: use a multiple of {replicas}")
    return plan


def make_strategy(plan):
    """The ``tf.compat.v1.distribute`` strategy of ``plan``, or None for one device.

    Call it inside the training graph: the strategy binds to the default graph.
    """
    if plan.kind == "mirrored":
        return _v1.distribute.MirroredStrategy(list(plan.devices))
    if plan.kind == "multiworker":
        resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec(plan.cluster), task_type=plan.task_type,
            task_id=plan.task_id, rpc_layer="grpc")
        return _v1.distribute.experimental.MultiWorkerMirroredStrategy(
            cluster_resolver=resolver)
    return None


def open_session(plan, strategy, graph, tf_config):
    """A session for ``plan``: local (with logical CPUs for ``mirrored``), or on this
    worker's ``tf.distribute.Server`` for ``multiworker``."""
    if plan.kind == "mirrored":
        cpus = [int(d.split(":")[1]) for d in plan.devices if d.startswith("/cpu:")]
        if cpus:  # logical CPU devices exist only when the session asks for them
            tf_config.device_count["CPU"] = max(cpus) + 1
    if plan.kind != "multiworker":
        return _v1.Session(graph=graph, config=tf_config)
    tf_config = strategy.update_config_proto(tf_config)
    server = tf.distribute.Server(tf.train.ClusterSpec(plan.cluster), job_name=plan.task_type,
                                  task_index=plan.task_id, config=tf_config, start=True)
    session = _v1.Session(server.target, graph=graph, config=tf_config)
    session._gcompress_server = server  # the server lives as long as its session
    return session


def replicated_training_graph(strategy, dataset, config, loss_scale=None):
    """Build the training graph once per replica of ``strategy`` and join them.

    Args:
      strategy: from :func:`make_strategy`.
      dataset: a ``tf.data.Dataset`` of global batches (dicts with ``image``
        ``[B, H, W, 3]`` and, for semantic models, ``labels``), as
        :func:`compression.data.make_dataset` makes for training.
      config: the :class:`~compression.config.CompressionConfig`.
      loss_scale: as in :func:`~compression.model.build_training_graph`.

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

        # Not for AutoGraph: the step is plain graph code (and converting tf-slim's
        # batch_norm fails over tf_keras, which TF 2.21 no longer bundles, with a warning).
        @tf.autograph.experimental.do_not_convert
        def step_fn(batch):
            images = batch["image"]
            images.set_shape([per_replica, config.crop_height, config.crop_width, 3])
            tg = build_training_graph(images, config, labels=batch.get("labels"),
                                      loss_scale=loss_scale)
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
    base = built[min(built)]  # this worker's first replica (ids are global)
    graph = TrainingGraph(
        config=config, endpoints=endpoints, losses=phase_losses["gan"], metrics=metrics,
        g_train_op=None, d_train_op=None, train_op=phase_ops["gan"],
        global_step=base.global_step, symbol_counts=base.symbol_counts,
        generator_variables=base.generator_variables,
        discriminator_variables=base.discriminator_variables, ema=base.ema,
        warmup_train_op=phase_ops["warmup"], d_warmup_op=phase_ops["d_warmup"],
        phase_ops=phase_ops, phase_losses=phase_losses)
    return graph, input_initializer
