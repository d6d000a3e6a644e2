"""Rate-distortion curves of variable- and fixed-rate models, and a check of rate control.

Usage (from the repository root)::

    python scripts/rate_distortion.py --model vr=runs/vr16 --model C4=runs/c4 \\
        --images ../shared/data/camvid/leftImg8bit/val --out-dir rd \\
        [--channels 1,2,4,8,16] [--targets 0.02,0.03,0.05,0.08,0.12] [--target-images 20] \
        [--refine STEPS] [--seeds N]

Every point is real files: each image is encoded to a ``.gcz`` file, read
back, decoded and scored (:func:`compression.evaluate.evaluate`).  A
variable-rate model is coded at every leading-channel count in ``--channels``
(default: all it decodes), a fixed-rate model at its one rate.  Then each
variable-rate model codes the first ``--target-images`` images at every
``--targets`` bpp with rate control (``encode --bpp``), and the script counts
files over the target (there must be none) and the mean rate against it;
``--refine N`` refines those files (``encode --refine``) and ``--seeds N``
searches their noise seeds (``encode --seeds``); the fixed-channel points
stay as they are.

Writes to ``--out-dir``: ``rows.csv`` (every image at every setting),
``points.csv`` (means per setting), ``rate_control.csv`` (per target) and
``rate_distortion.png`` (PSNR and MS-SSIM against bpp, one curve per model).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from compression.errors import RateError  # noqa: E402
from compression.evaluate import evaluate, find_images  # noqa: E402
from compression.rate_control import channel_choices  # noqa: E402
from compression.report import (  # noqa: E402
    format_table,
    rate_distortion_curves,
    write_csv,
)

POINT_COLUMNS = ("method", "channels", "images", "bpp", "payload_bpp", "psnr", "ms_ssim",
                 "chroma_error", "max_bpp")
CONTROL_COLUMNS = ("method", "target_bpp", "images", "coded", "below_range", "over_target",
                   "bpp", "max_bpp", "mean_to_target", "channels", "psnr", "ms_ssim")


def _numbers(text, kind):
    return [kind(x) for x in text.split(",") if x.strip()]


def _mean(rows, key):
    return sum(float(r[key]) for r in rows) / len(rows)


def _point(method, setting, rows):
    return {"method": method, "channels": setting, "images": len(rows),
            "bpp": _mean(rows, "bpp"), "payload_bpp": _mean(rows, "payload_bpp"),
            "psnr": _mean(rows, "psnr"), "ms_ssim": _mean(rows, "ms_ssim"),
            "chroma_error": _mean(rows, "chroma_error"),
            "max_bpp": max(float(r["bpp"]) for r in rows)}


def _code(model, paths, method, setting, all_rows, **rate):
    """Evaluate ``paths`` at one rate setting; RateErrors are counted, others raised."""
    below = []

    def on_error(path, error):
        if not isinstance(error, RateError):
            raise error
        below.append(path)

    rows = evaluate(model, paths, on_error=on_error, **rate)
    for row in rows:
        all_rows.append({"method": method, "setting": setting, **row})
    return rows, below


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", required=True, metavar="NAME=RUN",
                        help="a model to measure, named; repeat for several")
    parser.add_argument("--images", required=True)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--channels", default=None,
                        help="leading-channel counts of variable-rate models (default: all)")
    parser.add_argument("--targets", default="0.02,0.03,0.05,0.08,0.12")
    parser.add_argument("--target-images", type=int, default=20)
    parser.add_argument("--refine", type=int, default=0,
                        help="steps of encode-time refinement of the rate-control files")
    parser.add_argument("--seeds", type=int, default=1,
                        help="noise seeds tried for each rate-control file (1: none)")
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args(argv)

    from compression.inference import load_model

    models = []
    for spec in args.model:
        name, sep, run = spec.partition("=")
        if not sep or not name or not run:
            parser.error(f"--model takes NAME=RUN, got {spec!r}")
        models.append((name, run))
    paths = find_images(args.images, args.limit)
    os.makedirs(args.out_dir, exist_ok=True)
    all_rows, points, control = [], [], []
    for name, run in models:
        with load_model(run) as model:
            cfg = model.config
            if cfg.variable_rate:
                wanted = (_numbers(args.channels, int) if args.channels
                          else list(channel_choices(cfg)))
                settings = [k for k in wanted if k in channel_choices(cfg)]
            else:
                settings = [cfg.channels]
            for k in settings:
                rows, _ = _code(model, paths, name, f"k={k}", all_rows,
                                channels=k if cfg.variable_rate else None)
                points.append(_point(name, k, rows))
                print(format_table([points[-1]], POINT_COLUMNS), flush=True)
            if not cfg.variable_rate:
                continue
            subset = paths[:args.target_images]
            for target in _numbers(args.targets, float):
                rows, below = _code(model, subset, name, f"bpp<={target}", all_rows,
                                    bpp=target, refine=args.refine, seeds=args.seeds)
                entry = {"method": name, "target_bpp": target, "images": len(subset),
                         "coded": len(rows), "below_range": len(below),
                         "over_target": sum(float(r["bpp"]) > target for r in rows)}
                if rows:
                    entry.update(bpp=_mean(rows, "bpp"),
                                 max_bpp=max(float(r["bpp"]) for r in rows),
                                 mean_to_target=_mean(rows, "bpp") / target,
                                 channels=_mean(rows, "channels"),
                                 psnr=_mean(rows, "psnr"), ms_ssim=_mean(rows, "ms_ssim"))
                control.append(entry)
                print(format_table([entry], CONTROL_COLUMNS), flush=True)
    write_csv(all_rows, os.path.join(args.out_dir, "rows.csv"))
    write_csv(points, os.path.join(args.out_dir, "points.csv"), columns=POINT_COLUMNS)
    print(format_table(points, POINT_COLUMNS))
    if control:
        write_csv(control, os.path.join(args.out_dir, "rate_control.csv"),
                  columns=CONTROL_COLUMNS)
        print(format_table(control, CONTROL_COLUMNS))
    rate_distortion_curves(points, os.path.join(args.out_dir, "rate_distortion.png"),
                           title=f"{len(paths)} images of {args.images}, real files")
    return 1 if any(c["over_target"] for c in control) else 0


if __name__ == "__main__":
    sys.exit(main())
