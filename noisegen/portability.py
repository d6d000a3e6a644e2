"""Moving a trained noise generator between graphs, checkpoints and programs.

* :func:`load_generator_weights` fills a generator built in any graph, under
  any outer scope, from any checkpoint that holds one (a full compressor
  checkpoint, where it lives under ``generator/noise_generator/``, included).
* :func:`export_saved_model` writes a SavedModel whose ``serving_default``
  signature maps ``z``, ``height`` and ``width`` to the noise map; TF2 code
  runs it with ``tf.saved_model.load``.
* :func:`export_graph_def` writes a frozen GraphDef (weights as constants)
  that another graph imports with ``tf.compat.v1.import_graph_def`` and an
  ``input_map`` for ``z:0``.

Variables are matched by their name below ``noise_generator/`` (for example
``noise_generator/upsample2/BatchNorm/moving_mean``), which is stable whatever
the enclosing scopes are called.
"""

import os
import shutil
import tempfile

import tensorflow as tf
from tensorflow.python.util import deprecation

from noisegen.generator import SCOPE, dcgan_generator

__all__ = [
    "generator_variables",
    "load_generator_weights",
    "export_saved_model",
    "export_graph_def",
    "resolve_checkpoint",
]

_v1 = tf.compat.v1
_EMA_SUFFIX = "/ExponentialMovingAverage"


def _split(name, scope_name=SCOPE):
    """Split ``a/b/noise_generator/fc1/w`` into ``('a/b/', 'noise_generator/fc1/w')``."""
    parts = name.split("/")
    if scope_name not in parts[:-1]:
        return None
    i = parts.index(scope_name)
    prefix = "/".join(parts[:i])
    return (prefix + "/" if prefix else ""), "/".join(parts[i:])


def _var_name(v):
    return v.name.split(":")[0]


def _is_generator_param(suffix):
    """True for ``noise_generator/<layer>/weights`` and the like; False for
    optimizer slots or EMA shadows (``.../weights/Adam``) living under the scope."""
    parts = suffix.split("/")[1:]
    return (len(parts) == 2 and parts[1] in ("weights", "biases")) or (
        len(parts) == 3
        and parts[1] == "BatchNorm"
        and parts[2] in ("beta", "gamma", "moving_mean", "moving_variance")
    )


def generator_variables(scope=None, graph=None):
    """The global variables of noise generators in ``graph`` (default: the current one).

    ``scope`` restricts the search to generators built under that outer
    scope (``"generator"`` matches ``generator/noise_generator/...``).  Only
    the generator's own variables count: optimizer slots and EMA shadows that
    a training graph keeps under the same names are left out.
    """
    graph = graph or _v1.get_default_graph()
    found = []
    for v in graph.get_collection(_v1.GraphKeys.GLOBAL_VARIABLES):
        split = _split(_var_name(v))
        if split is None or not _is_generator_param(split[1]):
            continue
        prefix, _ = split
        if scope is not None and prefix.rstrip("/") != scope.strip("/"):
            continue
        found.append(v)
    return found


def resolve_checkpoint(checkpoint):
    """A checkpoint prefix from a prefix or a directory; clear errors otherwise."""
    checkpoint = os.fspath(checkpoint)
    if os.path.isdir(checkpoint):
        latest = tf.train.latest_checkpoint(checkpoint)
        if latest is None:
            raise FileNotFoundError(
                f"no checkpoint found in directory {checkpoint!r} "
                "(it has no 'checkpoint' index file); pass a checkpoint prefix such as RUN/ckpt-100"
            )
        return latest
    if not tf.io.gfile.exists(checkpoint + ".index"):
        raise FileNotFoundError(
            f"{checkpoint!r} is not a checkpoint: {checkpoint}.index does not exist; "
            "pass a run directory or a checkpoint prefix such as RUN/ckpt-100"
        )
    return checkpoint


def _checkpoint_generator_vars(path, checkpoint_scope):
    """Map ``noise_generator/...`` suffix -> list of (full name, shape) in the checkpoint."""
    table = {}
    for name, shape in tf.train.list_variables(path):
        split = _split(name)
        if split is None:
            continue
        prefix, suffix = split
        if checkpoint_scope is not None and prefix.rstrip("/") != checkpoint_scope.strip("/"):
            continue
        table.setdefault(suffix, []).append((name, shape))
    return table


