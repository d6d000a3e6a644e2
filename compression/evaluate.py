"""``gcompress evaluate``: code a set of images and measure rate, quality and speed.

Every image is encoded to a real ``.gcz`` file on disk, the file is read
back and decoded, and the reconstruction is compared with the original.
One row per image (see :data:`COLUMNS`):

* ``image``, ``height``, ``width``: the path as found and the original size;
* ``bytes``: the size of the file on disk, header and CRC included;
* ``bpp``: ``8 * bytes / (height * width)``, the honest rate;
* ``payload_bpp``: the entropy-coded symbols alone;
* ``label_bpp``: the label map a semantic model's file carries (its label
  map is found beside the image in the Cityscapes layout), else 0;
* ``bound_bpp``: ``k log2(L)`` bits per bottleneck pixel (the rate without an
  entropy model), scaled to the original size;
* ``channels``: ``k``, the leading bottleneck channels the file codes (all
  ``C`` of a fixed-rate model; chosen per image by ``--bpp`` or fixed by
  ``--channels`` for a variable-rate one), a partly coded last channel
  counted by the share of its rows (``--bpp`` fills the budget so);
* ``rate_weight``: the rate weight a rate-adaptive model's file codes at
  (:mod:`compression.gain`; ``--bpp`` picks it per image), empty for others;
* ``psnr``: dB on the 8-bit RGB scale (peak 255; ``inf`` for an exact match);
* ``ms_ssim``: :func:`compression.metrics.ms_ssim`, TensorFlow's multi-scale
  SSIM on the 8-bit scale, with fewer scales for images whose smaller side
  is under 176 pixels (the rule is documented in :mod:`compression.metrics`);
* ``chroma_error``: :func:`compression.metrics.chroma_error`, the mean
  absolute colour error in 8-bit levels (a grey reconstruction scores the
  original's own mean colourfulness; 0 is exact colour);
* ``encode_s``, ``decode_s``: wall-clock seconds of
  :func:`~compression.codec.encode_image` (padding, encoder network, entropy
  coding, container) and :func:`~compression.codec.decode_image` (container,
  entropy decoding, decoder network, crop).  Reading and writing files is not
  included.  The first image is coded twice and the second pass is kept,
  so no row pays for TensorFlow's one-time set-up.
"""

import os
import sys
import tempfile
import time

from compression.errors import CompressionError
from compression.files import write_atomic

__all__ = ["COLUMNS", "IMAGE_EXTENSIONS", "evaluate", "evaluate_command", "find_images",
           "summarize", "check_output_path", "write_rows", "skip_reporter"]

#: Columns of the results, in order.
COLUMNS = ("image", "height", "width", "bytes", "bpp", "payload_bpp", "label_bpp", "bound_bpp",
           "channels", "rate_weight", "psnr", "ms_ssim", "chroma_error", "encode_s", "decode_s")

#: File name endings searched for in directories.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm")

_MEAN_COLUMNS = ("bytes", "bpp", "payload_bpp", "label_bpp", "bound_bpp", "channels", "psnr",
                 "ms_ssim", "chroma_error", "encode_s", "decode_s")
_FORMATS = {"bpp": ".4f", "payload_bpp": ".4f", "label_bpp": ".4f", "bound_bpp": ".4f",
            "channels": ".2f", "psnr": ".2f", "ms_ssim": ".4f", "chroma_error": ".2f",
            "encode_s": ".3f",
            "decode_s": ".3f", "bytes": ".0f"}


def find_images(spec, limit=None):
    """Image paths for ``spec``: a file, a directory (searched recursively) or a glob.

    Paths come in a stable (sorted) order; ``limit`` keeps the first ones.
    Raises :class:`CompressionError` when nothing matches.
    """
    from compression.cli import expand_inputs

    if limit is not None and limit < 1:
        raise CompressionError(f"--limit must be a positive integer, got {limit}")
    spec = os.fspath(spec)
    if not os.path.exists(spec) and not any(ch in spec for ch in "*?["):
        raise CompressionError(f"--images {spec!r} does not exist")
    paths = [p for p in expand_inputs([spec], IMAGE_EXTENSIONS) if not os.path.isdir(p)]
    if not paths:
        raise CompressionError(
            f"no images found in {spec!r} (looked for {', '.join(IMAGE_EXTENSIONS)})"
        )
    return paths[:limit] if limit else paths


