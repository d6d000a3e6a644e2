"""Graph assembly: image -> encoder -> quantiser -> (+ noise) -> decoder -> image, and D.

Variables live under stable top-level scopes so checkpoints are portable:

* ``generator/encoder/...``          the encoder E
* ``generator/noise_generator/...``  the noise generator (``noisegen``)
* ``generator/semantic_encoder/...`` the semantic branch (semantic models only)
* ``generator/decoder/...``          the decoder G
* ``discriminator/scale{s}/...``     the multiscale discriminator D
* ``entropy_model/symbol_counts``    running per-channel symbol histogram ``[C, L]``
* ``entropy_model/context_counts``   running counts per context ``[C, K, L]``
                                     (``rate_model="context"`` only; :mod:`compression.rate_model`)
* ``global_step``

:func:`build_training_graph` wires everything with losses and Adam train
ops; :func:`encode` and :func:`synthesize` are the two halves used for
inference and by the codec.
"""

import dataclasses
import threading

import tensorflow as tf
from tensorflow.python.util import deprecation

from compression.decoder import (
    DECODER_SCOPE,
    decoder_head,
    decoder_tail,
    fill_dropped_channels,
    leading_channels,
)
from compression.discriminator import multiscale_discriminator
from compression.encoder import ENCODER_SCOPE, encoder
from compression.gain import (
    default_position,
    gain_variables,
    gained,
    rate_weight_at,
    sample_positions,
)
from compression.losses import (
    color_corrected,
    discriminator_loss,
    distortion_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    ms_ssim_loss,
)
from compression.quantizer import dequantize, quantize, symbol_counts
from compression.rate_model import (
    ENTROPY_SCOPE,
    batch_context_counts,
    context_counts_variable,
    differentiable_bits,
    differentiable_bits_in_context,
    estimated_bits,
    estimated_bits_in_context,
    interpolated_code_lengths,
    symbol_counts_variable,
)
from compression.selective import apply_mask, keep_inside, sample_masks
from compression.semantic import semantic_encoder, semantic_input
from noisegen import dcgan_generator

__all__ = [
    "GENERATOR_SCOPE",
    "ENTROPY_SCOPE",
    "TrainingGraph",
    "encode",
    "decoder_gained",
    "dequantized",
    "synthesize",
    "decoder_features",
    "decode_tail",
    "symbol_counts_variable",
    "estimated_bits",
    "differentiable_bits",
    "interpolated_code_lengths",
    "kept_channel_mask",
    "build_training_graph",
    "reconstruct_from_symbols",
]

GENERATOR_SCOPE = "generator"

_v1 = tf.compat.v1


def encode(images, config, reuse=_v1.AUTO_REUSE, position=None):
    """``images`` ``[B, H, W, 3]`` in [-1, 1] -> ``(w, Quantized)``.

    Both ``w`` and the quantised tensors have shape ``[B, H/16, W/16, C]``.
    A rate-adaptive model (``config.rate_lambdas``) quantises ``w`` times
    its encoder gain at rate ``position`` (a scalar or ``[B]``; default
    ``config.lambda_rate``'s), and its ``w_hat`` is already scaled by the
    decoder gain, ready for :func:`synthesize`; ``w`` (already scaled by
    the encoder gain), ``symbols`` and ``w_soft`` are in the quantiser's
    domain (:mod:`compression.gain`).
    """
    with _v1.variable_scope(GENERATOR_SCOPE, reuse=reuse):
        w = encoder(images, config)
        if not config.rate_adaptive:
            return w, quantize(w, config.centers, config.sigma, method=config.quantizer)
        if position is None:
            position = default_position(config)
        w = gained(w, position, config, ENCODER_SCOPE)
        q = quantize(w, config.centers, config.sigma, method=config.quantizer)
        return w, q._replace(w_hat=gained(q.w_hat, position, config, DECODER_SCOPE))


def dequantized(symbols, config, position=None, reuse=_v1.AUTO_REUSE):
    """Symbols ``[B, h, w, C]`` -> the decoder's input ``w_hat``: the centres, through
    :func:`decoder_gained`."""
    return decoder_gained(dequantize(symbols, config.centers), config, position, reuse)