def load_generator_weights(sess, checkpoint, scope=None, checkpoint_scope=None, prefer_ema=True):
    """Restore generator weights from ``checkpoint`` into the generator(s) in ``sess.graph``.

    Args:
      sess: a ``tf.compat.v1.Session`` whose graph holds a generator built with
        :func:`dcgan_generator` (variables need not be initialised).
      checkpoint: checkpoint prefix, or a directory whose latest checkpoint is used.
      scope: outer scope of the target generator in this graph (None: all).
      checkpoint_scope: outer scope of the generator inside the checkpoint,
        needed only if it holds several (e.g. ``"generator"``).
      prefer_ema: load exponential-moving-average weights when the checkpoint
        has them (``<name>/ExponentialMovingAverage``).

    Returns:
      dict mapping each restored graph variable name to the checkpoint name it
      was read from.

    Raises:
      FileNotFoundError: no checkpoint at that path.
      ValueError: no generator in the graph, a variable missing from the
        checkpoint, several candidates (pass ``checkpoint_scope``), or a shape
        mismatch (the generator was built with different ``C``/``noise_dim``).
    """
    path = resolve_checkpoint(checkpoint)
    targets = generator_variables(scope, sess.graph)
    if not targets:
        where = f" under scope {scope!r}" if scope else ""
        raise ValueError(
            f"the session's graph has no noise generator variables{where}; "
            "build one with noisegen.dcgan_generator before loading weights"
        )
    available = _checkpoint_generator_vars(path, checkpoint_scope)
    if not available:
        where = f" under scope {checkpoint_scope!r}" if checkpoint_scope else ""
        raise ValueError(f"checkpoint {path!r} holds no noise generator variables{where}")
    all_names = {name: shape for name, shape in tf.train.list_variables(path)}
    # One Saver maps each checkpoint name to one variable, and every generator
    # in the graph reads the same names: one var_list per generator.
    var_lists = {}
    for v in targets:
        _, suffix = _split(_var_name(v))
        candidates = available.get(suffix, [])
        if not candidates:
            raise ValueError(
                f"checkpoint {path!r} has no variable for {suffix!r} (needed by {_var_name(v)!r})"
            )
        if len(candidates) > 1:
            scopes = sorted(_split(name)[0].rstrip("/") or "<root>" for name, _ in candidates)
            raise ValueError(
                f"checkpoint {path!r} holds several noise generators (outer scopes {scopes}); "
                "pass checkpoint_scope= to choose one"
            )
        name, shape = candidates[0]
        if prefer_ema and name + _EMA_SUFFIX in all_names:
            name = name + _EMA_SUFFIX
        if list(shape) != v.shape.as_list():
            raise ValueError(
                f"shape mismatch for {suffix!r}: checkpoint has {list(shape)}, the graph's "
                f"generator has {v.shape.as_list()}; build it with the same C, noise_dim, "
                "upsample_dim and kernel_size as the trained one"
            )
        var_lists.setdefault(_split(_var_name(v))[0], {})[name] = v
    reader = tf.train.load_checkpoint(path)
    dtypes = reader.get_variable_to_dtype_map()
    restored = {}
    for var_list in var_lists.values():
        if all(dtypes[name] == v.dtype.base_dtype for name, v in var_list.items()):
            _v1.train.Saver(var_list=var_list).restore(sess, path)
        else:
            # A gcompress export or shipped model: float16 weights, or int8 kernels
            # with per-channel scales.  Feeding each variable's initial value loads
            # it without adding ops, so a finalized graph works too.
            from compression.weights import stored_float

            for name, v in var_list.items():
                value = stored_float(reader, name, path)
                sess.run(v.initializer,
                         {v.initial_value: value.astype(v.dtype.base_dtype.as_numpy_dtype)})
        restored.update({_var_name(v): name for name, v in var_list.items()})
    return restored


def _generator_hyperparameters(path, checkpoint_scope):
    """Read ``noise_dim``, ``upsample_dim``, ``kernel_size`` and ``C`` off checkpoint shapes."""
    table = _checkpoint_generator_vars(path, checkpoint_scope)

    def shape_of(suffix):
        entries = table.get(f"{SCOPE}/{suffix}", [])
        if len(entries) != 1:
            raise ValueError(
                f"checkpoint {path!r} has {len(entries)} variables named like "
                f"'.../{SCOPE}/{suffix}'; pass checkpoint_scope= to choose one generator"
            )
        return entries[0][1]

    noise_dim, grid = shape_of("fc1/weights")
    kernel_size = shape_of("upsample1/weights")[0]
    channels = shape_of("conv_out/weights")[3]
    return {
        "noise_dim": noise_dim,
        "upsample_dim": grid // 32,
        "kernel_size": kernel_size,
        "C": channels,
    }


def _build_for_export(checkpoint, checkpoint_scope, actv, default_size):
    """A fresh graph and session holding an inference generator with loaded weights."""
    path = resolve_checkpoint(checkpoint)
    hp = _generator_hyperparameters(path, checkpoint_scope)
    graph = tf.Graph()
    with graph.as_default():
        z = _v1.placeholder(tf.float32, [None, hp["noise_dim"]], name="z")
        height = _v1.placeholder_with_default(
            tf.constant(default_size[0], tf.int32), [], name="height"
        )
        width = _v1.placeholder_with_default(
            tf.constant(default_size[1], tf.int32), [], name="width"
        )
        noise = dcgan_generator(
            z, None, False, hp["C"], actv=actv, kernel_size=hp["kernel_size"],
            upsample_dim=hp["upsample_dim"], output_size=(height, width),
        )
        noise = tf.identity(noise, name="noise")
        sess = _v1.Session(graph=graph)
        load_generator_weights(sess, path, checkpoint_scope=checkpoint_scope)
    return graph, sess, {"z": z, "height": height, "width": width, "noise": noise}, hp