def _code_one(model, path, work_dir, rate):
    """Encode ``path`` to a file in ``work_dir``, decode it, measure -> a row.

    ``rate``: keyword arguments of :func:`~compression.codec.encode_image`
    (``bpp`` or ``channels``).
    """
    from compression.codec import decode_image, encode_image
    from compression.gain import weight_of_byte
    from compression.image_io import read_image
    from compression.metrics import chroma_error, ms_ssim, psnr

    image = read_image(path)
    height, width = image.shape[:2]
    labels = None
    if model.config.semantic_classes:
        from compression.data import label_path_for
        from compression.label_map import read_label_map

        label_path = label_path_for(path)
        if label_path is None or not os.path.exists(label_path):
            raise CompressionError(
                f"{path}: a semantic model needs its label map, "
                + (f"{label_path} is missing" if label_path else
                   "and only images in the Cityscapes layout (leftImg8bit/...) have one"))
        labels = read_label_map(label_path)
    start = time.perf_counter()
    encoded = encode_image(model, image, labels=labels, **rate)
    encode_s = time.perf_counter() - start
    gcz = os.path.join(work_dir, "image.gcz")
    write_atomic(gcz, encoded.data, overwrite=True)  # the run's own scratch file
    size = os.path.getsize(gcz)
    with open(gcz, "rb") as f:
        data = f.read()
    start = time.perf_counter()
    decoded, _ = decode_image(model, data)
    decode_s = time.perf_counter() - start
    return {
        "image": os.fspath(path),
        "height": height,
        "width": width,
        "bytes": size,
        "bpp": 8.0 * size / (height * width),
        "payload_bpp": encoded.payload_bpp,
        "label_bpp": encoded.label_bpp,
        "bound_bpp": encoded.bound_bpp,
        "channels": round(encoded.effective_channels, 4),
        "rate_weight": ("" if encoded.rate_position is None
                        else round(weight_of_byte(encoded.rate_position, model.config), 4)),
        "psnr": psnr(image, decoded),
        "ms_ssim": ms_ssim(image, decoded),
        "chroma_error": chroma_error(image, decoded),
        "encode_s": encode_s,
        "decode_s": decode_s,
    }


def evaluate(model, image_paths, on_error=None, on_row=None, warm_up=True, work_dir=None,
             bpp=None, channels=None, refine=0, seeds=1, rate_weight=None, extend=True):
    """Code every image with ``model`` and measure it -> list of row dicts (:data:`COLUMNS`).

    Args:
      model: a :class:`~compression.inference.CompressionModel`.
      image_paths: image files (any format :func:`~compression.image_io.read_image` reads).
      on_error: ``on_error(path, exception)`` is called for an image that
        cannot be coded (unreadable, too small, ...) and the image is
        skipped; without it the first such error is raised.
      on_row: ``on_row(index, row)`` is called after every coded image
        (progress reporting).
      warm_up: code the first image twice and keep the second measurement, so
        no row pays for TensorFlow's one-time set-up.
      work_dir: where the ``.gcz`` files are written (default: a temporary
        directory, removed afterwards).
      bpp, channels: the rate of every file, as in
        :func:`~compression.codec.encode_image` (an image whose smallest
        file exceeds ``bpp`` is an error, reported to ``on_error``).
      refine: steps of encode-time refinement per image (:mod:`compression.refine`).
      seeds: noise seeds tried per image (1: none; :func:`~compression.refine.choose_seed`).
      rate_weight: a rate-adaptive model codes every file at this rate weight
        (:mod:`compression.gain`) instead of choosing one per image.
      extend: as in :func:`~compression.codec.encode_image` (False: every row
        and column coded).

    Returns:
      One dict per image that was coded, in the order of ``image_paths``.
    """
    paths = [os.fspath(p) for p in image_paths]
    rate = {"bpp": bpp, "channels": channels, "refine": refine, "seeds": seeds, "extend": extend}
    if rate_weight is not None:
        from compression.gain import byte_for_weight

        rate["rate_position"] = byte_for_weight(rate_weight, model.config)
    rows = []
    with tempfile.TemporaryDirectory(prefix="gcompress-eval-") as tmp:
        folder = work_dir or tmp
        for index, path in enumerate(paths):
            try:
                row = _code_one(model, path, folder, rate)
                if warm_up and not rows:
                    # The first image coded paid for TF's set-up: measure it again.
                    row = _code_one(model, path, folder, rate)
            except Exception as e:  # one bad image must not stop the evaluation
                if on_error is None:
                    raise
                on_error(path, e)
                continue
            rows.append(row)
            if on_row is not None:
                on_row(index, row)
    return rows