def decoder_gained(w_hat, config, position=None, reuse=_v1.AUTO_REUSE):
    """Quantised values ``[B, h, w, C]`` (the centres) -> the decoder's input: times a
    rate-adaptive model's decoder gain at ``position`` (default as :func:`encode`); a
    model of one rate takes them as they are."""
    if not config.rate_adaptive:
        return w_hat
    if position is None:
        position = default_position(config)
    with _v1.variable_scope(GENERATOR_SCOPE, reuse=reuse):
        return gained(w_hat, position, config, DECODER_SCOPE)


def _spatial_size(t):
    """``(h, w)`` of a ``[B, h, w, C]`` tensor: Python ints when static, else int32 tensors."""
    dyn = tf.shape(t)
    h = t.shape[1] if t.shape[1] is not None else dyn[1]
    w = t.shape[2] if t.shape[2] is not None else dyn[2]
    return h, w


def decoder_features(w_hat, config, training, z=None, labels_one_hot=None,
                     reuse=_v1.AUTO_REUSE, kept=None):
    """The latent-resolution half of :func:`synthesize`: ``(features [B, h, w, F], noise)``.

    Noise generator, semantic encoder and the decoder's ``c3s1`` and residual
    blocks; :func:`decode_tail` turns the features into the image.  ``kept``
    (variable-rate configs): how many leading channels of ``w_hat`` are real,
    an int scalar or ``[B]``; None keeps all.
    """
    noise = semantic = None
    with _v1.variable_scope(GENERATOR_SCOPE, reuse=reuse):
        if config.noise:
            if z is None:
                raise ValueError("this config uses noise (config.noise=True); pass z")
            noise = dcgan_generator(
                z, config, training, config.channels, output_size=_spatial_size(w_hat)
            )
            # z may hold extra rows for the batch norm's statistics (config.noise_batch).
            noise = noise[:tf.shape(w_hat)[0]]
        if config.semantic_classes:
            if labels_one_hot is None:
                raise ValueError(
                    f"this model is conditioned on semantic maps ({config.semantic_classes} "
                    "classes); pass the label map"
                )
            semantic = semantic_encoder(labels_one_hot, config)
        with _v1.variable_scope(DECODER_SCOPE):
            if config.variable_rate:
                w_hat = fill_dropped_channels(
                    w_hat, config.channels if kept is None else kept, config)
            features = decoder_head(w_hat, config, noise, semantic)
    return features, noise


def decode_tail(features, config, statistics=None, reuse=_v1.AUTO_REUSE):
    """Upsample decoder features ``[B, h, w, F]`` -> ``(image [B, 16h, 16w, 3], pre_norm)``."""
    with _v1.variable_scope(GENERATOR_SCOPE, reuse=reuse):
        with _v1.variable_scope(DECODER_SCOPE):
            return decoder_tail(features, config, statistics)


def synthesize(w_hat, config, training, z=None, labels_one_hot=None, reuse=_v1.AUTO_REUSE,
               kept=None):
    """Decode ``w_hat`` ``[B, h, w, C]`` to ``(reconstruction [B, 16h, 16w, 3], noise)``.

    ``z`` ``[B, noise_dim]`` feeds the noise generator when ``config.noise``
    (``noise`` is None otherwise); ``labels_one_hot`` ``[B, 16h, 16w, K]`` is
    required exactly when ``config.semantic_classes > 0``; ``kept``: see
    :func:`decoder_features`.
    """
    features, noise = decoder_features(w_hat, config, training, z, labels_one_hot, reuse, kept)
    reconstruction, _ = decode_tail(features, config, reuse=reuse)
    return reconstruction, noise


def sample_kept_channels(batch, config):
    """``[batch]`` int32: how many leading channels each training example keeps.

    ``k`` in ``[config.min_channels, config.channels]``, uniform, or drawn
    with ``config.channel_weights`` when given.
    """
    if not config.channel_weights:
        return tf.random.uniform([batch], config.min_channels, config.channels + 1, tf.int32)
    weights = tf.constant(config.channel_weights, tf.float32)
    logits = tf.math.log(weights / tf.reduce_sum(weights))[tf.newaxis]
    drawn = tf.random.categorical(logits, batch, dtype=tf.int32)[0]
    return drawn + config.min_channels


