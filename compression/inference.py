"""Loading a trained compressor for inference.

:func:`load_model` reads ``config.json`` from a run directory (or the
directory of a checkpoint prefix), builds the inference graphs once in a
graph and session of their own, restores the weights (the EMA weights of the
generator when the checkpoint has them) and returns a
:class:`CompressionModel` whose :meth:`~CompressionModel.encode` and
:meth:`~CompressionModel.decode` the codec calls for every image.
"""

import glob
import json
import os

import numpy as np
import tensorflow as tf

from compression.bitstream import MAX_MODEL_NAME, fingerprint
from compression.config import CompressionConfig
from compression.context_model import (
    MAX_CONTEXT_CENTERS,
    context_probabilities,
    context_size,
)
from compression.context_net import KEY_PREFIX as CONTEXT_NET_PREFIX
from compression.context_net import ContextNet
from compression.decoder import leading_channels
from compression.encoder import DOWNSAMPLING
from compression.entropy_model import probabilities_from_counts
from compression.errors import CompressionError, ConfigError, ModelLoadError
from compression.files import read_regular
from compression.gain import default_position
from compression.image_io import to_uint8
from compression.model import (
    GENERATOR_SCOPE,
    decode_tail,
    decoder_features,
    dequantized,
    encode,
    symbol_counts_variable,
)
from compression.selective import apply_mask
from compression.semantic import one_hot_labels
from compression.shipped import known_models_hint, resolve_name
from compression.weights import stored_float
from noisegen import sample_noise

__all__ = ["CompressionModel", "load_model", "resolve_run", "latest_checkpoint",
           "run_checkpoints", "checkpoint_candidates", "checkpoint_files", "checkpoint_problem",
           "checkpoint_step", "checkpoint_restorer",
           "CONFIG_NAME", "CONTEXT_COUNTS_KEY", "session_config", "initialize_run"]

CONFIG_NAME = "config.json"
#: Checkpoint key of a model's context counts ``[C, K, L]`` (:mod:`compression.context_model`);
#: written by ``gcompress export --entropy-data``, absent from training checkpoints.
CONTEXT_COUNTS_KEY = "entropy_model/context_counts"
#: The model card of an exported or shipped model (see :mod:`compression.export`).
CARD_NAME = "card.json"
_EMA_SUFFIX = "/ExponentialMovingAverage"

_v1 = tf.compat.v1


def session_config(inference=True):
    """Session settings measured on 2-core CPUs (see docs/benchmarks.md).

    Inference: intra-op threads = all cores, one inter-op thread (the graph is
    a chain of large ops; parallel ops only contend for the cores).
    """
    cfg = _v1.ConfigProto()
    cfg.allow_soft_placement = True
    cfg.gpu_options.allow_growth = True
    if inference:
        cfg.inter_op_parallelism_threads = 1
        cfg.intra_op_parallelism_threads = os.cpu_count() or 1
    return cfg


def run_checkpoints(run_dir):
    """The checkpoint prefixes that ``run_dir``'s ``checkpoint`` index lists, oldest first.

    Every prefix is looked for inside ``run_dir``: runs written before the
    trainer saved relative paths name their checkpoints by absolute paths,
    which point at the old place once the run is moved or copied (``--force``
    moves a run aside).  The newest is last; an empty list if there is no index.
    """
    state = tf.train.get_checkpoint_state(run_dir)
    if state is None or not state.model_checkpoint_path:
        return []
    names = [os.path.basename(p) for p in state.all_model_checkpoint_paths]
    newest = os.path.basename(state.model_checkpoint_path)
    return [os.path.join(run_dir, n) for n in names if n != newest] + [
        os.path.join(run_dir, newest)]


def checkpoint_step(prefix):
    """The step in a checkpoint prefix's name (``RUN/ckpt-1500`` -> 1500), or -1."""
    tail = os.path.basename(prefix).rpartition("-")[2]
    return int(tail) if tail.isdigit() else -1


