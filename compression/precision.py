"""Mixed-precision training by TensorFlow's graph rewrites (``train --precision``).

``mixed_bfloat16`` turns on Grappler's oneDNN bfloat16 rewrite
(``auto_mixed_precision_onednn_bfloat16``): convolutions, matmuls and the
element-wise ops between them run in bfloat16 on the CPU, while variables,
Adam's moments, reductions and the losses stay float32.  bfloat16 has
float32's exponent range, so no loss scaling is needed.  It is fast on
CPUs with native bfloat16 (``avx512_bf16`` or ``amx_bf16``): measured here
(2 cores with avx512_bf16), a width-0.25 distortion step at 256x256, batch 2,
takes 0.25 s instead of 0.41 s.  The rewrite acts on CPU ops only.

Checkpoints do not change: the weights are float32 in every mode, so a run
resumes, exports and decodes the same whatever precision trained it.  The
validation inside a bfloat16 run is computed in bfloat16 too; evaluate a
checkpoint with ``gcompress evaluate`` for float32 figures.

``mixed_float16`` is for GPUs (tensor cores): Grappler's
``auto_mixed_precision`` rewrite casts the GPU ops to float16, and both
optimisers are wrapped in ``MixedPrecisionLossScaleOptimizer`` with a dynamic
loss scale (float16's range is too small for raw gradients).  A step whose
scaled gradients overflow is skipped and not counted: ``global_step`` counts
applied updates, and the trainer follows it.  The scale's variables start
afresh each run (they are not checkpointed).  Without a GPU it is refused:
the rewrite would do nothing, and TensorFlow 2.21's CPU emulation of it
(``auto_mixed_precision_cpu``) crashes the process on this model's graph.
"""

import os

from compression.errors import CompressionError

__all__ = ["PRECISIONS", "apply_precision", "check_precision", "cpu_flags", "loss_scale",
           "native_bfloat16"]

#: ``--precision`` values.
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def check_precision(name, gpus=None):
    """Validate a ``--precision`` value; returns it.

    ``gpus``: how many GPUs this process sees (default: ask TensorFlow);
    ``mixed_float16`` needs one.
    """
    if name not in PRECISIONS:
        raise CompressionError(f"--precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    if name == "mixed_float16":
        if gpus is None:
            import tensorflow as tf

            gpus = len(tf.config.list_physical_devices("GPU"))
        if not gpus:
            raise CompressionError(
                "--precision mixed_float16 needs a GPU (float16 math is for tensor cores), "
                "and TensorFlow sees none; on a CPU use --precision mixed_bfloat16")
    return name


def loss_scale(name):
    """The loss scale that precision ``name`` trains with: ``"dynamic"`` or None."""
    return "dynamic" if check_precision(name, gpus=1) == "mixed_float16" else None


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The words of ``cpuinfo`` (its flags among them), or None when it cannot be read."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            return set(f.read().split())
    except OSError:
        return None


def native_bfloat16(cpuinfo="/proc/cpuinfo"):
    """Whether this CPU has bfloat16 instructions (None when it cannot be told)."""
    flags = cpu_flags(cpuinfo)
    if flags is None:
        return None
    return "avx512_bf16" in flags or "amx_bf16" in flags


def apply_precision(tf_config, name, log=print):
    """Set ``tf_config``'s (a ``ConfigProto``) graph rewrite for precision ``name``."""
    from tensorflow.core.protobuf import rewriter_config_pb2

    check_precision(name, gpus=1)
    rewrites = tf_config.graph_options.rewrite_options
    if name == "mixed_float16":
        rewrites.auto_mixed_precision = rewriter_config_pb2.RewriterConfig.ON
    if name == "mixed_bfloat16":
        rewrites.auto_mixed_precision_onednn_bfloat16 = rewriter_config_pb2.RewriterConfig.ON
        if os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0":
            log("note: TF_ENABLE_ONEDNN_OPTS=0 turns oneDNN off; the bfloat16 rewrite needs it")
        if native_bfloat16() is False:
            log("note: this CPU has no native bfloat16 (avx512_bf16 or amx_bf16); "
                "mixed_bfloat16 is emulated and may be slower than float32")
    return tf_config
