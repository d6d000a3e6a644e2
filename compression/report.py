"""Figures and tables for rate-distortion comparisons.

* :func:`rate_distortion_plot` - PSNR and MS-SSIM against bits per pixel,
  one line per method, as a PNG.
* :func:`rate_distortion_curves` - the same panels for operating points
  (one mean per rate), joined into one curve per model.
* :func:`comparison_grid` - the original next to each reconstruction, each
  labelled with its method and rate, as a PNG.
* :func:`format_table`, :func:`write_csv`, :func:`write_json` - the numbers.

Rows are plain dicts (as returned by
:func:`compression.classical.compare_at_rate`), so results from the GAN codec
and the classical codecs can be mixed freely.  Output files are replaced if
they exist (reports are regenerated, not archived); every write is atomic.
"""

import csv
import io
import json
import math
import numbers

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from compression.files import write_atomic
from compression.image_io import image_from_array, write_image

__all__ = [
    "rate_distortion_plot",
    "rate_distortion_curves",
    "comparison_grid",
    "format_table",
    "write_csv",
    "write_json",
]


def _finite(value):
    return isinstance(value, numbers.Real) and math.isfinite(value)


def _series(rows, key):
    """``{method: ([bpp...], [value...])}`` sorted by rate, skipping missing/inf values."""
    series = {}
    for row in rows:
        bpp, value = row.get("bpp"), row.get(key)
        if not (_finite(bpp) and _finite(value)):
            continue  # e.g. PSNR inf of a lossless file cannot be plotted
        series.setdefault(str(row.get("method", "?")), []).append((float(bpp), float(value)))
    return {m: tuple(zip(*sorted(points), strict=True)) for m, points in series.items()}


def rate_distortion_plot(rows, path, title=None):
    """Write a PNG with two panels, PSNR vs bpp and MS-SSIM vs bpp.

    ``rows`` are dicts with keys ``method``, ``bpp``, ``psnr``, ``ms_ssim``.
    Every row is one point (one image coded by one method: the points of a
    method are not a curve, so they are not joined), and each method's mean
    is a larger marker of the same colour.  Non-finite values (PSNR of an
    exact match) are left out.
    """
    def draw(ax, method, bpps, values, colour):
        ax.scatter(bpps, values, s=14, alpha=0.45, color=colour)
        ax.plot([np.mean(bpps)], [np.mean(values)], marker="D", markersize=9,
                color=colour, markeredgecolor="black", linestyle="none",
                label=f"{method} (mean of {len(bpps)})")

    _quality_panels(rows, path, title, "bits per pixel", draw)