def kept_channel_mask(kept, channels):
    """float64 ``[B, 1, 1, C]``: 1 for the leading ``kept`` (``[B]``) channels, else 0."""
    return tf.cast(leading_channels(kept, channels), tf.float64)


@dataclasses.dataclass
class TrainingGraph:
    """Everything :func:`build_training_graph` made.

    Training runs in phases (Agustsson et al. 2018 train with distortion
    first; MS-ILLM and HiFiC warm up likewise):

    * ``warmup_train_op``: G on the distortion terms alone.  Nothing it
      needs touches the discriminator, so a session running it computes no
      D at all.  ``phase_losses["warmup"]`` are its losses.
    * ``d_warmup_op``: the same G step plus a D step on this step's
      reconstructions (``config.d_warmup_steps`` before the GAN starts).
    * ``train_op``: the GAN step, G and D from one forward pass (pix2pixHD:
      G's loss sees D before this step's D update), the adversarial weights
      ramped in over ``config.gan_ramp_steps``.

    ``phase_ops`` and ``phase_losses`` map ``"warmup"``, ``"d_warmup"`` and
    ``"gan"`` to those; :meth:`phase` says which one a global step is in.
    An MSE-only model (``not config.gan``) has no discriminator: its three
    phases are all ``warmup_train_op``.  ``g_train_op`` (G's GAN-phase
    update alone) and ``d_train_op`` (D's alone) are None then.
    ``endpoints`` has ``w``, ``w_hat``, ``symbols``, ``noise`` (or None),
    ``reconstruction``, ``images`` and, for variable-rate configs only,
    ``kept`` (how many leading channels each example kept, ``[B]``), for
    selective ones ``mask`` (``[B, h, w, 1]``, 1 = coded); ``losses`` are the GAN phase's
    (``g_loss``, ``d_loss``, ``distortion``, ``g_gan``, ``feature_matching``;
    ``ms_ssim`` when that term is on); ``metrics`` has ``psnr``,
    ``bpp_bound`` and ``bpp_estimate``.
    """

    config: object
    endpoints: dict
    losses: dict
    metrics: dict
    g_train_op: tf.Operation
    d_train_op: tf.Operation
    train_op: tf.Operation
    global_step: tf.Variable
    symbol_counts: tf.Variable
    generator_variables: list
    discriminator_variables: list
    ema: object = None
    warmup_train_op: tf.Operation = None
    d_warmup_op: tf.Operation = None
    phase_ops: dict = None
    phase_losses: dict = None

    def phase(self, step):
        """``"warmup"``, ``"d_warmup"`` or ``"gan"``: the phase of global step ``step``."""
        cfg = self.config
        if not cfg.gan or step < cfg.gan_start_step - cfg.d_warmup_steps:
            return "warmup"
        return "d_warmup" if step < cfg.gan_start_step else "gan"


def _variables_under(scope):
    return _v1.get_collection(_v1.GraphKeys.TRAINABLE_VARIABLES, scope=scope + "/")


def _learning_rate(base, config, global_step):
    if not config.lr_decay_step:
        return base
    return tf.where(global_step >= config.lr_decay_step,
                    base * config.lr_decay_factor, base)


#: Collection of the loss-scale variables of float16 training.  They are not
#: checkpointed (a run resumes in any precision) and start afresh every run.
LOSS_SCALE_VARIABLES = "gcompress_loss_scale_variables"
_scale_lock = threading.Lock()


def _scaled(optimizer, loss_scale):
    """``optimizer`` with float16 loss scaling, or as it is for ``loss_scale=None``."""
    if loss_scale is None:
        return optimizer
    graph = _v1.get_default_graph()
    with _scale_lock:  # replicas build in threads of their own
        before = {id(v) for v in graph.get_collection(_v1.GraphKeys.GLOBAL_VARIABLES)}
        with deprecation.silence():
            wrapped = _v1.mixed_precision.MixedPrecisionLossScaleOptimizer(optimizer, loss_scale)
        everything = graph.get_collection_ref(_v1.GraphKeys.GLOBAL_VARIABLES)
        created = [v for v in everything if id(v) not in before]
        everything[:] = [v for v in everything if id(v) in before]
        for v in created:
            graph.add_to_collection(LOSS_SCALE_VARIABLES, v)
    return wrapped


