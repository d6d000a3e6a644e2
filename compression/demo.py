"""``gcompress demo``: the whole pipeline in a few minutes on a CPU.

Trains a small compressor (width 0.125, C=8, 128x128 crops) for a few
hundred steps, on ``--data`` when given or else on the sample photographs
that ship with scikit-image, then encodes one photograph to a real ``.gcz``
file, decodes it, and prints the file size, the rate against the bound and
the PSNR.  A demo this short shows that everything works, not the quality of
a trained model: that takes tens of thousands of steps (see README).
"""

import os

import numpy as np

from compression.codec import decode_image, encode_image
from compression.config import CompressionConfig
from compression.errors import CompressionError
from compression.files import write_atomic
from compression.image_io import write_image
from compression.inference import CONFIG_NAME, load_model
from compression.metrics import ms_ssim, psnr
from compression.train import train

__all__ = ["DEMO_CONFIG", "sample_photographs", "write_sample_dataset", "run_demo"]

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


def run_demo(out, data=None, steps=300, log=print, progress=True):
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
