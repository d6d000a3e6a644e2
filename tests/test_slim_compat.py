"""Tests for noisegen.slim_compat: tf-slim 1.1 on TensorFlow 2.21, and nothing else changed."""

import json
import subprocess

from conftest import PYTHON, subprocess_env

# Runs in a fresh interpreter: the snapshot must be taken before anything imports the shim.
PROBE = r"""
import json, sys, types
import tensorflow as tf
from tensorflow.python.framework import ops
from tensorflow.python.ops import control_flow_ops

def snapshot():
    out = {}
    for name, mod in list(sys.modules.items()):
        if name.startswith("tensorflow") and isinstance(mod, types.ModuleType):
            try:
                # Submodules bound to their package on first import, lazy loaders
                # turning into modules, and dunders are import machinery, not patches.
                out[name] = {k: id(v) for k, v in vars(mod).items()
                             if not isinstance(v, types.ModuleType)
                             and type(v).__name__ != "LazyLoader"
                             and not k.startswith("__")}
            except TypeError:
                pass
    return out

missing = [hasattr(ops, "Tensor"), hasattr(control_flow_ops, "cond")]
before = snapshot()
import noisegen  # applies the shim
after = snapshot()
changed = []
for name, attrs in before.items():
    now = after.get(name, {})
    for key in set(attrs) | set(now):
        if attrs.get(key) != now.get(key):
            changed.append(f"{name}.{key}")
import tf_slim
print(json.dumps({
    "had_before": missing,
    "changed": sorted(changed),
    "tensor_is_tf_tensor": ops.Tensor is tf.Tensor,
    "cond_is_v1_cond": control_flow_ops.cond is tf.compat.v1.cond,
    "slim_layers": all(hasattr(tf_slim, n) for n in (
        "conv2d", "conv2d_transpose", "fully_connected", "batch_norm", "instance_norm",
        "avg_pool2d", "arg_scope")),
}))
"""


def run_probe():
    result = subprocess.run([PYTHON, "-c", PROBE], capture_output=True, text=True,
                            env=subprocess_env(), timeout=300, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def test_shim_restores_exactly_the_two_removed_symbols():
    report, _ = run_probe()
    # TF 2.21 removed both; the day it has them again, the shim leaves them alone.
    assert report["had_before"] == [False, False]
    # Only the two names appear in TensorFlow's modules; no existing attribute changes.
    # (Modules that tf_slim imports for the first time are not in the snapshot.)
    assert report["changed"] == [
        "tensorflow.python.framework.ops.Tensor",
        "tensorflow.python.ops.control_flow_ops.cond",
    ]
    assert report["tensor_is_tf_tensor"] and report["cond_is_v1_cond"]
    assert report["slim_layers"]


def test_import_noisegen_prints_no_deprecation_warnings():
    _, stderr = run_probe()
    lines = [line for line in stderr.splitlines()
             if not line.startswith(("I0000", "WARNING: All log messages", "E0000"))]
    assert not [line for line in lines if "deprecat" in line.lower()], lines


def test_building_slim_layers_prints_no_deprecation_warnings():
    # -W default shows every warning once; the legacy-layer one must not be among them.
    code = ("import tensorflow as tf, noisegen\n"
            "with tf.Graph().as_default():\n"
            "    noisegen.dcgan_generator(tf.zeros([2, 16]), None, True, 4, upsample_dim=32)\n"
            "print('built')\n")
    out = subprocess.run([PYTHON, "-W", "default", "-c", code], capture_output=True, text=True,
                         env=subprocess_env(), timeout=300, check=True)
    assert out.stdout.strip() == "built"
    assert "layer.apply" not in out.stderr, out.stderr
