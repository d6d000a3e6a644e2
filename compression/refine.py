"""Encode-time refinement: a better bottleneck for one image, found by gradient descent.

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
is given) and the model's own training distortion,
``lambda_mse * distortion_loss + lambda_ms_ssim * ms_ssim_loss`` on the
image's own pixels (not the reflected padding).  Its rate is priced as the
codec codes it: each symbol's ``-log2 p`` under the context model given its
neighbours' current symbols (:mod:`compression.context_model`; per channel
for models without one), interpolated between the centres
(:func:`compression.model.interpolated_code_lengths`) so that ``w`` has a
gradient towards cheaper symbols.

The caller says which files are allowed (``fits``: the real file's bytes
must fit a budget) and the result is the iterate with the lowest distortion
among those that fit, the encoder's own symbols (step 0) included, so a
refined file is never worse by the model's distortion than the unrefined one
under the same budget.  The weight of the rate term starts at
:data:`RATE_WEIGHT` and grows by :data:`RATE_WEIGHT_GROWTH` after every
iterate that did not fit, a simple Lagrangian search for the budget.

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
from compression.losses import distortion_loss, ms_ssim_loss
from compression.model import decode_tail, decoder_features, interpolated_code_lengths
from compression.quantizer import quantize
from compression.selective import apply_mask
from compression.semantic import one_hot_labels
from noisegen import sample_noise

__all__ = ["refine_symbols", "RefineResult", "LEARNING_RATE", "RATE_WEIGHT",
           "RATE_WEIGHT_GROWTH", "MAX_PIXELS", "MAX_STEPS"]

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
    """The refinement graph of one image size, built into the model's graph."""

    def __init__(self, model, padded, size):
        cfg = model.config
        hp, wp = padded
        h, w = size
        cells = (hp // 16, wp // 16)
        with model.graph.as_default(), _v1.name_scope("refine"):
            self.image = _v1.placeholder(tf.float32, [1, hp, wp, 3])
            self.w = _v1.placeholder(tf.float32, [1, *cells, cfg.channels])
            self.seed = _v1.placeholder(tf.int64, [])
            self.kept = _v1.placeholder(tf.int32, [])
            self.mask = _v1.placeholder(tf.float32, [1, *cells, 1])
            self.lengths = _v1.placeholder(tf.float32, [1, *cells, cfg.channels,
                                                        cfg.num_centers])
            self.rate_weight = _v1.placeholder(tf.float32, [])
            self.labels = None
            one_hot = None
            if cfg.semantic_classes:
                self.labels = _v1.placeholder(tf.int32, [1, hp, wp])
                one_hot = one_hot_labels(self.labels, cfg.semantic_classes)
            q = quantize(self.w, cfg.centers, cfg.sigma, method=cfg.quantizer)
            self.symbols = q.symbols
            z = sample_noise(1, cfg.noise_dim, self.seed) if cfg.noise else None
            features, _ = decoder_features(
                apply_mask(q.w_hat, self.mask), cfg, False, z=z, labels_one_hot=one_hot,
                kept=self.kept if cfg.variable_rate else None)
            reconstruction, _ = decode_tail(features, cfg)
            # The image's own pixels: the reflected padding is not part of the picture.
            x, y = self.image[:, :h, :w], reconstruction[:, :h, :w]
            self.distortion = cfg.lambda_mse * distortion_loss(x, y, cfg.chroma_weight)
            if cfg.lambda_ms_ssim:
                self.distortion += cfg.lambda_ms_ssim * ms_ssim_loss(x, y)
            bpp = tf.reduce_sum(interpolated_code_lengths(q.w_soft, self.lengths, cfg.centers))
            loss = self.distortion + self.rate_weight * bpp / float(h * w)
            self.gradient = tf.gradients(loss, self.w)[0]


def _graph(model, padded, size):
    graphs = model.__dict__.setdefault("_refine_graphs", {})
    key = (tuple(padded), tuple(size))
    if key not in graphs:
        graphs[key] = _Graph(model, padded, size)
    return graphs[key]


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
                   cells=None, learning_rate=LEARNING_RATE, rate_weight=RATE_WEIGHT):
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

    Returns None when no iterate fits, the encoder's own included.

    Raises:
      ConfigError: the image is above :data:`MAX_PIXELS` or ``steps`` out of range.
    """
    from compression.codec import default_seed  # the codec imports this module

    if not 1 <= steps <= MAX_STEPS:
        raise ConfigError(f"refinement takes 1..{MAX_STEPS} steps, got {steps}")
    hp, wp = padded_image.shape[:2]
    if hp * wp > MAX_PIXELS:
        raise ConfigError(
            f"refinement is limited to {MAX_PIXELS} pixels (backpropagating the decoder holds "
            f"its activations); this image has {hp * wp} once padded: encode it without "
            "--refine, or downscale it")
    graph = _graph(model, (hp, wp), size)
    session = model.session
    w = model.latents(padded_image)[None]
    entries = np.zeros(w.shape, np.float32)
    entries[..., :k] = 1.0  # what the file codes: only they move
    if cells is not None:
        entries *= cells[None, :, :, None]
    in_context = cells is None and model.context_table is not None
    feed = {graph.image: padded_image[None], graph.kept: k,
            graph.mask: (np.ones((1, *w.shape[1:3], 1), np.float32) if cells is None
                         else cells[None, :, :, None].astype(np.float32))}
    if graph.labels is not None:
        feed[graph.labels] = labels[None].astype(np.int32)
    first = m = v = None
    best = None
    weight = float(rate_weight)
    for step in range(steps + 1):
        symbols = session.run(graph.symbols, {graph.w: w})[0]
        data = code(symbols)
        coded = symbols[:, :, :k] if cells is None else symbols[:, :, :k][cells.astype(bool)][None]
        file_seed = default_seed(coded) if seed is None else int(seed)
        feed.update({graph.w: w, graph.seed: file_seed - 2**64 if file_seed >= 2**63 else file_seed,
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