def checkpoint_candidates(run_dir):
    """Every checkpoint prefix in ``run_dir`` that has an ``.index`` file, newest first.

    The ``checkpoint`` index's list plus any ``ckpt-<step>.index`` on disk,
    ordered by step: a deleted or stale index, or a missing newest
    ``.index``, never hides the intact checkpoints that are there.
    """
    prefixes = set(run_checkpoints(run_dir))
    prefixes.update(p[:-len(".index")] for p in glob.glob(
        os.path.join(glob.escape(os.fspath(run_dir)), "ckpt-*.index")))
    found = [p for p in prefixes if os.path.isfile(p + ".index")]
    return sorted(found, key=lambda p: (checkpoint_step(p), p), reverse=True)


def checkpoint_files(run_dir):
    """Names of every checkpoint file (``ckpt-*``) in ``run_dir``, damaged ones included."""
    return sorted(os.path.basename(p) for p in glob.glob(
        os.path.join(glob.escape(os.fspath(run_dir)), "ckpt-*")))


def checkpoint_problem(prefix):
    """None if every tensor of checkpoint ``prefix`` reads back, else what is wrong (one line).

    Reads the whole checkpoint, so a truncated ``.data`` file is found here
    rather than in the middle of a restore.
    """
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception as e:  # any damage: truncated, missing shard, bad index
        return op_error_summary(e)
    return None


def op_error_summary(error):
    """The informative line of a TensorFlow error (not "Graph execution error:")."""
    text = getattr(error, "message", None) or str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if any(k in line for k in ("Data loss", "Not found", "not found", "corrupt",
                                   "Invalid argument", "Out of range", "truncated",
                                   "Unable to open", "Failed")):
            return line
    useful = [line for line in lines if not line.startswith(("Graph execution error",
                                                             "Detected at node", "[["))]
    return (useful or lines or [type(error).__name__])[0]


def latest_checkpoint(run_dir):
    """The newest checkpoint prefix in ``run_dir`` (see :func:`checkpoint_candidates`), or None."""
    prefixes = checkpoint_candidates(run_dir)
    return prefixes[0] if prefixes else None


def resolve_run(path):
    """``(run_dir, checkpoint_prefix)`` for a run directory, a checkpoint prefix or
    the name of a shipped model (:mod:`compression.shipped`; paths come first).

    Raises :class:`ModelLoadError` with the fix when nothing loadable is there.
    """
    path = resolve_name(path)
    if os.path.isdir(path):
        run_dir = path
        ckpt = latest_checkpoint(path)
        if ckpt is None:
            raise ModelLoadError(
                f"{path!r} holds no checkpoint yet; train one with "
                f"'gcompress train --out {path}' or pass a checkpoint prefix"
            )
    elif tf.io.gfile.exists(path + ".index"):
        run_dir, ckpt = os.path.dirname(path) or ".", path
    elif os.path.exists(path):
        raise ModelLoadError(
            f"{path!r} is neither a run directory nor a checkpoint prefix "
            "(such as RUN/ckpt-1000); pass the directory 'gcompress train --out' wrote"
        )
    else:
        raise ModelLoadError(f"model {path!r} does not exist; {known_models_hint()}")
    if not os.path.exists(os.path.join(run_dir, CONFIG_NAME)):
        raise ModelLoadError(
            f"{run_dir!r} has no {CONFIG_NAME}; a run directory written by "
            "'gcompress train' always has one"
        )
    return run_dir, ckpt


def model_name(run_dir):
    """The name files of the model in ``run_dir`` carry: its card's ``name``, else the folder's.

    A name that a file cannot carry (not printable, over
    :data:`~compression.bitstream.MAX_MODEL_NAME` UTF-8 bytes) gives ``""``.
    """
    name = ""
    card = os.path.join(run_dir, CARD_NAME)
    if os.path.isfile(card):
        try:
            name = json.loads(read_regular(card, 1 << 20, "model card")).get("name") or ""
        except (CompressionError, ValueError, AttributeError):
            name = ""  # a damaged card costs the name, not the model
    if not name:
        name = os.path.basename(os.path.normpath(os.path.abspath(run_dir)))
    valid = (isinstance(name, str) and name.isprintable()
             and len(name.encode("utf-8", "surrogatepass")) <= MAX_MODEL_NAME)
    return name if valid else ""