def _quality_panels(rows, path, title, xlabel, draw):
    """PSNR and MS-SSIM against bpp side by side; ``draw(ax, method, bpps, values, colour)``."""
    # A bare Figure with the Agg canvas: no pyplot, so no global backend
    # switch and no figure kept alive in pyplot's registry.
    fig = Figure(figsize=(10, 4), dpi=100)
    canvas = FigureCanvasAgg(fig)
    for i, (key, label) in enumerate((("psnr", "PSNR [dB]"), ("ms_ssim", "MS-SSIM"))):
        ax = fig.add_subplot(1, 2, i + 1)
        for index, (method, (bpps, values)) in enumerate(_series(rows, key).items()):
            draw(ax, method, bpps, values, f"C{index % 10}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    _render(fig, canvas, path, title)


def _render(fig, canvas, path, title):
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    canvas.draw()
    image = np.asarray(canvas.buffer_rgba())[:, :, :3]
    write_image(path, np.ascontiguousarray(image), overwrite=True)


def rate_distortion_curves(rows, path, title=None):
    """Write a PNG of PSNR and MS-SSIM against bpp, each method's points joined by rate.

    ``rows`` are operating points (e.g. the mean over a test set at one rate)
    with keys ``method``, ``bpp``, ``psnr``, ``ms_ssim``: a variable-rate
    model's rows make a curve, a fixed-rate model's one point.
    """

    def draw(ax, method, bpps, values, colour):
        ax.plot(bpps, values, marker="o", markersize=5, color=colour, label=method)

    _quality_panels(rows, path, title, "bits per pixel (whole file)", draw)


def _font(size):
    """Pillow's built-in font, scalable when Pillow has FreeType (>= 10.1)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def _label(width, text, font, height):
    """A white strip ``height`` x ``width`` with ``text`` centred in black."""
    strip = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(strip)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = max((width - (right - left)) // 2 - left, 2)
    y = (height - (bottom - top)) // 2 - top
    draw.text((x, y), text, fill="black", font=font)
    return strip


def comparison_grid(original, panels, path, max_width=4096, gap=4):
    """Write a PNG showing ``original`` and each reconstruction side by side.

    ``panels`` is a list of ``(label, uint8 image, bpp)``; each is captioned
    ``"label 0.071 bpp"`` (just ``label`` when ``bpp`` is None) and the
    original ``"original"``.  If the row would be wider than ``max_width``
    pixels every image is downscaled by the same factor, so they stay
    comparable; images are never upscaled.
    """
    items = [("original", image_from_array(original, min_size=1), None)]
    items += [(str(lbl), image_from_array(img, min_size=1), bpp) for lbl, img, bpp in panels]
    gaps = gap * (len(items) - 1)
    # Gaps keep their size; only the images shrink (floored, so the sum fits).
    scale = min(1.0, max(max_width - gaps, len(items)) / sum(img.shape[1] for _, img, _ in items))
    tiles = []
    for label, img, bpp in items:
        tile = Image.fromarray(img)
        if scale < 1.0:
            size = (max(1, int(tile.width * scale)), max(1, int(tile.height * scale)))
            tile = tile.resize(size, Image.LANCZOS)
        caption = label if bpp is None else f"{label} {float(bpp):.3f} bpp"
        tiles.append((tile, caption))
    # Captions scale with the images but stay readable on small tiles.
    font_size = max(10, min(28, round(max(t.height for t, _ in tiles) / 20)))
    font = _font(font_size)
    strip_h = font_size * 2
    width = sum(t.width for t, _ in tiles) + gap * (len(tiles) - 1)
    height = max(t.height for t, _ in tiles) + strip_h
    canvas = Image.new("RGB", (width, height), "white")
    x = 0
    for tile, caption in tiles:
        canvas.paste(_label(tile.width, caption, font, strip_h), (x, 0))
        canvas.paste(tile, (x, strip_h))
        x += tile.width + gap
    write_image(path, np.asarray(canvas), overwrite=True)


def _cell(value, fmt):
    if value is None:
        return "-"
    if fmt is not None:
        return format(value, fmt)
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        value = float(value)
        if not math.isfinite(value):
            return str(value)
        # Four significant digits suit bpp (0.07123), PSNR (27.35) and MS-SSIM (0.9412).
        return f"{value:.4g}"
    return str(value)


def _columns(rows):
    """All keys of ``rows`` in first-seen order."""
    seen = {}
    for row in rows:
        for key in row:
            seen.setdefault(key, None)
    return list(seen)


def format_table(rows, columns=None, formats=None):
    """A plain-text table of ``rows`` (dicts), columns aligned, one header line.

    ``columns`` picks and orders the keys (default: every key, first-seen
    order); ``formats`` maps a column to a format spec (e.g. ``{"bpp": ".4f"}``).
    Numbers are right-aligned, text left-aligned, missing values show ``-``.
    """
    columns = list(columns) if columns is not None else _columns(rows)
    formats = formats or {}
    cells = [[_cell(row.get(c), formats.get(c)) for c in columns] for row in rows]
    numeric = [
        all(isinstance(row.get(c), numbers.Number) or row.get(c) is None for row in rows)
        for c in columns
    ]
    widths = [max([len(str(c))] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]

    def line(values):
        parts = [v.rjust(w) if num else v.ljust(w)
                 for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    out = [line([str(c) for c in columns]), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    return "\n".join(out)


def _plain(value):
    """numpy scalars/arrays -> Python values, non-finite floats -> None (valid JSON)."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def write_csv(rows, path, columns=None):
    """Write ``rows`` (dicts) as CSV with a header; missing values are empty cells.

    Floats are written in full precision (``repr``), ``inf`` as ``inf``.
    """
    columns = list(columns) if columns is not None else _columns(rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({
            k: (v.item() if isinstance(v, np.generic) else v)
            for k, v in row.items() if k in columns
        })
    write_atomic(path, buf.getvalue(), overwrite=True)


def write_json(rows, path):
    """Write ``rows`` as a JSON list (indented).

    JSON has no ``inf``/``NaN``, so non-finite numbers (the PSNR of an exact
    match) are written as ``null``; numpy values become plain numbers.
    """
    write_atomic(path, json.dumps(_plain(list(rows)), indent=2) + "\n", overwrite=True)
