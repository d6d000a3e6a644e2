"""``gcompress compare``: the GAN codec against classical codecs at the same rate.

For every image the GAN codec writes a real ``.gcz`` file first; its rate
(whole file, header included) becomes the target for each classical codec
(:mod:`compression.classical`: JPEG, WebP and AVIF through Pillow, HEIC and
JPEG XL when installed), which gets the largest file that does not exceed
it.  A codec that cannot get that small (JPEG bottoms out around 0.08 bpp
plus its header) is reported and its smallest file is kept, marked
``reached = False``.

Outputs in ``--out-dir``:

* ``results.csv``: one row per image and method (:data:`COLUMNS`);
* ``summary.csv`` and ``summary.txt``: per method, the number of images on
  which it reached the target and its mean bpp / PSNR / MS-SSIM over those
  images, next to ours on the same images (a paired comparison), plus the
  skipped codecs and unreachable targets;
* ``rate_distortion.png``: PSNR and MS-SSIM against bpp, every file a point;
* ``grid_<n>_<name>.png``: original | ours | each codec, for the first images;
* ``files/``: every compressed file that was measured.
"""

import os
import sys

from compression.errors import CompressionError
from compression.files import write_atomic

__all__ = ["COLUMNS", "SUMMARY_COLUMNS", "OURS", "codec_rows", "compare", "summarize",
           "compare_command"]

#: Name of the GAN codec in the results.
OURS = "ours"

#: Columns of ``results.csv``.
COLUMNS = ("image", "method", "height", "width", "bytes", "bpp", "target_bpp", "quality",
           "reached", "psnr", "ms_ssim")

#: Columns of ``summary.csv``.
SUMMARY_COLUMNS = ("method", "images", "reached", "bpp", "psnr", "ms_ssim",
                   "ours_bpp", "ours_psnr", "ours_ms_ssim",
                   "over_bpp", "over_psnr", "over_ms_ssim")

_FORMATS = {"bpp": ".4f", "psnr": ".2f", "ms_ssim": ".4f", "ours_bpp": ".4f",
            "ours_psnr": ".2f", "ours_ms_ssim": ".4f", "over_bpp": ".4f",
            "over_psnr": ".2f", "over_ms_ssim": ".4f"}
_RESULTS = "results.csv"
_EXTENSIONS = {"jpeg": ".jpg", "webp": ".webp", "avif": ".avif", "heic": ".heic", "jxl": ".jxl"}


def _write_file(path, data):
    # The command refused an earlier comparison without --force, so these may replace.
    write_atomic(path, data, overwrite=True)


def codec_rows(image, target_bpp, codecs, name="image"):
    """Each codec's largest file not above ``target_bpp`` on ``image``.

    Args:
      image: uint8 ``[H, W, 3]``.
      target_bpp: the rate to match (bits per pixel of the whole file).
      codecs: :class:`~compression.classical.Codec` objects or names.
      name: the ``image`` value of the rows.

    Returns:
      ``(rows, results, notes)``: one row dict per codec (:data:`COLUMNS`),
      the :class:`~compression.classical.MatchResult` objects (files and
      decoded images) and a note for every codec that could not reach the
      target.  A codec that fails on this image (an external tool's error)
      gets a note and no row; the other codecs still count.
    """
    from compression.classical import encode_at_bpp, get_codec
    from compression.metrics import ms_ssim, psnr

    h, w = image.shape[:2]
    rows, results, notes = [], [], []
    for codec in codecs:
        codec = get_codec(codec)
        try:
            result = encode_at_bpp(image, codec, target_bpp)
        except CompressionError as e:
            notes.append(f"{codec.name} failed on {name}: {e}")
            continue
        rows.append({
            "image": name, "method": result.codec, "height": h, "width": w,
            "bytes": len(result.data), "bpp": result.bpp, "target_bpp": float(target_bpp),
            "quality": result.quality, "reached": result.reached,
            "psnr": psnr(image, result.decoded), "ms_ssim": ms_ssim(image, result.decoded),
        })
        results.append(result)
        if not result.reached:
            notes.append(
                f"{result.codec} cannot reach {target_bpp:.4f} bpp on {name}: its smallest "
                f"file (quality {result.quality}) is {result.bpp:.4f} bpp"
            )
    return rows, results, notes