def checkpoint_restorer(checkpoint, var_list, reader=None):
    """``restore(sess)``: loads ``var_list`` (``{checkpoint key: variable}``) from ``checkpoint``.

    Where every stored dtype is the variable's, this is ``Saver.restore``;
    an export in float16 or int8 is cast (and dequantised) while loading, so
    a shipped model can seed a run (``train --init-from general``) as well as
    code with it.  Call it with the variables' graph as default: it adds ops.
    """
    reader = reader or tf.train.load_checkpoint(checkpoint)
    dtypes = reader.get_variable_to_dtype_map()
    if all(dtypes[k] == v.dtype.base_dtype for k, v in var_list.items()):
        # A Saver given {name: MirroredVariable} restores only the first replica's
        # copy (seen in TF 2.21); given a list it restores every copy.  The list
        # form keys each variable by its own name, so it serves when those agree.
        same_names = all(k == v.op.name for k, v in var_list.items())
        saver = _v1.train.Saver(var_list=list(var_list.values()) if same_names else var_list)
        return lambda sess: saver.restore(sess, checkpoint)
    placeholders, assigns = {}, []
    for key, v in var_list.items():
        placeholders[key] = _v1.placeholder(v.dtype.base_dtype, v.shape)
        assigns.append(v.assign(placeholders[key]))

    def restore(sess):
        try:
            values = {ph: stored_float(reader, key, checkpoint).astype(
                var_list[key].dtype.base_dtype.as_numpy_dtype)
                for key, ph in placeholders.items()}
        except ValueError as e:  # int8 kernels without fitting scales
            raise ModelLoadError(str(e)) from None
        sess.run(assigns, values)

    return restore


