"""``gcompress demo``: a real photograph through a shipped model, beside the best classical codec.

:func:`run_demo` compresses a photograph (yours, or one of scikit-image's
sample photographs) with a shipped model (no training), writes the ``.gcz``
file, the decoded PNG and a side-by-side PNG (original | ours | the best
classical codec available with a file no smaller than ours), and prints the
sizes, PSNR and MS-SSIM.

:func:`run_training_demo` (``gcompress demo --train``) shows training
instead: it trains a small compressor (width 0.125, C=8, 128x128 crops) for
a few hundred steps on ``--data`` or on scikit-image's samples, then codes one
photograph.  That proves every stage works, not the quality of a trained
model, which takes tens of thousands of steps (see README).
"""

import os
import time

import numpy as np

from compression.codec import decode_image, encode_image
from compression.config import CompressionConfig
from compression.errors import CompressionError
from compression.files import write_atomic
from compression.image_io import write_image
from compression.inference import CONFIG_NAME, load_model
from compression.metrics import ms_ssim, psnr
from compression.train import train

__all__ = ["DEMO_CONFIG", "DEMO_BPP", "DEMO_PHOTO", "sample_photographs",
           "write_sample_dataset", "run_demo", "run_training_demo"]

#: The rate the demo asks a variable-rate model for (the paper's C=4 rate, files included).
DEMO_BPP = 0.04
#: The scikit-image sample the demo compresses when given no photograph.
DEMO_PHOTO = "coffee"

DEMO_CONFIG = CompressionConfig(
    channels=8, width=0.125, residual_blocks=3, discriminator_width=0.25,
    discriminator_scales=2, noise_dim=32, upsample_dim=64,
    crop_height=128, crop_width=128, batch_size=2, gan_start_step=100,
    lambda_fm=2.0, g_learning_rate=5e-4, d_learning_rate=2e-4,
    # 300 steps in all: the GAN at full weight from step 100, no warm-up or ramp.
    lambda_gan=1.0, gan_ramp_steps=0, d_warmup_steps=0, freeze_encoder=False,
)

_SAMPLES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field",
            "retina", "skin", "cat")


def sample_photographs():
    """``{name: uint8 [H, W, 3]}``: scikit-image's bundled colour photographs."""
    try:
        from skimage import data as skdata
    except ImportError:
        raise CompressionError(
            "the demo without --data uses scikit-image's sample photographs: "
            "pip install scikit-image, or pass --data DIR"
        ) from None
    photos = {}
    for name in _SAMPLES:
        loader = getattr(skdata, name, None)
        if loader is None:
            continue
        try:
            image = np.asarray(loader())
        except Exception:  # some samples need an optional download; skip those
            continue
        if image.ndim == 3 and image.shape[2] >= 3 and min(image.shape[:2]) >= 128:
            photos[name] = image[..., :3].astype(np.uint8)
    if len(photos) < 2:
        raise CompressionError("scikit-image provides too few sample photographs; pass --data")
    return photos


def write_sample_dataset(root, photos):
    """Write ``photos`` as a Cityscapes-style tree (the first one held out for val)."""
    names = sorted(photos)
    for split, chosen in (("val", names[:1]), ("train", names[1:])):
        folder = os.path.join(root, "leftImg8bit", split, "samples")
        os.makedirs(folder, exist_ok=True)
        for name in chosen:
            path = os.path.join(folder, f"{name}_leftImg8bit.png")
            if not os.path.exists(path):
                write_image(path, photos[name])
    return root