def _ours(model, image, name, bpp=None, channels=None, refine=0, seeds=1):
    from compression.codec import decode_image, encode_image
    from compression.metrics import ms_ssim, psnr

    encoded = encode_image(model, image, bpp=bpp, channels=channels, refine=refine, seeds=seeds)
    decoded, _ = decode_image(model, encoded.data)
    h, w = image.shape[:2]
    row = {
        "image": name, "method": OURS, "height": h, "width": w, "bytes": len(encoded.data),
        "bpp": encoded.bpp, "target_bpp": encoded.bpp, "quality": None, "reached": True,
        "psnr": psnr(image, decoded), "ms_ssim": ms_ssim(image, decoded),
    }
    return row, encoded.data, decoded


def _mean(rows, key):
    return sum(float(r[key]) for r in rows) / len(rows) if rows else None


def summarize(rows):
    """Per-method summary rows (:data:`SUMMARY_COLUMNS`) of ``results.csv`` rows.

    ``reached`` counts the images on which the method met the target;
    ``bpp``, ``psnr`` and ``ms_ssim`` are means over those images only (a
    file above the target is not a matched-rate result) and ``ours_*`` are
    our means over the same images.  ``over_*`` are the means over the other
    images, of the method's smallest file, which is above our rate: what the
    codec gives at the least it can spend.
    """
    ours = {r["image"]: r for r in rows if r["method"] == OURS}
    methods = list(dict.fromkeys(r["method"] for r in rows))
    summary = []
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        hit = [r for r in mine if r["reached"]]
        over = [r for r in mine if not r["reached"]]
        paired = [ours[r["image"]] for r in hit if r["image"] in ours]
        summary.append({
            "method": method, "images": len(mine), "reached": len(hit),
            "bpp": _mean(hit, "bpp"), "psnr": _mean(hit, "psnr"),
            "ms_ssim": _mean(hit, "ms_ssim"), "ours_bpp": _mean(paired, "bpp"),
            "ours_psnr": _mean(paired, "psnr"), "ours_ms_ssim": _mean(paired, "ms_ssim"),
            "over_bpp": _mean(over, "bpp"), "over_psnr": _mean(over, "psnr"),
            "over_ms_ssim": _mean(over, "ms_ssim"),
        })
    return summary


def _stem(index, path):
    stem = os.path.splitext(os.path.basename(path))[0]
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem)
    return f"{index:03d}_{safe}"


def compare(model, image_paths, out_dir, codecs=None, grids=3, on_error=None, log=print,
            bpp=None, channels=None, refine=0, seeds=1):
    """Code every image with ``model`` and every classical codec at our rate; write reports.

    Args:
      model: a :class:`~compression.inference.CompressionModel`.
      image_paths: image files.
      out_dir: existing directory for the outputs (see the module docstring).
      codecs: names or :class:`~compression.classical.Codec` objects
        (default: every known codec); names of codecs that are not available
        here are skipped with a note saying why.
      grids: side-by-side images for this many of the first images.
      on_error: ``on_error(path, exception)`` for an image that cannot be
        coded, which is skipped; without it the error is raised.
      log: receives progress and notes, one line per call.
      bpp, channels: our rate, as for :func:`~compression.codec.encode_image`:
        the whole file at most ``bpp`` (a variable-rate model picks its
        channels per image), or exactly ``channels`` leading channels; neither:
        every channel.  An image the model cannot code that small is an error
        for ``on_error``.
      refine: steps of encode-time refinement of our files (:mod:`compression.refine`).
      seeds: noise seeds tried for each of our files (1: none).

    Returns:
      ``(rows, summary, notes)``.
    """
    from compression.classical import CODEC_NAMES, Codec, available_codecs, missing_codecs
    from compression.image_io import read_image
    from compression.report import (
        comparison_grid,
        format_table,
        rate_distortion_plot,
        write_csv,
    )

    available, missing = available_codecs(), missing_codecs()
    chosen, notes = [], []
    for codec in CODEC_NAMES if codecs is None else codecs:
        if isinstance(codec, Codec):
            chosen.append(codec)
        elif codec in available:
            chosen.append(available[codec])
        elif codec in missing:
            notes.append(f"{codec} skipped: {missing[codec]}")
        else:
            raise CompressionError(f"unknown codec {codec!r}; known: {', '.join(CODEC_NAMES)}")
    codecs = chosen
    for note in notes:
        log(note)
    files = os.path.join(out_dir, "files")
    os.makedirs(files, exist_ok=True)
    rows = []
    paths = [os.fspath(p) for p in image_paths]
    for index, path in enumerate(paths):
        try:
            image = read_image(path)
            stem = _stem(index, path)
            ours, data, decoded = _ours(model, image, path, bpp, channels, refine, seeds)
            _write_file(os.path.join(files, stem + ".gcz"), data)
            classical_rows, results, unreachable = codec_rows(image, ours["bpp"], codecs, path)
        except Exception as e:  # one bad image must not stop the comparison
            if on_error is None:
                raise
            on_error(path, e)
            continue
        for result in results:
            _write_file(os.path.join(
                files, f"{stem}.{result.codec}.q{result.quality}"
                f"{_EXTENSIONS.get(result.codec, '.' + result.codec)}"), result.data)
        rows += [ours] + classical_rows
        log(f"[{index + 1}/{len(paths)}] {path}: " + ", ".join(
            f"{r['method']} {r['bpp']:.4f} bpp {r['psnr']:.2f} dB"
            + ("" if r["reached"] else " (over target)") for r in [ours] + classical_rows))
        for note in unreachable:
            log(note)
        notes += unreachable
        if grids and sum(r["method"] == OURS for r in rows) <= grids:
            panels = [(OURS, decoded, ours["bpp"])]
            panels += [(f"{r.codec} q{r.quality}" + ("" if r.reached else " (over)"),
                        r.decoded, r.bpp) for r in results]
            comparison_grid(image, panels, os.path.join(out_dir, f"grid_{stem}.png"))

    summary = summarize(rows)
    if rows:
        write_csv(rows, os.path.join(out_dir, _RESULTS), columns=COLUMNS)
        write_csv(summary, os.path.join(out_dir, "summary.csv"), columns=SUMMARY_COLUMNS)
        count = sum(r["method"] == OURS for r in rows)
        classical = {r["method"] for r in rows} - {OURS}
        reached = sorted({r["method"] for r in rows if r["method"] != OURS and r["reached"]})
        title = (f"{count} images; classical codecs at or below our rate: "
                 f"{', '.join(reached) or 'none reached it'}")
        if len(reached) < len(classical):
            title += "; the others at their smallest file"
        rate_distortion_plot(rows, os.path.join(out_dir, "rate_distortion.png"), title=title)
        table = format_table(summary, columns=SUMMARY_COLUMNS, formats=_FORMATS)
        text = (table + "\n\nreached: images on which the method met our rate; bpp/psnr/ms_ssim: "
                "means over those images; ours_*: our means over the same images; over_*: "
                "means of the smallest file on the other images (above our rate)\n")
        if notes:
            text += "\n" + "\n".join(notes) + "\n"
        _write_file(os.path.join(out_dir, "summary.txt"), text)
        log("")
        log(table)
    return rows, summary, notes