class CompressionModel:
    """A trained compressor, built once, ready to code many images.

    Attributes:
      config: the :class:`CompressionConfig` from ``config.json``.
      checkpoint: the checkpoint prefix the weights came from.
      probabilities: float64 ``[C, L]``, the per-channel entropy model.
      context_counts: float64 ``[C, K, L]`` symbol counts per context, or None
        when the checkpoint has none (:mod:`compression.context_model`).
      context_table: ``context_probabilities`` of them, or None: files are
        coded in context when this is set and it makes them shorter.
      context_net: the learned context model (:mod:`compression.context_net`)
        fitted at export, or None.  A model that has one codes in context
        with it instead of the table (the table still prices the rate in
        training and refinement).
      fingerprint: 16 bytes identifying config and decoder weights.
      name: the name files written with it carry (:func:`model_name`).
      uses_ema: whether EMA weights were loaded.

    ``tf_config`` is the ``tf.compat.v1.ConfigProto`` of the session
    (default :func:`session_config`); benchmarks pass others to compare
    thread settings.
    """

    #: Decode in tiles above this many output pixels (1024x1024).
    tile_threshold = 1024 * 1024
    #: Tile side in bottleneck pixels (32 -> 512x512 output pixels).
    tile_size = 32
    #: Above this many output pixels (2048x2048), tiles of :attr:`large_tile_size`:
    #: measured with the width-0.25 model at 4096x4096, 16-pixel tiles peak at
    #: 1.01 GiB against 1.21 GiB for 32 (and take 30% longer).
    large_image = 2048 * 2048
    large_tile_size = 16
    #: Overlap in bottleneck pixels on each side of a tile (64 output pixels).
    tile_halo = 4

    def __init__(self, run_dir, checkpoint, tf_config=None):
        self.run_dir = run_dir
        self.checkpoint = checkpoint
        self.config = CompressionConfig.load(os.path.join(run_dir, CONFIG_NAME))
        self.name = model_name(run_dir)
        cfg = self.config
        self.graph = tf.Graph()
        with self.graph.as_default():
            self._images = _v1.placeholder(tf.float32, [1, None, None, 3], name="images")
            self._symbols_in = _v1.placeholder(
                tf.int32, [1, None, None, cfg.channels], name="symbols"
            )
            self._seed = _v1.placeholder(tf.int64, [], name="noise_seed")
            self._labels = None
            one_hot = None
            if cfg.semantic_classes:
                self._labels = _v1.placeholder(tf.int32, [1, None, None], name="labels")
                one_hot = one_hot_labels(self._labels, cfg.semantic_classes)
            # A rate-adaptive model's rate position (compression.gain), for both halves.
            self._position = (_v1.placeholder_with_default(
                float(default_position(cfg)), [], name="rate_position")
                if cfg.rate_adaptive else None)
            self._latents, q = encode(self._images, cfg, position=self._position)
            self._symbols_out = q.symbols
            z = sample_noise(1, cfg.noise_dim, self._seed) if cfg.noise else None
            w_hat = dequantized(self._symbols_in, cfg, position=self._position)
            # Selective files: 1 where the bottleneck was coded, 0 where the decoder
            # synthesises (w_hat zeroed as in training, compression.selective).
            self._mask = _v1.placeholder_with_default(
                tf.ones_like(w_hat[..., :1]), [1, None, None, 1], name="selective_mask")
            w_hat = apply_mask(w_hat, self._mask)
            # How many leading channels are real (variable-rate models; the rest are filled).
            self._kept = _v1.placeholder_with_default(
                tf.constant(cfg.channels, tf.int32), [], name="kept_channels")
            # Per cell (a partly coded last channel): fed by decode's ``last_rows``.
            self._kept_cells = _v1.placeholder_with_default(
                tf.broadcast_to(leading_channels(self._kept, cfg.channels), tf.shape(w_hat)),
                [1, None, None, cfg.channels], name="kept_cells")
            self._features, _ = decoder_features(
                w_hat, cfg, False, z=z, labels_one_hot=one_hot,
                kept=self._kept_cells if cfg.variable_rate else None)
            self._reconstruction, _ = decode_tail(self._features, cfg)
            # The same upsampling tail on one tile of features, normalised with
            # statistics of the whole image (see decode_tiled).
            self._tile_in = _v1.placeholder(
                tf.float32, [1, None, None, cfg.filters[-1]], name="tile_features")
            self._tile_stats = [
                (_v1.placeholder(tf.float32, [k], name=f"u{i}_mean"),
                 _v1.placeholder(tf.float32, [k], name=f"u{i}_variance"))
                for i, k in enumerate(cfg.tail_filters, start=1)
            ]
            self._tile_out, self._tile_pre_norm = decode_tail(
                self._tile_in, cfg, statistics=self._tile_stats)
            self._counts = symbol_counts_variable(cfg)
            self.session = _v1.Session(graph=self.graph, config=tf_config or session_config())
            self.uses_ema = self._restore()
            counts = self.session.run(self._counts)
        self.has_learned_probabilities = bool(np.any(counts > 0))
        self.probabilities = probabilities_from_counts(counts if self.has_learned_probabilities
                                                       else None, cfg.channels, cfg.num_centers)
        self.context_table = (None if self.context_counts is None else
                              context_probabilities(self.context_counts, self.probabilities))
        self.fingerprint = self._fingerprint()

    def _restore(self):
        try:
            reader = tf.train.load_checkpoint(self.checkpoint)
            stored = reader.get_variable_to_shape_map()
        except Exception as e:  # corrupt or unreadable checkpoint files
            raise ModelLoadError(
                f"cannot read checkpoint {self.checkpoint!r}: {op_error_summary(e)}") from None
        self.context_counts = self._context_counts(reader, stored)
        self.context_net = self._context_net(reader, stored)
        var_list, uses_ema = {}, False
        for v in self.graph.get_collection(_v1.GraphKeys.GLOBAL_VARIABLES):
            name = v.name.split(":")[0]
            if name + _EMA_SUFFIX in stored:
                var_list[name + _EMA_SUFFIX] = v
                uses_ema = True
            elif name in stored:
                if list(stored[name]) != v.shape.as_list():
                    raise ModelLoadError(
                        f"checkpoint {self.checkpoint!r} does not match its config.json: "
                        f"{name} has shape {stored[name]}, the config builds {v.shape.as_list()}"
                    )
                var_list[name] = v
            else:
                raise ModelLoadError(
                    f"checkpoint {self.checkpoint!r} lacks variable {name!r} that its "
                    "config.json needs; was config.json replaced after training?"
                )
        try:
            with self.graph.as_default():
                checkpoint_restorer(self.checkpoint, var_list, reader)(self.session)
        except tf.errors.OpError as e:  # truncated or damaged .data files
            raise ModelLoadError(
                f"cannot read checkpoint {self.checkpoint!r}: {op_error_summary(e)}"
            ) from None
        return uses_ema

    def _context_counts(self, reader, stored):
        """The checkpoint's context counts as float64 ``[C, K, L]``, or None."""
        if CONTEXT_COUNTS_KEY not in stored:
            return None
        cfg = self.config
        if cfg.num_centers > MAX_CONTEXT_CENTERS:
            raise ModelLoadError(f"checkpoint {self.checkpoint!r} has context counts, but its "
                                 f"{cfg.num_centers} centres are more than context models "
                                 f"support ({MAX_CONTEXT_CENTERS})")
        expected = [cfg.channels, context_size(cfg.num_centers), cfg.num_centers]
        counts = reader.get_tensor(CONTEXT_COUNTS_KEY).astype(np.float64)
        if list(counts.shape) != expected or not np.all(np.isfinite(counts)) or np.any(counts < 0):
            raise ModelLoadError(
                f"checkpoint {self.checkpoint!r} has damaged context counts: shape "
                f"{list(counts.shape)} (the config needs {expected}), all finite and "
                "non-negative required; re-export the model with --entropy-data")
        return counts

    def _context_net(self, reader, stored):
        """The checkpoint's learned context model, or None."""
        if not any(key.startswith(CONTEXT_NET_PREFIX) for key in stored):
            return None
        cfg = self.config
        try:
            net = ContextNet.from_arrays(reader.get_tensor, has=stored.__contains__)
        except (ValueError, tf.errors.OpError) as e:
            raise ModelLoadError(f"checkpoint {self.checkpoint!r} has a damaged context net "
                                 f"({op_error_summary(e)}); re-export the model with "
                                 "--entropy-data") from None
        if (net.channels, net.num_centers) != (cfg.channels, cfg.num_centers):
            raise ModelLoadError(
                f"checkpoint {self.checkpoint!r} has a context net for {net.channels} channels "
                f"and {net.num_centers} centres, but its config.json has {cfg.channels} and "
                f"{cfg.num_centers}; re-export the model with --entropy-data")
        if net.rate_conditioned and not cfg.rate_adaptive:
            raise ModelLoadError(
                f"checkpoint {self.checkpoint!r} has a context net conditioned on rate "
                "positions, but its config.json has no rate_lambdas; re-export the model "
                "with --entropy-data")
        return net

    def inference_weights(self):
        """``{variable name: value}`` of every weight this model codes with, as loaded.

        EMA averages appear under their variables' own names (they are what
        the model uses); see :mod:`compression.export`.
        """
        with self.graph.as_default():
            variables = self.graph.get_collection(_v1.GraphKeys.GLOBAL_VARIABLES)
            values = self.session.run(variables)
        return {v.name.split(":")[0]: value for v, value in zip(variables, values, strict=True)}

    def _fingerprint(self):
        """16-byte digest of the config, every decoder-side weight and the entropy model."""
        with self.graph.as_default():
            variables = sorted(
                (v for v in self.graph.get_collection(_v1.GraphKeys.GLOBAL_VARIABLES)
                 if v.name.startswith(GENERATOR_SCOPE + "/") and "/encoder/" not in v.name),
                key=lambda v: v.name,
            )
            values = self.session.run(variables)
        tables = [self.probabilities]
        if self.context_table is not None:  # absent: the fingerprint of a model without one
            tables.append(self.context_table)
        if self.context_net is not None:  # likewise
            tables.extend(self.context_net.arrays().values())
        return fingerprint(self.config.fingerprint_json(), list(values) + tables)

    # -- the two halves -----------------------------------------------------

    def _check_labels(self, labels, height, width):
        if not self.config.semantic_classes:
            return {}
        if labels is None:
            raise ConfigError(
                "this model is conditioned on semantic label maps; pass labels [H, W]"
            )
        labels = np.asarray(labels)
        if labels.shape != (height, width):
            raise ConfigError(f"labels must have shape {(height, width)}, got {labels.shape}")
        return {self._labels: labels[None].astype(np.int32)}

    def encode(self, image, position=None):
        """Float image ``[H, W, 3]`` in [-1, 1] -> int32 symbols ``[H/16, W/16, C]``.

        ``H`` and ``W`` must be multiples of 16.  ``position``: a
        rate-adaptive model's rate position (:mod:`compression.gain`; a float
        in ``[0, K-1]``, default ``lambda_rate``'s).
        """
        return self.session.run(self._symbols_out, self._image_feed(image, position))[0]

    def latents(self, image, position=None):
        """The encoder's output before quantisation, float32 ``[H/16, W/16, C]``
        (a rate-adaptive model's times its encoder gain at ``position``).

        What :mod:`compression.refine` starts from; :meth:`encode` is its
        quantisation.  ``image`` and ``position`` as for :meth:`encode`.
        """
        return self.session.run(self._latents, self._image_feed(image, position))[0]

    def encode_with_latents(self, image, position=None):
        """``(symbols, latents)`` of :meth:`encode` and :meth:`latents` in one encoder pass."""
        symbols, latents = self.session.run([self._symbols_out, self._latents],
                                            self._image_feed(image, position))
        return symbols[0], latents[0]

    def position_feed(self, position):
        """The feed that sets the rate position (``{}``: the default, or a model of one rate).

        Raises :class:`~compression.errors.ConfigError` for a position outside
        ``[0, K-1]`` or given to a model of one rate.
        """
        if position is None:
            return {}
        cfg = self.config
        if not cfg.rate_adaptive:
            raise ConfigError("this model codes at one rate (it has no gain units); "
                              "a rate position applies to models trained with --rate-lambdas")
        span = len(cfg.rate_lambdas) - 1
        if not 0.0 <= float(position) <= span:
            raise ConfigError(f"rate position must be in [0, {span}], got {position}")
        return {self._position: float(position)}

    def _image_feed(self, image, position=None):
        image = np.asarray(image, np.float32)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ConfigError(f"image must have shape [H, W, 3], got {image.shape}")
        h, w = image.shape[:2]
        if h % DOWNSAMPLING or w % DOWNSAMPLING:
            raise ConfigError(
                f"image size {h}x{w} is not a multiple of 16; pad with "
                "compression.pad_to_multiple(image, 16)"
            )
        return {self._images: image[None], **self.position_feed(position)}

    def decode(self, symbols, seed, labels=None, tile=None, as_uint8=False, mask=None,
               last_rows=None, position=None):
        """Symbols ``[h, w, k]`` and the noise seed -> float image ``[16h, 16w, 3]`` in [-1, 1].

        ``k`` is ``C``, or for a variable-rate model any count of leading
        channels in ``[config.min_channels, C]``.

        ``seed`` is the file's u64 (seeds of 2**63 and above reach the
        noise generator as their two's-complement int64).  Images above
        :attr:`tile_threshold` pixels are decoded in tiles of ``tile`` x
        ``tile`` bottleneck pixels (default :attr:`tile_size`) so memory
        stays bounded; ``tile=0`` forces one pass.  Tiling is seam-free: see
        :meth:`decode_tiled`.  ``as_uint8``: return uint8 (see
        :func:`~compression.image_io.to_uint8`), converted tile by tile, so
        no float image of the whole size is ever held.  ``mask`` (uint8
        ``[h, w]``, selective files): cells where it is 0 are synthesised.
        ``last_rows`` (variable-rate models): only this many leading rows
        (``1 .. h-1``) of the last channel are real; its other rows are filled
        as a dropped channel's (:mod:`compression.rate_control`).  ``position``:
        a rate-adaptive model's rate position, as the file was encoded.
        """
        symbols = np.asarray(symbols)
        cfg = self.config
        if symbols.ndim != 3 or not cfg.smallest_channels <= symbols.shape[2] <= cfg.channels:
            wanted = (cfg.channels if not cfg.variable_rate
                      else f"{cfg.smallest_channels}..{cfg.channels}")
            raise ConfigError(f"symbols must have shape [h, w, {wanted}], got {symbols.shape}")
        h, w, kept = symbols.shape
        seed = int(seed)
        if not 0 <= seed < 2**64:
            raise ConfigError(f"seed must be in [0, 2**64), got {seed}")
        padded = np.zeros((1, h, w, cfg.channels), np.int32)
        padded[0, :, :, :kept] = symbols  # dropped channels: any symbol, the fill replaces it
        feed = {self._symbols_in: padded, self._kept: kept,
                self._seed: seed - 2**64 if seed >= 2**63 else seed,
                **self.position_feed(position)}
        if last_rows is not None:
            if not (cfg.variable_rate and kept > cfg.smallest_channels and isinstance(
                    last_rows, (int, np.integer)) and 1 <= last_rows < h):
                raise ConfigError(
                    f"last_rows (a partly coded last channel) must be 1..{h - 1} rows, after at "
                    f"least {cfg.smallest_channels} whole channels of a variable-rate model; "
                    f"got {last_rows!r} with {kept} channels")
            cells = np.zeros((1, h, w, cfg.channels), bool)
            cells[..., :kept - 1] = True
            cells[0, :last_rows, :, kept - 1] = True
            feed[self._kept_cells] = cells
        feed.update(self._check_labels(labels, 16 * h, 16 * w))
        if mask is not None:
            mask = np.asarray(mask)
            if mask.shape != (h, w):
                raise ConfigError(f"mask must have shape {(h, w)}, got {mask.shape}")
            feed[self._mask] = mask.reshape(1, h, w, 1).astype(np.float32)
        if tile is None:
            tile = self.tile_for(h, w)
        if not tile or (h <= tile and w <= tile):
            image = self.session.run(self._reconstruction, feed)[0]
            return to_uint8(image) if as_uint8 else image
        features = self.session.run(self._features, feed)[0]
        return self.decode_tiled(features, tile, as_uint8=as_uint8)

    def tile_for(self, h, w):
        """The tile size :meth:`decode` uses for an ``[h, w]`` bottleneck; 0 for one pass."""
        pixels = 256 * h * w
        if pixels <= self.tile_threshold:
            return 0
        tile = self.tile_size if pixels <= self.large_image else self.large_tile_size
        return tile if h > tile or w > tile else 0

    def decode_tiled(self, features, tile, as_uint8=False):
        """Run the decoder's upsampling tail over ``features`` ``[h, w, F]`` tile by tile.

        Every tile is extended by a halo of :attr:`tile_halo` bottleneck
        pixels (more than the tail's receptive field) and cropped back, so
        tiles see the same neighbourhood as a whole-image pass.  Instance norm
        needs moments over the whole image: one pass per upsampling stage
        accumulates them over the tiles' valid regions (float64), and later
        passes normalise every tile with them.  Only the latent-resolution
        features and one tile's activations are ever in memory.
        """
        h, w = features.shape[:2]
        halo = self.tile_halo
        tiles = []
        for r0 in range(0, h, tile):
            for c0 in range(0, w, tile):
                r1, c1 = min(r0 + tile, h), min(c0 + tile, w)
                i0, j0 = max(r0 - halo, 0), max(c0 - halo, 0)
                window = features[None, i0:min(r1 + halo, h), j0:min(c1 + halo, w)]
                tiles.append(((r0, r1, c0, c1), (i0, j0), window))
        feed = {}
        for stage, (mean_in, var_in) in enumerate(self._tile_stats):
            scale = 2 ** (stage + 1)
            total = square = 0.0
            count = 0
            for (r0, r1, c0, c1), (i0, j0), window in tiles:
                feed[self._tile_in] = window
                pre = self.session.run(self._tile_pre_norm[stage], feed)[0]
                valid = pre[(r0 - i0) * scale:(r1 - i0) * scale,
                            (c0 - j0) * scale:(c1 - j0) * scale].astype(np.float64)
                total = total + valid.sum(axis=(0, 1))
                square = square + np.square(valid).sum(axis=(0, 1))
                count += valid.shape[0] * valid.shape[1]
            mean = total / count
            feed[mean_in] = mean.astype(np.float32)
            feed[var_in] = np.maximum(square / count - mean * mean, 0.0).astype(np.float32)
        out = np.empty((16 * h, 16 * w, 3), np.uint8 if as_uint8 else np.float32)
        for (r0, r1, c0, c1), (i0, j0), window in tiles:
            feed[self._tile_in] = window
            image = self.session.run(self._tile_out, feed)[0]
            image = image[16 * (r0 - i0):16 * (r1 - i0), 16 * (c0 - j0):16 * (c1 - j0)]
            out[16 * r0:16 * r1, 16 * c0:16 * c1] = to_uint8(image) if as_uint8 else image
        return out

    def close(self):
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def load_model(path, tf_config=None):
    """Load a run directory (or checkpoint prefix) for inference; see :class:`CompressionModel`."""
    run_dir, ckpt = resolve_run(path)
    return CompressionModel(run_dir, ckpt, tf_config=tf_config)


