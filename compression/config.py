"""The one configuration object that fully describes a compression model.

A :class:`CompressionConfig` is validated when it is made, written as
``config.json`` beside every checkpoint and read back to rebuild exactly the
same graph, so a checkpoint always knows its own architecture.
"""

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field

from compression.context_model import MAX_CONTEXT_CENTERS as _MAX_CONTEXT_CENTERS
from compression.errors import CompressionError, ConfigError
from compression.files import read_regular, write_atomic

__all__ = ["CompressionConfig", "PAPER_WIDTHS", "UPSAMPLING"]

# Filter counts of the paper's encoder stages c7s1-60, d120, d240, d480, d960
# (appendix A); the decoder mirrors them.  ``width`` scales all of them.
PAPER_WIDTHS = (60, 120, 240, 480, 960)
_FORMAT = "gcompress-config"
_FORMAT_VERSION = 1
# The fields of format version 1 as first released; see CompressionConfig.fingerprint_json.
_FINGERPRINT_FIELDS = frozenset((
    "channels", "centers", "sigma", "noise", "noise_dim", "upsample_dim", "width",
    "residual_blocks", "discriminator_scales", "discriminator_width", "semantic_classes",
    "semantic_channels", "crop_height", "crop_width", "batch_size", "lambda_mse", "lambda_fm",
    "lambda_gan", "g_learning_rate", "d_learning_rate", "beta1", "gan_start_step", "ema_decay",
    "histogram_decay",
))


#: Most rate weights a rate-adaptive model may be trained for (its gain tables' rows).
_MAX_RATE_LAMBDAS = 16

#: The encoder's total downsampling: the bottleneck is ``[H/16, W/16, C]``.
DOWNSAMPLING = 16
#: The factors a semantic model's label map may be stored coarser by (they
#: divide 16, so a coarse cell never straddles two bottleneck cells).
LABEL_FACTORS = (1, 2, 4, 8, 16)

#: ``upsampling`` values: the paper's transposed convolutions, or resize-convolutions.
UPSAMPLING = ("transposed", "resize")

#: ``discriminator_padding`` values: what D's convolutions see beyond the image.
DISCRIMINATOR_PADDINGS = ("replicate", "zero")

#: ``rate_model`` values: how training prices the bottleneck (:mod:`compression.rate_model`).
RATE_MODELS = ("histogram", "context")

#: ``trainable`` values: which generator weights a training step updates.
TRAINABLE = ("all", "gains")

#: Relative tolerance of :meth:`CompressionConfig.for_bpp` (the paper's rates are rounded).
FOR_BPP_TOLERANCE = 0.02

# Fields added after the first release, with the values that reproduce what
# a config.json written without them meant.  A saved config never takes a
# later default: an old run resumes, and an old model encodes, as it did.
_ABSENT_MEANS = {
    "gan_ramp_steps": 0, "d_warmup_steps": 0, "freeze_encoder": False, "lambda_ms_ssim": 0.0,
    "lambda_rate": 0.0, "lr_decay_step": 0, "lr_decay_factor": 0.1, "noise_batch": 1,
    "quantizer": "soft",
    "min_channels": None, "chroma_weight": 1.0, "selective_probability": 0.0,
    "class_names": (), "label_factor": 1, "upsampling": "transposed", "channel_weights": (),
    "corrected_loss": False, "rate_model": "histogram", "discriminator_padding": "zero",
    "rate_channel_weights": (), "rate_lambdas": (), "trainable": "all", "train_rate_range": (),
}


def _iterable(value):
    try:
        return list(value)
    except TypeError:
        return [None]  # not a sequence: fails the number check


