"""``gcompress``: train, encode, decode and evaluate from the command line.

TensorFlow is imported only after the arguments are parsed, so ``--help``
and ``--version`` are instant, and its C++ INFO logs are silenced through
the documented ``TF_CPP_MIN_LOG_LEVEL`` variable (only here, in the CLI).
"""

import argparse
import contextlib
import glob
import json
import math
import os
import signal
import sys

__all__ = ["main", "build_parser"]

_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm")


def _version():
    # Read from the installed metadata: importing noisegen would import
    # TensorFlow before _quiet_tensorflow can configure it.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gcompress")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _size(text):
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 256x512, got {text!r}") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return h, w


def _classes(text):
    """``--classes``: a count of label ids, or their names in id order."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    names = tuple(n.strip() for n in text.split(","))
    if len(names) < 2 or not all(names):
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a number of classes nor a comma-separated list of names")
    return names


def _add_train(sub):
    from compression.config import DISCRIMINATOR_PADDINGS, LABEL_FACTORS, RATE_MODELS, UPSAMPLING

    p = sub.add_parser(
        "train", help="train a compressor on Cityscapes-style data",
        description="Train on ROOT/leftImg8bit/{train,val}/<city>/*_leftImg8bit.png "
        "(with gtFine label maps for --semantic) or on a plain folder of images.",
    )
    p.add_argument("--data", required=True, action="append",
                   help="dataset root directory; repeat it to train on several datasets")
    p.add_argument("--out", required=True, help="run directory (config, checkpoints, logs)")
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--bpp", type=float, help="picks the largest C whose bound "
                      "C*log2(L)/256 does not exceed it (the bound, not the file size: files "
                      "code a little below it plus a 32-byte header and the model's name; "
                      "'encode --bpp' sets "
                      "file sizes)")
    rate.add_argument("--channels", type=int, help="bottleneck channels C (default 8; with "
                      "--init-from, more than the source's grows its bottleneck)")
    p.add_argument("--min-channels", type=int, default=None, metavar="K",
                   help="a variable-rate model: files may code any leading K..C channels, "
                        "and 'encode --bpp' picks them per image (default: C, fixed rate)")
    p.add_argument("--channel-weights", type=_number_list("one weight per k"), default=None,
                   metavar="W,W,...",
                   help="variable-rate models: how often training draws each k = K..C "
                        "(relative weights, one per k; default uniform), e.g. to train "
                        "most at the k that files of 0.036 bpp use")
    p.add_argument("--rate-channel-weights", type=_number_list("one factor per channel"),
                   default=None, metavar="F,F,...",
                   help="one factor of --lambda-rate per bottleneck channel (default all 1); "
                        "below 1 on the last channels lets them carry more, for larger files")
    p.add_argument("--rate-lambdas", type=_number_list("rising rate weights"), default=None,
                   metavar="L,L,...",
                   help="train one rate-adaptive model for every rate between these rate "
                        "weights (gain units, Cui et al. 2021), e.g. 10,20,40,80 with "
                        "--lambda-rate among them; its files pick their own rate (encode --bpp)")
    p.add_argument("--trainable", choices=("all", "gains"), default=None,
                   help="gains: update only a rate-adaptive model's gain tables (with "
                        "--train-rate-range and --init-from, adds a rate weight beyond the "
                        "source's without changing the rates it has); default all")
    p.add_argument("--train-rate-range", type=_number_list("two rate weights"), default=None,
                   metavar="LO,HI",
                   help="draw each example's rate weight between these two (within "
                        "--rate-lambdas) instead of over the whole range")
    p.add_argument("--width", type=float, default=None,
                   help="filter multiplier (1.0 = paper, 171M parameters; 0.25 for CPUs)")
    p.add_argument("--residual-blocks", type=int, default=None)
    p.add_argument("--decoder-tail-width", type=float, default=None, metavar="W",
                   help="filter multiplier of the decoder's upsampling stages only (default: "
                        "--width); with --init-from, above the source's widens them (each "
                        "filter copied, the model decodes nearly as the source did)")
    p.add_argument("--d-width", type=float, default=None, help="discriminator filter multiplier")
    p.add_argument("--d-scales", type=int, default=None, help="discriminator scales (default 3)")
    p.add_argument("--d-padding", choices=DISCRIMINATOR_PADDINGS, default=None,
                   help="what the discriminator's convolutions see beyond the image: "
                        "'replicate' (default for new runs: edge pixels) or 'zero' (the "
                        "paper's; lets D find the border, and long GAN phases then grow "
                        "a noisy corner); --init-from keeps the source's unless given")
    p.add_argument("--steps", type=int, default=1000, help="train until this global step")
    p.add_argument("--batch", type=int, default=None, help="batch size (default 2)")
    p.add_argument("--crop", type=_size, default=None,
                   help="training crop HxW (default 512x1024); photos that hold it only "
                   "turned a quarter (portrait photos, landscape crop) are turned to fit")
    p.add_argument("--resize", type=_size, default=None,
                   help="resample images to HxW before cropping (the paper: 512x1024)")
    p.add_argument("--semantic", action="store_true", help="condition on gtFine label maps")
    p.add_argument("--classes", type=_classes, default=None, metavar="N|NAMES",
                   help="with --semantic: the number of label ids (CamVid: 12, Cityscapes: "
                        "34), or their names in id order, comma-separated, so that "
                        "'encode --keep car,pedestrian' can name them")
    p.add_argument("--label-factor", type=int, default=None, choices=LABEL_FACTORS,
                   metavar="F", help="with --semantic: files store label maps F times coarser "
                   "(1, 2, 4, 8, 16; default 1, lossless) and training shows the model maps "
                   "coarsened so")
    p.add_argument("--selective", type=float, default=None, metavar="P",
                   help="with --semantic: train for selective compression (paper 4.2); this "
                        "share of training examples codes only a sampled mask of classes or "
                        "a box and synthesises the rest (e.g. 0.5)")
    p.add_argument("--no-noise", action="store_true", help="no noise generator")
    p.add_argument("--gan-start-step", type=int, default=None,
                   help="train on distortion only, with no discriminator, before this step")
    p.add_argument("--gan-ramp-steps", type=int, default=None,
                   help="ramp the adversarial weights in over this many steps")
    p.add_argument("--d-warmup-steps", type=int, default=None,
                   help="train D alone this many steps before --gan-start-step")
    p.add_argument("--freeze-encoder", action=argparse.BooleanOptionalAction, default=None,
                   help="keep the encoder (and so the rate) fixed in the GAN phase")
    p.add_argument("--corrected-loss", action=argparse.BooleanOptionalAction, default=None,
                   help="score the distortion on each crop as a file's colour correction "
                        "(channel means and gains, 6 bytes a file) leaves it: the decoder "
                        "stops spending capacity on global colour (default: on; "
                        "--no-corrected-loss for the models before it)")
    p.add_argument("--no-gan", action="store_true",
                   help="distortion only, no discriminator: the paper's MSE baseline")
    p.add_argument("--lambda-gan", type=float, default=None)
    p.add_argument("--lambda-ms-ssim", type=float, default=None,
                   help="weight of a 1 - MS-SSIM distortion term (default 0)")
    p.add_argument("--lambda-rate", type=float, default=None,
                   help="weight of a rate term, bits per pixel as --rate-model prices them "
                        "(default 0: the rate is set by the channels alone)")
    p.add_argument("--rate-model", choices=RATE_MODELS, default=None,
                   help="what the rate term prices the bottleneck with: 'histogram' "
                        "(each channel's symbol histogram) or 'context' (counts per "
                        "neighbourhood, as files are coded: predictable codes cost less)")
    p.add_argument("--lr-decay-step", type=int, default=None,
                   help="multiply the learning rates by --lr-decay-factor from this step")
    p.add_argument("--lr-decay-factor", type=float, default=None)
    p.add_argument("--lr", type=float, default=None,
                   help="Adam learning rate for G and D (default 1e-4)")
    p.add_argument("--beta1", type=float, default=None, help="Adam beta1 (default 0.9)")
    p.add_argument("--quantizer", choices=("soft", "bounded_ste"), default=None,
                   help="quantiser gradient (default bounded_ste; soft: the paper's)")
    p.add_argument("--upsampling", choices=UPSAMPLING, default=None,
                   help="the decoder's upsampling: transposed convolutions (default, the "
                        "paper's) or nearest resize + convolution (no checkerboard; "
                        "--init-from a transposed run converts its kernels)")
    p.add_argument("--ema", type=float, default=None,
                   help="EMA decay of the decoder weights used at inference "
                        "(default 0.999; 0: off)")
    p.add_argument("--chroma-weight", type=float, default=None,
                   help="weight of colour errors against grey-level ones in the MSE "
                        "(default 1: plain RGB MSE; above 1 makes the model code colour)")
    p.add_argument("--lambda-mse", type=float, default=None)
    p.add_argument("--lambda-fm", type=float, default=None)
    p.add_argument("--init-from", default=None, metavar="RUN",
                   help="start from another run's weights (e.g. a GAN fine-tune of a "
                        "--no-gan run); its config is the base, the options given override it")
    p.add_argument("--revive-channels", action="store_true",
                   help="with --init-from: bottleneck channels the source's encoder gives "
                        "one symbol everywhere (the rate term empties the last ones) are "
                        "brought back to life before the first step, so a fine-tune with "
                        "--rate-channel-weights can fill them")
    p.add_argument("--strategy", choices=("none", "mirrored", "multiworker"), default="none",
                   help="tf.distribute data parallelism: mirrored replicates each step over "
                        "--devices (default: every local GPU), multiworker over the machines "
                        "of TF_CONFIG (every worker runs the same command with the same --out "
                        "on shared storage); --batch is the global batch")
    p.add_argument("--step-timeout", type=float, default=600, metavar="SECONDS",
                   help="multiworker: a step that waits longer for the other workers ends "
                        "the job with an error (default 600)")
    p.add_argument("--start-timeout", type=float, default=600, metavar="SECONDS",
                   help="multiworker: the same for the waits that are expected: the first "
                        "step of a launch (the other workers may start later) and, on the "
                        "other workers, the step after the chief validates or saves "
                        "(default 600)")
    p.add_argument("--precision", choices=("float32", "mixed_float16", "mixed_bfloat16"),
                   default="float32",
                   help="mixed_float16: float16 on GPUs, with dynamic loss scaling; "
                        "mixed_bfloat16: bfloat16 on CPUs with native bfloat16 (avx512_bf16, "
                        "amx); the weights stay float32 either way")
    p.add_argument("--devices", default=None, metavar="LIST",
                   help="with --strategy mirrored: comma-separated local devices, e.g. "
                        "/gpu:0,/gpu:1 or /cpu:0,/cpu:1")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the data order and of a new run's initial weights")
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--keep", type=int, default=2,
                   help="checkpoints to keep (default 2: the newest and one to fall back "
                        "on; about 200 MB each at width 0.25)")
    p.add_argument("--summary-every", type=int, default=50)
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--val-images", type=int, default=16)
    action = p.add_mutually_exclusive_group()
    action.add_argument("--resume", action="store_true", help="continue the run in --out")
    action.add_argument("--force", action="store_true",
                        help="start over in a used --out (old contents are moved aside)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


REFINE_HELP = ("optimise each file's bottleneck for its image in STEPS gradient steps "
               "through the decoder (about 5 decodes each; 20 gave +0.020 MS-SSIM on CamVid "
               "and +0.034 on BSDS500 at --bpp 0.036): the file keeps the best step that fits "
               "--bpp, or without it is no larger than the unrefined file (default 0: off)")


SEEDS_HELP = ("try N noise seeds and store the one under which the file decodes best, in "
              "one header byte (a decode each; 16 gave +0.16 dB / +0.008 MS-SSIM on CamVid and "
              "+0.59 dB / +0.006 on BSDS500 at --bpp 0.036); with --refine it runs first "
              "(default 1: off, the seed derives from the content)")


def _add_refine(parser, help_text, seeds_help=SEEDS_HELP):
    """``--refine STEPS`` and ``--seeds N`` (checked by :func:`_check_refine` before
    TensorFlow loads)."""
    parser.add_argument("--refine", type=int, default=0, metavar="STEPS", help=help_text)
    parser.add_argument("--seeds", type=int, default=1, metavar="N", help=seeds_help)


def _add_pad_edges(parser):
    parser.add_argument(
        "--pad-edges", action="store_true",
        help="code an image's last 1-2 rows (columns) beyond a multiple of 16 too, in a "
             "padded block row of their own, instead of leaving them out for the decoder to "
             "repeat its edge into (the default; at 0.036 bpp on BSDS500's 481x321 photographs "
             "the default gives about +0.003 MS-SSIM and -0.1 dB PSNR)")


def _add_encode(sub):
    from compression.config import LABEL_FACTORS

    p = sub.add_parser("encode", help="compress images to .gcz files")
    p.add_argument("inputs", nargs="+", help="images, directories or globs" + _DASH_HINT)
    p.add_argument("--model", default=None,
                   help="a shipped model's name (see 'gcompress models'; default: the first "
                        "of general, street) or a run directory of 'gcompress train'")
    p.add_argument("--bpp", type=float, default=None,
                   help="largest size of each whole file in bits per pixel: a variable-rate "
                        "model codes the most channels that fit; an image that cannot fit is "
                        "an error naming the range (default: all channels)")
    p.add_argument("--rate-weight", type=float, default=None, metavar="W",
                   help="rate-adaptive models (train --rate-lambdas): code at this rate weight, "
                        "within the model's range, instead of the highest rate that fits "
                        "--bpp (or the default); smaller weights spend more bits")
    out = p.add_mutually_exclusive_group()
    out.add_argument("-o", "--output", help="output file (one input only)")
    out.add_argument("--out-dir", help="output directory (default: beside each input)")
    p.add_argument("--seed", type=int, default=None,
                   help="noise seed, 0 to 2**64-1 (default: from content)")
    _add_refine(p, REFINE_HELP)
    _add_pad_edges(p)
    p.add_argument("--labels", default=None, metavar="PATH",
                   help="semantic models: the image's label map (single-channel class ids), "
                        "or a folder holding <stem>_gtFine_labelIds.png or <stem>.png per image")
    p.add_argument("--label-factor", type=int, default=None, choices=LABEL_FACTORS,
                   metavar="F", help="semantic models: store the label map F times coarser "
                   "(1, 2, 4, 8, 16; default: the model's, 1 = lossless); 4 costs about a "
                   "fifth of the bits")
    part = p.add_mutually_exclusive_group()
    part.add_argument("--keep", default=None, metavar="CLASSES",
                      help="selective compression (models trained with --selective): code only "
                           "the regions of these classes (names or ids, comma-separated, e.g. "
                           "car,pedestrian,sign; 'none' codes nothing) and synthesise the rest "
                           "from the label map")
    part.add_argument("--synthesize", default=None, metavar="CLASSES",
                      help="selective compression: synthesise these classes from the label map "
                           "(e.g. road,sky,building,tree) and code everything else")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")


def _add_decode(sub):
    p = sub.add_parser("decode", help="decompress .gcz files to PNG")
    p.add_argument("inputs", nargs="+", help=".gcz files, directories or globs" + _DASH_HINT)
    p.add_argument("--model", default=None,
                   help="the model that encoded them (default: the shipped model each file "
                        "names in its header)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("-o", "--output", help="output image (one input only)")
    out.add_argument("--out-dir", help="output directory (default: beside each input)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    _add_max_pixels(p)


_ARGV = []  # the arguments main() parses, for _Parser's hint
_DASH_HINT = " (put -- before names that start with a dash: -- -photo.jpg)"


def _pixels(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _add_max_pixels(p):
    from compression.bitstream import DEFAULT_MAX_PIXELS

    p.add_argument("--max-pixels", type=_pixels, default=DEFAULT_MAX_PIXELS,
                   help="refuse files claiming more pixels than this, like Pillow's "
                        f"decompression-bomb guard (default {DEFAULT_MAX_PIXELS}; 0: no limit)")


class _Parser(argparse.ArgumentParser):
    """argparse, with a hint when a file name starting with '-' was taken for an option."""

    def error(self, message):
        if "required: inputs" in message or "unrecognized arguments" in message:
            dashed = [a for a in _ARGV if a.startswith("-") and os.path.exists(a)]
            if dashed:
                message += (f"; {dashed[0]!r} was read as an option: put -- before file "
                            f"names that start with a dash (... -- {dashed[0]})")
        super().error(message)


def _add_evaluate(sub):
    p = sub.add_parser("evaluate", help="encode+decode a folder; rate, PSNR, MS-SSIM, timings")
    p.add_argument("--model", default=None, help="shipped model name or run directory "
                   "(default: the default shipped model)")
    p.add_argument("--images", required=True, help="directory (searched recursively) or glob")
    p.add_argument("--out", default=None, help="results file (.csv or .json)")
    p.add_argument("--limit", type=int, default=None, help="at most this many images")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--bpp", type=float, default=None,
                      help="largest file size in bits per pixel, as for encode")
    rate.add_argument("--channels", type=int, default=None, metavar="K",
                      help="code exactly K leading channels (variable-rate models)")
    _add_refine(p, "encode-time refinement, as for encode", "seed search, as for encode")
    _add_pad_edges(p)
    p.add_argument("--rate-weight", type=float, default=None, metavar="W",
                   help="rate-adaptive models: code every file at this rate weight, as for "
                        "encode")


def _add_compare(sub):
    p = sub.add_parser("compare", help="compare with JPEG/WebP/AVIF/... at the same rate",
                       description="Code every image with the model, then give each classical "
                       "codec the largest file not above our rate on that image; write a CSV, a "
                       "summary, a rate-distortion plot and side-by-side grids to --out-dir.")
    p.add_argument("--model", default=None, help="shipped model name or run directory "
                   "(default: the default shipped model)")
    p.add_argument("--images", required=True, help="directory (searched recursively) or glob")
    p.add_argument("--out-dir", required=True, help="directory for the reports")
    p.add_argument("--limit", type=int, default=None, help="at most this many images")
    p.add_argument("--codecs", default=None,
                   help="comma-separated subset of jpeg,webp,avif,heic,jxl (default: all)")
    p.add_argument("--grids", type=int, default=3,
                   help="side-by-side images for this many of the first images (default 3)")
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--bpp", type=float, default=None,
                      help="our files at most this many bits per pixel (variable-rate models "
                           "pick their channels per image; default: every channel)")
    rate.add_argument("--channels", type=int, default=None, metavar="K",
                      help="code exactly K leading channels (variable-rate models)")
    _add_refine(p, "encode-time refinement of our files, as for encode",
                "seed search for our files, as for encode")
    p.add_argument("--force", action="store_true", help="replace an earlier comparison")


def _add_models(sub):
    p = sub.add_parser("models", help="list the shipped models: rates, figures, data",
                       description="The models installed with gcompress, usable by name with "
                       "--model (no training needed): what each is for, its rates and "
                       "validation figures.  With NAME: that model's whole card (training "
                       "data and history, entropy coding).")
    p.add_argument("name", nargs="?", metavar="NAME", help="one shipped model, in full")


def _add_export(sub):
    p = sub.add_parser("export", help="write a run's inference weights only (small, loadable)",
                       description="Write the weights a model encodes and decodes with (EMA "
                       "decoder side, raw encoder, histogram), the config and a model card to "
                       "OUT_DIR, loadable with --model like a run directory. float16 halves "
                       "the size again and int8 (8-bit kernels) quarters it, but both change "
                       "the fingerprint: decode files with the model that encoded them.")
    p.add_argument("run", help="run directory or checkpoint prefix")
    p.add_argument("out_dir", help="new (or empty) directory")
    p.add_argument("--dtype", choices=("float16", "float32", "int8"), default="float16",
                   help="storage of the weights (default float16)")
    p.add_argument("--force", action="store_true", help="write into a non-empty directory")
    p.add_argument("--card", default=None, metavar="JSON",
                   help="a JSON object of model-card fields to add (name, summary: one sentence "
                        "for the list, description, data, rate, validation: what "
                        "'gcompress models' shows)")
    p.add_argument("--entropy-data", action="append", default=None, metavar="DIR",
                   help="refit the entropy model on the training images of DIR (as for "
                        "'train --data'; repeatable): per-channel histogram and context "
                        "counts (payloads 11-21%% smaller on the shipped models)")
    p.add_argument("--context-net-steps", type=int, default=None, metavar="STEPS",
                   help="with --entropy-data: training steps of the learned context model "
                        "fitted on those images' symbols (default 6000, a few minutes; 7%% "
                        "smaller payloads than the count table on the shipped general; 0: none)")


def build_parser():
    parser = _Parser(
        prog="gcompress",
        description="GAN-based extreme image compression (Agustsson et al. 2018): "
        "train a compressor, write real .gcz files at 0.02-0.15 bpp, decode them.",
    )
    parser.add_argument("--version", action="version", version=f"gcompress {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(sub)
    _add_encode(sub)
    _add_decode(sub)
    _add_evaluate(sub)
    _add_compare(sub)
    _add_export(sub)
    _add_models(sub)
    demo = sub.add_parser(
        "demo", help="compress a photograph with a shipped model, beside the best classical codec",
        description="Compress PHOTO (default: scikit-image's 'coffee' sample) with a shipped model "
        "and write the .gcz, the decoded PNG and a side-by-side PNG (original | ours | the best "
        "classical codec with no fewer bytes) to --out. With --train: train a small model for a "
        "few minutes instead, then code a photo (shows training works; not a good model).")
    demo.add_argument("photo", nargs="?", default=None, help="a photograph (any Pillow format)")
    demo.add_argument("--out", default="demo", help="demo directory (default: demo)")
    demo.add_argument("--model", default=None,
                      help="shipped model name or run directory (default: the default model)")
    demo.add_argument("--bpp", type=float, default=None,
                      help="target rate of a variable-rate model (default 0.04)")
    demo.add_argument("--codecs", default=None,
                      help="classical codecs to try, comma-separated (default: all available)")
    _add_refine(demo, "encode-time refinement, as for encode (default 0: off)",
                "seed search, as for encode (default 1: off)")
    demo.add_argument("--train", action="store_true",
                      help="the training demo: train a small model, then code a photo")
    demo.add_argument("--data", default=None,
                      help="with --train: dataset root (default: scikit-image's samples)")
    demo.add_argument("--steps", type=int, default=300, help="with --train: training steps")
    info = sub.add_parser("info", help="print the header of .gcz files (no model needed)")
    info.add_argument("inputs", nargs="+", help=".gcz files, directories or globs" + _DASH_HINT)
    _add_max_pixels(info)
    return parser


#: TF_ENABLE_ONEDNN_OPTS for every command (a user's own setting wins).  On
#: CPUs oneDNN made decoding 1.2-1.5x and training 2x faster in
#: scripts/benchmark.py (docs/benchmarks.md); GPUs ignore it.
ONEDNN = True


def _quiet_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1" if ONEDNN else "0")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")


def expand_inputs(inputs, extensions):
    """Files from a list of files, directories (recursive) and globs, in a stable order."""
    found = []
    for item in inputs:
        if os.path.isdir(item):
            for root, _, files in sorted(os.walk(item)):
                found += [os.path.join(root, f) for f in sorted(files)
                          if f.lower().endswith(extensions)]
        elif any(ch in item for ch in "*?["):
            found += sorted(glob.glob(item, recursive=True))
        else:
            found.append(item)
    return found


def _output_path(src, args, suffix):
    if args.output:
        return args.output
    stem = os.path.splitext(os.path.basename(src))[0]
    folder = args.out_dir or os.path.dirname(src) or "."
    return os.path.join(folder, stem + suffix)


def _progress(items, enabled):
    if enabled and len(items) > 1:
        from tqdm import tqdm

        return tqdm(items, unit="file", dynamic_ncols=True, leave=False)
    return items


def _plan_files(args, suffix):
    """``(pairs, failures)``: the ``(input, output)`` pairs of a command, before any model.

    Everything that needs no TensorFlow is checked here, so a typo is
    reported at once: inputs found, ``-o`` with one input, ``--out-dir``
    creatable, no two inputs with one output; a missing input is reported
    (and counted) here and left out.
    """
    files = expand_inputs(args.inputs, (".gcz",) if suffix == ".png" else _IMAGE_EXTENSIONS)
    if not files:
        raise _CliError(f"no input files found in {args.inputs}")
    if args.output and len(files) > 1:
        raise _CliError(f"-o/--output takes one input, got {len(files)}; use --out-dir")
    if args.out_dir:
        try:
            os.makedirs(args.out_dir, exist_ok=True)
        except OSError as e:  # a path under a regular file, no permission, ...
            raise _CliError(f"cannot create --out-dir {args.out_dir}: "
                            f"{e.strerror or e}") from None
    planned = [(src, _output_path(src, args, suffix)) for src in files]
    outputs = {}
    for src, dst in planned:  # two inputs must not write one output (photo.bmp, photo.jpg)
        key = os.path.normpath(dst)
        if key in outputs:
            raise _CliError(f"{outputs[key]} and {src} would both be written to {key}; "
                            "code them in separate calls with different --out-dir")
        outputs[key] = src
    pairs, failures = [], 0
    for src, dst in planned:
        if os.path.lexists(src):
            pairs.append((src, dst))
        else:
            failures += 1
            print(f"gcompress: {src}: no such file", file=sys.stderr)
    return pairs, failures


def _label_path(image, labels):
    """The label map of ``image``: ``labels`` itself, or the file for it in folder ``labels``."""
    if not os.path.isdir(labels):
        return labels
    stem = os.path.splitext(os.path.basename(image))[0]
    stems = [stem.removesuffix("_leftImg8bit") + "_gtFine_labelIds", stem]
    for name in stems:
        candidate = os.path.join(labels, name + ".png")
        if os.path.exists(candidate):
            return candidate
    raise _CliError(f"no label map for {image} in {labels} (looked for "
                    + " and ".join(f"{n}.png" for n in stems) + ")")


def _check_model_path(args):
    """Set ``args.model`` to a path (the default or a shipped model's folder), and
    report the errors of :func:`compression.inference.resolve_run` that need no TensorFlow.
    """
    from compression.errors import ModelLoadError
    from compression.shipped import default_model, known_models_hint, resolve_name

    try:
        name = default_model() if args.model is None else args.model
    except ModelLoadError as e:
        raise _CliError(str(e)) from None
    path = args.model = resolve_name(name)
    if not os.path.exists(path) and not os.path.exists(f"{path}.index"):
        raise _CliError(f"model {path!r} does not exist; {known_models_hint()}")
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "config.json")):
        raise _CliError(f"{path!r} has no config.json; pass the directory 'gcompress train "
                        "--out' (or 'gcompress export') wrote")


def _run_files(args, plan, work):
    """Apply ``work(src, dst)`` to every planned pair; report failures and continue."""
    pairs, failures = plan
    total = len(pairs) + failures
    for src, dst in _progress(pairs, sys.stderr.isatty()):
        try:
            if os.path.exists(dst) and not args.force:
                raise FileExistsError(f"{dst} exists; pass --force to overwrite it")
            print(work(src, dst))
            release_free_memory()
        except Exception as e:  # one bad file must not stop the batch
            failures += 1
            print(f"gcompress: {src}: {_describe(e)}", file=sys.stderr)
    if failures:
        print(f"gcompress: {failures} of {total} files failed", file=sys.stderr)
    return 1 if failures else 0


def release_free_memory():
    """Hand memory freed by the last file back to the OS (glibc ``malloc_trim``).

    Without it, a batch keeps the heap of its largest file cached, and a
    later large file peaks higher (measured: 1.32 against 1.19 GiB for a
    4096x4096 decode after a 2048x2048 one).  Elsewhere than glibc: nothing.
    """
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class _CliError(Exception):
    pass


def _number_list(each):
    """An argparse type: numbers separated by commas, ``each`` saying what one is for."""
    def parse(text):
        try:
            return tuple(float(w) for w in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected numbers separated by commas ({each}), got {text!r}") from None
    return parse


def _describe(e):
    from compression.errors import CompressionError

    if isinstance(e, (CompressionError, FileExistsError, FileNotFoundError, _CliError)):
        return str(e)
    if isinstance(e, OSError):
        return f"{e.strerror or e} ({e.filename})" if e.filename else str(e)
    return f"{type(e).__name__}: {e}"


def _train(args):
    if args.revive_channels and (args.init_from is None or args.resume):
        raise _CliError("--revive-channels applies to a new run from --init-from (it changes "
                        "the weights the run starts from); drop it")
    if args.revive_channels and args.strategy != "none":
        raise _CliError("--revive-channels measures the encoder on one device; run it with "
                        "--strategy none, then resume with the strategy")
    _quiet_tensorflow()
    from compression.config import CompressionConfig
    from compression.train import train

    fields = {}
    for arg, field in (("width", "width"), ("residual_blocks", "residual_blocks"),
                       ("decoder_tail_width", "decoder_tail_width"),
                       ("d_width", "discriminator_width"), ("d_scales", "discriminator_scales"),
                       ("d_padding", "discriminator_padding"),
                       ("batch", "batch_size"), ("gan_start_step", "gan_start_step"),
                       ("ema", "ema_decay"), ("lambda_mse", "lambda_mse"),
                       ("lambda_fm", "lambda_fm"), ("channels", "channels"),
                       ("gan_ramp_steps", "gan_ramp_steps"), ("d_warmup_steps", "d_warmup_steps"),
                       ("lambda_gan", "lambda_gan"), ("lambda_ms_ssim", "lambda_ms_ssim"),
                       ("lambda_rate", "lambda_rate"),
                       ("lr_decay_step", "lr_decay_step"),
                       ("lr_decay_factor", "lr_decay_factor"), ("beta1", "beta1"),
                       ("quantizer", "quantizer"), ("min_channels", "min_channels"),
                       ("chroma_weight", "chroma_weight"), ("upsampling", "upsampling"),
                       ("channel_weights", "channel_weights"),
                       ("corrected_loss", "corrected_loss"), ("rate_model", "rate_model"),
                       ("rate_channel_weights", "rate_channel_weights"),
                       ("rate_lambdas", "rate_lambdas"), ("trainable", "trainable"),
                       ("train_rate_range", "train_rate_range")):
        if getattr(args, arg) is not None:
            fields[field] = getattr(args, arg)
    if args.crop:
        fields["crop_height"], fields["crop_width"] = args.crop
    if args.lr is not None:
        fields["g_learning_rate"] = fields["d_learning_rate"] = args.lr
    if args.no_noise:
        fields["noise"] = False
    if args.freeze_encoder is not None:
        fields["freeze_encoder"] = args.freeze_encoder
    if args.no_gan:
        if args.lambda_gan or args.lambda_fm:
            raise _CliError("--no-gan contradicts --lambda-gan/--lambda-fm above 0; drop one")
        fields["lambda_gan"] = fields["lambda_fm"] = 0.0
    if args.semantic:
        if not args.classes:
            raise _CliError("--semantic needs --classes (the number of label ids in the data)")
        if isinstance(args.classes, tuple):
            fields["semantic_classes"], fields["class_names"] = len(args.classes), args.classes
        else:
            fields["semantic_classes"] = args.classes
    elif args.classes:
        raise _CliError("--classes only applies with --semantic")
    if args.label_factor is not None:
        fields["label_factor"] = args.label_factor
    if args.selective is not None:
        if not args.semantic and args.init_from is None and not args.resume:
            raise _CliError("--selective needs a semantic model: add --semantic --classes N")
        fields["selective_probability"] = args.selective
    if args.init_from is not None and not args.resume:
        # A fine-tune keeps the source run's architecture and settings; the
        # options given on this command line override them.
        import dataclasses

        from compression.inference import CONFIG_NAME, resolve_run

        if args.bpp is not None:
            raise _CliError("--init-from keeps the source run's channels; drop --bpp")
        from compression.revive import grown_config_fields

        source_dir, _ = resolve_run(args.init_from)
        base = CompressionConfig.load(os.path.join(source_dir, CONFIG_NAME))
        # How the source's last steps were restricted is not a setting of its
        # weights: a new run trains everything over its whole range unless told.
        base = dataclasses.replace(base, trainable="all", train_rate_range=())
        config = dataclasses.replace(base, **grown_config_fields(base, fields,
                                                                 repr(args.init_from)))
        changed = {k: v for k, v in config.to_dict().items() if base.to_dict()[k] != v}
        print(f"config of {source_dir}" + (f", changed: {changed}" if changed else ""))
    elif args.resume and args.bpp is None:
        # The run's own config.json; options given must agree with it (train
        # names any that do not), options left out keep the run's values.
        import dataclasses

        from compression.inference import CONFIG_NAME

        saved = os.path.join(args.out, CONFIG_NAME)
        config = (dataclasses.replace(CompressionConfig.load(saved), **fields)
                  if fields and os.path.isfile(saved) else None)
    elif args.bpp is not None:
        config = CompressionConfig.for_bpp(args.bpp, **fields)
        for note in config.notes:
            print(note)
    else:
        config = CompressionConfig(**fields)
    result = train(
        config, args.data, args.out, args.steps, resume=args.resume, force=args.force,
        seed=args.seed, resize=args.resize, checkpoint_every=args.checkpoint_every,
        keep=args.keep, summary_every=args.summary_every, val_every=args.val_every,
        val_images=args.val_images, progress=not args.no_progress, init_from=args.init_from,
        strategy=args.strategy, step_timeout=args.step_timeout,
        start_timeout=args.start_timeout, precision=args.precision,
        revive_channels=args.revive_channels,
        devices=[d for d in args.devices.split(",") if d.strip()] if args.devices else None,
    )
    val = ", ".join(f"{k} {v:.4f}" for k, v in result.validation.items()
                    if isinstance(v, float))
    print(f"step {result.step}: {result.images_per_second:.2f} images/s; "
          + ", ".join(f"{k} {v:.4f}" for k, v in result.losses.items())
          + (f"; {val}" if val else ""))
    if not result.stopped_early:
        data = " ".join(f"--entropy-data {d}" for d in args.data)
        print(f"code with it: gcompress encode --model {args.out} IMAGE; or ship it small, "
              "with a context entropy model (payloads 11-21% smaller on the shipped models): "
              f"gcompress export {args.out} MODEL_DIR --dtype int8 {data}")
    return 130 if result.stopped_early else 0


def _load(path):
    from compression.inference import load_model

    return load_model(path)


def _encode(args):
    if args.seed is not None and not 0 <= args.seed < 2**64:
        raise _CliError(f"--seed must be in 0..2**64-1 (the file stores a u64), got {args.seed}")
    _check_bpp(args.bpp)
    _check_refine(args)
    plan = _plan_files(args, ".gcz")
    if args.labels is not None:
        if not os.path.exists(args.labels):
            raise _CliError(f"--labels {args.labels} does not exist")
        if not os.path.isdir(args.labels) and len(plan[0]) > 1:
            raise _CliError("--labels names one label map but there are several images; "
                            "pass a folder of label maps")
    if not plan[0]:
        return _run_files(args, plan, None)  # nothing to code: no model, no TensorFlow
    _check_model_path(args)
    _quiet_tensorflow()
    from compression.codec import encode_image
    from compression.files import write_atomic
    from compression.image_io import read_image

    model = _load(args.model)
    cfg = model.config
    if args.labels is None and cfg.semantic_classes:
        raise _CliError(f"{args.model} is a semantic model ({cfg.semantic_classes} classes): "
                        "pass each image's label map with --labels")
    if args.label_factor is not None and not cfg.semantic_classes:
        raise _CliError(f"--label-factor applies to semantic models; {args.model} is not one")
    rate_position = None
    if args.rate_weight is not None:
        from compression.gain import byte_for_weight

        rate_position = byte_for_weight(args.rate_weight, cfg)
    keep = None
    if args.keep is not None or args.synthesize is not None:
        from compression.mask import class_ids

        if not cfg.selective:
            raise _CliError(f"{args.model} was not trained for selective compression: "
                            "--keep/--synthesize need a model trained with "
                            "'gcompress train --semantic --classes ... --selective 0.5'")
        if args.keep is not None:
            keep = class_ids(args.keep, cfg)
        else:
            dropped = set(class_ids(args.synthesize, cfg))
            keep = [i for i in range(cfg.semantic_classes) if i not in dropped]

    def work(src, dst):
        labels = None
        if args.labels is not None:
            from compression.label_map import read_label_map

            labels = read_label_map(_label_path(src, args.labels))
        result = encode_image(model, read_image(src), seed=args.seed, bpp=args.bpp,
                              labels=labels, keep=keep, label_factor=args.label_factor,
                              refine=args.refine, seeds=args.seeds, rate_position=rate_position,
                              extend=not args.pad_edges)
        write_atomic(dst, result.data, overwrite=args.force)
        labelled = f", label map {result.label_bpp:.4f} bpp" if labels is not None else ""
        if keep is not None:
            labelled += (f", kept {100 * result.kept_fraction:.1f}% of the bottleneck, "
                         f"mask {result.mask_bpp:.4f} bpp")
        if args.refine:
            labelled += (f", refined: step {result.refined_step} of {args.refine}"
                         if result.refined_step else
                         f", refined: no step of {args.refine} beat the encoder's own")
        if args.seeds > 1:
            labelled += (f", seed {result.seed} of {args.seeds} tried" if result.seed is not None
                         else f", the derived seed beat {args.seeds - 1} others")
        if result.rate_position is not None:
            from compression.gain import weight_of_byte

            weight = weight_of_byte(result.rate_position, cfg)
            labelled += f", rate weight {weight:.3g} (position {result.rate_position})"
        line = (f"{src} -> {dst}: {len(result.data)} bytes, {result.bpp:.4f} bpp "
                f"({_channels_text(result, cfg.channels)}; "
                f"bound {result.bound_bpp:.4f} bpp{labelled})")
        if (args.bpp is not None and result.channels == cfg.channels
                and result.last_channel_rows is None and result.bpp < 0.9 * args.bpp
                and not result.rate_position):  # None, or a rate-adaptive model's highest
            # Otherwise a user asking for 0.08 sees 0.03 and cannot tell why.
            line += (f"; every channel fits below --bpp {args.bpp:g}: the largest file "
                     "this model writes for this image")
        return line

    return _run_files(args, plan, work)


def _channels_text(result, channels):
    """``'4 of 10 channels'``, and ``' + 12 of 21 rows of channel 5'`` for a file that codes
    part of its last channel."""
    if result.last_channel_rows is None:
        return f"{result.channels} of {channels} channels"
    return (f"{result.channels - 1} of {channels} channels + {result.last_channel_rows} of "
            f"{result.bottleneck_rows} rows of channel {result.channels}")


def _decode(args):
    plan = _plan_files(args, ".png")
    if not plan[0]:
        return _run_files(args, plan, None)
    if args.model is not None:
        _check_model_path(args)
    _quiet_tensorflow()
    from compression.codec import decode_image
    from compression.image_io import write_image

    models = {}

    def model_for(src):
        """--model, else the shipped model the file's header names by its fingerprint."""
        if args.model is not None:
            name = args.model
        else:
            from compression.bitstream import read_file
            from compression.codec import describe_model
            from compression.errors import ModelMismatchError
            from compression.shipped import shipped_by_fingerprint, shipped_models, shipped_path

            header, _ = read_file(src, args.max_pixels or None)
            shipped = shipped_by_fingerprint(header.fingerprint.hex())
            same_name = None if shipped else shipped_models().get(header.model_name)
            if same_name is not None:
                # Re-shipped models keep their names; the fingerprint tells versions apart.
                raise ModelMismatchError(
                    f"it was written by model {describe_model(header)}, an earlier version "
                    f"of the shipped '{header.model_name}' (now "
                    f"{same_name.get('fingerprint', '?')[:16]}); "
                    "pass --model with that version's directory (compression/models/"
                    f"{header.model_name} in the release that wrote the file)")
            if shipped is None:
                raise ModelMismatchError(
                    f"it was written by model {describe_model(header)}, which is not a "
                    "shipped model; pass --model with that model's run directory (or export)")
            name = shipped_path(shipped)
        if name not in models:
            models[name] = _load(name)
        return models[name]

    def work(src, dst):
        image, header = decode_image(model_for(src), src, max_pixels=args.max_pixels or None)
        write_image(dst, image, overwrite=args.force)
        return f"{src} -> {dst}: {header.image_width}x{header.image_height}"

    return _run_files(args, plan, work)


def _info(args):
    _quiet_tensorflow()  # the codec module imports it
    from compression.codec import file_stats

    failures = 0
    files = expand_inputs(args.inputs, (".gcz",))
    if not files:
        raise _CliError(f"no .gcz files found in {args.inputs}")
    for src in files:
        try:
            stats = file_stats(src, max_pixels=args.max_pixels or None)
            print(f"{src}: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                         for k, v in stats.items()))
        except Exception as e:
            failures += 1
            print(f"gcompress: {src}: {_describe(e)}", file=sys.stderr)
    return 1 if failures else 0


def _evaluate(args):
    _check_refine(args)
    _check_model_path(args)
    _quiet_tensorflow()
    from compression.evaluate import evaluate_command

    return evaluate_command(args)


def _check_refine(args):
    if args.refine < 0:
        raise _CliError(f"--refine takes a number of steps >= 0 (0: off), got {args.refine}")
    if args.seeds < 1:
        raise _CliError(f"--seeds takes a number of seeds >= 1 (1: off), got {args.seeds}")
    if args.seeds > 1 and getattr(args, "seed", None) is not None:
        raise _CliError("pass --seed or --seeds, not both: the seed search chooses the seed")


def _check_bpp(bpp):
    if bpp is not None and not (math.isfinite(bpp) and bpp > 0):
        raise _CliError(f"--bpp must be a positive number of bits per pixel, got {bpp}")


def _compare(args):
    _check_bpp(args.bpp)
    _check_refine(args)
    _check_model_path(args)
    _quiet_tensorflow()
    from compression.compare import compare_command

    return compare_command(args)


def _models(args):
    from compression.errors import ModelLoadError
    from compression.shipped import default_model, shipped_models

    installed = shipped_models()
    if not installed:
        print("no shipped models are installed; train one with 'gcompress train'")
        return 0
    if args.name is not None and args.name not in installed:
        raise _CliError(f"no shipped model is named {args.name!r}; shipped: "
                        f"{', '.join(installed)}")
    try:
        default = default_model()
    except ModelLoadError:
        default = None
    for name, card in installed.items():
        if args.name in (None, name):
            _print_card(name, card, default, full=args.name is not None)
    if args.name is None:
        print("(training data and history of one model: gcompress models NAME)")
    return 0


def _print_card(name, card, default, full):
    """A shipped model's card: what it is for, rates, figures; ``full`` adds its history.

    A card's ``summary`` (one sentence) heads the list; its ``description`` can
    run to a paragraph for every training phase, so only ``full`` shows it.
    """
    about = card.get("description", "") if full else card.get("summary",
                                                                card.get("description", ""))
    print(f"{name}{' (default)' if name == default else ''}: {about}".rstrip(": "))
    rate = card.get("rate", {})
    if rate:
        print(f"  rate: {rate.get('summary', '')}")
    for figure in card.get("validation", []):
        print("  " + figure.get("summary", json.dumps(figure)))
    steps = card.get("steps", card.get("step", "?"))
    print(f"  {card.get('weights_bytes', 0) / 1e6:.1f} MB of {card.get('dtype', '?')} weights, "
          f"{f'{steps:,}' if isinstance(steps, int) else steps} training steps; "
          f"model {card.get('fingerprint', '?')}")
    if full:
        print(f"  trained: {card.get('data', '?')}")
        fit = card.get("entropy_data")
        if isinstance(fit, dict) and fit.get("context_model"):
            net = " (a learned context model)" if fit.get("context_net_steps") else ""
            print(f"  entropy coding: in context{net}, fitted on {fit.get('images', '?')} images")


def _export(args):
    if args.context_net_steps is not None:
        if args.context_net_steps < 0:
            raise _CliError(f"--context-net-steps takes a number of steps >= 0 (0: no context "
                            f"net), got {args.context_net_steps}")
        if not args.entropy_data:
            raise _CliError("--context-net-steps fits on the --entropy-data images: give "
                            "--entropy-data DIR too")
    _quiet_tensorflow()
    from compression.export import CONTEXT_NET_STEPS, export_model

    extra = None
    if args.card is not None:
        from compression.files import read_regular

        try:
            extra = json.loads(read_regular(args.card, 1 << 20, "model card"))
        except ValueError as e:
            raise _CliError(f"--card {args.card}: not JSON ({e})") from None
        if not isinstance(extra, dict):
            raise _CliError(f"--card {args.card}: must hold a JSON object")
    entropy_images = None
    if args.entropy_data:
        for root in args.entropy_data:
            if not os.path.isdir(root):
                raise _CliError(f"--entropy-data {root}: not a directory of images")
        from compression.data import find_examples

        entropy_images = [ex.image_path for root in args.entropy_data
                          for ex in find_examples(root, "train")]
    card = export_model(args.run, args.out_dir, dtype=args.dtype, overwrite=args.force,
                        card=extra, entropy_data=entropy_images, log=print,
                        context_net_steps=(CONTEXT_NET_STEPS if args.context_net_steps is None
                                           else args.context_net_steps))
    if "entropy_data" in card:
        fit = card["entropy_data"]
        print(f"entropy model fitted on {fit['images']} images"
              + (f" ({fit['skipped']} unreadable, skipped)" if fit["skipped"] else "")
              + ("" if fit["context_model"] else "; no context model (the model has more "
                 "quantiser centres than context models support)")
              + (f"; context net {fit['context_net_steps']} steps"
                 if fit.get("context_net_steps") else ""))
    print(f"{args.out_dir}: {card['parameters']} parameters, {card['weights_bytes']} bytes "
          f"of {card['dtype']} weights from {card['source']}; model {card['fingerprint']}")
    return 0


def _demo(args):
    if args.train:
        if (args.photo or args.model or args.bpp is not None or args.codecs or args.refine
                or args.seeds != 1):
            raise _CliError("--train trains its own model on --data: drop the photo, --model, "
                            "--bpp, --codecs, --refine and --seeds")
        _quiet_tensorflow()
        from compression.demo import run_training_demo

        run_training_demo(args.out, data=args.data, steps=args.steps,
                          progress=sys.stderr.isatty())
        return 0
    _check_bpp(args.bpp)
    _check_refine(args)
    if args.photo is not None and not os.path.isfile(args.photo):
        raise _CliError(f"{args.photo} does not exist or is not a file")
    _check_model_path(args)
    codecs = [c.strip() for c in args.codecs.split(",") if c.strip()] if args.codecs else None
    _quiet_tensorflow()
    from compression.demo import DEMO_BPP, run_demo

    run_demo(args.out, photo=args.photo, model=args.model,
             bpp=DEMO_BPP if args.bpp is None else args.bpp, codecs=codecs, refine=args.refine,
             seeds=args.seeds)
    return 0


@contextlib.contextmanager
def _terminate_as_interrupt():
    """While a command runs, SIGTERM raises KeyboardInterrupt, so an interrupted
    write cleans up its temporary file; the previous handler is restored after."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (main() called from a thread): leave it
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv=None):
    parser = build_parser()
    _ARGV[:] = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    handlers = {"train": _train, "encode": _encode, "decode": _decode,
                "evaluate": _evaluate, "compare": _compare, "info": _info, "demo": _demo,
                "export": _export, "models": _models}
    # Training handles SIGTERM itself (it saves a checkpoint first).
    handling = (contextlib.nullcontext()
                if args.command == "train" or (args.command == "demo" and args.train)
                else _terminate_as_interrupt())
    try:
        with handling:
            return handlers[args.command](args)
    except KeyboardInterrupt:
        print("gcompress: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        from compression.errors import CompressionError

        if isinstance(e, (CompressionError, _CliError, FileExistsError, FileNotFoundError)):
            print(f"gcompress: error: {e}", file=sys.stderr)
            return 2
        raise


def console_main():
    """The ``gcompress`` command: :func:`main` with TensorFlow's start-up lines filtered."""
    from compression.quiet import filter_startup_lines

    filter_startup_lines()
    return main()


if __name__ == "__main__":
    sys.exit(console_main())
