"""Loading a trained compressor for inference.

:func:`load_model` reads ``config.json`` from a run directory (or the
directory of a checkpoint prefix), builds the inference graphs once in a
graph and session of their own, restores the weights (the EMA weights of the
generator when the checkpoint has them) and returns a
:class:`CompressionModel` whose :meth:`~CompressionModel.encode` and
:meth:`~CompressionModel.decode` the codec calls for every image.
"""

import os

import numpy as np
import tensorflow as tf

from compression.bitstream import fingerprint
from compression.config import CompressionConfig
from compression.encoder import DOWNSAMPLING
from compression.entropy_model import probabilities_from_counts
from compression.errors import ConfigError, ModelLoadError
from compression.model import (
    GENERATOR_SCOPE,
    decode_tail,
    decoder_features,
    encode,
    symbol_counts_variable,
)
from compression.quantizer import dequantize
from compression.semantic import one_hot_labels
from noisegen import sample_noise

__all__ = ["CompressionModel", "load_model", "resolve_run", "latest_checkpoint",
           "run_checkpoints", "CONFIG_NAME", "session_config", "initialize_run"]

CONFIG_NAME = "config.json"
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


def latest_checkpoint(run_dir):
    """The newest checkpoint prefix in ``run_dir`` (see :func:`run_checkpoints`), or None."""
    prefixes = run_checkpoints(run_dir)
    if not prefixes or not tf.io.gfile.exists(prefixes[-1] + ".index"):
        return None
    return prefixes[-1]


def resolve_run(path):
    """``(run_dir, checkpoint_prefix)`` for a run directory or a checkpoint prefix.

    Raises :class:`ModelLoadError` with the fix when nothing loadable is there.
    """
    path = os.fspath(path)
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
        raise ModelLoadError(f"model {path!r} does not exist; pass a run directory")
    if not os.path.exists(os.path.join(run_dir, CONFIG_NAME)):
        raise ModelLoadError(
            f"{run_dir!r} has no {CONFIG_NAME}; a run directory written by "
            "'gcompress train' always has one"
        )
    return run_dir, ckpt


