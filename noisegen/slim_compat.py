"""tf-slim on TensorFlow 2.21: the one place that makes ``import tf_slim`` work.

Why this module exists.  tf-slim 1.1.0 (its last release, 2020) is the
maintained home of ``tf.contrib.layers`` (``arg_scope``, Xavier init, the
layers the original TF1 models were written with), but it imports two names
that TensorFlow has since removed:

* ``tensorflow.python.framework.ops.Tensor`` (the class now lives in
  ``tensorflow.python.framework.tensor``; it is ``tf.Tensor``), and
* ``tensorflow.python.ops.control_flow_ops.cond`` (now ``tf.compat.v1.cond``).

:func:`apply` puts back exactly those two names, and only where they are
missing, before ``tf_slim`` is imported.  Nothing else of TensorFlow is
touched.  One Python warnings filter hides the ``layer.apply is deprecated``
``UserWarning`` that TF's legacy layer base class issues every time a slim
layer is built (slim calls ``apply``; users can do nothing about it).

A third problem is not a missing name: ``slim.batch_norm`` on 4-D input with
the default ``updates_collections=UPDATE_OPS`` falls into the Keras
``BatchNormalization`` path, which is broken in 2.21.  :func:`batch_norm` is
slim's with ``updates_collections=None`` fixed (the moving averages update as
a control dependency of the output, slim's fused kernel), so every batch norm
of this project goes through the path that works.

When it can go: when a tf-slim release imports on the TensorFlow this
project pins (``python -c "import tf_slim"`` with a clean environment), drop
:func:`apply`; when its ``batch_norm`` works with ``UPDATE_OPS`` on 4-D input,
:func:`batch_norm` can become ``slim.batch_norm``.
"""

import warnings

import tensorflow as tf
from tensorflow.python.framework import ops as _ops
from tensorflow.python.ops import control_flow_ops as _control_flow_ops

__all__ = ["apply", "slim", "batch_norm", "RESTORED"]

#: ``(module, name, value)`` of every symbol this module may restore.
RESTORED = (
    (_ops, "Tensor", tf.Tensor),
    (_control_flow_ops, "cond", tf.compat.v1.cond),
)


def apply():
    """Restore the two removed symbols (where missing) and return the ``tf_slim`` module."""
    for module, name, value in RESTORED:
        if not hasattr(module, name):
            setattr(module, name, value)
    warnings.filterwarnings(
        "ignore", message=r"`layer\.apply` is deprecated", category=UserWarning)
    import tf_slim

    return tf_slim


slim = apply()


def batch_norm(inputs, **kwargs):
    """``slim.batch_norm`` with ``updates_collections=None``; other arguments as slim's.

    Moving statistics update whenever the output is computed in training mode
    (no ``UPDATE_OPS`` to run).  Passing another ``updates_collections`` is
    an error: that path is broken in TensorFlow 2.21 (see the module docstring).
    """
    if kwargs.get("updates_collections", None) is not None:
        raise ValueError(
            "updates_collections must be None: slim's UPDATE_OPS batch norm path is broken "
            "on TensorFlow 2.21 (see noisegen.slim_compat)"
        )
    kwargs["updates_collections"] = None
    return slim.batch_norm(inputs, **kwargs)
