"""Which ops of the training and inference graphs have no GPU kernel.

Usage (from the repository root)::

    python scripts/gpu_audit.py [--width 0.25] [--channels 10] [--min-channels 2]
                                [--semantic-classes 0] [--strategy none|mirrored]

Our machines have no GPU, so placement cannot be tried with soft placement
off.  Instead every op of the graphs that ``gcompress train`` (every phase,
also under ``MirroredStrategy``) and ``gcompress encode``/``decode`` build
is checked against the kernels this TensorFlow build registers
(``tensorflow.python.framework.kernels``), with the op's own type
attributes: an op is placeable on a GPU when a ``GPU`` (or device-neutral
``DEFAULT``) kernel's type constraints accept them.  The pip wheel of
TensorFlow registers its CUDA kernels even where no GPU or CUDA library is
present, which is what makes this check possible on a CPU machine.

Ops that run on the host by design are listed apart, not as failures: the
tf.data input pipeline (iterators run on the CPU and feed the GPU),
summaries, checkpoint save/restore, and placeholders/no-ops.  Exit status 1
when any other op has no GPU kernel.
"""

import argparse
import dataclasses
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: Op types that belong on the host: input pipeline, summaries, file I/O.
HOST_OPS = frozenset({
    "IteratorV2", "IteratorGetNext", "MakeIterator", "OneShotIterator",
    "DatasetFromGraph", "DatasetToGraphV2", "AnonymousIteratorV3",
    "MultiDeviceIterator", "MultiDeviceIteratorInit", "MultiDeviceIteratorGetNextFromShard",
    "MultiDeviceIteratorToStringHandle", "MultiDeviceIteratorFromStringHandle",
    "ScalarSummary", "HistogramSummary", "ImageSummary", "MergeSummary",
    "SaveV2", "RestoreV2", "MergeV2Checkpoints", "ShardedFilename", "StringJoin",
    "Placeholder", "PlaceholderWithDefault", "NoOp",
})


def _type_attrs(op):
    """``{attr: DType enum}`` and ``{attr: [DType enums]}`` of ``op``'s type attributes."""
    values = {}
    for attr in op.node_def.attr:
        value = op.node_def.attr[attr]
        if value.WhichOneof("value") == "type":
            values[attr] = [value.type]
        elif value.WhichOneof("value") == "list" and value.list.type:
            values[attr] = list(value.list.type)
    return values


def _kernel_accepts(kernel, attrs):
    for constraint in kernel.constraint:
        allowed = set(constraint.allowed_values.list.type)
        if constraint.name in attrs and not set(attrs[constraint.name]) <= allowed:
            return False
    return True


def audit_graph(graph, cache=None):
    """``(missing, host)``: sorted ``(op type, dtypes)`` with no GPU kernel, and host-only ones.

    ``cache`` (a dict) memoises the kernel lookups across graphs.
    """
    import tensorflow as tf
    from tensorflow.python.framework import kernels

    cache = {} if cache is None else cache
    missing, host = set(), set()
    for op in graph.get_operations():
        attrs = _type_attrs(op)
        key = (op.type, tuple(sorted((k, tuple(v)) for k, v in attrs.items())))
        if key not in cache:
            registered = kernels.get_registered_kernels_for_op(op.type).kernel
            cache[key] = any(k.device_type in ("GPU", "DEFAULT") and _kernel_accepts(k, attrs)
                             for k in registered)
        if cache[key]:
            continue
        names = {tf.dtypes.as_dtype(t).name for v in attrs.values() for t in v}
        # String constants name checkpoint files and tensors for Save/Restore.
        on_host = (op.type in HOST_OPS or op.type.endswith("Dataset")
                   or (op.type == "Const" and names == {"string"}))
        (host if on_host else missing).add((op.type, ",".join(sorted(names))))
    return sorted(missing), sorted(host)


def gpu_kernels_registered():
    """Whether this TensorFlow build registers GPU kernels at all (CUDA builds do)."""
    from tensorflow.python.framework import kernels

    return any(k.device_type == "GPU"
               for k in kernels.get_registered_kernels_for_op("Conv2D").kernel)


def training_graph(config, strategy="none"):
    """The graph ``gcompress train`` builds for ``config`` (every phase's ops)."""
    import numpy as np
    import tensorflow as tf

    from compression.distribute import make_strategy, replicated_training_graph
    from compression.model import build_training_graph

    graph = tf.Graph()
    with graph.as_default():
        h, w = config.crop_size
        images = np.zeros([config.batch_size, h, w, 3], np.float32)
        batch = {"image": images}
        if config.semantic_classes:
            batch["labels"] = np.zeros([config.batch_size, h, w], np.int32)
        ds = tf.data.Dataset.from_tensors(batch).repeat()
        if strategy == "mirrored":
            from compression.distribute import Replication

            replicated_training_graph(
                make_strategy(Replication("mirrored", ("/cpu:0", "/cpu:1"))), ds, config)
        else:
            batch = tf.compat.v1.data.make_one_shot_iterator(ds).get_next()
            build_training_graph(batch["image"], config, labels=batch.get("labels"))
    return graph


def inference_graph(config, work_dir):
    """The graph ``gcompress encode``/``decode`` load for ``config`` (fresh weights)."""
    from compression.inference import initialize_run, load_model

    initialize_run(config, work_dir)
    model = load_model(work_dir)
    model.close()
    return model.graph


def main(argv=None):
    import tempfile

    from compression.config import CompressionConfig

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--channels", type=int, default=10)
    parser.add_argument("--min-channels", type=int, default=2)
    parser.add_argument("--semantic-classes", type=int, default=0)
    parser.add_argument("--crop", type=int, default=64, help="square training crop")
    parser.add_argument("--strategy", choices=("none", "mirrored"), default="none")
    args = parser.parse_args(argv)
    config = CompressionConfig(
        width=args.width, channels=args.channels, min_channels=args.min_channels,
        semantic_classes=args.semantic_classes, crop_height=args.crop, crop_width=args.crop,
        batch_size=2, gan_start_step=1, d_warmup_steps=0)
    if not gpu_kernels_registered():
        print("this TensorFlow build registers no GPU kernels: nothing to check against")
        return 2
    if args.strategy == "mirrored":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    cache = {}
    failed = False
    with tempfile.TemporaryDirectory() as work:
        graphs = {"training": training_graph(config, args.strategy),
                  "inference": inference_graph(dataclasses.replace(config), work)}
        for name, graph in graphs.items():
            missing, host = audit_graph(graph, cache)
            types = {op.type for op in graph.get_operations()}
            print(f"{name}: {len(graph.get_operations())} ops of {len(types)} types; "
                  f"{len(missing)} without a GPU kernel")
            for op_type, dtypes in missing:
                print(f"  NO GPU KERNEL: {op_type} ({dtypes})")
            if host:
                print("  host-side by design: " + ", ".join(sorted({t for t, _ in host})))
            failed = failed or bool(missing)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