def summarize(rows):
    """The mean of every numeric column over ``rows`` as one row (``image`` = "mean of N").

    Non-finite PSNR values (exact matches) make the mean PSNR ``inf``, as
    they should; an empty ``rows`` gives an empty dict.
    """
    if not rows:
        return {}
    summary = {"image": f"mean of {len(rows)}"}
    for column in _MEAN_COLUMNS:
        summary[column] = sum(float(r[column]) for r in rows) / len(rows)
    return summary


def check_output_path(path, force):
    """Validate ``--out`` before any work: a known extension and no unwanted overwrite."""
    if path is None:
        return None
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".csv", ".json"):
        raise CompressionError(f"--out {path!r} must end in .csv or .json (the format follows "
                               "the extension)")
    if os.path.isdir(path):
        raise CompressionError(f"--out {path!r} is a directory; give a file name")
    if os.path.exists(path) and not force:
        raise CompressionError(f"{path} exists; pass --force to overwrite it")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CompressionError(f"--out {path!r}: folder {folder!r} does not exist")
    return ext


def write_rows(rows, path):
    """Write ``rows`` as CSV (columns :data:`COLUMNS`) or JSON, by the extension of ``path``."""
    from compression.report import write_csv, write_json

    try:
        if path.lower().endswith(".json"):
            write_json(rows, path)
        else:
            write_csv(rows, path, columns=COLUMNS)
    except OSError as e:
        raise CompressionError(f"cannot write {path}: {e.strerror or e}") from None


def skip_reporter(failures):
    """An ``on_error(path, error)`` callback for commands that go on past a bad image.

    It prints the error (with the path) to stderr and appends the path to
    ``failures``, so the command can exit non-zero at the end.
    """
    from compression.cli import _describe

    def on_error(path, error):
        failures.append(path)
        message = _describe(error)
        if path not in message:
            message = f"{path}: {message}"
        print(f"gcompress: {message} (skipped)", file=sys.stderr)

    return on_error


def _progress_line(index, total, row):
    return (f"[{index + 1}/{total}] {row['image']}: {row['bytes']} bytes, {row['bpp']:.4f} bpp "
            f"({row['channels']:g} channels), "
            f"PSNR {row['psnr']:.2f} dB, MS-SSIM {row['ms_ssim']:.4f}, "
            f"encode {row['encode_s']:.2f} s, decode {row['decode_s']:.2f} s")


def evaluate_command(args):
    """``gcompress evaluate``: ``args`` has ``model``, ``images``, ``out``, ``limit``, ``force``
    and optionally ``bpp`` or ``channels``.

    Prints one line per image and a table of the means, writes ``--out``
    (CSV or JSON by its extension).  Returns the exit status: 0, or 1 when
    some images could not be coded (they are reported and skipped).
    """
    from compression.inference import load_model
    from compression.report import format_table

    out = getattr(args, "out", None)
    force = bool(getattr(args, "force", False))
    check_output_path(out, force)
    paths = find_images(args.images, getattr(args, "limit", None))
    model = load_model(args.model)
    failures = []
    on_error = skip_reporter(failures)
    try:
        rows = evaluate(model, paths, on_error=on_error,
                        on_row=lambda i, row: print(_progress_line(i, len(paths), row)),
                        bpp=getattr(args, "bpp", None), channels=getattr(args, "channels", None),
                        refine=getattr(args, "refine", 0), seeds=getattr(args, "seeds", 1),
                        rate_weight=getattr(args, "rate_weight", None),
                        extend=not getattr(args, "pad_edges", False))
    finally:
        model.close()
    if rows:
        print()
        print(format_table([summarize(rows)], columns=("image",) + _MEAN_COLUMNS,
                           formats=_FORMATS))
    if out is not None and rows:
        if os.path.exists(out) and not force:  # appeared while we were working
            raise CompressionError(f"{out} exists; pass --force to overwrite it")
        write_rows(rows, out)
        print(f"wrote {len(rows)} rows to {out}")
    if failures:
        print(f"gcompress: {len(failures)} of {len(paths)} images failed", file=sys.stderr)
        return 1
    return 0
