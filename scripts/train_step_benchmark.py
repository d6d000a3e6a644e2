"""Time one training step of each phase and set it against the machine's ceiling.

For a config (``--width``, ``--channels``, ``--crop``, ``--batch``,
``--d-width``) this builds the training graph once and reports, per phase
(``warmup``: distortion only, no D; ``d_warmup``: plus a D step; ``gan``):

* GFLOP per step, counted over exactly the ops that the phase's train op
  runs (TensorFlow's per-op FLOP statistics on the extracted subgraph), so a
  phase that does not touch D is seen not to;
* seconds per step (median of ``--runs`` after ``--warmup`` runs), images/s
  and GFLOP/s;
* that rate as a fraction of the machine's ceiling, a large 3x3 convolution
  timed on its own (what the model's layers are made of).

    python scripts/train_step_benchmark.py --width 0.25 --crop 256x256 --batch 2

``--replicas 1,2`` also times the GAN step under ``MirroredStrategy`` over
that many logical CPU devices (the same global batch, fed by a tf.data
pipeline of fixed images as ``--strategy mirrored`` is), images/s per count.
CPU replicas share the same cores, so this shows the overhead of
replication here, not the speed-up of GPUs.

``--input DATA`` (repeatable; with ``--resize``) times the training input
pipeline alone (reading, decoding, cropping, batching; parallel and
prefetched as in training): the images/s it can feed a step.

Everything runs in this process with ``gcompress train``'s session settings
and oneDNN on (as the CLI sets it).  Stop other heavy work first: the
figures are only as quiet as the machine.
"""

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.python.framework import ops as tf_ops  # noqa: E402

from compression.config import CompressionConfig  # noqa: E402
from compression.inference import session_config  # noqa: E402
from compression.model import build_training_graph  # noqa: E402

_v1 = tf.compat.v1


def subgraph_gflops(graph, op):
    """GFLOP of the ops that ``sess.run(op)`` executes (static shapes needed)."""
    sub = _v1.graph_util.extract_sub_graph(graph.as_graph_def(add_shapes=True), [op.name])
    total = 0
    for node in sub.node:
        try:
            stats = tf_ops.get_stats_for_node_def(graph, node, "flops")
        except (ValueError, KeyError):  # ops without a registered FLOP count
            continue
        total += stats.value or 0
    return total / 1e9


def _median_seconds(fn, warmup, runs):
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def conv_ceiling(warmup=2, runs=5, size=(256, 256, 128, 128)):
    """GFLOP/s of one large 3x3 SAME convolution, batch 1, in a session like training's."""
    h, w, cin, cout = size
    with tf.Graph().as_default():
        # Fed, not constant: Grappler would fold a convolution of constants away.
        x = _v1.placeholder(tf.float32, [1, h, w, cin])
        k = _v1.placeholder(tf.float32, [3, 3, cin, cout])
        y = tf.reduce_sum(tf.nn.conv2d(x, k, 1, "SAME"))
        feed = {x: np.random.default_rng(0).standard_normal((1, h, w, cin)),
                k: np.random.default_rng(1).standard_normal((3, 3, cin, cout))}
        with _v1.Session(config=session_config(inference=False)) as sess:
            seconds = _median_seconds(lambda: sess.run(y, feed), warmup, runs)
    return 2 * 9 * cin * cout * h * w / seconds / 1e9


def measure(config, batch, warmup=2, runs=5, phases=("warmup", "d_warmup", "gan")):
    """``{phase: {"gflop", "step_s", "images_per_s", "gflops"}}`` for ``config``."""
    height, width = config.crop_size
    images = (np.random.default_rng(0).uniform(-1, 1, (batch, height, width, 3))
              .astype(np.float32))
    graph = tf.Graph()
    with graph.as_default():
        _v1.set_random_seed(0)
        placeholder = _v1.placeholder(tf.float32, [batch, height, width, 3])
        tg = build_training_graph(placeholder, config)
        init = _v1.global_variables_initializer()
    graph.finalize()
    out = {}
    with _v1.Session(graph=graph, config=session_config(inference=False)) as sess:
        sess.run(init)
        for phase in phases:
            op, losses = tg.phase_ops[phase], tg.phase_losses[phase]
            gflop = subgraph_gflops(graph, op)
            seconds = _median_seconds(
                lambda op=op, losses=losses: sess.run([op, losses], {placeholder: images}),
                warmup, runs)
            out[phase] = {"gflop": gflop, "step_s": seconds, "images_per_s": batch / seconds,
                          "gflops": gflop / seconds}
    return out