def initialize_run(config, run_dir, seed=0, tf_config=None):
    """Write a loadable run directory with freshly initialised (untrained) weights.

    ``run_dir`` gets ``config.json`` and ``ckpt-0`` holding every variable
    the inference graph needs (initialised as for training, seeded by
    ``seed``; the symbol histogram is zero, so the entropy model is
    uniform).  The result codes real files at the model's true speed and
    memory, which is what benchmarks and smoke tests need; the images are
    of course meaningless.  ``tf_config`` is the session's ``ConfigProto``
    (default: :func:`session_config` for training).  Returns the checkpoint
    prefix.
    """
    run_dir = os.fspath(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    config.save(os.path.join(run_dir, CONFIG_NAME))
    graph = tf.Graph()
    with graph.as_default():
        _v1.set_random_seed(int(seed))
        images = _v1.placeholder(tf.float32, [1, None, None, 3])
        _, q = encode(images, config)
        z = sample_noise(1, config.noise_dim, 0) if config.noise else None
        one_hot = None
        if config.semantic_classes:
            labels = _v1.placeholder(tf.int32, [1, None, None])
            one_hot = one_hot_labels(labels, config.semantic_classes)
        features, _ = decoder_features(dequantized(q.symbols, config), config, False,
                                       z=z, labels_one_hot=one_hot)
        decode_tail(features, config)
        symbol_counts_variable(config)
        saver = _v1.train.Saver()
        tf_config = tf_config or session_config(inference=False)
        with _v1.Session(graph=graph, config=tf_config) as sess:
            sess.run(_v1.global_variables_initializer())
            return saver.save(sess, os.path.join(run_dir, "ckpt"), global_step=0,
                              write_meta_graph=False)
