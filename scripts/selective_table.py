"""Selective compression on a labelled set: full coding, kept classes, fully synthesised.

Usage (from the repository root)::

    python scripts/selective_table.py --model runs/selective \\
        --images ../shared/data/camvid/leftImg8bit/val --channels 4 \\
        --keep car,pedestrian,bicyclist,sign,pole --out-dir sel [--reference street] \\
        [--label-factor 4] [--grids 3 --grid-path docs/img/selective_camvid.jpg]

Every figure is a real file, encoded, read back and decoded.  Each image is
coded three ways with the semantic model: every bottleneck cell (full), only
the cells the ``--keep`` classes touch (selective), and none (synthesised
from the label map alone).  For each: the file's bpp split into bottleneck,
mask and label map (the container's header and lengths are the rest), PSNR
and MS-SSIM over the whole image, and PSNR and SSIM over the pixels of the
kept classes (SSIM: the mean of its map over those pixels; MS-SSIM has no
per-pixel map).  Kept-region figures average the images that hold a kept
class.  ``--reference`` adds a non-semantic model's full coding at the same
channels for scale.

Writes ``rows.csv`` (every image and mode) and ``table.csv`` (means) to
``--out-dir``, and prints the table.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from compression.codec import decode_image, encode_image  # noqa: E402
from compression.data import label_path_for  # noqa: E402
from compression.evaluate import find_images  # noqa: E402
from compression.image_io import read_image  # noqa: E402
from compression.label_map import read_label_map  # noqa: E402
from compression.mask import class_ids  # noqa: E402
from compression.metrics import ms_ssim, psnr  # noqa: E402
from compression.report import comparison_grid, format_table, write_csv  # noqa: E402

COLUMNS = ("mode", "images", "bpp", "bottleneck_bpp", "mask_bpp", "label_bpp", "kept_fraction",
           "psnr", "ms_ssim", "kept_images", "kept_psnr", "kept_ssim")


def kept_region_scores(image, decoded, region):
    """``(PSNR, SSIM)`` over the pixels of ``region`` ``[H, W]`` bool; None when it is empty."""
    from skimage.metrics import structural_similarity

    if not region.any():
        return None, None
    diff = image.astype(np.float64) - decoded.astype(np.float64)
    mse = float(np.mean(np.square(diff[region])))
    kept_psnr = 10 * np.log10(255.0**2 / max(mse, 1e-10))
    _, ssim_map = structural_similarity(image, decoded, channel_axis=2, data_range=255,
                                        full=True)
    return kept_psnr, float(ssim_map[region].mean())


def code(model, image, labels, region, channels, keep=None, label_factor=None):
    """Encode (``keep``: selective), decode and score one image -> ``(row, decoded)``."""
    kwargs = {"channels": channels} if model.config.variable_rate else {}
    if labels is not None:
        kwargs["label_factor"] = label_factor
    result = encode_image(model, image, labels=labels, keep=keep, **kwargs)
    decoded, _ = decode_image(model, result.data)
    kept_psnr, kept_ssim = kept_region_scores(image, decoded, region)
    return {
        "bpp": result.bpp, "bottleneck_bpp": result.payload_bpp, "mask_bpp": result.mask_bpp,
        "label_bpp": result.label_bpp, "kept_fraction": result.kept_fraction,
        "psnr": psnr(image, decoded), "ms_ssim": ms_ssim(image, decoded),
        "kept_psnr": kept_psnr, "kept_ssim": kept_ssim,
    }, decoded


def summarize(mode, rows):
    def mean(key, subset):
        values = [r[key] for r in subset if r[key] is not None]
        return float(np.mean(values)) if values else None

    kept = [r for r in rows if r["kept_psnr"] is not None]
    out = {"mode": mode, "images": len(rows), "kept_images": len(kept)}
    for key in ("bpp", "bottleneck_bpp", "mask_bpp", "label_bpp", "kept_fraction", "psnr",
                "ms_ssim"):
        out[key] = mean(key, rows)
    out["kept_psnr"], out["kept_ssim"] = mean("kept_psnr", kept), mean("kept_ssim", kept)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a selective semantic model")
    parser.add_argument("--images", required=True, help="leftImg8bit images with gtFine maps")
    parser.add_argument("--keep", default="car,pedestrian,bicyclist,sign,pole")
    parser.add_argument("--channels", type=int, default=None,
                        help="leading channels of a variable-rate model (default: all)")
    parser.add_argument("--label-factor", type=int, default=None,
                        help="store label maps this many times coarser (default: the model's)")
    parser.add_argument("--reference", default=None, help="a non-semantic model, full coding")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--grids", type=int, default=0, help="images shown in the grid")
    parser.add_argument("--grid-path", default=None)
    args = parser.parse_args(argv)

    from compression.inference import load_model

    paths = find_images(args.images, args.limit)
    os.makedirs(args.out_dir, exist_ok=True)
    model = load_model(args.model)
    cfg = model.config
    keep = class_ids(args.keep, cfg)
    channels = args.channels or cfg.channels
    reference = load_model(args.reference) if args.reference else None
    modes = {"full": None, "keep " + args.keep: keep, "synthesised": []}
    rows = {m: [] for m in modes}
    if reference is not None:
        rows[f"{reference.name or 'reference'} (no label map)"] = []
    grids = []
    for i, path in enumerate(paths):
        image = read_image(path)
        labels = read_label_map(label_path_for(path))
        region = np.isin(labels, keep)
        panels = []
        for mode, kept in modes.items():
            row, decoded = code(model, image, labels, region, channels, kept, args.label_factor)
            rows[mode].append({"image": path, "mode": mode, **row})
            panels.append((mode.split(" ")[0], decoded, row["bpp"]))
        if reference is not None:
            mode = list(rows)[-1]
            rcfg = reference.config
            row, decoded = code(reference, image, None, region, channels if rcfg.variable_rate
                                else rcfg.channels)
            rows[mode].append({"image": path, "mode": mode, **row})
        spacing = max(1, len(paths) // max(1, args.grids))  # spread over the set
        if len(grids) < args.grids and i >= len(grids) * spacing and region.mean() > 0.02:
            grids.append((image, panels))
        print(f"{i + 1}/{len(paths)} {os.path.basename(path)}: " + ", ".join(
            f"{m.split(' ')[0]} {r[-1]['bpp']:.4f} bpp {r[-1]['psnr']:.2f} dB"
            for m, r in rows.items()), flush=True)
    table = [summarize(mode, r) for mode, r in rows.items()]
    write_csv([r for rs in rows.values() for r in rs], os.path.join(args.out_dir, "rows.csv"))
    write_csv(table, os.path.join(args.out_dir, "table.csv"), columns=COLUMNS)
    print(format_table(table, COLUMNS))
    if grids and args.grid_path:
        from PIL import Image

        for j, (img, panels) in enumerate(grids):
            comparison_grid(img, panels, os.path.join(args.out_dir, f"grid{j}.png"))
        tiles = [Image.open(os.path.join(args.out_dir, f"grid{j}.png")).convert("RGB")
                 for j in range(len(grids))]
        canvas = Image.new("RGB", (max(t.width for t in tiles), sum(t.height for t in tiles)),
                           "white")
        y = 0
        for t in tiles:
            canvas.paste(t, (0, y))
            y += t.height
        canvas.save(args.grid_path, quality=88)
    return 0


if __name__ == "__main__":
    sys.exit(main())
