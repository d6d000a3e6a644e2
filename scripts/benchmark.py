"""Speed and memory of gcompress on this machine, measured in one run.

Usage (from the repository root)::

    python scripts/benchmark.py [--model RUN_DIR] [--quick] [--out bench.json] [--force]

What is measured (medians over timed runs that follow untimed warm-up runs):

a. the ceiling: GFLOP/s of a large float32 matmul and of one large 3x3
   convolution in a TensorFlow graph-mode session;
b. encode and decode seconds per 512x1024 image (batch 1) of the paper
   model (width 1.0, C=8) and of the small model (width 0.25, C=8), both
   with freshly initialised weights (:func:`compression.inference.initialize_run`),
   through :func:`~compression.codec.encode_image` / :func:`~compression.codec.decode_image`,
   the achieved GFLOP/s (FLOPs from :func:`compression.flops.model_flops`)
   and its ratio to the ceiling (the better of matmul and convolution with the
   same oneDNN setting);
c. entropy coding (:func:`~compression.entropy_model.encode_symbols` +
   :func:`~compression.entropy_model.decode_symbols`) as a share of the
   decode time;
d. peak resident memory (``ru_maxrss``) of a process that loads a model and
   decodes one 512x1024 or 1024x2048 (HxW, full Cityscapes) file, one process
   per measurement, with the settings of ``gcompress decode``;
e. seconds per training step (batch 2) of the small model at 256x512 crops
   and of the paper model at 512x1024, the latter stopped and reported as
   skipped if its memory would not fit in what is available.

``TF_ENABLE_ONEDNN_OPTS`` is compared on and off, and the session thread
settings (intra-op / inter-op threads, 0 = TensorFlow's choice) for
inference and training.  Every measurement group runs in a child process
of its own, because TensorFlow reads ``TF_ENABLE_ONEDNN_OPTS`` when it is
imported, sizes its thread pools once per process from the first session's
``ConfigProto`` (later sessions' thread settings are ignored) and
``ru_maxrss`` is per process.  Without ``--quick`` the comparisons run in two
rounds in opposite order and pool their samples, so a change in background
load does not favour one setting.

``--quick`` uses tiny models and sizes so that a test can run it in seconds;
its numbers mean nothing.  ``--model RUN_DIR`` also times a trained model.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from compression.cli import ONEDNN as CLI_ONEDNN  # noqa: E402  (no TensorFlow import)
from compression.config import CompressionConfig  # noqa: E402  (no TensorFlow import)

CORES = os.cpu_count() or 1
#: (intra-op, inter-op) threads as ``gcompress encode/decode`` set them.
INFERENCE_THREADS = (CORES, 1)
#: TensorFlow's own choice, as ``gcompress train`` leaves them.
DEFAULT_THREADS = (0, 0)


def _full_plan():
    return {
        "quick": False,
        "configs": {
            "paper": CompressionConfig(),
            "small": CompressionConfig(width=0.25, channels=8, crop_height=256, crop_width=512),
        },
        "size": (512, 1024),
        "memory_sizes": [(512, 1024), (1024, 2048)],
        "train": {"small": {"crop": (256, 512), "batch": 2, "warmup": 2, "runs": 5},
                  "paper": {"crop": (512, 1024), "batch": 2, "warmup": 1, "runs": 1}},
        "matmul": 3072,
        "conv": (256, 256, 128, 128),  # H, W, Cin, Cout of a 3x3 convolution
        "ceiling_runs": (2, 5),
        "codec_runs": {"small": (1, 5), "paper": (1, 3), "given": (1, 3)},
        "rounds": 2,
        "inference_threads": [INFERENCE_THREADS, (1, 1), DEFAULT_THREADS],
        "train_threads": [DEFAULT_THREADS, INFERENCE_THREADS],
        "timeout": 1800,
        "jobs": 1,
    }


def _quick_plan():
    tiny = {"channels": 4, "residual_blocks": 1, "noise_dim": 16, "upsample_dim": 32,
            "discriminator_width": 0.125, "discriminator_scales": 2,
            "crop_height": 32, "crop_width": 64}
    return {
        "quick": True,
        "configs": {"paper": CompressionConfig(width=0.125, **tiny),
                    "small": CompressionConfig(width=0.0625, **tiny)},
        "size": (64, 128),
        # One size: every memory child is a TensorFlow start-up, and quick numbers mean nothing.
        "memory_sizes": [(64, 128)],
        "train": {"small": {"crop": (32, 64), "batch": 2, "warmup": 1, "runs": 2},
                  "paper": {"crop": (32, 64), "batch": 2, "warmup": 1, "runs": 2}},
        "matmul": 128,
        "conv": (16, 16, 8, 8),
        "ceiling_runs": (1, 2),
        "codec_runs": {"small": (1, 2), "paper": (1, 2), "given": (1, 2)},
        "rounds": 1,
        "inference_threads": [INFERENCE_THREADS],
        "train_threads": [INFERENCE_THREADS],
        "timeout": 300,
        "jobs": 6,
    }


def _threads_label(threads):
    intra, inter = threads
    return f"intra={intra or 'auto'} inter={inter or 'auto'}"


def _size_label(size):
    return f"{size[0]}x{size[1]}"


# ---------------------------------------------------------------------------
# Child side: runs tasks in a fresh process, writes results to a JSON file.
# ---------------------------------------------------------------------------


def _peak_rss_mb():
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _current_rss_mb():
    return _rss_of("self")


def _test_image(height, width, seed=0):
    """A deterministic photo-like uint8 image: smooth shapes, edges and some texture."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.zeros((height, width, 3), np.float32)
    for c in range(3):
        image[..., c] = 110 + 60 * np.sin(x / (23.0 + 7 * c)) * np.cos(y / (31.0 - 5 * c))
    for _ in range(12):
        y0, x0 = rng.integers(0, height), rng.integers(0, width)
        r = rng.integers(max(height // 16, 2), max(height // 4, 3))
        mask = (y - y0) ** 2 + (x - x0) ** 2 < r * r
        image[mask] = rng.uniform(20, 235, 3)
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _median(values):
    return statistics.median(values) if values else None


def _child_ceiling(task, tf_config):
    import numpy as np
    import tensorflow as tf

    v1 = tf.compat.v1
    warmup, runs = task["warmup"], task["runs"]
    n = task["matmul"]
    h, w, cin, cout = task["conv"]
    graph = tf.Graph()
    with graph.as_default():
        rng = np.random.default_rng(0)
        a = tf.Variable(rng.standard_normal((n, n), np.float32))
        b = tf.Variable(rng.standard_normal((n, n), np.float32))
        product = tf.matmul(a, b)
        x = tf.Variable(rng.standard_normal((1, h, w, cin), np.float32))
        k = tf.Variable(rng.standard_normal((3, 3, cin, cout), np.float32) * 0.05)
        conv = tf.nn.conv2d(x, k, strides=1, padding="SAME")
        init = v1.global_variables_initializer()
    out = {}
    with v1.Session(graph=graph, config=tf_config) as sess:
        sess.run(init)
        for name, op, flops in (("matmul", product.op, 2 * n**3),
                                ("conv", conv.op, 2 * 9 * cin * cout * h * w)):
            samples = []
            for i in range(warmup + runs):
                start = time.perf_counter()
                sess.run(op)  # runs the op without copying its result out
                if i >= warmup:
                    samples.append(time.perf_counter() - start)
            out[name] = {"flops": flops, "seconds": samples}
    return out


def _child_init(task, tf_config):
    from compression.inference import initialize_run

    out = {}
    for name, config in task["configs"].items():
        start = time.perf_counter()
        initialize_run(CompressionConfig.from_dict(config), os.path.join(task["dir"], name),
                       tf_config=tf_config)
        out[name] = time.perf_counter() - start
    return {"seconds": out}


def _child_codec(task, tf_config):
    from compression.codec import (
        codes_in_context,
        decode_image,
        decode_in_context,
        encode_image,
        encode_in_context,
    )
    from compression.entropy_model import decode_symbols, encode_symbols
    from compression.flops import model_flops
    from compression.gain import default_byte
    from compression.image_io import pad_to_multiple, to_float
    from compression.inference import load_model

    height, width = task["size"]
    image = _test_image(height, width)
    start = time.perf_counter()
    model = load_model(task["run_dir"], tf_config=tf_config)
    load_s = time.perf_counter() - start
    samples = {k: [] for k in ("encode_s", "decode_s", "entropy_encode_s", "entropy_decode_s")}
    try:
        symbols = model.encode(to_float(pad_to_multiple(image, 16)[0]))
        for i in range(task["warmup"] + task["runs"]):
            t0 = time.perf_counter()
            encoded = encode_image(model, image)
            t1 = time.perf_counter()
            decode_image(model, encoded.data)
            t2 = time.perf_counter()
            if codes_in_context(model):  # the coder its files use (the slower one)
                rate = default_byte(model.config)  # the symbols' rate position (None: one rate)
                payload = encode_in_context(model, symbols, rate=rate)
                t3 = time.perf_counter()
                decode_in_context(model, payload, symbols.shape, rate=rate)
            else:
                payload = encode_symbols(symbols, model.probabilities)
                t3 = time.perf_counter()
                decode_symbols(payload, symbols.shape, model.probabilities)
            t4 = time.perf_counter()
            if i >= task["warmup"]:
                for key, value in zip(samples, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                    samples[key].append(value)
        flops = model_flops(model.config, -(-height // 16) * 16, -(-width // 16) * 16)
        return {"load_s": load_s, "samples": samples, "bytes": len(encoded.data),
                "bpp": encoded.bpp, "encode_flops": flops["encode"],
                "decode_flops": flops["decode"], "config": model.config.to_dict()}
    finally:
        model.close()


def _synthetic_file(model, height, width, seed=0):
    """A valid ``.gcz`` file of random symbols for ``model`` (no encoder run needed)."""
    import numpy as np

    from compression import bitstream
    from compression.entropy_model import encode_symbols

    cfg = model.config
    h, w = -(-height // 16), -(-width // 16)
    symbols = np.random.default_rng(seed).integers(0, cfg.num_centers, (h, w, cfg.channels))
    header = bitstream.Header(
        fingerprint=model.fingerprint, image_height=height, image_width=width,
        bottleneck_channels=cfg.channels, bottleneck_height=h, bottleneck_width=w,
        num_centers=cfg.num_centers, seed=seed,
    )
    return bitstream.pack(header, encode_symbols(symbols, model.probabilities))


def _child_memory(task, tf_config):
    from compression.codec import decode_image
    from compression.inference import load_model

    height, width = task["size"]
    model = load_model(task["run_dir"], tf_config=tf_config)
    data = _synthetic_file(model, height, width)
    after_load = _current_rss_mb()
    peak_before = _peak_rss_mb()
    start = time.perf_counter()
    image, _ = decode_image(model, data)
    seconds = time.perf_counter() - start
    tiled = model.tile_for(-(-height // 16), -(-width // 16)) > 0
    model.close()
    return {"rss_after_load_mb": after_load, "peak_before_decode_mb": peak_before,
            "decode_s": seconds, "tiled": bool(tiled), "shape": list(image.shape)}


def _child_train(task, tf_config):
    import numpy as np
    import tensorflow as tf

    from compression.model import build_training_graph

    v1 = tf.compat.v1
    config = CompressionConfig.from_dict(task["config"])
    batch = task["batch"]
    height, width = task["crop"]
    images = (_test_image(height, width * batch).reshape(height, batch, width, 3)
              .transpose(1, 0, 2, 3).astype(np.float32) / 127.5 - 1.0)
    start = time.perf_counter()
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(0)
        placeholder = v1.placeholder(tf.float32, [batch, height, width, 3])
        tg = build_training_graph(placeholder, config)
        init = v1.global_variables_initializer()
    graph.finalize()
    samples = []
    with v1.Session(graph=graph, config=tf_config) as sess:
        sess.run(init)
        build_s = time.perf_counter() - start
        for i in range(task["warmup"] + task["runs"]):
            t0 = time.perf_counter()
            sess.run(tg.train_op, {placeholder: images})
            if i >= task["warmup"]:
                samples.append(time.perf_counter() - t0)
    return {"build_s": build_s, "seconds": samples, "batch": batch}


_CHILD_TASKS = {"ceiling": _child_ceiling, "init": _child_init, "codec": _child_codec,
                "memory": _child_memory, "train": _child_train}


def child_main(spec_path):
    """Run the tasks in ``spec_path`` (JSON) and write their results next to it."""
    with open(spec_path) as f:
        spec = json.load(f)
    try:  # if memory runs out, the kernel should end this process, not a neighbour
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    from compression.inference import session_config

    tf_config = session_config(inference=False)
    tf_config.intra_op_parallelism_threads, tf_config.inter_op_parallelism_threads = \
        spec["threads"]
    results = []
    for task in spec["tasks"]:
        try:
            out = _CHILD_TASKS[task["kind"]](task, tf_config)
        except Exception as e:  # reported in the results, the other tasks go on
            out = {"error": f"{type(e).__name__}: {e}"}
        out["peak_rss_mb"] = _peak_rss_mb()
        results.append(out)
        tmp = spec["result"] + ".tmp"
        with open(tmp, "w") as f:
            json.dump(results, f)
        os.replace(tmp, spec["result"])


# ---------------------------------------------------------------------------
# Parent side: plans the children, runs them one at a time, summarises.
# ---------------------------------------------------------------------------


def _proc_mb(path, field):
    """A ``field:  N kB`` line of a /proc file in MiB, or None."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _meminfo_mb(field):
    return _proc_mb("/proc/meminfo", field)


def _rss_of(pid):
    return _proc_mb(f"/proc/{pid}/status", "VmRSS")


class _Child:
    """One child process: its tasks, settings, and (once finished) its results."""

    def __init__(self, tasks, onednn, threads, what, rss_limit_mb=None):
        self.tasks = tasks
        self.onednn = onednn
        self.threads = tuple(threads)
        self.what = what
        self.rss_limit_mb = rss_limit_mb
        self.results = None


class _Runner:
    """Runs child processes (one at a time unless ``jobs`` > 1) and collects their results."""

    def __init__(self, work_dir, timeout, log, jobs=1):
        self.work_dir = work_dir
        self.timeout = timeout
        self.log = log
        self.jobs = jobs
        self.count = 0

    def _start(self, child):
        self.count += 1
        base = os.path.join(self.work_dir, f"child{self.count:02d}")
        child.base = base
        child.result_path = base + ".result.json"
        with open(base + ".spec.json", "w") as f:
            json.dump({"tasks": child.tasks, "threads": list(child.threads),
                       "result": child.result_path}, f)
        env = dict(os.environ)
        env.update({"TF_ENABLE_ONEDNN_OPTS": "1" if child.onednn else "0",
                    "TF_CPP_MIN_LOG_LEVEL": "3",
                    "PYTHONPATH": REPO_ROOT + os.pathsep + env.get("PYTHONPATH", ""),
                    "PYTHONUNBUFFERED": "1"})
        self.log(f"  {child.what} (oneDNN {'on' if child.onednn else 'off'}, "
                 f"{_threads_label(child.threads)})")
        if callable(child.rss_limit_mb):
            child.rss_limit_mb = child.rss_limit_mb()
        child.started = time.time()
        child.killed = None
        child.peak_seen = 0.0
        with open(base + ".log", "w") as out:
            child.proc = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--child", base + ".spec.json"],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)

    def _check(self, child):
        """Watch a running child's memory and time; True once it has finished."""
        if child.proc.poll() is not None:
            return True
        rss = _rss_of(child.proc.pid) or 0.0
        child.peak_seen = max(child.peak_seen, rss)
        if child.rss_limit_mb is not None and rss > child.rss_limit_mb:
            child.killed = (f"stopped at {rss / 1024:.1f} GiB resident: more than the "
                            f"{child.rss_limit_mb / 1024:.1f} GiB of memory available to it")
        elif time.time() - child.started > self.timeout:
            child.killed = f"stopped after the {self.timeout} s time limit"
        if child.killed:
            child.proc.kill()
            child.proc.wait()
            return True
        return False

    def _finish(self, child):
        results = []
        if os.path.exists(child.result_path):
            with open(child.result_path) as f:
                results = json.load(f)
        if len(results) < len(child.tasks):
            if child.killed:
                reason = child.killed
            else:
                with open(child.base + ".log") as f:
                    tail = f.read().strip().splitlines()[-3:]
                reason = (f"child exited with status {child.proc.returncode}: "
                          + " | ".join(tail))
            results += [{"error": reason, "skipped": bool(child.killed),
                         "peak_rss_seen_mb": child.peak_seen}
                        for _ in child.tasks[len(results):]]
        child.results = results
        self.log(f"    done: {child.what} ({time.time() - child.started:.0f} s)")

    def run(self, children):
        """Run every child; fills in ``child.results`` (one dict per task, errors included)."""
        pending, active = list(children), []
        try:
            while pending or active:
                while pending and len(active) < self.jobs:
                    child = pending.pop(0)
                    self._start(child)
                    active.append(child)
                for child in [c for c in active if self._check(c)]:
                    active.remove(child)
                    self._finish(child)
                time.sleep(0.1)
        except BaseException:
            for child in active:
                child.proc.kill()
                child.proc.wait()
            raise
        return children


def _plan_children(plan, runs_dir, model_dir):
    """The timing children (:class:`_Child`), in run order.

    The first one also writes the run directories of the paper and small
    models (with its own thread settings, so the pools stay as planned).
    """
    warm, runs = plan["ceiling_runs"]
    ceiling = {"kind": "ceiling", "matmul": plan["matmul"], "conv": list(plan["conv"]),
               "warmup": warm, "runs": runs}

    def codec(model, run_dir):
        warm, runs = plan["codec_runs"][model]
        return {"kind": "codec", "model": model, "run_dir": run_dir, "size": list(plan["size"]),
                "warmup": warm, "runs": runs}

    def train(model):
        t = plan["train"][model]
        return {"kind": "train", "model": model, "config": plan["configs"][model].to_dict(),
                "crop": list(t["crop"]), "batch": t["batch"], "warmup": t["warmup"],
                "runs": t["runs"]}

    variants = list(dict.fromkeys(plan["inference_threads"] + plan["train_threads"]))
    children = []
    for round_index in range(plan["rounds"]):
        settings = (True, False) if round_index % 2 == 0 else (False, True)
        for onednn in settings:
            for threads in variants:
                tasks = []
                if not children:
                    tasks.append({"kind": "init", "dir": runs_dir,
                                  "configs": {k: c.to_dict() for k, c in plan["configs"].items()}})
                if threads == INFERENCE_THREADS:
                    tasks.append(ceiling)
                if threads in plan["inference_threads"]:
                    tasks.append(codec("small", os.path.join(runs_dir, "small")))
                    if round_index == 0 and threads == INFERENCE_THREADS:
                        tasks.append(codec("paper", os.path.join(runs_dir, "paper")))
                        if model_dir:
                            tasks.append(codec("given", model_dir))
                if threads in plan["train_threads"]:
                    tasks.append(train("small"))
                what = f"round {round_index + 1}: " + ", ".join(
                    t["kind"] + (f" {t['model']}" if "model" in t else "") for t in tasks)
                children.append(_Child(tasks, onednn, threads, what))
    return children


def _key(task, onednn, threads):
    return (task["kind"], task.get("model"), onednn, tuple(threads))


def _pool(items):
    """Merge the results of equal measurements from several rounds."""
    pooled = {}
    for key, task, result in items:
        entry = pooled.setdefault(key, {"task": task, "results": []})
        entry["results"].append(result)
    return pooled


def _gflops(flops, seconds):
    return flops / seconds / 1e9 if seconds else None


def _summarize_ceiling(pooled):
    ceiling = {}
    for (kind, _, onednn, _threads), entry in pooled.items():
        if kind != "ceiling":
            continue
        ok = [r for r in entry["results"] if "error" not in r]
        name = "onednn_on" if onednn else "onednn_off"
        if not ok:
            ceiling[name] = {"error": entry["results"][0]["error"]}
            continue
        row = {}
        for op in ("matmul", "conv"):
            seconds = [s for r in ok for s in r[op]["seconds"]]
            row[f"{op}_s"] = _median(seconds)
            row[f"{op}_gflops"] = _gflops(ok[0][op]["flops"], _median(seconds))
            row[f"{op}_gflop"] = ok[0][op]["flops"] / 1e9
        row["best_gflops"] = max(row["matmul_gflops"], row["conv_gflops"])
        ceiling[name] = row
    return ceiling


def _summarize_codec(pooled, ceiling):
    rows = []
    for (kind, model, onednn, threads), entry in pooled.items():
        if kind != "codec":
            continue
        task = entry["task"]
        base = {"model": model, "size": _size_label(task["size"]), "onednn": onednn,
                "threads": _threads_label(threads)}
        ok = [r for r in entry["results"] if "error" not in r]
        if not ok:
            rows.append({**base, "error": entry["results"][0]["error"]})
            continue
        samples = {k: [s for r in ok for s in r["samples"][k]] for k in ok[0]["samples"]}
        med = {k: _median(v) for k, v in samples.items()}
        best = ceiling.get("onednn_on" if onednn else "onednn_off", {}).get("best_gflops")
        enc_gflops = _gflops(ok[0]["encode_flops"], med["encode_s"])
        dec_gflops = _gflops(ok[0]["decode_flops"], med["decode_s"])
        rows.append({
            **base,
            "width": ok[0]["config"]["width"], "channels": ok[0]["config"]["channels"],
            "runs": len(samples["decode_s"]),
            **med,
            "entropy_share": (med["entropy_encode_s"] + med["entropy_decode_s"]) / med["decode_s"],
            "encode_gflop": ok[0]["encode_flops"] / 1e9,
            "decode_gflop": ok[0]["decode_flops"] / 1e9,
            "encode_gflops": enc_gflops, "decode_gflops": dec_gflops,
            "encode_ceiling_ratio": enc_gflops / best if best else None,
            "decode_ceiling_ratio": dec_gflops / best if best else None,
            "bytes": ok[0]["bytes"], "bpp": ok[0]["bpp"],
            "load_s": _median([r["load_s"] for r in ok]),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in ok),
        })
    return rows


def _summarize_train(pooled, extra=()):
    rows = []
    for (kind, model, onednn, threads), entry in list(pooled.items()) + list(extra):
        if kind != "train":
            continue
        task = entry["task"]
        base = {"model": model, "crop": _size_label(task["crop"]), "batch": task["batch"],
                "onednn": onednn, "threads": _threads_label(threads)}
        ok = [r for r in entry["results"] if "error" not in r]
        if not ok:
            first = entry["results"][0]
            rows.append({**base, "skipped": first["error"],
                         "peak_rss_mb": first.get("peak_rss_seen_mb") or first.get("peak_rss_mb")})
            continue
        seconds = [s for r in ok for s in r["seconds"]]
        step = _median(seconds)
        rows.append({**base, "runs": len(seconds), "step_s": step,
                     "images_per_s": task["batch"] / step,
                     "build_s": _median([r["build_s"] for r in ok]),
                     "peak_rss_mb": max(r["peak_rss_mb"] for r in ok)})
    return rows


def _best(rows, key, model):
    """The fastest row of ``model`` by ``key`` and a sentence comparing all of them."""
    candidates = [r for r in rows if r.get("model") == model and r.get(key) is not None]
    if not candidates:
        return None, "not measured"
    candidates.sort(key=lambda r: r[key])
    best = candidates[0]

    def name(r):
        return f"oneDNN {'on' if r['onednn'] else 'off'}, {r['threads']}"

    others = "; ".join(f"{name(r)} {r[key]:.3f} s ({r[key] / best[key]:.2f}x)"
                       for r in candidates[1:])
    return best, f"fastest: {name(best)} {best[key]:.3f} s" + (f"; {others}" if others else "")


def _findings(codec_rows, train_rows):
    findings = {}
    best, text = _best(codec_rows, "decode_s", "small")
    findings["inference_decode"] = text
    findings["inference_best"] = ({"onednn": best["onednn"], "threads": best["threads"]}
                                  if best else None)
    _, findings["inference_encode"] = _best(codec_rows, "encode_s", "small")
    best, text = _best(train_rows, "step_s", "small")
    findings["training"] = text
    findings["training_best"] = ({"onednn": best["onednn"], "threads": best["threads"]}
                                 if best else None)
    for model in ("paper",):
        _, findings[f"{model}_decode"] = _best(codec_rows, "decode_s", model)
    return findings


def _fmt(value, spec):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "on" if value else "off"
    return format(value, spec) if spec else str(value)


def _table(rows, columns):
    """Aligned plain-text table; ``columns`` is ``[(key, header, format)]``."""
    cells = [[_fmt(r.get(k), f) for k, _, f in columns] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, (_, h, _) in enumerate(columns)]
    lines = ["  ".join(h.rjust(w) for (_, h, _), w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(cell, widths, strict=True)) for cell in cells]
    return "\n".join(lines)


def format_report(result):
    """The readable tables of a benchmark result (the JSON written by ``--out``)."""
    out = []
    machine = result["machine"]
    out.append(f"{machine['cpu']} ({machine['cores']} cores), {machine['memory_gib']:.1f} GiB, "
               f"TensorFlow {machine['tensorflow']}, load average at start "
               f"{machine['load_average_start']}" + ("  [QUICK: tiny sizes]" if result["quick"]
                                                     else ""))
    out.append("\n(a) ceiling, graph-mode session, " + _threads_label(INFERENCE_THREADS))
    crow = [{"onednn": k == "onednn_on", **v} for k, v in result["ceiling"].items()]
    out.append(_table(crow, [("onednn", "oneDNN", ""), ("matmul_gflops", "matmul GFLOP/s", ".1f"),
                             ("conv_gflops", "conv3x3 GFLOP/s", ".1f"), ("error", "error", "")]))
    out.append(f"\n(b, c) codec at {_size_label(result['settings']['size'])}, batch 1 "
               "(entropy = encode_symbols + decode_symbols, share of decode)")
    out.append(_table(result["inference"], [
        ("model", "model", ""), ("onednn", "oneDNN", ""), ("threads", "threads", ""),
        ("encode_s", "encode s", ".3f"), ("decode_s", "decode s", ".3f"),
        ("encode_gflops", "enc GFLOP/s", ".1f"), ("decode_gflops", "dec GFLOP/s", ".1f"),
        ("decode_ceiling_ratio", "dec/ceiling", ".2f"),
        ("entropy_encode_s", "ent enc s", ".4f"), ("entropy_decode_s", "ent dec s", ".4f"),
        ("entropy_share", "ent share", ".1%"), ("error", "error", "")]))
    out.append("\n(d) peak resident memory of a process that loads the model and decodes "
               "one file (gcompress decode settings)")
    out.append(_table(result["memory"], [
        ("model", "model", ""), ("size", "size HxW", ""), ("tiled", "tiled", ""),
        ("rss_after_load_mb", "after load MiB", ".0f"), ("peak_rss_mb", "peak MiB", ".0f"),
        ("decode_s", "decode s", ".2f"), ("error", "error", "")]))
    out.append("\n(e) training step (G and D updated), batch 2")
    out.append(_table(result["training"], [
        ("model", "model", ""), ("crop", "crop", ""), ("onednn", "oneDNN", ""),
        ("threads", "threads", ""), ("step_s", "step s", ".3f"),
        ("images_per_s", "images/s", ".2f"), ("peak_rss_mb", "peak MiB", ".0f"),
        ("skipped", "skipped", "")]))
    out.append("\nfindings")
    for key in ("inference_decode", "inference_encode", "training", "paper_decode"):
        out.append(f"  {key}: {result['findings'].get(key)}")
    return "\n".join(out)


def _machine():
    cpu = platform.processor() or platform.machine()
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in text.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    from importlib.metadata import PackageNotFoundError, version

    try:
        tf_version = version("tensorflow")
    except PackageNotFoundError:
        tf_version = "unknown"
    return {"cpu": cpu, "cores": CORES, "memory_gib": (_meminfo_mb("MemTotal") or 0) / 1024,
            "tensorflow": tf_version, "python": platform.python_version(),
            "load_average_start": [round(v, 2) for v in os.getloadavg()]}


def run_benchmark(quick=False, model_dir=None, log=None):
    """Measure everything (see the module docstring) and return the result dict."""
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    plan = _quick_plan() if quick else _full_plan()
    started = time.time()
    result = {"date": time.strftime("%Y-%m-%d"), "quick": quick, "machine": _machine()}
    result["settings"] = {
        "size": list(plan["size"]), "memory_sizes": [list(s) for s in plan["memory_sizes"]],
        "configs": {k: c.to_dict() for k, c in plan["configs"].items()},
        "train": {k: {**v, "crop": list(v["crop"])} for k, v in plan["train"].items()},
        "matmul": plan["matmul"], "conv": list(plan["conv"]), "rounds": plan["rounds"],
        "inference_threads": [_threads_label(t) for t in plan["inference_threads"]],
        "train_threads": [_threads_label(t) for t in plan["train_threads"]],
        "model": os.path.abspath(model_dir) if model_dir else None,
    }
    with tempfile.TemporaryDirectory(prefix="gcompress-bench-") as tmp:
        runs_dir = os.path.join(tmp, "runs")
        # Quick numbers mean nothing, so its children may share the cores.
        runner = _Runner(tmp, plan["timeout"], log, jobs=plan["jobs"])
        log("timing (ceiling, codec, training step); the first child writes the models")
        timing = _plan_children(plan, runs_dir, model_dir)
        runner.run(timing[:1])  # the others need its run directories
        init = timing[0].results[0]
        if "error" in init:
            raise RuntimeError(f"could not create the benchmark models: {init['error']}")
        memory_children = [
            _Child([{"kind": "memory", "model": model, "size": list(size),
                     "run_dir": os.path.join(runs_dir, model)}], CLI_ONEDNN, INFERENCE_THREADS,
                   what=f"decode {model} {_size_label(size)}")
            for model in ("small", "paper") for size in plan["memory_sizes"]]
        train_cfg = plan["train"]["paper"]
        paper_task = {"kind": "train", "model": "paper",
                      "config": plan["configs"]["paper"].to_dict(),
                      "crop": list(train_cfg["crop"]), "batch": train_cfg["batch"],
                      "warmup": train_cfg["warmup"], "runs": train_cfg["runs"]}
        # What is available when it starts, less a margin for everything else.
        paper_train = _Child([paper_task], True, DEFAULT_THREADS, "train paper",
                             rss_limit_mb=lambda: max((_meminfo_mb("MemAvailable") or 0) - 1536,
                                                      512))
        if plan["jobs"] > 1:
            runner.run(timing[1:] + memory_children + [paper_train])
        else:
            runner.run(timing[1:])
            log("peak memory of decoding (one process each), then a training step of the "
                "paper model (memory watched)")
            runner.run(memory_children + [paper_train])
        items = [(_key(task, c.onednn, c.threads), task, res)
                 for c in timing for task, res in zip(c.tasks, c.results, strict=True)
                 if task["kind"] != "init"]
        pooled = _pool(items)
        memory = []
        for child in memory_children:
            row = {"model": child.tasks[0]["model"], "size": _size_label(child.tasks[0]["size"])}
            row.update({k: v for k, v in child.results[0].items() if k != "shape"})
            memory.append(row)
        extra = _pool([(_key(paper_task, True, DEFAULT_THREADS), paper_task,
                        paper_train.results[0])])

    result["ceiling"] = _summarize_ceiling(pooled)
    result["inference"] = _summarize_codec(pooled, result["ceiling"])
    result["memory"] = memory
    result["training"] = _summarize_train(pooled, extra.items())
    result["memory_limit_mb_paper_training"] = paper_train.rss_limit_mb
    result["findings"] = _findings(result["inference"], result["training"])
    result["seconds"] = time.time() - started
    result["machine"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="also time this trained run directory")
    parser.add_argument("--quick", action="store_true",
                        help="tiny models and sizes (seconds; for tests, numbers meaningless)")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--force", action="store_true", help="overwrite --out")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(args.child)
        return 0
    if args.out:
        if not args.out.lower().endswith(".json"):
            parser.error(f"--out {args.out!r} must end in .json")
        if os.path.exists(args.out) and not args.force:
            parser.error(f"{args.out} exists; pass --force to overwrite it")
    if args.model:
        if not os.path.exists(os.path.join(args.model, "config.json")):
            parser.error(f"--model {args.model!r} is not a run directory (no config.json)")
    try:
        result = run_benchmark(quick=args.quick, model_dir=args.model)
    except KeyboardInterrupt:
        print("benchmark: interrupted", file=sys.stderr)
        return 130
    except RuntimeError as e:
        print(f"benchmark: error: {e}", file=sys.stderr)
        return 1
    print(format_report(result))
    if args.out:
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
        os.replace(tmp, args.out)
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