#: Upper bounds of the size fields: far beyond any useful model, low enough
#: that a damaged or hostile config.json cannot make building the graph take
#: minutes or exhaust memory.
_MAXIMUMS = {
    "channels": 1024, "noise_dim": 4096, "upsample_dim": 4096, "residual_blocks": 64,
    "discriminator_scales": 8, "semantic_classes": 4096, "semantic_channels": 1024,
    "crop_height": 8192, "crop_width": 8192, "batch_size": 4096, "noise_batch": 4096,
}
_MAX_WIDTH = 8.0  # width and discriminator_width: 8x the paper's filters
_MAX_CONFIG_BYTES = 1 << 20


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class CompressionConfig:
    """Architecture and training hyperparameters of one compressor.

    Rate: the bottleneck ``[B, H/16, W/16, channels]`` is quantised to
    ``len(centers)`` centres, so ``bpp <= channels * log2(L) / 256``
    (:meth:`bpp_bound`).

    Fields:
      channels: bottleneck depth ``C``.
      centers: quantiser centres, strictly increasing (paper: -2..2).
      sigma: softness of the quantiser's soft assignment (backward pass).
      noise: concatenate a learned noise map to ``w_hat`` before the decoder.
      noise_dim, upsample_dim: the noise generator's ``z`` size and grid depth.
      width: multiplier on the paper's filter counts (1.0 = 60..960).
      residual_blocks: residual blocks in the decoder (paper: 9).
      decoder_tail_width: multiplier on the paper's filter counts of the
        decoder's upsampling stages only (``u480 .. u60``), which run at 1/8
        to full resolution.  Default (None): ``width``.  Above it, those
        stages get more filters than the encoder and the residual blocks,
        for a fraction of the cost of a wider model (``train --init-from``
        widens a trained model's; on `general` a 2,000-step fine-tune at
        0.5 gained nothing measurable, docs/benchmarks.md).
      discriminator_scales: scales of the multiscale discriminator (paper: 3).
      discriminator_width: multiplier on the discriminator's 64..512 filters.
        Default (None): ``min(1, width)``, so a small generator does not carry
        a full-width D (at width 0.25 that D was 64% of a GAN step's FLOPs).
      discriminator_padding: what D's convolutions see beyond the image:
        ``"replicate"`` (default: its edge pixels) or ``"zero"`` ("SAME", the
        paper's; configs saved before the field mean it).  Zeros let D find
        the border, and a long GAN phase then grew a noisy patch in every
        decode's corner (see :mod:`compression.discriminator`).  Training
        only: files and decoders do not depend on it.
      semantic_classes: number of label ids of semantic maps; 0 = none.
      semantic_channels: depth of the encoded semantic map fed to the decoder.
      crop_height, crop_width: training crop (multiples of 16).
      batch_size: training batch size.  At least 2 when ``noise`` is on: the
        noise generator's first batch norm normalises a ``[B, features]``
        tensor over the batch, so with one example it erases ``z``.
      lambda_mse: weight of the distortion term, the mean squared error over
        pixels and channels of images scaled to [-1, 1] (so 0.01 is ~26 dB PSNR).
      lambda_fm: weight of the feature-matching term (0 disables it).
      lambda_gan: weight of the generator's adversarial term.  Defaults
        0.4 and 0.04: the CamVid GAN fine-tune of docs/benchmarks.md; the
        paper-style 10 and 1 made PSNR fall by 1 dB and more.
      g_learning_rate, d_learning_rate, beta1: Adam settings.  Defaults 1e-4
        and 0.9 (HiFiC's); the paper's 2e-4 and 0.5 made the distortion
        phase decline after 3,000 steps on CamVid (docs/benchmarks.md).
      gan_start_step: before this step the generator trains on distortion
        alone, with a graph that has no discriminator in it (no D FLOPs).
        Default 15000, the recipe's distortion phase (then a D warm-up of
        500 steps before it, a 1000-step ramp, the encoder frozen).
      gan_ramp_steps: after ``gan_start_step`` the adversarial and
        feature-matching weights ramp linearly from 0 over this many steps.
      d_warmup_steps: the discriminator alone trains (on the warm-up
        generator's reconstructions) for this many steps before
        ``gan_start_step`` (at most ``gan_start_step`` of them), so G does not
        meet an untrained D.
      freeze_encoder: in the GAN phase, leave the encoder fixed (MS-ILLM):
        ``w_hat``, and so the rate, stays what the distortion phase learnt
        while the decoder learns texture.
      lambda_ms_ssim: weight of a ``1 - MS-SSIM`` distortion term (0: none).
      lambda_rate: weight of a rate term, the coded bits per pixel as the
        running histogram prices them
        (:func:`compression.model.differentiable_bits`; paper section 3.1's
        ``beta``).  0 (default): none, the rate is set by ``channels`` alone.
        It trains the encoder only, so it does nothing in a GAN phase with
        ``freeze_encoder``.
      rate_model: what the rate term prices the bottleneck with
        (:mod:`compression.rate_model`): ``"histogram"`` (each channel's
        running symbol histogram, the per-channel coder) or ``"context"``
        (running counts per channel and context, the context coder that
        files use: a symbol its neighbours predict is cheap, so the encoder
        can learn predictable codes).  Training only: files and decoders do
        not depend on it.
      rate_channel_weights: one factor of ``lambda_rate`` per bottleneck
        channel; empty: 1 for all.  The rate term prices a variable-rate
        model's channels alike, and at one weight it empties the last ones
        (the shipped models' channels 7-10 once held one symbol each, so no
        file could spend more than ~0.04 bpp); a smaller factor there lets them
        carry what the leading channels leave out, for the larger files.
        Training only: files and decoders do not depend on it.
      rate_lambdas: rate weights (two or more, rising) of a rate-adaptive
        model: gain units scale the bottleneck before the quantiser and
        after it (:mod:`compression.gain`, Cui et al. 2021), each training
        example draws a rate position between these weights and the rate
        term weighs its bits with that position's weight, so one model codes
        at every rate between them and a file picks its own (one byte in
        the header).  ``lambda_rate`` must lie within them: it is the
        position a file takes when no rate is asked for.  Empty (default):
        one rate, ``lambda_rate``'s.
      trainable: ``"all"`` (default) or ``"gains"``: a rate-adaptive
        model's training steps update only its gain tables (encoder and
        decoder side), every other weight stays as it was.  With
        ``train_rate_range`` this adds a rate to a trained model without
        touching the rates it has: a knot added beyond the ends of
        ``rate_lambdas`` starts from the tables' trend (``train --init-from``
        regrids them) and learns its own gains.  Training only.
      train_rate_range: two rate weights within ``rate_lambdas``; training
        draws each example's rate position between them instead of over
        the whole range.  Empty (default): the whole range.  Training only.
      chroma_weight: weight of the chroma part of the MSE against its grey
        part (1: plain RGB MSE; see :func:`compression.losses.distortion_loss`).
      corrected_loss: score the distortion terms on each crop's reconstruction
        as a file's colour correction leaves it (its channel means and gains
        set from the original; :func:`compression.losses.color_corrected`), so
        the decoder is not trained on what every file repairs for 6 bytes.
        Such a model's files need the correction: the encoder refuses to
        write them without it.  Default True (measured in docs/benchmarks.md:
        +0.02 MS-SSIM on BSDS500 val against the same steps without it);
        configs saved before it existed load as False.
      lr_decay_step, lr_decay_factor: both learning rates are multiplied by
        ``lr_decay_factor`` from global step ``lr_decay_step`` on (0: never).
      quantizer: ``"bounded_ste"`` (default: encoder output squashed into
        the centres' range, straight-through gradient; +1.3 dB over the
        other on CamVid) or ``"soft"`` (the paper's soft-assignment
        gradient; sigma applies, and a config.json without this field
        means it); see
        :func:`compression.quantizer.quantize`.  Encoder side only: files and
        decoders do not depend on it.
      upsampling: the decoder's ``u`` stages: ``"transposed"`` (default,
        the paper's stride-2 transposed convolutions) or ``"resize"``
        (nearest 2x resize, then a 3x3 convolution: no checkerboard; see
        :mod:`compression.decoder`).  Part of the model fingerprint when not
        the default.
      noise_batch: the noise generator's batch norm normalises over at least
        this many ``z`` in training (extra draws, discarded after the norm):
        a batch of 2 makes every ``fc1`` feature +-1 and the noise map 1.4x
        louder at inference than in training; 16 brings that within 5%.
      ema_decay: decay of an exponential moving average of the decoder
        side's weights used at inference; 0 disables it.
      histogram_decay: decay of the running per-channel symbol histogram that
        becomes the entropy model.
      min_channels: a variable-rate model when below ``channels``: training
        keeps only the leading ``k`` bottleneck channels of each example, ``k``
        uniform in ``[min_channels, channels]``, and the decoder sees a
        learned fill for the others, so the channels come out ordered by
        importance and any leading ``k >= min_channels`` of them decode (nested
        dropout, Rippel et al. 2014).  A file records its ``k``; the encoder
        picks it per image for a target bpp (:mod:`compression.rate_control`).
        Default (None): the paper's fixed-rate model, every file codes all
        ``channels`` (as does ``min_channels == channels``).
      channel_weights: variable-rate models: relative weights of drawing
        ``k = min_channels, ..., channels`` in training (one per ``k``);
        empty: uniform.  Training more often at the ``k`` that files use
        (those that fit 0.036 bpp, say) spends the steps where the rate is.
        Training only: files and decoders do not depend on it.
      selective_probability: a selective-compression model (paper section
        4.2) when above 0: this share of the training examples gets a sampled
        bottleneck mask (kept classes of its label map, or a kept box; see
        :func:`compression.selective.sample_masks`), ``w_hat`` is zeroed
        outside it and the distortion terms count only inside it, so the
        decoder learns to synthesise the rest from the label map.  Needs a
        semantic GAN model: outside the mask only the adversarial terms teach.
      class_names: one name per label id (``semantic_classes`` of them), so
        ``encode --keep car,pedestrian`` can name classes; empty: ids only.
      label_factor: semantic models: files store the label map this many
        times coarser (1, 2, 4, 8 or 16; 1 = lossless) and training shows the
        model maps coarsened the same way (every ``f``-th id of every
        ``f``-th row, repeated; :func:`compression.label_map.coarse_labels`).
    """

    channels: int = 8
    centers: tuple = (-2.0, -1.0, 0.0, 1.0, 2.0)
    sigma: float = 1.0
    noise: bool = True
    noise_dim: int = 128
    upsample_dim: int = 256
    width: float = 1.0
    residual_blocks: int = 9
    decoder_tail_width: float = None
    discriminator_scales: int = 3
    discriminator_width: float = None
    discriminator_padding: str = "replicate"
    semantic_classes: int = 0
    semantic_channels: int = 8
    crop_height: int = 512
    crop_width: int = 1024
    batch_size: int = 2
    lambda_mse: float = 10.0
    lambda_fm: float = 0.4
    lambda_gan: float = 0.04
    g_learning_rate: float = 1e-4
    d_learning_rate: float = 1e-4
    beta1: float = 0.9
    gan_start_step: int = 15000
    gan_ramp_steps: int = 1000
    d_warmup_steps: int = 500
    freeze_encoder: bool = True
    lambda_ms_ssim: float = 0.0
    lambda_rate: float = 0.0
    lr_decay_step: int = 0
    lr_decay_factor: float = 0.1
    noise_batch: int = 16
    quantizer: str = "bounded_ste"
    ema_decay: float = 0.999
    histogram_decay: float = 0.999
    min_channels: int = None
    chroma_weight: float = 1.0
    selective_probability: float = 0.0
    class_names: tuple = ()
    label_factor: int = 1
    upsampling: str = "transposed"
    channel_weights: tuple = ()
    corrected_loss: bool = True
    rate_model: str = "histogram"
    rate_channel_weights: tuple = ()
    rate_lambdas: tuple = ()
    trainable: str = "all"
    train_rate_range: tuple = ()
    _notes: tuple = field(default=(), repr=False, compare=False)

    def __post_init__(self):
        if isinstance(self.centers, (str, bytes)) or not all(
                _is_number(c) for c in _iterable(self.centers)):
            raise ConfigError(
                f"centers must be a list of finite numbers, got {self.centers!r}"
            )
        centers = tuple(float(c) for c in self.centers)
        object.__setattr__(self, "centers", centers)
        if self.discriminator_width is None and _is_number(self.width):
            object.__setattr__(self, "discriminator_width", min(1.0, float(self.width)))
        if self.decoder_tail_width is None and _is_number(self.width):
            object.__setattr__(self, "decoder_tail_width", float(self.width))
        for name in ("sigma", "width", "discriminator_width", "decoder_tail_width",
                     "lambda_mse", "lambda_fm", "lambda_gan", "g_learning_rate",
                     "d_learning_rate", "beta1", "ema_decay", "histogram_decay",
                     "lambda_ms_ssim", "lambda_rate", "lr_decay_factor", "chroma_weight",
                     "selective_probability"):
            value = getattr(self, name)
            if not _is_number(value):
                raise ConfigError(f"{name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        self._check_ints()
        self._check_ranges()
        self._check_semantic()
        self._check_channel_weights()
        self._check_rate_channel_weights()
        self._check_rate_lambdas()
        self._check_training_range()

    def _number_tuple(self, name):
        """Field ``name``, a list of finite numbers, stored as a tuple of floats."""
        value = getattr(self, name)
        if isinstance(value, (str, bytes)) or not all(_is_number(w) for w in _iterable(value)):
            raise ConfigError(f"{name} must be a list of finite numbers, got {value!r}")
        value = tuple(float(w) for w in value)
        object.__setattr__(self, name, value)
        return value

    def _check_rate_channel_weights(self):
        weights = self._number_tuple("rate_channel_weights")
        if weights and len(weights) != self.channels:
            raise ConfigError(
                f"rate_channel_weights needs one factor per channel ({self.channels} values), "
                f"got {len(weights)}")
        if weights and min(weights) < 0:
            raise ConfigError(f"rate_channel_weights must be >= 0, got {list(weights)}")

    def _check_rate_lambdas(self):
        knots = self._number_tuple("rate_lambdas")
        if not knots:
            return
        rising = all(a < b for a, b in zip(knots, knots[1:], strict=False))
        if len(knots) < 2 or min(knots) <= 0 or not rising:
            raise ConfigError(f"rate_lambdas must be two or more rising rate weights above 0, "
                              f"got {list(knots)}")
        if len(knots) > _MAX_RATE_LAMBDAS:
            raise ConfigError(f"rate_lambdas may hold at most {_MAX_RATE_LAMBDAS} rate weights, "
                              f"got {len(knots)}")
        if not knots[0] <= self.lambda_rate <= knots[-1]:
            raise ConfigError(
                f"lambda_rate {self.lambda_rate:g} must lie within rate_lambdas "
                f"({knots[0]:g}-{knots[-1]:g}): it is the rate a file takes by default")

    def _check_training_range(self):
        if self.trainable not in TRAINABLE:
            raise ConfigError(f"trainable must be {' or '.join(map(repr, TRAINABLE))}, "
                              f"got {self.trainable!r}")
        if self.trainable == "gains" and not self.rate_lambdas:
            raise ConfigError("trainable 'gains' trains a rate-adaptive model's gain tables; "
                              "this model has none: give it rate_lambdas, or train 'all'")
        bounds = self._number_tuple("train_rate_range")
        if not bounds:
            return
        knots = self.rate_lambdas
        if not knots:
            raise ConfigError("train_rate_range applies to a rate-adaptive model (rate_lambdas); "
                              "drop it")
        if len(bounds) != 2 or not knots[0] <= bounds[0] < bounds[1] <= knots[-1]:
            raise ConfigError(
                f"train_rate_range must be two rising rate weights within rate_lambdas "
                f"({knots[0]:g}-{knots[-1]:g}), got {list(bounds)}")

    def _check_channel_weights(self):
        weights = self._number_tuple("channel_weights")
        if not weights:
            return
        if not self.variable_rate:
            raise ConfigError("channel_weights applies to variable-rate models only: "
                              "set min_channels below channels (--min-channels K)")
        count = self.channels - self.min_channels + 1
        if len(weights) != count:
            raise ConfigError(
                f"channel_weights needs one weight per k = {self.min_channels}..{self.channels} "
                f"({count} values), got {len(weights)}")
        if min(weights) < 0 or max(weights) <= 0:
            raise ConfigError(f"channel_weights must be >= 0 with at least one above 0, "
                              f"got {list(weights)}")

    def _check_semantic(self):
        names = self.class_names
        if isinstance(names, (str, bytes)) or not all(
                isinstance(n, str) for n in _iterable(names)):
            raise ConfigError(f"class_names must be a list of strings, got {names!r}")
        names = tuple(names)
        object.__setattr__(self, "class_names", names)
        if names:
            if len(names) != self.semantic_classes:
                raise ConfigError(
                    f"class_names has {len(names)} names but semantic_classes is "
                    f"{self.semantic_classes}; give one name per label id")
            bad = [n for n in names if not n or n != n.strip() or "," in n]
            if bad:
                raise ConfigError(f"class names must be non-empty, without commas or "
                                  f"surrounding spaces; got {bad[:3]}")
            if len(set(names)) != len(names):
                raise ConfigError(f"class_names has duplicates: {sorted(names)}")
        if not _is_int(self.label_factor) or self.label_factor not in LABEL_FACTORS:
            raise ConfigError(f"label_factor must be {', '.join(map(str, LABEL_FACTORS[:-1]))} "
                              f"or {LABEL_FACTORS[-1]}, got {self.label_factor!r}")
        if self.label_factor > 1 and not self.semantic_classes:
            raise ConfigError("label_factor applies to semantic models only (--semantic)")
        if not 0 <= self.selective_probability <= 1:
            raise ConfigError(f"selective_probability must be in [0, 1], "
                              f"got {self.selective_probability}")
        if self.selective_probability > 0:
            if not self.semantic_classes:
                raise ConfigError(
                    "selective compression (selective_probability > 0) synthesises the "
                    "regions it does not code from the label map: it needs a semantic model "
                    "(--semantic --classes N)")
            if not self.gan:
                raise ConfigError(
                    "selective compression needs the adversarial terms: outside the mask "
                    "nothing else teaches the decoder; drop --no-gan / lambda_gan 0")

    def _check_ints(self):
        minimums = {
            "channels": 1, "noise_dim": 1, "upsample_dim": 8, "residual_blocks": 0,
            "discriminator_scales": 1, "semantic_classes": 0, "semantic_channels": 1,
            "crop_height": 16, "crop_width": 16, "batch_size": 1, "gan_start_step": 0,
            "gan_ramp_steps": 0, "d_warmup_steps": 0, "lr_decay_step": 0, "noise_batch": 1,
        }
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if not _is_int(value):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
            if value < minimum:
                raise ConfigError(f"{name} must be at least {minimum}, got {value}")
        for name, maximum in _MAXIMUMS.items():
            if getattr(self, name) > maximum:
                raise ConfigError(f"{name} must be at most {maximum}, got {getattr(self, name)}")
        if self.min_channels is not None and (
                not _is_int(self.min_channels) or not 1 <= self.min_channels <= self.channels):
            raise ConfigError(
                f"min_channels must be an integer in [1, channels={self.channels}] "
                f"(or null for a fixed-rate model), got {self.min_channels!r}")
        if self.quantizer not in ("soft", "bounded_ste"):
            raise ConfigError(
                f"quantizer must be 'soft' or 'bounded_ste', got {self.quantizer!r}")
        if self.discriminator_padding not in DISCRIMINATOR_PADDINGS:
            raise ConfigError(
                f"discriminator_padding must be {' or '.join(map(repr, DISCRIMINATOR_PADDINGS))}, "
                f"got {self.discriminator_padding!r}")
        if self.rate_model not in RATE_MODELS:
            raise ConfigError(
                f"rate_model must be {' or '.join(map(repr, RATE_MODELS))}, "
                f"got {self.rate_model!r}")
        if self.rate_model == "context" and len(self.centers) > _MAX_CONTEXT_CENTERS:
            raise ConfigError(
                f"rate_model 'context' supports at most {_MAX_CONTEXT_CENTERS} centres "
                f"(its table grows as (L + 1)**5 * L), got {len(self.centers)}; "
                "use rate_model 'histogram'")
        if self.upsampling not in UPSAMPLING:
            raise ConfigError(
                f"upsampling must be {' or '.join(map(repr, UPSAMPLING))}, "
                f"got {self.upsampling!r}")
        for name in ("noise", "freeze_encoder", "corrected_loss"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")

        if self.noise and self.batch_size < 2:
            raise ConfigError(
                "batch_size must be at least 2 when noise is on: the noise generator's "
                "batch norm over a batch of one erases z; use --batch 2 or --no-noise"
            )

    def _check_ranges(self):
        if len(self.centers) < 2:
            raise ConfigError(f"centers needs at least 2 values, got {list(self.centers)}")
        if len(self.centers) > 255:
            raise ConfigError(f"centers has at most 255 values, got {len(self.centers)}")
        if len(set(self.centers)) != len(self.centers):
            raise ConfigError(f"centers has duplicate values: {list(self.centers)}")
        if list(self.centers) != sorted(self.centers):
            raise ConfigError(f"centers must be in increasing order, got {list(self.centers)}")
        if self.upsample_dim % 8:
            raise ConfigError(
                f"upsample_dim must be a multiple of 8, got {self.upsample_dim}"
            )
        for name in ("width", "discriminator_width", "decoder_tail_width"):
            if getattr(self, name) > _MAX_WIDTH:
                raise ConfigError(f"{name} must be at most {_MAX_WIDTH}, got {getattr(self, name)}")
        if self.sigma <= 0:
            raise ConfigError(f"sigma must be positive, got {self.sigma}")
        if self.width <= 0 or min(self.filters) < 1:
            raise ConfigError(
                f"width {self.width} gives zero channels in the encoder "
                f"(filters {self.filters}); use width >= {1 / PAPER_WIDTHS[0]:.4f}"
            )
        if self.decoder_tail_width <= 0 or min(self.tail_filters) < 1:
            raise ConfigError(
                f"decoder_tail_width {self.decoder_tail_width} gives zero channels in the "
                f"decoder's upsampling stages (filters {self.tail_filters}); use "
                f"decoder_tail_width >= {1 / PAPER_WIDTHS[0]:.4f}"
            )
        if self.discriminator_width <= 0 or min(self.discriminator_filters) < 1:
            raise ConfigError(
                f"discriminator_width {self.discriminator_width} gives zero channels "
                f"(filters {self.discriminator_filters}); use discriminator_width >= 1/64"
            )
        for name in ("crop_height", "crop_width"):
            if getattr(self, name) % 16:
                raise ConfigError(
                    f"{name} must be a multiple of 16 (the encoder downsamples by 16), "
                    f"got {getattr(self, name)}"
                )
        for name in ("lambda_mse", "lambda_fm", "lambda_gan", "g_learning_rate", "d_learning_rate",
                     "lambda_ms_ssim", "lambda_rate", "chroma_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.lambda_mse == 0 and self.lambda_ms_ssim == 0:
            raise ConfigError(
                "lambda_mse and lambda_ms_ssim are both 0: the encoder would get no gradient "
                "from any distortion term; set one of them above 0"
            )
        if not 0 < self.lr_decay_factor <= 1:
            raise ConfigError(f"lr_decay_factor must be in (0, 1], got {self.lr_decay_factor}")
        if not 0 <= self.beta1 < 1:
            raise ConfigError(f"beta1 must be in [0, 1), got {self.beta1}")
        for name in ("ema_decay", "histogram_decay"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    # -- derived quantities ------------------------------------------------

    @property
    def gan(self):
        """True when the adversarial or feature-matching term is on (else an MSE-only model)."""
        return self.lambda_gan > 0 or self.lambda_fm > 0

    @property
    def variable_rate(self):
        """True when files may code any leading ``k >= min_channels`` of the ``C`` channels."""
        return self.min_channels is not None and self.min_channels < self.channels

    @property
    def rate_adaptive(self):
        """True when the model has gain units (:mod:`compression.gain`): files choose a rate
        position between the ``rate_lambdas`` it was trained for."""
        return bool(self.rate_lambdas)

    @property
    def smallest_channels(self):
        """The fewest leading channels a file may code: ``min_channels``, else ``channels``."""
        return self.channels if self.min_channels is None else self.min_channels

    @property
    def selective(self):
        """True when the model was trained to code only a masked part of the bottleneck."""
        return self.selective_probability > 0

    @property
    def num_centers(self):
        """``L``, the number of quantiser centres."""
        return len(self.centers)

    @property
    def filters(self):
        """Encoder filter counts ``(c7s1, d, d, d, d)`` after the width multiplier."""
        return tuple(int(round(k * self.width)) for k in PAPER_WIDTHS)

    @property
    def tail_filters(self):
        """Filter counts of the decoder's upsampling stages ``(u480, u240, u120, u60)``
        after ``decoder_tail_width``; its ``c3s1`` and residual blocks keep ``filters[-1]``."""
        return tuple(int(round(k * self.decoder_tail_width)) for k in PAPER_WIDTHS[::-1][1:])

    @property
    def discriminator_filters(self):
        """Discriminator filter counts ``C64-C128-C256-C512`` after its multiplier."""
        return tuple(int(round(k * self.discriminator_width)) for k in (64, 128, 256, 512))

    @property
    def crop_size(self):
        return (self.crop_height, self.crop_width)

    def bpp_bound(self, channels=None):
        """Upper bound on bits per pixel: ``channels * log2(L) / 256`` (pipeline.md, Rate).

        ``channels``: of a file that codes only that many leading channels
        (variable-rate models); default all of them.
        """
        channels = self.channels if channels is None else channels
        return channels * math.log2(self.num_centers) / 256.0

    @property
    def notes(self):
        """Human-readable notes on choices made for the user (e.g. by :meth:`for_bpp`)."""
        return self._notes

    # -- constructors -------------------------------------------------------

    @classmethod
    def for_bpp(cls, bpp, **fields):
        """The config whose ``channels`` is the largest with ``bpp_bound() <= bpp * 1.02``.

        The 2% relative tolerance (:data:`FOR_BPP_TOLERANCE`) lets the paper's
        rounded rates name its models: 0.018, 0.036, 0.073 and 0.145 select
        C = 2, 4, 8 and 16 (bounds 0.0181, 0.0363, 0.0726, 0.1451), where a
        strict ``<=`` would step one channel down for 0.0363 > 0.036.  The
        choice is recorded in :attr:`notes` (e.g. ``"bpp 0.07: chose channels
        C=7 (bound 0.0635 bpp); C=8 would give 0.0726 bpp"``).  The bound is
        not the file size: coded files are typically below it, plus a header
        of about 50 bytes.
        """
        if not _is_number(bpp) or bpp <= 0:
            raise ConfigError(f"bpp must be a positive number, got {bpp!r}")
        if "channels" in fields:
            raise ConfigError("for_bpp chooses channels itself; pass either bpp or channels")
        probe = cls(**fields)
        per_channel = math.log2(probe.num_centers) / 256.0
        channels = int(math.floor(bpp * (1 + FOR_BPP_TOLERANCE) / per_channel + 1e-12))
        if channels < 1:
            raise ConfigError(
                f"bpp {bpp} is below the smallest rate this quantiser offers: one channel "
                f"with {probe.num_centers} centres bounds the rate at {per_channel:.4f} bpp; "
                "use fewer centres or a higher bpp"
            )
        note = (
            f"bpp {bpp}: chose channels C={channels} (bound {channels * per_channel:.4f} bpp); "
            f"C={channels + 1} would give {(channels + 1) * per_channel:.4f} bpp"
        )
        return dataclasses.replace(probe, channels=channels, _notes=(note,))

    # -- serialisation -------------------------------------------------------

    def to_dict(self):
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if not f.name.startswith("_")}
        out["centers"] = list(self.centers)
        out["class_names"] = list(self.class_names)
        out["channel_weights"] = list(self.channel_weights)
        out["rate_channel_weights"] = list(self.rate_channel_weights)
        out["rate_lambdas"] = list(self.rate_lambdas)
        out["train_rate_range"] = list(self.train_rate_range)
        return out

    def to_json(self):
        """Canonical JSON (sorted keys), with a format tag and version."""
        payload = {"format": _FORMAT, "version": _FORMAT_VERSION, "config": self.to_dict()}
        return json.dumps(payload, sort_keys=True, indent=2) + "\n"

    def fingerprint_json(self):
        """:meth:`to_json` restricted to the fields of the first release.

        The model fingerprint in every ``.gcz`` header hashes this, so fields
        added later for training only (they do not change what a model
        decodes) leave the fingerprints of existing models and files as they were.
        """
        fields = {k: v for k, v in self.to_dict().items() if k in _FINGERPRINT_FIELDS}
        if self.variable_rate:  # what it decodes depends on it; fixed-rate hashes stay as they were
            fields["min_channels"] = self.min_channels
        if self.upsampling != _ABSENT_MEANS["upsampling"]:
            fields["upsampling"] = self.upsampling
        if self.decoder_tail_width != self.width:
            fields["decoder_tail_width"] = self.decoder_tail_width
        if self.rate_lambdas:
            fields["rate_lambdas"] = list(self.rate_lambdas)
            fields["lambda_rate"] = self.lambda_rate  # the default rate position
        payload = {"format": _FORMAT, "version": _FORMAT_VERSION, "config": fields}
        return json.dumps(payload, sort_keys=True, indent=2) + "\n"

    @classmethod
    def from_dict(cls, data):
        """The config a saved dict describes.

        A field the dict lacks takes the value that reproduces what the
        first release meant by its absence (``_ABSENT_MEANS``), not today's
        default, so old runs and models behave as they did.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown config fields {unknown}; this version knows {sorted(known)}"
            )
        return cls(**{**_ABSENT_MEANS, **data})

    @classmethod
    def from_json(cls, text):
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"config is not valid JSON: {e}") from None
        except RecursionError:
            raise ConfigError("config is not a config: its JSON is nested too deeply") from None
        if isinstance(payload, dict) and payload.get("format") == _FORMAT:
            version = payload.get("version", 0)
            if not _is_int(version):
                raise ConfigError(f"config format version must be an integer, got {version!r}")
            if version > _FORMAT_VERSION:
                raise ConfigError(
                    f"config format version {payload.get('version')} is newer than this "
                    f"library reads ({_FORMAT_VERSION}); upgrade gcompress"
                )
            payload = payload.get("config")
        return cls.from_dict(payload)

    def save(self, path):
        """Write ``to_json()`` to ``path`` atomically."""
        write_atomic(path, self.to_json(), overwrite=True)

    @classmethod
    def load(cls, path):
        """Read ``config.json``; every way of failing is a :class:`ConfigError` naming ``path``."""
        path = os.fspath(path)
        try:
            data = read_regular(path, _MAX_CONFIG_BYTES, "config file")
        except CompressionError as e:
            raise ConfigError(f"{e}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path} is not a config file: not UTF-8 text ({e})") from None
        try:
            return cls.from_json(text)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
