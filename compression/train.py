"""Training a compressor on Cityscapes-style data (``gcompress train``).

A run directory holds everything a run needs to be resumed, loaded or
coded with:

* ``config.json``: the :class:`~compression.config.CompressionConfig`, written first;
* ``run.json``: how the run reads its data (data dir, seed, resize), so
  ``--resume`` continues with exactly the same batches;
* ``ckpt-<step>.*`` and ``checkpoint``: the last ``keep`` checkpoints;
  TensorFlow writes each one completely before the ``checkpoint`` index
  names it, so a kill at any moment leaves the last good one loadable;
* ``events.out.tfevents.*``: TensorBoard summaries; ``metrics.jsonl``: one
  JSON line per validation.
"""

import collections
import contextlib
import dataclasses
import hashlib
import itertools
import json
import math
import os
import re
import shutil
import signal
import time

import numpy as np
import tensorflow as tf

from compression import bitstream, revive, widen
from compression import data as data_lib
from compression import metrics as metrics_lib
from compression.config import CompressionConfig
from compression.correction import apply_correction, fit_correction
from compression.distribute import (
    check_strategy,
    make_strategy,
    open_session,
    replicated_training_graph,
)
from compression.encoder import ENCODER_SCOPE
from compression.errors import CompressionError, DataError
from compression.files import TEMPORARY_SUFFIX, remove_stale_temporaries, write_atomic
from compression.gain import GAIN_NAME, regrid_table
from compression.inference import (
    CONFIG_NAME,
    checkpoint_candidates,
    checkpoint_files,
    checkpoint_problem,
    latest_checkpoint,
    run_checkpoints,
    session_config,
)
from compression.model import (
    LOSS_SCALE_VARIABLES,
    build_training_graph,
    encode,
    kept_channel_mask,
    synthesize,
)
from compression.precision import apply_precision, check_precision, loss_scale
from compression.rate_model import (
    ENTROPY_SCOPE,
    context_counts_variable,
    estimated_bits,
    estimated_bits_in_context,
)
from compression.semantic import semantic_input
from compression.shipped import resolve_name
from compression.weights import stored_float
from noisegen import sample_noise

__all__ = ["TrainResult", "train", "prepare_run_dir", "RUN_NAME"]