def measure_replicated(config, batch, replicas, warmup=2, runs=5):
    """Seconds per GAN step and images/s with MirroredStrategy over ``replicas`` CPUs."""
    from compression.distribute import (
        Replication,
        make_strategy,
        open_session,
        replicated_training_graph,
    )

    height, width = config.crop_size
    images = (np.random.default_rng(0).uniform(-1, 1, (batch, height, width, 3))
              .astype(np.float32))
    plan = Replication("mirrored", tuple(f"/cpu:{i}" for i in range(replicas)))
    graph = tf.Graph()
    with graph.as_default():
        _v1.set_random_seed(0)
        strategy = make_strategy(plan)
        ds = tf.data.Dataset.from_tensors({"image": images}).repeat()
        tg, input_init = replicated_training_graph(strategy, ds, config)
        init = _v1.global_variables_initializer()
    graph.finalize()
    with graph.as_default(), open_session(plan, strategy, graph,
                                          session_config(inference=False)) as sess:
        sess.run([init, input_init])
        op, losses = tg.phase_ops["gan"], tg.phase_losses["gan"]
        seconds = _median_seconds(lambda: sess.run([op, losses]), warmup, runs)
    return {"replicas": replicas, "step_s": seconds, "images_per_s": batch / seconds}


def measure_input(data_dirs, crop, batch, resize=None, batches=60, warmup=5):
    """Images/s of the training input pipeline alone over ``data_dirs``' train split."""
    from compression import data as data_lib

    examples = [ex for d in data_dirs for ex in data_lib.find_examples(d, "train")]
    with tf.Graph().as_default():
        ds = data_lib.make_dataset(examples, crop_size=crop, batch_size=batch, training=True,
                                   resize=resize)
        nxt = _v1.data.make_one_shot_iterator(ds).get_next()
        with _v1.Session(config=session_config(inference=False)) as sess:
            for _ in range(warmup):
                sess.run(nxt)
            t0 = time.perf_counter()
            for _ in range(batches):
                sess.run(nxt)
            seconds = time.perf_counter() - t0
    return {"images": len(examples), "images_per_s": batches * batch / seconds}


def _size(text):
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 256x256, got {text!r}") from None
    return h, w


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--d-width", type=float, default=None,
                   help="discriminator width (default: the config's, min(1, width))")
    p.add_argument("--crop", type=_size, default=(256, 256))
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--replicas", default=None, metavar="LIST",
                   help="also time the GAN step mirrored over these counts of CPU devices, "
                        "e.g. 1,2")
    p.add_argument("--input", action="append", default=[], metavar="DATA",
                   help="also time the input pipeline alone on this dataset (repeatable)")
    p.add_argument("--resize", type=_size, default=None,
                   help="with --input: resample images to HxW before cropping")
    p.add_argument("--out", help="also write the figures as JSON here")
    args = p.parse_args(argv)
    replica_counts = [int(n) for n in args.replicas.split(",")] if args.replicas else []
    if replica_counts:  # logical devices must exist before TensorFlow starts its runtime
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * max(replica_counts))
    fields = dict(width=args.width, channels=args.channels, crop_height=args.crop[0],
                  crop_width=args.crop[1], batch_size=args.batch, gan_start_step=1)
    if args.d_width is not None:
        fields["discriminator_width"] = args.d_width
    config = CompressionConfig(**fields)
    ceiling = conv_ceiling()
    result = {"config": config.to_dict(), "conv_ceiling_gflops": ceiling,
              "phases": measure(config, args.batch, args.warmup, args.runs)}
    print(f"width {config.width}, D width {config.discriminator_width}, crop "
          f"{args.crop[0]}x{args.crop[1]}, batch {args.batch}; conv ceiling {ceiling:.1f} GFLOP/s")
    print(f"{'phase':<9} {'GFLOP':>8} {'s/step':>8} {'img/s':>7} {'GFLOP/s':>8} {'of ceiling':>10}")
    for phase, r in result["phases"].items():
        print(f"{phase:<9} {r['gflop']:8.2f} {r['step_s']:8.3f} {r['images_per_s']:7.2f} "
              f"{r['gflops']:8.1f} {r['gflops'] / ceiling:10.2f}")
    if replica_counts:
        result["replicated"] = [measure_replicated(config, args.batch, n, args.warmup, args.runs)
                                for n in replica_counts]
        for r in result["replicated"]:
            print(f"gan step mirrored over {r['replicas']} CPU device(s): {r['step_s']:.3f} s, "
                  f"{r['images_per_s']:.2f} images/s")
    if args.input:
        result["input"] = measure_input(args.input, args.crop, args.batch, args.resize)
        print(f"input pipeline alone ({result['input']['images']} images, crop "
              f"{args.crop[0]}x{args.crop[1]}"
              + (f", resized to {args.resize[0]}x{args.resize[1]}" if args.resize else "")
              + f"): {result['input']['images_per_s']:.1f} images/s")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