def build_training_graph(images, config, labels=None, z=None, loss_scale=None):
    """Build the full training graph.

    Args:
      images: float32 ``[B, H, W, 3]`` in [-1, 1]; ``H``, ``W`` multiples of 16.
      config: a :class:`~compression.config.CompressionConfig`.
      labels: int ``[B, H, W]`` class ids, required iff ``config.semantic_classes``.
      z: optional ``[B', noise_dim]``, ``B' >= B``; default a fresh normal draw
        of ``max(B, config.noise_batch)`` rows every step (the noise generator's
        batch norm normalises over all of them; the map keeps the first ``B``).
      loss_scale: ``"dynamic"`` wraps both optimisers in TensorFlow's
        ``MixedPrecisionLossScaleOptimizer`` for float16 training: a step whose
        scaled gradients are not finite is skipped (no update, ``global_step``
        not counted) and the scale halves.  None for float32 and bfloat16.

    Returns:
      a :class:`TrainingGraph`.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    batch = tf.shape(images)[0]
    if config.semantic_classes and labels is None:
        raise ValueError(
            f"config.semantic_classes={config.semantic_classes} needs label maps; pass labels"
        )
    if labels is not None and not config.semantic_classes:
        raise ValueError("labels given but config.semantic_classes is 0; set semantic_classes")
    one_hot = semantic_input(labels, config) if labels is not None else None
    if config.noise and z is None:
        z = tf.random.normal(tf.stack([tf.maximum(batch, config.noise_batch), config.noise_dim]))

    # Rate-adaptive models: each example draws a rate position (compression.gain).
    positions = sample_positions(batch, config) if config.rate_adaptive else None
    w, q = encode(images, config, position=positions)
    kept = None
    if config.variable_rate:
        # Nested dropout: each example keeps k of its leading channels, k
        # uniform unless channel_weights say which rates to train more.
        kept = sample_kept_channels(batch, config)
    w_hat, mask = q.w_hat, None
    if config.selective:
        # Section 4.2: the decoder sees only the masked entries and must
        # synthesise the rest; distortion counts only where something was coded.
        mask = sample_masks(one_hot, config.selective_probability)
        w_hat = apply_mask(w_hat, mask)
    # Trained alone, the gains meet the noise generator as files do: its batch
    # norm on the statistics it has, which then stay as they are.
    reconstruction, noise = synthesize(w_hat, config, config.trainable != "gains", z=z,
                                       labels_one_hot=one_hot, kept=kept)
    if config.corrected_loss:
        # What a file shows: the losses, D and the metrics all see it.
        reconstruction = color_corrected(images, reconstruction)
    scored = reconstruction if mask is None else keep_inside(images, reconstruction, mask)

    global_step = _v1.train.get_or_create_global_step()
    distortion = distortion_loss(images, scored, config.chroma_weight)
    distortion_term = config.lambda_mse * distortion
    warmup_losses = {"distortion": distortion}
    if config.lambda_ms_ssim > 0:
        warmup_losses["ms_ssim"] = ms_ssim_loss(images, scored)
        distortion_term += config.lambda_ms_ssim * warmup_losses["ms_ssim"]
    pixels = tf.cast(batch * tf.shape(images)[1] * tf.shape(images)[2], tf.float64)
    coded = None if kept is None else kept_channel_mask(kept, config.channels)
    if mask is not None:
        coded = tf.cast(mask, tf.float64) * (1.0 if coded is None else coded)
    counts = symbol_counts_variable(config)
    in_context = config.rate_model == "context"
    contexts = context_counts_variable(config) if in_context else None
    if config.lambda_rate > 0:
        # Bits per pixel of what a file would code, against the counts of the
        # last ~1/(1 - histogram_decay) steps: only the encoder feels it.
        priced = coded
        if config.rate_channel_weights:
            factors = tf.constant(config.rate_channel_weights, tf.float64)[tf.newaxis, tf.newaxis,
                                                                          tf.newaxis]
            priced = factors if coded is None else coded * factors

        def bits_priced(price):
            if in_context:
                return differentiable_bits_in_context(q.w_soft, q.symbols, contexts, counts,
                                                      config.centers, price)
            return differentiable_bits(q.w_soft, counts, config.centers, price)

        warmup_losses["rate"] = bits_priced(priced) / tf.cast(pixels, tf.float32)
        if positions is None:
            distortion_term += config.lambda_rate * warmup_losses["rate"]
        else:
            # Each example's bits weighed by its own position's rate weight.
            weights = rate_weight_at(positions, config)[:, tf.newaxis, tf.newaxis, tf.newaxis]
            weighted = bits_priced(weights if priced is None else priced * weights)
            distortion_term += weighted / tf.cast(pixels, tf.float32)
    warmup_losses["g_loss"] = distortion_term

    g_vars = _variables_under(GENERATOR_SCOPE)
    g_opt = _scaled(_v1.train.AdamOptimizer(
        _learning_rate(config.g_learning_rate, config, global_step),
        beta1=config.beta1, name="g_adam"), loss_scale)
    # Under tf.distribute every replica adds the histogram of the global batch
    # (identity on one device), so the entropy model is not replica 0's alone.
    replica = tf.distribute.get_replica_context()
    batch_counts = replica.all_reduce(
        tf.distribute.ReduceOp.SUM, symbol_counts(q.symbols, config.num_centers))
    batch_contexts = None if not in_context else replica.all_reduce(
        tf.distribute.ReduceOp.SUM,
        batch_context_counts(q.symbols, config.num_centers, config.channels))
    # num_updates makes the effective decay min(decay, (1 + step) / (10 + step)):
    # without it the average of a short run (or the first thousands of steps
    # at decay 0.999) still holds a large share of the random initial weights.
    ema = (_v1.train.ExponentialMovingAverage(config.ema_decay, num_updates=global_step)
           if config.ema_decay > 0 else None)
    # The decoder side only: the entropy model is the histogram of the *raw*
    # encoder's symbols, so inference must encode with the raw encoder.  An
    # averaged encoder codes other symbols than the histogram describes (seen:
    # files at 0.02 bpp and 16 dB from the average, 0.08 bpp and 18 dB raw).
    decoder_side = [v for v in g_vars if not v.name.startswith(f"{GENERATOR_SCOPE}/encoder/")]

    def generator_update(grads, dependencies):
        with tf.control_dependencies(dependencies):
            apply = g_opt.apply_gradients(grads, global_step=global_step)
            updates = [apply, counts.assign(counts * config.histogram_decay + batch_counts)]
            if in_context:
                updates.append(contexts.assign(
                    contexts * config.histogram_decay + batch_contexts))
        if ema is not None:
            with tf.control_dependencies([apply]):
                updates.append(ema.apply(decoder_side))
        return tf.group(*updates)

    # Under tf.distribute the optimiser sums the replicas' gradients (v1
    # optimisers scale the loss only for Estimator): each replica's share is
    # its loss / replicas, so the step is the global batch's mean as on one device.
    replicas = tf.distribute.get_replica_context().num_replicas_in_sync

    def share(loss):
        return loss / replicas if replicas > 1 else loss

    # trainable "gains": every other weight keeps its value, and its average
    # with it (train --init-from starts both at the source's average), so the
    # rates outside the training range code exactly as before.
    trained = gain_variables(g_vars) if config.trainable == "gains" else g_vars
    warmup_grads = g_opt.compute_gradients(share(distortion_term), trained)
    warmup_train_op = generator_update(warmup_grads, [])
    losses, d_vars = dict(warmup_losses), []
    g_train_op = d_train_op = None
    train_op = d_warmup_op = warmup_train_op
    phase_losses = {"warmup": warmup_losses, "d_warmup": warmup_losses, "gan": warmup_losses}
    if config.gan:
        d_real = multiscale_discriminator(images, config, one_hot, reuse=_v1.AUTO_REUSE)
        d_fake_for_d = multiscale_discriminator(
            tf.stop_gradient(reconstruction), config, one_hot, reuse=_v1.AUTO_REUSE)
        d_fake_for_g = multiscale_discriminator(
            reconstruction, config, one_hot, reuse=_v1.AUTO_REUSE)
        g_gan = generator_adversarial_loss(d_fake_for_g)
        fm = feature_matching_loss(d_real, d_fake_for_g)
        d_loss = discriminator_loss(d_real, d_fake_for_d)
        if config.gan_ramp_steps:
            ramp = tf.clip_by_value(
                tf.cast(global_step - config.gan_start_step + 1, tf.float32)
                / float(config.gan_ramp_steps), 0.0, 1.0)
        else:
            ramp = 1.0
        g_loss = distortion_term + ramp * (config.lambda_gan * g_gan + config.lambda_fm * fm)
        losses.update(g_loss=g_loss, d_loss=d_loss, g_gan=g_gan, feature_matching=fm)

        d_vars = _variables_under("discriminator")
        d_opt = _scaled(_v1.train.AdamOptimizer(
            _learning_rate(config.d_learning_rate, config, global_step),
            beta1=config.beta1, name="d_adam"), loss_scale)
        trained_names = {v.op.name for v in trained}
        gan_g_vars = [v for v in (decoder_side if config.freeze_encoder else g_vars)
                      if v.op.name in trained_names]
        g_grads = g_opt.compute_gradients(share(g_loss), gan_g_vars)
        d_grads = d_opt.compute_gradients(share(d_loss), d_vars)

        def g_and_d_step(grads):
            # Both gradient sets are computed before either update is applied,
            # so the combined op is deterministic (no read/write race on variables).
            computed = [g for g, _ in grads + d_grads if g is not None]
            with tf.control_dependencies(computed):
                d_apply = d_opt.apply_gradients(d_grads)
            return tf.group(generator_update(grads, computed), d_apply)

        g_train_op = generator_update(g_grads, [])
        d_train_op = d_opt.apply_gradients(d_grads)
        train_op = g_and_d_step(g_grads)
        d_warmup_op = g_and_d_step(warmup_grads)
        phase_losses = {"warmup": warmup_losses,
                        "d_warmup": dict(warmup_losses, d_loss=d_loss), "gan": losses}

    mse_8bit = tf.reduce_mean(tf.square((images - reconstruction) * 127.5))
    metrics = {
        "psnr": 10.0 * tf.math.log(255.0**2 / tf.maximum(mse_8bit, 1e-10)) / tf.math.log(10.0),
        "bpp_bound": tf.constant(config.bpp_bound(), tf.float64),
        "bpp_estimate": (estimated_bits_in_context(q.symbols, contexts, counts, coded)
                         if in_context else estimated_bits(q.symbols, counts, coded)) / pixels,
    }
    return TrainingGraph(
        config=config,
        endpoints={
            "images": images, "w": w, "w_hat": q.w_hat, "symbols": q.symbols,
            "noise": noise, "reconstruction": reconstruction,
            **({"kept": kept} if kept is not None else {}),
            **({"mask": mask} if mask is not None else {}),
        },
        losses=losses,
        metrics=metrics,
        g_train_op=g_train_op,
        d_train_op=d_train_op,
        train_op=train_op,
        global_step=global_step,
        symbol_counts=counts,
        generator_variables=g_vars,
        discriminator_variables=d_vars,
        ema=ema,
        warmup_train_op=warmup_train_op,
        d_warmup_op=d_warmup_op,
        phase_ops={"warmup": warmup_train_op, "d_warmup": d_warmup_op, "gan": train_op},
        phase_losses=phase_losses,
    )


def reconstruct_from_symbols(symbols, config, z=None, labels_one_hot=None, kept=None):
    """Inference decode: int symbols ``[B, h, w, C]`` -> image ``[B, 16h, 16w, 3]`` in [-1, 1].

    ``kept``: see :func:`decoder_features` (symbols of dropped channels are ignored).
    """
    w_hat = dequantized(symbols, config)
    w_hat.set_shape([None, None, None, config.channels])
    reconstruction, _ = synthesize(w_hat, config, False, z=z, labels_one_hot=labels_one_hot,
                                   kept=kept)
    return reconstruction