def _refuse_existing(path, what, overwrite, is_ours):
    """Stop unless ``path`` is free, or ``overwrite`` and it is an earlier export (``is_ours``)."""
    if not os.path.lexists(path):
        return
    if not overwrite:
        raise FileExistsError(
            f"{what} {path!r} already exists; pass overwrite=True to replace it, "
            "or choose another path"
        )
    if os.path.islink(path) or not is_ours(path):
        raise FileExistsError(
            f"{what} {path!r} exists and is not an earlier export of this kind; "
            "overwrite=True replaces only those, so remove it yourself or choose another path"
        )


def _is_saved_model(path):
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "saved_model.pb"))


def export_saved_model(checkpoint, export_dir, checkpoint_scope=None, actv=tf.nn.relu,
                       overwrite=False):
    """Export a trained generator as a SavedModel (inference mode).

    The ``serving_default`` signature takes ``z`` ``[B, noise_dim]`` float32,
    ``height`` and ``width`` (scalar int32, the bottleneck size) and returns
    ``{"noise": [B, height, width, C]}``.  ``noise_dim``, ``upsample_dim``,
    ``kernel_size`` and ``C`` are read from the checkpoint.  Returns them as a
    dict.  In TF2 eager code::

        fn = tf.saved_model.load(export_dir).signatures["serving_default"]
        noise = fn(z=z, height=tf.constant(32), width=tf.constant(64))["noise"]

    ``overwrite=True`` replaces an earlier SavedModel at ``export_dir`` (any
    other existing path is refused).  The new export is written next to it
    first, so a failure leaves the old one as it was.
    """
    export_dir = os.path.abspath(os.fspath(export_dir))
    _refuse_existing(export_dir, "export directory", overwrite, _is_saved_model)
    graph, sess, t, hp = _build_for_export(checkpoint, checkpoint_scope, actv, (32, 64))
    parent = os.path.dirname(export_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        _write_saved_model(graph, sess, t, staging)
        if os.path.lexists(export_dir):
            old = tempfile.mkdtemp(prefix=".replaced-", dir=parent)
            os.replace(export_dir, os.path.join(old, "model"))
            os.replace(staging, export_dir)
            shutil.rmtree(old)
        else:
            os.replace(staging, export_dir)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging)
    return hp


def _write_saved_model(graph, sess, t, export_dir):
    # The TF1 SavedModel builder is the point here; its deprecation notices are not news.
    with graph.as_default(), sess, deprecation.silence():
        signature = _v1.saved_model.signature_def_utils.predict_signature_def(
            inputs={"z": t["z"], "height": t["height"], "width": t["width"]},
            outputs={"noise": t["noise"]},
        )
        builder = _v1.saved_model.Builder(export_dir)
        builder.add_meta_graph_and_variables(
            sess,
            [_v1.saved_model.tag_constants.SERVING],
            signature_def_map={"serving_default": signature},
            strip_default_attrs=True,
        )
        builder.save()


def export_graph_def(checkpoint, path, checkpoint_scope=None, actv=tf.nn.relu,
                     overwrite=False):
    """Export a trained generator as a frozen GraphDef file (weights as constants).

    The graph has inputs ``z:0`` (``[None, noise_dim]`` float32), ``height:0``
    and ``width:0`` (scalar int32, defaulting to 32 and 64) and the output
    ``noise:0``.  Import it into another graph with::

        graph_def = tf.compat.v1.GraphDef.FromString(open(path, "rb").read())
        noise, = tf.compat.v1.import_graph_def(
            graph_def, input_map={"z:0": my_z}, return_elements=["noise:0"])

    Returns the generator's hyperparameters as a dict.  ``overwrite=True``
    replaces an existing regular file at ``path``; the new file is written
    beside it and renamed into place, so a failure leaves the old one intact.
    """
    path = os.path.abspath(os.fspath(path))
    _refuse_existing(path, "output file", overwrite, os.path.isfile)
    graph, sess, t, hp = _build_for_export(checkpoint, checkpoint_scope, actv, (32, 64))
    with graph.as_default(), sess, deprecation.silence():
        frozen = _v1.graph_util.convert_variables_to_constants(
            sess, graph.as_graph_def(), ["noise"]
        )
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".export-", suffix=".pb", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(frozen.SerializeToString())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return hp