def compare_command(args):
    """``gcompress compare`` / ``scripts/compare_codecs.py``; returns the exit status.

    ``args`` has ``model``, ``images``, ``out_dir``, ``limit``, ``codecs``
    (comma-separated names or None), ``grids`` and ``force``, and may have
    ``bpp`` or ``channels`` (our rate; default: every channel), ``refine`` and ``seeds``.
    """
    from compression.classical import CODEC_NAMES
    from compression.evaluate import find_images, skip_reporter
    from compression.inference import load_model
    from compression.rate_control import check_channels

    codecs = None
    if args.codecs:
        codecs = [c.strip().lower() for c in args.codecs.split(",") if c.strip()]
        unknown = [c for c in codecs if c not in CODEC_NAMES]
        if unknown:
            raise CompressionError(f"unknown codecs {unknown}; known: {', '.join(CODEC_NAMES)}")
    if args.grids is not None and args.grids < 0:
        raise CompressionError(f"--grids must be >= 0, got {args.grids}")
    out_dir = args.out_dir
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise CompressionError(f"--out-dir {out_dir!r} exists and is not a directory")
    if os.path.exists(os.path.join(out_dir, _RESULTS)) and not args.force:
        raise CompressionError(
            f"{out_dir} already holds a comparison ({_RESULTS}); pass --force to replace it"
        )
    bpp, channels = getattr(args, "bpp", None), getattr(args, "channels", None)
    paths = find_images(args.images, args.limit)
    model = load_model(args.model)
    if channels is not None:
        try:  # before any image: a wrong K would fail every one of them
            check_channels(model.config, channels)
        except CompressionError:
            model.close()
            raise
    os.makedirs(out_dir, exist_ok=True)
    failures = []
    on_error = skip_reporter(failures)
    try:
        rows, _, _ = compare(model, paths, out_dir, codecs=codecs,
                             grids=3 if args.grids is None else args.grids, on_error=on_error,
                             bpp=bpp, channels=channels, refine=getattr(args, "refine", 0),
                             seeds=getattr(args, "seeds", 1))
    finally:
        model.close()
    if rows:
        print(f"wrote {out_dir}/results.csv, summary.csv, summary.txt, rate_distortion.png")
    if failures:
        print(f"gcompress: {len(failures)} of {len(paths)} images failed", file=sys.stderr)
        return 1
    return 0