RUN_NAME = "run.json"
_v1 = tf.compat.v1


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` did: final ``step``, ``seconds`` of training,
    ``images_per_second``, the last ``losses`` and the last ``validation``."""

    run_dir: str
    step: int
    seconds: float
    images_per_second: float
    losses: dict
    validation: dict
    stopped_early: bool


def _write_json(path, payload):
    write_atomic(path, json.dumps(payload, indent=2, sort_keys=True) + "\n", overwrite=True)


def prepare_run_dir(run_dir, config, resume=False, force=False, run_info=None, log=print):
    """Create or check ``run_dir``; returns ``(config, run_info, checkpoint or None)``.

    * new or empty directory: writes ``config.json`` and ``run.json``;
    * ``resume``: continues the run there, with its own saved config and data
      settings (a different ``config`` is an error that shows the difference),
      from the newest checkpoint that restores (see
      :func:`_restorable_checkpoint`; leftovers of interrupted saves are
      removed first, and ``log`` reports both);
    * ``force``: starts over, first moving the old contents aside to
      ``<run_dir>.replaced-<time>`` (nothing is deleted);
    * otherwise a non-empty directory is refused with the choices spelled out.
    """
    run_dir = os.fspath(run_dir)
    config_path = os.path.join(run_dir, CONFIG_NAME)
    exists = os.path.isdir(run_dir) and bool(os.listdir(run_dir))
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise CompressionError(f"--out {run_dir!r} exists and is not a directory")
    if exists and resume:
        if not os.path.exists(config_path):
            raise CompressionError(
                f"cannot resume: {run_dir!r} has no {CONFIG_NAME}; it is not a run directory"
            )
        saved = CompressionConfig.load(config_path)
        if config is not None and config != saved:
            diff = {k: (v, config.to_dict()[k]) for k, v in saved.to_dict().items()
                    if config.to_dict()[k] != v}
            raise CompressionError(
                f"cannot resume {run_dir!r} with a different config (saved vs given: {diff}); "
                "drop the conflicting options to continue it, or use --force to start over"
            )
        run_path = os.path.join(run_dir, RUN_NAME)
        saved_info = {}
        if os.path.exists(run_path):
            try:
                with open(run_path, encoding="utf-8") as f:
                    saved_info = json.load(f)
            except (OSError, ValueError) as e:  # truncated, not UTF-8, a directory ...
                raise CompressionError(
                    f"cannot resume: {run_path} is damaged ({e}); it records the run's data "
                    f"settings: rewrite it as JSON, e.g. {{\"data\": \"DATA_DIR\", "
                    f"\"seed\": 0, \"resize\": null}}, or pass --force to start over"
                ) from None
            if not isinstance(saved_info, dict):
                raise CompressionError(f"cannot resume: {run_path} is not a JSON object")
        # Saves killed mid-write leave TensorFlow's *.tempstate* files (up to the
        # size of a checkpoint each) and our hidden temporaries; nothing reads them.
        stale = remove_stale_temporaries(run_dir, ("*.tempstate*", f".*{TEMPORARY_SUFFIX}"))
        if stale:
            log(f"removed {len(stale)} leftover files of interrupted saves: "
                f"{', '.join(stale[:3])}" + (" ..." if len(stale) > 3 else ""))
        return saved, saved_info, _restorable_checkpoint(run_dir, log)
    if exists and not force:
        if os.path.exists(config_path):
            saved = CompressionConfig.load(config_path)
            what = "the same config" if saved == config else "a different config"
            ckpt = latest_checkpoint(run_dir)
            progress = f", checkpoint {os.path.basename(ckpt)}" if ckpt else ""
            raise CompressionError(
                f"{run_dir!r} already holds a run with {what}{progress}; pass --resume to "
                "continue it, --force to start over (the old run is moved aside, not deleted), "
                "or choose another --out"
            )
        raise CompressionError(
            f"--out {run_dir!r} is not empty and is not a run directory; choose an empty "
            "or new directory (or --force to move its contents aside)"
        )
    if exists and force:
        aside = f"{run_dir.rstrip(os.sep)}.replaced-{time.strftime('%Y%m%d-%H%M%S')}"
        shutil.move(run_dir, aside)
        print(f"moved the previous contents of {run_dir} to {aside}")
    if config is None:
        raise CompressionError("no config given for a new run")
    os.makedirs(run_dir, exist_ok=True)
    config.save(config_path)
    _write_json(os.path.join(run_dir, RUN_NAME), run_info or {})
    return config, dict(run_info or {}), None


class _StopFlag:
    """Turns SIGINT/SIGTERM into a flag so the loop can checkpoint and exit cleanly."""

    def __init__(self):
        self.signal = None

    def __call__(self, signum, frame):
        if self.signal is not None:  # a second Ctrl-C: give up at once
            raise KeyboardInterrupt
        self.signal = signum

    @contextlib.contextmanager
    def installed(self):
        previous = {}
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[s] = signal.signal(s, self)
            except ValueError:  # not in the main thread: signals stay as they are
                pass
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


#: Part of the name of every EMA shadow variable.
_EMA_SHADOW = "ExponentialMovingAverage"
#: A decoder residual block's variables; group 1 is its number (from 1).
_RESIDUAL_BLOCK = re.compile(r"^generator/decoder/res(\d+)/")


def _is_gain(name):
    """Whether ``name`` is a gain table of a rate-adaptive model (its slots and shadows are
    optional anyway)."""
    return name in (f"generator/{ENCODER_SCOPE}/{GAIN_NAME}", f"generator/decoder/{GAIN_NAME}")


def _initializer_from(source, graph_variables, config, log=print):
    """A Saver that loads this graph's variables from another run (``--init-from``).

    ``source`` is a run directory, a checkpoint prefix, an export or a shipped
    model's name (their float16 or int8 weights are cast while loading, and
    hold the EMA averages under the variables' own names).  Every variable of the
    generator side (encoder, noise generator, semantic branch, decoder, with
    its batch-norm statistics) must be there with the same shape, or the two
    runs have different architectures and this raises with the names; the
    discriminator, the optimiser slots, the EMA shadows and the histogram
    are taken when present (and of the same shape) and otherwise start fresh,
    except that a missing shadow of a loaded variable starts as that variable.
    The step counter is never taken: the new run's schedule counts from 0.
    With ``config.trainable == "gains"`` each weight that has an average in
    the source loads that average: the gains then learn against the weights
    the source decodes with, which stay fixed.

    These architecture changes (``config`` against the source's) are bridged:

    * a semantic model seeded from a non-semantic one.  Its semantic branch
      starts fresh, and the decoder's first convolution, which reads the
      semantic features as extra input channels after ``w_hat`` and the
      noise, keeps the source's kernel with zeros for the new channels, so
      the new model starts out decoding exactly as the source did and learns
      to use the label map from there;
    * ``upsampling="resize"`` (this graph's) seeded from a transposed-
      convolution source: each ``u`` stage's kernel is the least-squares fit
      :func:`compression.decoder.resize_kernel_from_transposed`;
    * more residual blocks than the source (``--residual-blocks``): the new
      ones come after the source's and start as the identity (the scale of
      their second norm is 0), so the deeper model decodes as the source did
      and training grows the blocks from there (Net2Net's "deeper" step, Chen
      et al. 2016).  Fewer blocks than the source raise: trained blocks are
      never dropped silently;
    * wider upsampling stages than the source (``--decoder-tail-width``):
      each new filter copies one of the source's, the next stage splits its
      weights among the copies, and the copies get a little noise
      (:mod:`compression.widen`), so the wider model decodes nearly as the
      source did.  Narrower stages than the source raise;
    * more bottleneck channels than the source (``--channels``): every
      variable whose shape holds ``C`` grows, with the new channels holding
      one symbol that the decoder cannot see yet (:mod:`compression.revive`),
      so the model decodes as the source did and training fills them.  Fewer
      channels than the source raise;
    * other rate weights than a rate-adaptive source's (``--rate-lambdas``):
      the gain tables are regridded (:func:`compression.gain.regrid_table`),
      so every rate the source had codes as before and the new ones start
      from the source's trend.

    Returns ``(restore, checkpoint, taken, fresh)``; ``restore(sess)`` loads them.
    """
    from compression.decoder import resize_kernel_from_transposed
    from compression.inference import checkpoint_restorer, resolve_run

    run_dir, ckpt = resolve_run(source)
    stored = dict(tf.train.list_variables(ckpt))
    source_semantic = any(n.startswith("generator/semantic_encoder/") for n in stored)
    source_config = CompressionConfig.load(os.path.join(run_dir, CONFIG_NAME))
    convert_upsampling = (config.upsampling == "resize"
                          and source_config.upsampling == "transposed")
    c_old, c_new = source_config.channels, config.channels
    revive.check_growth(c_old, c_new, repr(source))
    widen.check_tail_widening(source_config, config, repr(source))
    widen_tail = source_config.tail_filters != config.tail_filters
    regrid_gains = (bool(source_config.rate_lambdas) and bool(config.rate_lambdas)
                    and tuple(source_config.rate_lambdas) != tuple(config.rate_lambdas))
    if regrid_gains and c_new != c_old:
        raise CompressionError(
            f"--init-from {source!r}: change the rate weights and the channels in two "
            "fine-tunes, not one (give --rate-lambdas or --channels)")
    if widen_tail and convert_upsampling:
        raise CompressionError(
            f"--init-from {source!r}: widen the upsampling stages and convert them to resize "
            "in two fine-tunes, not one (give --decoder-tail-width or --upsampling resize)")
    blocks = {int(m.group(1)) for v in graph_variables
              if (m := _RESIDUAL_BLOCK.match(v.op.name))}
    if blocks and max(blocks) < source_config.residual_blocks:
        raise CompressionError(
            f"--init-from {source!r}: it has {source_config.residual_blocks} residual blocks "
            f"and this config {max(blocks)}; a fine-tune can add blocks (they start as the "
            "identity) but not drop trained ones: give --residual-blocks "
            f"{source_config.residual_blocks} or more")

    def new_block(name):
        """Whether ``name`` belongs to a residual block the source does not have."""
        m = _RESIDUAL_BLOCK.match(name)
        return m is not None and int(m.group(1)) > source_config.residual_blocks

    def grown(base):
        """How a variable holding ``C`` grows to this config's channels (None: it does not)."""
        centers = config.centers
        if base in (f"generator/{ENCODER_SCOPE}/c3s1_out/weights",
                    f"generator/{ENCODER_SCOPE}/c3s1_out/biases"):
            return lambda old, fresh: revive.grow_encoder_output(old, c_new, centers)
        if base.startswith("generator/noise_generator/conv_out/") or _is_gain(base):
            return revive.grow_last_axis  # a new channel's gain starts at 1 (log 0)
        if base == "generator/decoder/channel_fill":
            return lambda old, fresh: revive.grow_fill(old, c_new, centers)
        if base.startswith(f"{ENTROPY_SCOPE}/") and base.endswith("_counts"):
            return lambda old, fresh: revive.grow_counts(old, c_new, centers)
        return None

    def bridge(name, shape):
        """How a stored value becomes this graph's, ``convert(old, fresh)`` with
        ``fresh`` the variable's initial value (None: it cannot).  EMA shadows
        are converted like their variables: validation and exports read them,
        and a fresh shadow would start from random weights."""
        base = name.split("/" + _EMA_SHADOW)[0]
        old = list(stored[name])
        if (convert_upsampling and "/decoder/u" in base and base.endswith("/weights")
                and old == [*shape[:2], shape[3], shape[2]]):
            return lambda kernel, fresh: resize_kernel_from_transposed(kernel)
        if (base == "generator/decoder/c3s1/weights" and len(shape) == 4
                and old[:2] + old[3:] == shape[:2] + shape[3:] and old[2] < shape[2]
                and (c_new > c_old or not source_semantic)):
            return lambda kernel, fresh: revive.grow_decoder_input(
                kernel, fresh, c_old, c_new, config.noise, source_semantic)
        if _is_gain(base) and regrid_gains:
            return lambda table, fresh: regrid_table(
                table, source_config.rate_lambdas, config.rate_lambdas)
        if c_new > c_old and old != shape and (convert := grown(base)) is not None:
            return convert
        if widen_tail and old != shape and (
                wider := widen.tail_converter(base, source_config, config)) is not None:
            return lambda value, fresh: wider(value)
        return None

    def averaged(name):
        """Whether variable ``name`` loads the source's average of it: trained
        alone, the gains learn against the weights the source decodes with,
        which a frozen weight then keeps (its average starts as it and so
        does not move)."""
        shadow = f"{name}/{_EMA_SHADOW}"
        return (config.trainable == "gains" and name.startswith("generator/")
                and name in stored and stored.get(shadow) == stored[name])

    taken, fresh, mismatched, bridged = {}, [], [], {}
    for v in graph_variables:
        name = v.op.name
        if name == "global_step":
            continue
        shape = v.shape.as_list()
        convert = None if name not in stored or "adam" in name else bridge(name, shape)
        if name not in stored:
            fresh.append(name)
        elif convert is not None:
            bridged[name] = (v, convert)
        elif list(stored[name]) == shape:
            if not averaged(base := name.split("/" + _EMA_SHADOW)[0]):
                taken[name] = v
            elif base == name:
                taken[f"{name}/{_EMA_SHADOW}"] = v
            else:  # the shadow starts as its variable, which holds the average
                fresh.append(name)
        elif not name.startswith("generator/") or "adam" in name or _EMA_SHADOW in name:
            fresh.append(name)
        else:
            mismatched.append(f"{name} {stored[name]} vs {shape}")
    required = [n for n in fresh if n.startswith("generator/")
                and "adam" not in n and _EMA_SHADOW not in n and not new_block(n)
                and not (n.startswith("generator/semantic_encoder/") and not source_semantic)
                and not _is_gain(n)]
    if mismatched or required:
        problems = mismatched + [f"{n} missing" for n in required]
        raise CompressionError(
            f"--init-from {source!r}: its checkpoint does not fit this config "
            f"({len(problems)} variables, e.g. {'; '.join(problems[:3])}); "
            "give the new run the source run's width, channels, residual blocks, "
            "noise and semantic settings (its config.json)")
    if regrid_gains:
        log(f"--init-from: the gain tables move from rate weights "
            f"{', '.join(f'{k:g}' for k in source_config.rate_lambdas)} to "
            f"{', '.join(f'{k:g}' for k in config.rate_lambdas)}: each new rate weight's gains "
            "are the source's interpolated there (extrapolated beyond its ends)")
    if any(_is_gain(n) for n in fresh):
        log("--init-from: the gain units are new; they start at 1, so the model codes at every "
            "rate position as the source did until training spreads the rates")
    restore_taken = checkpoint_restorer(ckpt, taken)
    # A new block's second norm scales its branch: zero (and its EMA shadow,
    # which validation and exports read) makes the block the identity, so the
    # deeper model starts out decoding exactly as the source did.  The
    # gradient of that scale is not zero, so the block can learn from there;
    # measured on `general` (lr 5e-5), the scales still averaged 2.5e-4 after
    # 1,300 steps: a block of random filters gives them no steady direction.
    identity = [v for v in graph_variables if new_block(v.op.name) and "adam" not in v.op.name
                and v.op.name.split("/" + _EMA_SHADOW)[0].endswith("/norm2/gamma")]
    if identity:
        added = sorted({_RESIDUAL_BLOCK.match(v.op.name).group(1) for v in identity}, key=int)
        log(f"--init-from: residual blocks {', '.join(added)} are new; each starts as the "
            "identity (its second norm's scale is 0)")
        zero = tf.group(*[v.assign(tf.zeros_like(v)) for v in identity])
        restore_plain = restore_taken

        def restore_taken(sess):
            restore_plain(sess)
            sess.run(zero)
    # An export (or a shipped model) holds the averages under the variables'
    # own names and no shadows: a shadow left fresh would start from the random
    # initial weights (a tenth of a 1-step fine-tune's averages, seen), and
    # validation and exports read the shadows.  Each starts as its variable.
    loaded = {v.op.name for v in taken.values()} | bridged.keys()
    variables = {v.op.name: v for v in graph_variables}
    start_shadows = [v.assign(variables[base]) for v in graph_variables
                     if v.op.name in fresh and _EMA_SHADOW in v.op.name
                     and (base := v.op.name.split("/" + _EMA_SHADOW)[0]) in loaded]

    def restored(restore):
        """``restore``, then the missing shadows of loaded variables set to them."""
        if not start_shadows:
            return restore

        def restore_and_start_shadows(sess):
            restore(sess)
            sess.run(start_shadows)
        return restore_and_start_shadows
    if not bridged:
        return restored(restore_taken), ckpt, len(taken), fresh
    if widen_tail:
        log(f"--init-from: the decoder's upsampling stages widen from "
            f"{list(source_config.tail_filters)} to {list(config.tail_filters)} filters; "
            "each new filter copies one of the source's (Net2Net), with a little noise")
    if convert_upsampling:
        log("--init-from: the source upsamples with transposed convolutions; each u stage's "
            "kernel becomes its least-squares resize-convolution fit (fine-tuning recovers "
            "the rest)")
    if c_new > c_old:
        log(f"--init-from: bottleneck channels {c_old + 1}-{c_new} are new; each holds the "
            "middle symbol everywhere, which the decoder does not see yet, so the model "
            "decodes as the source did until training fills them")
        factors = (config.rate_channel_weights or (1.0,) * c_new)[c_old:]  # () prices all at 1
        if config.lambda_rate > 0 and any(f > 0 for f in factors):
            log(f"--init-from: the rate term prices new channels (factors "
                f"{', '.join(f'{f:g}' for f in factors)} of "
                f"--lambda-rate {config.lambda_rate:g}); priced so, they may never fill (growing "
                f"general to 16 at 0.05 filled nothing in 250 steps, at 0 they did): "
                f"--rate-channel-weights with 0 for channels {c_old + 1}-{c_new} lets them fill")
    elif not source_semantic and any("/decoder/c3s1/" in n for n in bridged):
        log("--init-from: a semantic branch is new; generator/decoder/c3s1/weights keeps the "
            "source's kernel with zeros for the semantic channels")
    reader = tf.train.load_checkpoint(ckpt)
    placeholders = {n: _v1.placeholder(v.dtype.base_dtype, v.shape)
                    for n, (v, _) in bridged.items()}
    assigns = [v.assign(placeholders[n]) for n, (v, _) in bridged.items()]

    def restore(sess):
        restore_taken(sess)
        # Run after the initialiser: ``fresh`` is each variable's initial value.
        fresh = sess.run({n: v for n, (v, _) in bridged.items()})
        sess.run(assigns, {placeholders[n]: convert(stored_float(
            reader, f"{n}/{_EMA_SHADOW}" if averaged(n) else n, ckpt), fresh[n])
            for n, (v, convert) in bridged.items()})

    return restored(restore), ckpt, len(taken) + len(bridged), fresh


def _restorable_checkpoint(run_dir, log):
    """The newest checkpoint of ``run_dir`` that reads back whole, or None if it has none.

    A damaged checkpoint (half a ``.data`` file, a truncated ``.index``) is
    reported by name and the one before it is tried.  Checkpoint files of
    which none restores raise: the run is never silently started over.
    """
    for prefix in checkpoint_candidates(run_dir):
        problem = checkpoint_problem(prefix)
        if problem is None:
            return prefix
        log(f"checkpoint {os.path.basename(prefix)} is damaged ({problem}); "
            "trying the one before it")
    leftovers = checkpoint_files(run_dir)
    if leftovers:
        raise CompressionError(
            f"cannot resume {run_dir}: it holds checkpoint files ({', '.join(leftovers[:4])}"
            f"{' ...' if len(leftovers) > 4 else ''}) but none of them can be restored; "
            "restore them from a backup, or pass --force (without --resume) to start over "
            "(the old run is moved aside, not deleted)"
        )
    return None


def _device_message():
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return f"training on GPU: {', '.join(g.name for g in gpus)}"
    return f"training on CPU ({os.cpu_count()} cores); no GPU visible to TensorFlow"


class _Reviver:
    """``--revive-channels``: measures the encoder on training batches and revives its
    dead channels (:mod:`compression.revive`) in the session, before the first step."""

    BATCHES = 8  # training batches measured: enough to tell a constant channel

    def __init__(self, tg, config):
        self.config, self.w = config, tg.endpoints["w"]
        suffix = f"/{ENCODER_SCOPE}/c3s1_out/"
        found = {v.op.name.rsplit("/", 1)[-1]: v for v in tg.generator_variables
                 if suffix in "/" + v.op.name}
        self.kernel, self.bias = found["weights"], found["biases"]
        self.counts = [tg.symbol_counts] + (
            [context_counts_variable(config)] if config.rate_model == "context" else [])
        self.values = [_v1.placeholder(v.dtype.base_dtype, v.shape)
                       for v in [self.kernel, self.bias] + self.counts]
        self.assign = [v.assign(p) for v, p in zip([self.kernel, self.bias] + self.counts,
                                                   self.values, strict=True)]

    def __call__(self, sess, log):
        cfg = self.config
        latents = np.concatenate([sess.run(self.w) for _ in range(self.BATCHES)])
        dead = revive.dead_channels(latents, cfg.centers, cfg.quantizer)
        if not dead:
            log("--revive-channels: no dead channel (every channel holds more than one symbol)")
            return
        kernel, bias = revive.revive(*sess.run([self.kernel, self.bias]), latents, dead,
                                     cfg.centers)
        counts = sess.run(self.counts)
        # Their counts said "one symbol, always": priced so, the rate term would
        # push the revived channels straight back.
        for c in dead:
            total = counts[0][c].sum()
            counts[0][c] = 0.0
            counts[0][c, revive.midpoint_symbol(cfg.centers)] = total
            if len(counts) > 1:
                counts[1][c] = 0.0
        sess.run(self.assign, dict(zip(self.values, [kernel, bias] + counts, strict=True)))
        log("--revive-channels: revived channels " + ", ".join(
            f"{c + 1} (every symbol {cfg.centers[s]:g})" for c, s in sorted(dead.items())))


class _Validator:
    """Inference-mode reconstruction of a fixed set of validation images.

    Reports PSNR, MS-SSIM (with fewer scales for small images, see
    :func:`compression.metrics.ms_ssim`) and the estimate of the bits per pixel
    under the rate model training uses, averaged over the images, each nearly
    whole (its :func:`compression.data.whole_window`).  With an EMA of the generator
    (``config.ema_decay > 0``) the shadow weights are scored, because they
    are what :func:`compression.inference.load_model` loads.
    """

    def __init__(self, config, examples, resize, counts, ema=None):
        self.config = config
        self.examples = examples
        cfg = config
        # Whole images (each in its data_lib.whole_window), not training-size
        # crops: a model trained on 256x256 crops scored +0.017 MS-SSIM on
        # centre crops of CamVid val but +0.002 on the whole frames files code.
        ds = data_lib.make_dataset(
            examples, crop_size=None, batch_size=1, training=False,
            num_classes=cfg.semantic_classes, resize=resize,
        )
        ds = ds[0] if isinstance(ds, tuple) else ds
        self.iterator = _v1.data.make_initializable_iterator(ds)
        batch = self.iterator.get_next()
        images = batch["image"]
        one_hot = semantic_input(batch["labels"], cfg) if cfg.semantic_classes else None
        pixels = tf.cast(tf.shape(images)[1] * tf.shape(images)[2], tf.float64)
        # Variable-rate models are scored at every rate's end and middle too:
        # "" is all channels, "_k{k}" the leading k.
        self.rates = {"": cfg.channels}
        if cfg.variable_rate:
            for k in (cfg.min_channels, (cfg.min_channels + cfg.channels) // 2):
                self.rates.setdefault(f"_k{k}", k)
        self.fetches = {"image": images[0]}
        # Priced as training prices it (config.rate_model).
        contexts = context_counts_variable(cfg) if cfg.rate_model == "context" else None
        # Rate-adaptive models at both ends of their range too: "_t{t}", all channels.
        positions = dict.fromkeys(self.rates)
        if cfg.rate_adaptive:
            for t in (0, len(cfg.rate_lambdas) - 1):
                self.rates[f"_t{t}"] = cfg.channels
                positions[f"_t{t}"] = float(t)
        with _v1.variable_scope(_v1.get_variable_scope(), custom_getter=_averaged_by(ema),
                                auxiliary_name_scope=False):
            z = sample_noise(1, cfg.noise_dim, 0) if cfg.noise else None
            quantized = {}  # one encoder pass per position
            for suffix, k in self.rates.items():
                if positions[suffix] not in quantized:
                    quantized[positions[suffix]] = encode(images, cfg,
                                                          position=positions[suffix])[1]
                q = quantized[positions[suffix]]
                kept = k if cfg.variable_rate else None
                recon, _ = synthesize(q.w_hat, cfg, False, z=z, labels_one_hot=one_hot,
                                      kept=kept)
                mask = kept_channel_mask(k, cfg.channels) if cfg.variable_rate else None
                self.fetches[f"reconstruction{suffix}"] = recon[0]
                bits = (estimated_bits(q.symbols, counts, mask) if contexts is None else
                        estimated_bits_in_context(q.symbols, contexts, counts, mask))
                self.fetches[f"bpp_estimate{suffix}"] = bits / pixels

    def run(self, sess):
        sess.run(self.iterator.initializer)
        figures = collections.defaultdict(list)
        while True:
            try:
                out = sess.run(self.fetches)
            except tf.errors.OutOfRangeError:
                break
            a = _to_uint8(out["image"])
            for suffix in self.rates:
                b = _to_uint8(out[f"reconstruction{suffix}"])
                if self.config.corrected_loss:
                    b = apply_correction(b, fit_correction(a, b))
                figures[f"val_psnr{suffix}"].append(metrics_lib.psnr(a, b))
                figures[f"val_ms_ssim{suffix}"].append(metrics_lib.ms_ssim(a, b))
                figures[f"val_bpp_estimate{suffix}"].append(out[f"bpp_estimate{suffix}"])
        if not figures:
            return {}
        result = {name: float(np.mean(values)) for name, values in figures.items()}
        result["val_images"] = len(figures["val_psnr"])
        return result


def _averaged_by(ema):
    """A variable-scope custom getter returning ``ema``'s shadow of each variable it has."""
    if ema is None:
        return None

    def averaged(getter, *args, **kwargs):  # TF passes ``getter`` by keyword
        var = getter(*args, **kwargs)
        shadow = ema.average(var)
        return var if shadow is None else shadow

    return averaged


def _to_uint8(x):
    return np.clip(np.round((np.asarray(x) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def _scalar_summary(values):
    return _v1.Summary(value=[_v1.Summary.Value(tag=k, simple_value=float(v))
                              for k, v in values.items() if isinstance(v, (int, float))])


#: Image summaries are written with every this-many-th scalar summary.
IMAGE_SUMMARY_FACTOR = 10


def _rate_note(config):
    """What the model's rate means: the bound, and where to read the coded rate."""
    if config.variable_rate:
        bound = (f"bpp bound {config.bpp_bound(config.min_channels):.4f}-"
                 f"{config.bpp_bound():.4f} (k={config.min_channels}..{config.channels} of "
                 f"C={config.channels}, L={config.num_centers})")
    else:
        bound = f"bpp bound {config.bpp_bound():.4f} (C={config.channels}, L={config.num_centers})"
    # A 480x360 file's header (with the colour correction every file carries
    # by default) and CRC, besides a payload of a few hundred bytes.
    height, width = bitstream.bottleneck_size(360, 480)
    frame = bitstream.Header(fingerprint=bytes(bitstream.FINGERPRINT_SIZE), image_height=360,
                             image_width=480, bottleneck_channels=config.channels,
                             bottleneck_height=height, bottleneck_width=width,
                             num_centers=config.num_centers, seed=None,
                             correction=bytes(bitstream.CORRECTION_SIZE))
    header = frame.file_size(1000) - 1000
    return (bound + f"; files code at about val_bpp_estimate, plus a {header}-byte header "
            f"({8 * header / (480 * 360):.4f} bpp at 480x360) and the model's name")


def _data_dirs(data_dir):
    """One dataset root or a list of them -> a non-empty list of paths."""
    if isinstance(data_dir, (str, bytes, os.PathLike)):
        return [os.fspath(data_dir)]
    dirs = [os.fspath(d) for d in data_dir]
    if not dirs:
        raise DataError("no training data given; pass at least one --data directory")
    return dirs


def _graph_seed(seed, start_step):
    """The graph-level seed of a run with data seed ``seed`` (re)started at ``start_step``."""
    return (int(seed) * 1_000_003 + int(start_step)) % (2**31 - 1)


def _find_data(data_dirs, config, val_images, log):
    """``(training examples, validation examples)`` of ``data_dirs`` for ``config`` (label
    maps required for a semantic one), reported through ``log`` with its rate note.

    Validation takes the datasets' val splits in turn (so the curve covers
    all of them), at most ``val_images``; datasets without one are named.
    When none has one, the first training images stand in, and the report
    says the curve scores training images.
    """
    require_labels = bool(config.semantic_classes)
    examples, val_sets, unvalidated = [], [], []
    for d in data_dirs:
        examples += data_lib.find_examples(d, "train", require_labels=require_labels)
        try:
            val_sets.append(data_lib.find_examples(d, "val", require_labels=require_labels))
        except DataError:
            unvalidated.append(d)
    val_examples = [e for group in itertools.zip_longest(*val_sets) for e in group
                    if e is not None][:val_images]
    held_out = "held-out"
    if not val_examples and val_images > 0:
        val_examples, held_out = examples[:val_images], "TRAINING"
    log(f"{len(examples)} training images, {len(val_examples)} {held_out} validation images "
        "(scored nearly whole); " + _rate_note(config))
    if unvalidated:
        others = (f"validation draws from the {len(val_sets)} that have one" if val_sets
                  else "validation scores training images")
        log(f"no val split in {', '.join(map(str, unvalidated))} (a plain folder holds its "
            "images to hold out in a val/ subfolder, a Cityscapes-style tree in "
            f"leftImg8bit/val/): {others}")
    return examples, val_examples


def train(config, data_dir, run_dir, steps, *, resume=False, force=False, seed=0,
          resize=None, checkpoint_every=500, keep=2, summary_every=50, val_every=500,
          val_images=16, progress=True, log=print, init_from=None, strategy="none",
          devices=None, step_timeout=600, start_timeout=600, precision="float32",
          revive_channels=False):
    """Train ``config`` on the data at ``data_dir`` until global step ``steps``.

    ``data_dir`` is a Cityscapes-style tree or a plain folder of images, or a
    list of them: training then draws from the union of their ``train``
    splits, and validation from their ``val`` splits in turn.

    ``resume=True`` continues the run in ``run_dir`` from its last checkpoint
    with the same global step, optimiser state and data order.
    ``init_from`` (a run directory or checkpoint prefix) starts a new run
    from another run's weights, e.g. a GAN fine-tune of a distortion-only
    run (MS-ILLM, HiFiC): see :func:`_initializer_from`.  A resumed run that
    already has a checkpoint continues from it and ignores ``init_from``.  SIGINT and
    SIGTERM write a checkpoint and return (``stopped_early=True``).
    ``strategy="mirrored"`` replicates the step over ``devices`` (default: the
    local GPUs), ``"multiworker"`` over the workers of ``TF_CONFIG``, with
    ``config.batch_size`` as the global batch; a multiworker step waiting
    longer than ``step_timeout`` seconds for the others is an error, except
    where a wait is expected: the first run of a launch (the others may start
    later) and, on the other workers, the step after the chief validates or
    saves a checkpoint wait up to ``start_timeout`` seconds.  See
    :mod:`compression.distribute`.  ``precision="mixed_bfloat16"`` computes in
    bfloat16 (see :mod:`compression.precision`).  Checkpoints depend on neither.
    ``revive_channels`` (with ``init_from``, one device): before the first
    step, bottleneck channels that the source's encoder gives one symbol
    everywhere are brought back into the quantiser's live range
    (:mod:`compression.revive`), and their entropy counts start over.
    Returns a :class:`TrainResult`.
    """
    if not isinstance(steps, int) or steps < 1:
        raise CompressionError(f"--steps must be a positive integer, got {steps!r}")
    check_precision(precision)
    if revive_channels and (init_from is None or resume):
        raise CompressionError("--revive-channels applies to a new run from --init-from "
                               "(it changes the weights the run starts from); drop it")
    if revive_channels and strategy != "none":
        raise CompressionError("--revive-channels measures the encoder on one device; "
                               "run it with --strategy none, then resume with the strategy")
    scaled = loss_scale(precision)
    for flag, value in (("--step-timeout", step_timeout), ("--start-timeout", start_timeout)):
        if not (isinstance(value, (int, float)) and 0 < value < math.inf):
            raise CompressionError(f"{flag} must be a positive number of seconds, got {value!r}")
    # Checked before the run directory is made (and again once a resumed run's config is read).
    plan = check_strategy(strategy, devices, config.batch_size if config is not None else None)
    data_dirs = _data_dirs(data_dir)
    stored = [os.path.abspath(d) for d in data_dirs]
    run_info = {"data": stored[0] if len(stored) == 1 else stored, "seed": int(seed),
                "resize": list(resize) if resize else None}
    if init_from is not None:
        # A shipped model's name is recorded as the folder it resolved to.
        run_info["init_from"] = os.path.abspath(resolve_name(os.fspath(init_from)))
    if not (resume and os.path.exists(os.path.join(os.fspath(run_dir), CONFIG_NAME))):
        # A new run (or --force): check the data before the run directory is
        # created or the old run moved aside, so a mistyped --data leaves
        # nothing behind that the corrected command would then refuse.
        for d in data_dirs:
            data_lib.find_examples(d, "train", require_labels=bool(
                config is not None and config.semantic_classes))
    fresh_dir = not (os.path.isdir(run_dir) and os.listdir(run_dir)) or (force and not resume)
    if plan.is_chief:
        config, info, ckpt = prepare_run_dir(run_dir, config, resume, force, run_info, log)
    else:
        config, info, ckpt = _worker_view(run_dir, config, resume, log)
    seed = int(info.get("seed", seed))
    resize = tuple(info["resize"]) if info.get("resize") else resize
    if resume and not all(os.path.isdir(d) for d in data_dirs) and info.get("data"):
        data_dirs = _data_dirs(info["data"])  # the run's own data, when --data moved on
    start_step = int(tf.train.load_variable(ckpt, "global_step")) if ckpt else 0
    if resume and ckpt is None:
        log(f"{run_dir}: no checkpoint yet, starting from step 0")
    if start_step >= steps:
        log(f"{run_dir} is already at step {start_step} >= --steps {steps}; nothing to do")

    log(_device_message())
    examples, val_examples = _find_data(data_dirs, config, val_images, log)

    graph = tf.Graph()
    with graph.as_default():
        # The run's seed fixes the weights a new run starts from as well as its data
        # order: the same command trains the same model.  The step is mixed in so a
        # resumed run does not replay the random streams (noise, quantisation) its
        # start already drew.
        _v1.set_random_seed(_graph_seed(seed, start_step))
        plan = check_strategy(strategy, devices, config.batch_size)
        replication = make_strategy(plan)
        ds = data_lib.make_dataset(
            examples, crop_size=config.crop_size, batch_size=config.batch_size,
            training=True, num_classes=config.semantic_classes, seed=seed,
            start_step=start_step, resize=resize,
        )
        ds = ds[0] if isinstance(ds, tuple) else ds
        input_init = None
        if replication is None:
            batch = _v1.data.make_one_shot_iterator(ds).get_next()
            images = batch["image"]
            images.set_shape([config.batch_size, config.crop_height, config.crop_width, 3])
            labels = batch.get("labels") if config.semantic_classes else None
            tg = build_training_graph(images, config, labels=labels, loss_scale=scaled)
        else:
            tg, input_init = replicated_training_graph(replication, ds, config, scaled)
            images = tg.endpoints["images"]
            replicas = replication.num_replicas_in_sync
            log(f"{plan.describe()}: {replicas} replicas, "
                f"{config.batch_size // replicas} images each")
        # Only the chief validates and writes (its replicas hold the same weights).
        validator = (_Validator(config, val_examples, resize, tg.symbol_counts, tg.ema)
                     if val_examples and plan.is_chief else None)

        # One summary op per phase: a warm-up summary must not pull D into the step.
        common = [_v1.summary.scalar(f"train/{k}", v) for k, v in tg.metrics.items()]
        summary_ops = {
            phase: _v1.summary.merge(common + [
                _v1.summary.scalar(f"train/{k}", v)
                for k, v in phase_losses.items()])
            for phase, phase_losses in tg.phase_losses.items()
        }
        # Images are ~100 kB a summary: every IMAGE_SUMMARY_FACTOR-th summary only,
        # or the event file outgrows the checkpoints (40 MB per 1000 steps at 256x256).
        image_summary_op = _v1.summary.merge([
            _v1.summary.image("images/real", (images + 1.0) / 2.0, max_outputs=2),
            _v1.summary.image("images/reconstruction",
                              (tg.endpoints["reconstruction"] + 1.0) / 2.0, max_outputs=2)])
        # Relative paths in the ``checkpoint`` index: the run directory stays
        # loadable when moved or copied (--force moves the old run aside).
        saver = _v1.train.Saver(max_to_keep=keep, save_relative_paths=True)
        warm = None
        if init_from is not None and ckpt is None:
            try:
                warm = _initializer_from(init_from, _v1.global_variables(), config, log)
            except CompressionError:
                if fresh_dir:  # leave nothing that the corrected command would refuse
                    for name in (CONFIG_NAME, RUN_NAME):
                        os.remove(os.path.join(run_dir, name))
                    with contextlib.suppress(OSError):
                        os.rmdir(run_dir)
                raise
        writer = (_v1.summary.FileWriter(run_dir, graph if ckpt is None else None)
                  if plan.is_chief else None)
        weights = tg.generator_variables + tg.discriminator_variables
        reviver = _Reviver(tg, config) if revive_channels else None
        init = _v1.global_variables_initializer()
        # float16's loss scale is not checkpointed: it starts afresh on resume too.
        scale_init = _v1.variables_initializer(graph.get_collection(LOSS_SCALE_VARIABLES))
    graph.finalize()

    # The loop runs inside the graph's context: Saver.save and friends need it.
    with graph.as_default():
        if plan.kind == "multiworker":
            log(f"waiting up to {start_timeout:g} s for the {plan.workers} workers of TF_CONFIG "
                "(TensorFlow logs 'failed to connect' while the others start)")
        if precision != "float32":
            log(f"precision: {precision} (float32 weights)")
        sess = open_session(plan, replication, graph,
                            apply_precision(session_config(inference=False), precision, log))
        # A multiworker step (and the initial broadcast of the weights) waits for
        # every worker: a dead one would block the others forever without a deadline.
        # Where a long wait is expected (workers start minutes apart; the others
        # wait out the chief's validation and saves) the deadline is start_timeout.
        step_options, wait_options = (
            (_v1.RunOptions(timeout_in_ms=int(t * 1000)) for t in (step_timeout, start_timeout))
            if plan.kind == "multiworker" else (None, None))
        # The first run joins every worker: it is where a missing one shows.
        first = ([] if ckpt else [init]) + [scale_init] + (
            [input_init] if input_init is not None else [])
        try:
            if first:
                sess.run(first, options=wait_options)
        except tf.errors.DeadlineExceededError:
            raise CompressionError(
                f"the other workers did not start within {start_timeout:g} s (--start-timeout); "
                "start every worker of TF_CONFIG with the same command") from None
        if ckpt:
            saver.restore(sess, ckpt)
            # A new Saver knows no earlier checkpoints: hand it those of the
            # run, or --keep would never delete them and every resume would
            # leave its predecessors on disk.
            saver.recover_last_checkpoints(run_checkpoints(run_dir))
            log(f"resumed from {os.path.basename(ckpt)} at step {start_step}")
        elif warm is not None:
            warm_restore, warm_ckpt, taken, fresh = warm
            warm_restore(sess)
            log(f"initialised {taken} variables from {warm_ckpt}; {len(fresh)} start fresh"
                + (f" (e.g. {', '.join(fresh[:2])})" if fresh else ""))
            if reviver is not None:
                reviver(sess, log)
        prefix = os.path.join(run_dir, "ckpt")
        step, last_saved = start_step, start_step if ckpt else -1
        losses, validation = {}, {}
        stop = _StopFlag()
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=steps, initial=start_step, unit="step", dynamic_ncols=True)
        t_start, images_seen = time.time(), 0
        # The first step of a launch is where a resumed run first meets the others.
        patient = True

        def save():
            nonlocal last_saved
            if step != last_saved and plan.is_chief:
                saver.save(sess, prefix, global_step=step, write_meta_graph=False)
                last_saved = step

        try:
            with stop.installed():
                while step < steps and stop.signal is None:
                    phase = tg.phase(step)
                    # The step is counted here rather than fetched: a read of
                    # global_step in the same run as its increment may see either value.
                    fetches = {"op": tg.phase_ops[phase], "losses": tg.phase_losses[phase]}
                    # Every worker fetches the summaries (their means over replicas
                    # are collectives that all workers must join); only the chief writes.
                    want_summary = summary_every and step % summary_every == 0
                    if want_summary:
                        fetches["summary"] = summary_ops[phase]
                        if step % (summary_every * IMAGE_SUMMARY_FACTOR) == 0:
                            fetches["images"] = image_summary_op
                    try:
                        out = sess.run(fetches,
                                       options=wait_options if patient else step_options)
                    except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError,
                            tf.errors.CancelledError, tf.errors.AbortedError) as e:
                        if plan.kind != "multiworker":
                            raise
                        save()
                        flag, waited = (("--start-timeout", start_timeout) if patient
                                        else ("--step-timeout", step_timeout))
                        raise CompressionError(
                            f"step {step + 1} got no answer from the other workers within "
                            f"{waited:g} s ({flag}; {type(e).__name__}): a worker has stopped or "
                            "cannot be reached; restart every worker with --resume to continue "
                            f"from the chief's last checkpoint in {run_dir}") from None
                    except tf.errors.InvalidArgumentError as e:
                        clean = data_lib.data_error_from(e)
                        if clean is None:
                            raise
                        save()
                        raise clean from None
                    # float16 skips an update whose scaled gradients overflowed, and
                    # global_step counts applied ones: follow it (a separate run).
                    step = int(sess.run(tg.global_step)) if scaled else step + 1
                    images_seen += config.batch_size
                    losses = {k: float(v) for k, v in out["losses"].items()}
                    if not all(math.isfinite(v) for v in losses.values()):
                        save()
                        raise CompressionError(
                            f"loss became non-finite at step {step} ({losses}); lower the learning "
                            f"rates or resume from an earlier checkpoint in {run_dir}"
                        )
                    if want_summary and writer is not None:
                        writer.add_summary(out["summary"], step)
                        if "images" in out:
                            writer.add_summary(out["images"], step)
                    if bar is not None:
                        rate = images_seen / max(time.time() - t_start, 1e-9)
                        shown = {"G": "g_loss", "D": "d_loss", "mse": "distortion"}
                        bar.set_postfix(img_s=f"{rate:.2f}", phase=phase, refresh=False, **{
                            k: f"{losses[n]:.4f}" for k, n in shown.items() if n in losses})
                        bar.update(step - bar.n)
                    if checkpoint_every and step % checkpoint_every == 0:
                        save()
                    # Every worker runs the same command, so each knows when the chief
                    # pauses to save or validate; only the others wait through it.
                    patient = not plan.is_chief and any(
                        every and step % every == 0 for every in (checkpoint_every, val_every))
                    # (A skipped float16 step leaves ``step`` where it was: validate once.)
                    if (validator is not None and val_every and step % val_every == 0
                            and validation.get("step") != step):
                        validation = validator.run(sess)
                        _record_validation(run_dir, writer, step, losses, validation, log)
            save()
            if validator is not None and validation.get("step") != step and step > start_step:
                validation = validator.run(sess)
                _record_validation(run_dir, writer, step, losses, validation, log)
            if plan.kind == "multiworker":  # every worker's copy must be the same
                log(f"step {step}: weights digest {_digest(sess.run(weights))}")
        finally:
            if bar is not None:
                bar.close()
            if writer is not None:
                writer.close()
            sess.close()
    seconds = time.time() - t_start
    if stop.signal is not None:
        log(f"stopped by signal {stop.signal} at step {step}; checkpoint saved in {run_dir}")
    return TrainResult(
        run_dir=os.fspath(run_dir), step=step, seconds=seconds,
        images_per_second=images_seen / seconds if seconds > 0 else 0.0,
        losses=losses, validation=validation, stopped_early=stop.signal is not None,
    )


def _digest(values):
    """A short hex digest of arrays, to show that workers hold identical weights."""
    h = hashlib.sha256()
    for value in values:
        h.update(np.ascontiguousarray(value).tobytes())
    return h.hexdigest()[:16]


def _worker_view(run_dir, config, resume, log):
    """A multiworker non-chief's ``(config, run_info, checkpoint)``; it writes nothing.

    The chief owns ``run_dir`` (shared storage): with ``resume`` this worker
    reads the run's config and restores the same newest checkpoint.
    """
    config_path = os.path.join(os.fspath(run_dir), CONFIG_NAME)
    if resume and os.path.exists(config_path):
        saved = CompressionConfig.load(config_path)
        info = {}
        with contextlib.suppress(OSError, ValueError):
            with open(os.path.join(run_dir, RUN_NAME), encoding="utf-8") as f:
                info = json.load(f)
        return saved, info if isinstance(info, dict) else {}, _restorable_checkpoint(run_dir, log)
    if config is None:
        raise CompressionError(
            f"cannot resume: {run_dir!r} has no {CONFIG_NAME} yet; every worker needs the "
            "chief's run directory (shared storage) for --resume")
    return config, {}, None


def _record_validation(run_dir, writer, step, losses, validation, log):
    validation["step"] = step
    log(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in {**losses, **validation}.items()
                                     if isinstance(v, float)))
    writer.add_summary(_scalar_summary({f"val/{k[4:]}": v for k, v in validation.items()
                                        if k.startswith("val_")}), step)
    writer.flush()
    line = {"step": step, "time": time.time(), **losses, **validation}
    with open(os.path.join(run_dir, "metrics.jsonl"), "a") as f:
        f.write(json.dumps(line) + "\n")
