"""Encode-time refinement: a better bottleneck and noise seed for one image.

The encoder maps an image to its bottleneck in one pass, trained to do well
on average over its training photographs.  For one given image the encoder's
output is a starting point: gradient descent on the bottleneck ``w`` itself,
through the quantiser's straight-through gradient and the fixed decoder,
finds symbols that decode closer to that image (content-adaptive
optimisation: Campos et al. 2019, arXiv 1906.01223; Yang et al. 2020,
arXiv 2006.04240).  Only the encoder side changes: the decoder, the entropy
model and the file format are the same, so any decoder decodes the result.

Each step scores the bottleneck as the file would decode it: the hard
symbols (forward pass of the quantiser), the noise seed the file would
carry (:func:`compression.codec.default_seed` of those symbols, unless a seed
is given), the colour correction the file will carry
(:mod:`compression.correction`, with the gain unrounded) and the model's
own training distortion,
``lambda_mse * distortion_loss + lambda_ms_ssim * ms_ssim_loss`` on the
image's own pixels (not the reflected padding).  Its rate is priced as the
codec codes it: each symbol's ``-log2 p`` under the context model given its
neighbours' current symbols (:mod:`compression.context_model`; per channel
for models without one; for a model with a context net, whose files the net
codes about 7% shorter, the table is the price: the file's real size decides
what fits), interpolated between the centres
(:func:`compression.model.interpolated_code_lengths`) so that ``w`` has a
gradient towards cheaper symbols.

The caller says which files are allowed (``fits``: the real file's bytes
must fit a budget) and the result is the iterate with the lowest distortion
among those that fit, the encoder's own symbols (step 0) included, so a
refined file is never worse by the model's distortion than the unrefined one
under the same budget.  The weight of the rate term starts at
:data:`RATE_WEIGHT` and grows by :data:`RATE_WEIGHT_GROWTH` after every
iterate that did not fit, a simple Lagrangian search for the budget.

The other free choice of a file is its noise seed (:func:`choose_seed`): the
decoder draws its noise map from it, the same symbols decode better under
some seeds than others, and a stored seed below 128 costs one header byte.

Cost: one decoder forward and backward pass per step (about five decodes);
measured in docs/benchmarks.md.  Memory grows with the image: backpropagation
through the decoder keeps its activations, so :data:`MAX_PIXELS` bounds the
images it accepts.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from compression.context_model import context_indices
from compression.errors import ConfigError
from compression.gain import default_position
from compression.losses import (
    color_corrected,
    distortion_loss,
    ms_ssim_loss,
    ms_ssim_scales,
)
from compression.model import (
    decode_tail,
    decoder_features,
    decoder_gained,
    interpolated_code_lengths,
)
from compression.quantizer import quantize
from compression.selective import apply_mask
from compression.semantic import one_hot_labels
from noisegen import sample_noise

__all__ = ["refine_symbols", "RefineResult", "choose_seed", "SeedChoice", "LEARNING_RATE",
           "RATE_WEIGHT", "RATE_WEIGHT_GROWTH", "MAX_PIXELS", "MAX_STEPS", "MAX_SEEDS"]

_v1 = tf.compat.v1

#: Adam's step on ``w``: the centres are 1 apart, so 20 steps can move an
#: entry across about one centre.  0.1 did no better (docs/benchmarks.md).
LEARNING_RATE = 0.05
#: Starting weight of the rate (bits per pixel) against the distortion; 3 did
#: no better (docs/benchmarks.md).
RATE_WEIGHT = 10.0
#: Factor on the rate weight after an iterate whose file did not fit.
RATE_WEIGHT_GROWTH = 1.5
#: Largest image refined (pixels once padded to multiples of 16): a full-HD
#: photograph.  A step holds the decoder's activations for backpropagation,
#: about 3.7 GB per million pixels with the shipped width-0.25 models
#: (measured at 512x1024: 1.9 GB above the 0.86 GB of a plain encode).
MAX_PIXELS = 1920 * 1088
#: Most steps accepted (``encode --refine N``).
MAX_STEPS = 1000
#: Most seeds :func:`choose_seed` tries (``encode --seeds N``): stored seeds
#: up to 127 take one header byte.
MAX_SEEDS = 129

_BETA1, _BETA2, _EPSILON = 0.9, 0.999, 1e-8


@dataclasses.dataclass(frozen=True)
class RefineResult:
    """What :func:`refine_symbols` chose.

    ``symbols``: int32 ``[h, w, C]``, the chosen iterate (channels from the
    file's ``k`` on are whatever it holds; the file does not code them).
    ``data``: its file.  ``step``: which iterate it is (0: the encoder's
    own).  ``distortion`` and ``initial_distortion``: its and the encoder's
    loss.  ``steps``: gradient steps taken.
    """

    symbols: np.ndarray
    data: bytes
    step: int
    distortion: float
    initial_distortion: float
    steps: int


class _Graph:
    """The model's distortion of one image as its file decodes, and its gradient.

    Built once per number of MS-SSIM scales into the model's graph (at most
    five graphs, whatever the image sizes): every spatial size is dynamic.
    """

    def __init__(self, model, scales):
        cfg = model.config
        with model.graph.as_default(), _v1.name_scope("refine"):
            self.image = _v1.placeholder(tf.float32, [1, None, None, 3])
            self.size = _v1.placeholder(tf.int32, [2])  # the image's own (H, W) in it
            self.w = _v1.placeholder(tf.float32, [1, None, None, cfg.channels])
            self.seed = _v1.placeholder(tf.int64, [])
            self.kept = _v1.placeholder(tf.int32, [])
            self.mask = _v1.placeholder(tf.float32, [1, None, None, 1])
            self.lengths = _v1.placeholder(tf.float32, [1, None, None, cfg.channels,
                                                        cfg.num_centers])
            self.rate_weight = _v1.placeholder(tf.float32, [])
            self.correct = _v1.placeholder_with_default(0.0, [])  # 1: the file is corrected
            self.labels = None
            one_hot = None
            if cfg.semantic_classes:
                self.labels = _v1.placeholder(tf.int32, [1, None, None])
                one_hot = one_hot_labels(self.labels, cfg.semantic_classes)
            q = quantize(self.w, cfg.centers, cfg.sigma, method=cfg.quantizer)
            self.symbols = q.symbols
            z = sample_noise(1, cfg.noise_dim, self.seed) if cfg.noise else None
            # w is in the quantiser's domain: a rate-adaptive model's decoder gain follows.
            self.position = _v1.placeholder(tf.float32, []) if cfg.rate_adaptive else None
            w_hat = decoder_gained(q.w_hat, cfg, self.position)
            features, _ = decoder_features(
                apply_mask(w_hat, self.mask), cfg, False, z=z, labels_one_hot=one_hot,
                kept=self.kept if cfg.variable_rate else None)
            reconstruction, _ = decode_tail(features, cfg)
            # The image's own pixels: the reflected padding is not part of the picture.
            h, w = self.size[0], self.size[1]
            x, y = self.image[:, :h, :w], reconstruction[:, :h, :w]
            y += self.correct * (color_corrected(x, y, hold_gain=True) - y)
            self.distortion = cfg.lambda_mse * distortion_loss(x, y, cfg.chroma_weight)
            if cfg.lambda_ms_ssim:
                self.distortion += cfg.lambda_ms_ssim * ms_ssim_loss(x, y, scales=scales)
            bits = tf.reduce_sum(interpolated_code_lengths(q.w_soft, self.lengths, cfg.centers))
            loss = self.distortion + self.rate_weight * bits / tf.cast(h * w, tf.float32)
            # Built now even when only the seed search uses this graph: the
            # decoder's conds cannot gain gradients once the session has run them.
            self.gradient = tf.gradients(loss, self.w)[0]


def _graph(model, size):
    graphs = model.__dict__.setdefault("_refine_graphs", {})
    scales = ms_ssim_scales(min(size))
    if scales not in graphs:
        graphs[scales] = _Graph(model, scales)
    return graphs[scales]


def _check_size(padded_image, option):
    hp, wp = padded_image.shape[:2]
    if hp * wp > MAX_PIXELS:
        raise ConfigError(
            f"{option} is limited to {MAX_PIXELS} pixels (it decodes the whole image at "
            f"once{', and backpropagation holds its activations' if option == '--refine' else ''}"
            f"); this image has {hp * wp} once padded: encode it without {option}, "
            "or downscale it")


def _base_feed(graph, padded_image, size, k, shape, labels, cells, correct, position, config):
    """The feed every evaluation of ``graph`` on one image shares (``shape``: ``[h, w]``
    of its bottleneck; ``position``: a rate-adaptive model's, None for its default)."""
    feed = {graph.image: padded_image[None], graph.size: np.asarray(size, np.int32),
            graph.kept: k, graph.correct: float(correct),
            graph.mask: (np.ones((1, *shape, 1), np.float32) if cells is None
                         else cells[None, :, :, None].astype(np.float32))}
    if graph.labels is not None:
        feed[graph.labels] = labels[None].astype(np.int32)
    if graph.position is not None:
        feed[graph.position] = default_position(config) if position is None else position
    return feed


def _as_int64(seed):
    """A file's u64 seed as the noise generator's int64 (two's complement)."""
    return seed - 2**64 if seed >= 2**63 else seed


def _derived_seed(symbols, k, cells):
    """The seed a file of these symbols carries when it stores none (``codec.default_seed``)."""
    from compression.codec import default_seed  # the codec imports this module

    coded = symbols[:, :, :k] if cells is None else symbols[:, :, :k][cells.astype(bool)][None]
    return default_seed(coded)


def _code_lengths(model, symbols, k, cells, in_context):
    """float32 ``[h, w, C, L]``: bits of each centre at each entry, given its neighbours.

    Channels from ``k`` on and cells outside ``cells`` cost nothing (the file
    does not code them).
    """
    h, w, channels = symbols.shape
    lengths = np.zeros((h, w, channels, model.config.num_centers), np.float32)
    if in_context:
        table = model.context_table[:k]
        contexts = context_indices(symbols[:, :, :k], model.config.num_centers)
        for c in range(k):
            lengths[:, :, c] = -np.log2(table[c][contexts[:, :, c]])
    else:
        lengths[:, :, :k] = -np.log2(model.probabilities[:k])
    if cells is not None:
        lengths *= cells[:, :, None, None]
    return lengths


def refine_symbols(model, padded_image, size, k, code, fits, steps, seed=None, labels=None,
                   cells=None, learning_rate=LEARNING_RATE, rate_weight=RATE_WEIGHT,
                   latents=None, correct=False, position=None):
    """Refine the bottleneck of one image -> :class:`RefineResult`.

    Args:
      model: a :class:`~compression.inference.CompressionModel`.
      padded_image: float32 ``[Hp, Wp, 3]`` in [-1, 1], padded to multiples of 16.
      size: ``(H, W)``, the image's own size inside it.
      k: leading channels the file codes.
      code: ``symbols [h, w, C] -> bytes``, the complete file of the leading
        ``k`` channels of ``symbols``.
      fits: ``bytes -> bool``, whether a file is allowed (its budget).
      steps: gradient steps (>= 1); each costs about five decodes.
      seed: the file's noise seed, or None for the one derived from its symbols.
      labels: int32 ``[Hp, Wp]``, a semantic model's label map as the decoder sees it.
      cells: uint8 ``[h, w]`` of a selective file (1: coded), or None.
      latents: float32 ``[h, w, C]``, the encoder's output for the image when
        the caller has it (:meth:`CompressionModel.encode_with_latents`);
        None runs the encoder.
      correct: the file will carry a colour correction
        (:mod:`compression.correction`): score the decoded image as corrected.
      position: a rate-adaptive model's rate position (:mod:`compression.gain`;
        None: its default), as the file codes it.

    Returns None when no iterate fits, the encoder's own included.

    Raises:
      ConfigError: the image is above :data:`MAX_PIXELS` or ``steps`` out of range.
    """
    if not 1 <= steps <= MAX_STEPS:
        raise ConfigError(f"refinement takes 1..{MAX_STEPS} steps, got {steps}")
    _check_size(padded_image, "--refine")
    graph = _graph(model, size)
    session = model.session
    w = (model.latents(padded_image, position) if latents is None else latents)[None]
    entries = np.zeros(w.shape, np.float32)
    entries[..., :k] = 1.0  # what the file codes: only they move
    if cells is not None:
        entries *= cells[None, :, :, None]
    in_context = cells is None and model.context_table is not None
    feed = _base_feed(graph, padded_image, size, k, w.shape[1:3], labels, cells, correct,
                      position, model.config)
    first = m = v = None
    best = None
    weight = float(rate_weight)
    for step in range(steps + 1):
        symbols = session.run(graph.symbols, {graph.w: w})[0]
        data = code(symbols)
        file_seed = _derived_seed(symbols, k, cells) if seed is None else int(seed)
        feed.update({graph.w: w, graph.seed: _as_int64(file_seed),
                     graph.lengths: _code_lengths(model, symbols, k, cells, in_context)[None],
                     graph.rate_weight: weight})
        distortion, gradient = session.run([graph.distortion, graph.gradient], feed)
        distortion = float(distortion)
        if first is None:
            first = distortion
        if fits(data):
            if best is None or distortion < best[1]:
                best = (step, distortion, symbols, data)
        else:
            weight *= RATE_WEIGHT_GROWTH
        if step == steps or not np.all(np.isfinite(gradient)):
            break  # a non-finite step would only spoil w: keep what was found
        gradient *= entries
        m = (1 - _BETA1) * gradient + (0.0 if m is None else _BETA1 * m)
        v = (1 - _BETA2) * gradient * gradient + (0.0 if v is None else _BETA2 * v)
        m_hat = m / (1 - _BETA1 ** (step + 1))
        v_hat = v / (1 - _BETA2 ** (step + 1))
        w = w - learning_rate * m_hat / (np.sqrt(v_hat) + _EPSILON)
    if best is None:
        return None
    step_chosen, distortion, symbols, data = best
    return RefineResult(symbols=symbols, data=data, step=step_chosen, distortion=distortion,
                        initial_distortion=first, steps=step)


@dataclasses.dataclass(frozen=True)
class SeedChoice:
    """What :func:`choose_seed` chose.

    ``seed``: the seed to store, or None for the one derived from the
    symbols (stored in no bytes).  ``data``: its file.  ``distortion`` and
    ``initial_distortion``: the model's loss under it and under the derived
    seed.  ``tried``: how many seeds were scored.
    """

    seed: int | None
    data: bytes
    distortion: float
    initial_distortion: float
    tried: int


def choose_seed(model, padded_image, size, symbols, k, code, fits, seeds, labels=None,
                cells=None, correct=False, position=None):
    """The noise seed under which ``symbols`` decode best -> :class:`SeedChoice`.

    The decoder reads a noise map drawn from the file's seed beside the
    bottleneck, and the same symbols decode differently under different
    seeds (on CamVid and BSDS500 val, 0.5 dB and 0.03 MS-SSIM apart across
    16 seeds; docs/benchmarks.md).  This tries the seed derived from the
    symbols and then the stored seeds ``0 .. seeds - 2`` (one header byte
    each below 128: the header stores a varint) and keeps the one with the
    lowest model distortion (the loss :func:`refine_symbols` minimises)
    whose file ``fits``.  Each costs one decode.

    Args as for :func:`refine_symbols`, and:
      symbols: int32 ``[h, w, C]``, the symbols the file codes.
      code: ``(symbols, seed) -> bytes``, the file with that stored seed
        (None: none stored).
      seeds: how many seeds to try, 2 .. :data:`MAX_SEEDS`.

    Returns None when no candidate's file fits.

    Raises:
      ConfigError: the image is above :data:`MAX_PIXELS` or ``seeds`` out of range.
    """
    if not 2 <= seeds <= MAX_SEEDS:
        raise ConfigError(f"the seed search tries 2..{MAX_SEEDS} seeds, got {seeds}")
    _check_size(padded_image, "--seeds")
    graph = _graph(model, size)
    feed = _base_feed(graph, padded_image, size, k, symbols.shape[:2], labels, cells, correct,
                      position, model.config)
    # The centres themselves quantise to these symbols: the graph decodes exactly them.
    feed[graph.w] = np.asarray(model.config.centers, np.float32)[symbols][None]
    derived = _derived_seed(symbols, k, cells)
    scored = []  # (distortion, seed, file)
    for candidate in [None, *range(seeds - 1)]:
        data = code(symbols, candidate)
        if fits(data):
            feed[graph.seed] = _as_int64(derived if candidate is None else candidate)
            scored.append((float(model.session.run(graph.distortion, feed)), candidate, data))
    if not scored:
        return None
    distortion, seed, data = min(scored, key=lambda s: s[0])  # the first of equals
    return SeedChoice(seed=seed, data=data, distortion=distortion,
                      initial_distortion=scored[0][0], tried=len(scored))