class CompressionModel:
    """A trained compressor, built once, ready to code many images.

    Attributes:
      config: the :class:`CompressionConfig` from ``config.json``.
      checkpoint: the checkpoint prefix the weights came from.
      probabilities: float64 ``[C, L]``, the entropy model.
      fingerprint: 16 bytes identifying config and decoder weights.
      uses_ema: whether EMA weights were loaded.

    ``tf_config`` is the ``tf.compat.v1.ConfigProto`` of the session
    (default :func:`session_config`); benchmarks pass others to compare
    thread settings.
    """

    #: Decode in tiles above this many output pixels (1024x1024).
    tile_threshold = 1024 * 1024
    #: Tile side in bottleneck pixels (32 -> 512x512 output pixels).
    tile_size = 32
    #: Overlap in bottleneck pixels on each side of a tile (64 output pixels).
    tile_halo = 4

    def __init__(self, run_dir, checkpoint, tf_config=None):
        self.run_dir = run_dir
        self.checkpoint = checkpoint
        self.config = CompressionConfig.load(os.path.join(run_dir, CONFIG_NAME))
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
            _, q = encode(self._images, cfg)
            self._symbols_out = q.symbols
            z = sample_noise(1, cfg.noise_dim, self._seed) if cfg.noise else None
            w_hat = dequantize(self._symbols_in, cfg.centers)
            self._features, _ = decoder_features(w_hat, cfg, False, z=z, labels_one_hot=one_hot)
            self._reconstruction, _ = decode_tail(self._features, cfg)
            # The same upsampling tail on one tile of features, normalised with
            # statistics of the whole image (see decode_tiled).
            self._tile_in = _v1.placeholder(
                tf.float32, [1, None, None, cfg.filters[-1]], name="tile_features")
            self._tile_stats = [
                (_v1.placeholder(tf.float32, [k], name=f"u{i}_mean"),
                 _v1.placeholder(tf.float32, [k], name=f"u{i}_variance"))
                for i, k in enumerate(cfg.filters[::-1][1:], start=1)
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
        self.fingerprint = self._fingerprint()

    def _restore(self):
        try:
            stored = dict(tf.train.list_variables(self.checkpoint))
        except Exception as e:  # corrupt or unreadable checkpoint files
            raise ModelLoadError(f"cannot read checkpoint {self.checkpoint!r}: {e}") from None
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
            _v1.train.Saver(var_list=var_list).restore(self.session, self.checkpoint)
        except tf.errors.OpError as e:  # truncated or damaged .data files
            raise ModelLoadError(
                f"cannot read checkpoint {self.checkpoint!r}: {e.message.splitlines()[0]}"
            ) from None
        return uses_ema

    def _fingerprint(self):
        """16-byte digest of the config, every decoder-side weight and the entropy model."""
        with self.graph.as_default():
            variables = sorted(
                (v for v in self.graph.get_collection(_v1.GraphKeys.GLOBAL_VARIABLES)
                 if v.name.startswith(GENERATOR_SCOPE + "/") and "/encoder/" not in v.name),
                key=lambda v: v.name,
            )
            values = self.session.run(variables)
        return fingerprint(self.config.fingerprint_json(), list(values) + [self.probabilities])

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

    def encode(self, image):
        """Float image ``[H, W, 3]`` in [-1, 1] -> int32 symbols ``[H/16, W/16, C]``.

        ``H`` and ``W`` must be multiples of 16.
        """
        image = np.asarray(image, np.float32)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ConfigError(f"image must have shape [H, W, 3], got {image.shape}")
        h, w = image.shape[:2]
        if h % DOWNSAMPLING or w % DOWNSAMPLING:
            raise ConfigError(
                f"image size {h}x{w} is not a multiple of 16; pad with "
                "compression.pad_to_multiple(image, 16)"
            )
        feed = {self._images: image[None]}
        return self.session.run(self._symbols_out, feed)[0]

    def decode(self, symbols, seed, labels=None, tile=None):
        """Symbols ``[h, w, C]`` and the noise seed -> float image ``[16h, 16w, 3]`` in [-1, 1].

        Images above :attr:`tile_threshold` pixels are decoded in tiles of
        ``tile`` x ``tile`` bottleneck pixels (default :attr:`tile_size`) so
        memory stays bounded; ``tile=0`` forces one pass.  Tiling is
        seam-free: see :meth:`decode_tiled`.
        """
        symbols = np.asarray(symbols)
        if symbols.ndim != 3 or symbols.shape[2] != self.config.channels:
            raise ConfigError(
                f"symbols must have shape [h, w, {self.config.channels}], got {symbols.shape}"
            )
        h, w = symbols.shape[:2]
        feed = {self._symbols_in: symbols[None].astype(np.int32), self._seed: int(seed)}
        feed.update(self._check_labels(labels, 16 * h, 16 * w))
        if tile is None:
            tile = self.tile_for(h, w)
        if not tile or (h <= tile and w <= tile):
            return self.session.run(self._reconstruction, feed)[0]
        features = self.session.run(self._features, feed)[0]
        return self.decode_tiled(features, tile)

    def tile_for(self, h, w):
        """The tile size :meth:`decode` uses for an ``[h, w]`` bottleneck; 0 for one pass."""
        tile = self.tile_size if 256 * h * w > self.tile_threshold else 0
        return tile if tile and (h > tile or w > tile) else 0

    def decode_tiled(self, features, tile):
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
        out = np.empty((16 * h, 16 * w, 3), np.float32)
        for (r0, r1, c0, c1), (i0, j0), window in tiles:
            feed[self._tile_in] = window
            image = self.session.run(self._tile_out, feed)[0]
            out[16 * r0:16 * r1, 16 * c0:16 * c1] = image[16 * (r0 - i0):16 * (r1 - i0),
                                                          16 * (c0 - j0):16 * (c1 - j0)]
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
        features, _ = decoder_features(dequantize(q.symbols, config.centers), config, False,
                                       z=z, labels_one_hot=one_hot)
        decode_tail(features, config)
        symbol_counts_variable(config)
        saver = _v1.train.Saver()
        tf_config = tf_config or session_config(inference=False)
        with _v1.Session(graph=graph, config=tf_config) as sess:
            sess.run(_v1.global_variables_initializer())
            return saver.save(sess, os.path.join(run_dir, "ckpt"), global_step=0,
                              write_meta_graph=False)