def run_training_demo(out, data=None, steps=300, log=print, progress=True):
    """Train (or resume) the demo model in ``out/run`` and code one photograph."""
    os.makedirs(out, exist_ok=True)
    photos = None
    if data is None:
        photos = sample_photographs()
        data = write_sample_dataset(os.path.join(out, "data"), photos)
    run_dir = os.path.join(out, "run")
    resume = os.path.exists(os.path.join(run_dir, CONFIG_NAME))
    log(f"training the demo model in {run_dir} to step {steps} "
        f"({'resuming' if resume else 'new run'}; data: {data})")
    result = train(DEMO_CONFIG if not resume else None, data, run_dir, steps,
                   resume=resume, checkpoint_every=100, val_every=max(steps // 3, 1),
                   summary_every=25, val_images=4, progress=progress, log=log)
    log(f"trained to step {result.step} at {result.images_per_second:.1f} images/s")

    from compression.data import find_examples
    from compression.image_io import read_image

    try:
        source = find_examples(data, "val")[0].image_path
    except CompressionError:
        source = find_examples(data, "train")[0].image_path
    image = read_image(source)
    with load_model(run_dir) as model:
        encoded = encode_image(model, image)
        decoded, _ = decode_image(model, encoded.data)
    gcz = os.path.join(out, "demo.gcz")
    write_atomic(gcz, encoded.data, overwrite=True)
    for name, array in (("original.png", image), ("decoded.png", decoded)):
        write_image(os.path.join(out, name), array, overwrite=True)
    h, w = image.shape[:2]
    log(f"{source} ({w}x{h}) -> {gcz}: {len(encoded.data)} bytes, {encoded.bpp:.4f} bpp "
        f"(bound {encoded.bound_bpp:.4f} bpp); decoded {decoded.shape[1]}x{decoded.shape[0]}, "
        f"PSNR {psnr(image, decoded):.2f} dB, MS-SSIM {ms_ssim(image, decoded):.4f}")
    log(f"wrote {out}/original.png and {out}/decoded.png; "
        f"training curves: tensorboard --logdir {run_dir} (pip install -e \".[tensorboard]\")")
    return encoded, decoded


def _best_classical(image, target_bpp, codecs, log):
    """The classical codec with the best PSNR among files of at least ``target_bpp``."""
    from compression.classical import available_codecs, encode_at_bpp, missing_codecs

    available = available_codecs()
    names = [c for c in (codecs or available) if c in available]
    for name, reason in missing_codecs().items():
        if codecs is None or name in codecs:
            log(f"  ({name} skipped: {reason})")
    best = None
    for name in names:
        result = encode_at_bpp(image, name, target_bpp, at_least=True)
        score = psnr(image, result.decoded)
        log(f"  {name:5s} q{result.quality:<3d} {len(result.data):7d} bytes  {result.bpp:.4f} bpp  "
            f"PSNR {score:5.2f} dB  MS-SSIM {ms_ssim(image, result.decoded):.4f}")
        if best is None or score > best[0]:
            best = (score, result)
    return None if best is None else best[1]


def run_demo(out, photo=None, model=None, bpp=DEMO_BPP, codecs=None, log=print, refine=0,
             seeds=1):
    """Compress ``photo`` (a path; default :data:`DEMO_PHOTO`) with ``model`` and compare.

    ``model``: a shipped model's name or a run directory (default: the
    default shipped model).  ``bpp``: the target of a variable-rate model (a
    fixed-rate model codes at its own rate).  ``refine``: steps of
    encode-time refinement (:mod:`compression.refine`; 0: none); ``seeds``: noise
    seeds tried (1: none).  Writes ``<stem>.gcz``,
    ``<stem>_decoded.png`` and ``<stem>_side_by_side.png`` to ``out``, and
    returns ``{"ours": EncodeResult, "decoded": image, "classical": MatchResult or None}``.
    """
    from compression.image_io import read_image
    from compression.report import comparison_grid
    from compression.shipped import default_model

    start = time.perf_counter()
    if photo is None:
        photos = sample_photographs()
        stem = DEMO_PHOTO if DEMO_PHOTO in photos else sorted(photos)[0]
        image, source = photos[stem], f"scikit-image's '{stem}' sample photograph"
    else:
        image, source = read_image(photo), os.fspath(photo)
        stem = os.path.splitext(os.path.basename(source))[0]
    os.makedirs(out, exist_ok=True)
    with load_model(default_model() if model is None else model) as loaded:
        rate = bpp if loaded.config.variable_rate else None
        encoded = encode_image(loaded, image, bpp=rate, refine=refine, seeds=seeds)
        decoded, _ = decode_image(loaded, encoded.data)
        name = loaded.name or "ours"
    h, w = image.shape[:2]
    gcz = os.path.join(out, f"{stem}.gcz")
    write_atomic(gcz, encoded.data, overwrite=True)
    write_image(os.path.join(out, f"{stem}_decoded.png"), decoded, overwrite=True)
    log(f"{source} ({w}x{h}) -> {gcz}")
    log(f"  ours  {name}: {len(encoded.data)} bytes  {encoded.bpp:.4f} bpp  "
        f"PSNR {psnr(image, decoded):5.2f} dB  MS-SSIM {ms_ssim(image, decoded):.4f}  "
        f"({round(encoded.effective_channels, 2):g} channels"
        + (f", refined {refine} steps" if refine else "")
        + (f", best of {seeds} seeds" if seeds > 1 else "") + ")")
    log(f"classical codecs with at least {len(encoded.data)} bytes:")
    classical = _best_classical(image, encoded.bpp, codecs, log)
    panels = [(f"gcompress ({name})", decoded, encoded.bpp)]
    if classical is not None:
        panels.append((f"{classical.codec} (best PSNR)", classical.decoded, classical.bpp))
    grid = os.path.join(out, f"{stem}_side_by_side.png")
    comparison_grid(image, panels, grid)
    log(f"wrote {gcz}, {os.path.join(out, stem + '_decoded.png')} and {grid} "
        f"in {time.perf_counter() - start:.1f} s")
    if not refine:
        log("a better picture in a file no larger: add --refine 20 (under a minute on 2 cores)")
    return {"ours": encoded, "decoded": decoded, "classical": classical}
