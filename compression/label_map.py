"""Semantic label maps inside ``.gcz`` files: read, check, code losslessly, decode.

A semantic model's decoder needs the label map (paper section 3.3), so the
file carries it, coded losslessly, in whichever of three codings is smallest
for the map at hand:

* ``context`` (maps with ids below 64): each id range-coded with adaptive
  counts of its causal context, the left and upper ids and whether the
  upper-left one equals each of them.  Pixels are visited by anti-diagonals,
  so a whole diagonal depends only on earlier ones and is coded in one call
  (``H + W - 1`` calls per map).  On CamVid's val maps it is 39% smaller
  than lossless WebP.
* lossless WebP (predicts from neighbours, codes runs);
* PNG (where Pillow has no WebP, or for more than 64 classes).

Each names itself by its magic bytes, so the file needs no extra field for
the choice.

Opt-in, a map may also be stored coarse (``label_factor`` ``f`` of 2, 4, 8 or
16): every ``f``-th id of every ``f``-th row, which the decoder repeats back
to full size (:func:`coarse_labels`).  The decoder's semantic branch works
at 1/16 of the image's resolution anyway: on CamVid val a model decodes
as well from a 4x coarser map (0.00 dB with full coding, -0.06 dB where it
synthesises), which costs a fifth of the bits (docs/benchmarks.md).

Decoding is bounded like the rest of the reader: the map's size is checked
against the header before its pixels are decoded, and any failure is a
:class:`~compression.errors.CorruptFileError`.
"""

import io
import os

import numpy as np
from PIL import Image, UnidentifiedImageError, features

from compression.config import LABEL_FACTORS
from compression.errors import CompressionError, ConfigError, CorruptFileError, ImageReadError
from compression.files import open_regular

__all__ = ["read_label_map", "check_label_map", "encode_label_map", "decode_label_map",
           "label_format", "coarse_labels", "LABEL_FACTORS"]

_SINGLE_CHANNEL = ("L", "P", "I", "I;16", "I;16B", "I;16L")
_CONTEXT_MAGIC = b"GCL1"
_COARSE_MAGIC = b"GCLS"
_FORMATS = {b"\x89PNG": "PNG", b"RIFF": "WEBP", _CONTEXT_MAGIC: "CONTEXT",
            _COARSE_MAGIC: "COARSE"}
#: The context coding serves maps whose ids are below this (its count table
#: has ``(K+1)^2 * 4 * K`` entries: 8.6 MB at 64).
CONTEXT_MAX_CLASSES = 64
#: Pseudo-count of every id in every context: small, because a context seen
#: once is usually followed by the same id.
_CONTEXT_PRIOR = 0.05
_WORD = np.dtype(">u4")


def read_label_map(path):
    """A label-map file (single-channel class ids, e.g. ``*_gtFine_labelIds.png``) -> ``[H, W]``."""
    path = os.fspath(path)
    try:
        handle, _ = open_regular(path, "label map")
    except CompressionError as e:
        raise ImageReadError(str(e)) from None
    try:
        with handle, Image.open(handle) as img:
            if img.mode not in _SINGLE_CHANNEL:
                raise ImageReadError(
                    f"{path}: label map has mode {img.mode!r}; expected single-channel class "
                    "ids (e.g. Cityscapes' *_gtFine_labelIds.png), not a colour rendering")
            img.load()
            return np.asarray(img)
    except UnidentifiedImageError:
        raise ImageReadError(f"{path} is not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
        raise ImageReadError(f"{path} is damaged or not fully readable: {e}") from None


def check_label_map(labels, height, width, num_classes):
    """``labels`` as uint8 ``[height, width]`` ids below ``num_classes``, or a ConfigError."""
    labels = np.asarray(labels)
    if labels.shape != (height, width):
        raise ConfigError(
            f"the label map is {labels.shape[1] if labels.ndim > 1 else '?'}x{labels.shape[0]}"
            f" ({list(labels.shape)}), but the image is {width}x{height}; pass the label map "
            "of this image")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ConfigError(f"label map must hold integer class ids, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = int(labels.max()) if labels.max() >= num_classes else int(labels.min())
        raise ConfigError(
            f"label map holds class id {bad}, but this model knows {num_classes} classes "
            f"(ids 0..{num_classes - 1})")
    if num_classes > 256:
        raise ConfigError(f"label maps of more than 256 classes are not supported "
                          f"(model has {num_classes})")
    return np.ascontiguousarray(labels, dtype=np.uint8)


def _encode(labels, fmt):
    buffer = io.BytesIO()
    if fmt == "WEBP":
        # Lossless WebP codes RGB: the ids in all three channels.
        # method 4: 24 ms for a 480x360 CamVid map; method 6 saves 7% more in 1.3 s.
        Image.fromarray(np.repeat(labels[:, :, None], 3, axis=2)).save(
            buffer, "WEBP", lossless=True, quality=100, method=4, exact=True)
    else:
        Image.fromarray(labels).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def _diagonals(height, width):
    """Row and column indices of each anti-diagonal ``i + j = d`` in turn."""
    for d in range(height + width - 1):
        i = np.arange(max(0, d - width + 1), min(d, height - 1) + 1)
        yield i, d - i


class _ContextModel:
    """Adaptive per-context id counts of the ``context`` coding (see the module docstring)."""

    def __init__(self, height, width, classes):
        import constriction

        self.classes = classes
        # Decoded ids with a border of sentinel ``classes`` above and to the left.
        self.ids = np.full((height + 1, width + 1), classes, np.int64)
        self.counts = np.zeros(((classes + 1) ** 2 * 4, classes))
        self.family = constriction.stream.model.Categorical(perfect=False)

    def contexts(self, i, j):
        ids = self.ids
        left, up, corner = ids[i + 1, j], ids[i, j + 1], ids[i, j]
        return ((left * (self.classes + 1) + up) * 2 + (corner == left)) * 2 + (corner == up)

    def probabilities(self, ctx):
        c = self.counts[ctx] + _CONTEXT_PRIOR
        return c / c.sum(axis=1, keepdims=True)

    def update(self, i, j, ctx, symbols):
        self.ids[i + 1, j + 1] = symbols
        np.add.at(self.counts, (ctx, symbols), 1)


def _encode_context(labels):
    import constriction

    classes = int(labels.max()) + 1 if labels.size else 1
    model = _ContextModel(*labels.shape, classes)
    encoder = constriction.stream.queue.RangeEncoder()
    for i, j in _diagonals(*labels.shape):
        ctx = model.contexts(i, j)
        symbols = labels[i, j].astype(np.int32)
        encoder.encode(symbols, model.family, model.probabilities(ctx))
        model.update(i, j, ctx, symbols)
    words = encoder.get_compressed().astype(_WORD)
    return _CONTEXT_MAGIC + bytes([classes]) + words.tobytes()


def _decode_context(data, shape, num_classes):
    import constriction

    if len(data) < 5 or (len(data) - 5) % _WORD.itemsize:
        raise CorruptFileError("corrupt .gcz file: the context-coded label map is not a "
                               "header byte and whole 32-bit words")
    classes = data[4]
    if not 1 <= classes <= min(num_classes, CONTEXT_MAX_CLASSES):
        raise CorruptFileError(f"corrupt .gcz file: the label map claims {classes} classes, "
                               f"the model knows {num_classes}")
    model = _ContextModel(*shape, classes)
    try:
        decoder = constriction.stream.queue.RangeDecoder(
            np.frombuffer(data, _WORD, offset=5).astype(np.uint32))
        for i, j in _diagonals(*shape):
            ctx = model.contexts(i, j)
            symbols = np.asarray(decoder.decode(model.family, model.probabilities(ctx)),
                                 np.int64)
            model.update(i, j, ctx, symbols)
    except Exception as e:  # constriction's ways of rejecting a stream
        raise CorruptFileError(f"corrupt .gcz file: the label map does not decode: {e}") \
            from None
    return np.ascontiguousarray(model.ids[1:, 1:], dtype=np.uint8)


def coarse_labels(labels, factor):
    """The map a decoder sees when ``labels`` ``[H, W]`` is stored ``factor`` times coarser:
    every ``factor``-th id of every ``factor``-th row, each repeated over its
    ``factor x factor`` block, cropped to ``[H, W]``."""
    labels = np.asarray(labels)
    if factor == 1:
        return labels
    h, w = labels.shape
    kept = labels[::factor, ::factor]
    return np.repeat(np.repeat(kept, factor, axis=0), factor, axis=1)[:h, :w]


def _check_factor(factor):
    if factor not in LABEL_FACTORS:
        raise ConfigError(f"label_factor must be one of {', '.join(map(str, LABEL_FACTORS))}, "
                          f"got {factor!r}")


def encode_label_map(labels, factor=1):
    """uint8 ids ``[H, W]`` (see :func:`check_label_map`) -> the smallest lossless coding.

    ``factor`` above 1 stores the map that many times coarser (see
    :func:`coarse_labels`): lossless for the coarse map, not for ``labels``.
    """
    _check_factor(factor)
    labels = np.ascontiguousarray(labels, dtype=np.uint8)
    if factor > 1:
        return _COARSE_MAGIC + bytes([factor]) + encode_label_map(labels[::factor, ::factor])
    codings = [_encode(labels, "PNG")]
    if labels.size and labels.max() < CONTEXT_MAX_CLASSES:
        codings.append(_encode_context(labels))
    if features.check("webp"):
        webp = _encode(labels, "WEBP")
        if np.array_equal(decode_label_map(webp, labels.shape, 256), labels):
            codings.append(webp)
    return min(codings, key=len)


def label_format(data):
    """``"PNG"``, ``"WEBP"``, ``"CONTEXT"`` or ``"COARSE"``: how a stored label map is coded
    (by its magic), else None."""
    return _FORMATS.get(bytes(data[:4]))


def decode_label_map(data, shape, num_classes):
    """Invert :func:`encode_label_map`: uint8 ``shape`` ids below ``num_classes``.

    A coarse map comes back at full size (:func:`coarse_labels`).  Raises
    CorruptFileError for anything else: another format, another size
    (checked before the pixels are decoded), a colour map, ids out of range.
    """
    fmt = label_format(data)
    if fmt is None:
        raise CorruptFileError("corrupt .gcz file: the label map is neither PNG, WebP nor "
                               "context-coded")
    height, width = shape
    if fmt == "COARSE":
        factor = data[4] if len(data) > 4 else 0
        if factor not in LABEL_FACTORS[1:] or label_format(data[5:]) in (None, "COARSE"):
            raise CorruptFileError("corrupt .gcz file: the coarse label map has factor "
                                   f"{factor} or no inner coding")
        inner = decode_label_map(bytes(data[5:]), (-(-height // factor), -(-width // factor)),
                                 num_classes)
        return np.ascontiguousarray(np.repeat(np.repeat(inner, factor, axis=0), factor,
                                              axis=1)[:height, :width])
    if fmt == "CONTEXT":
        return _decode_context(bytes(data), shape, num_classes)
    try:
        with Image.open(io.BytesIO(bytes(data)), formats=[fmt]) as img:
            if img.size != (width, height):
                raise CorruptFileError(
                    f"corrupt .gcz file: the label map is {img.size[0]}x{img.size[1]}, the "
                    f"image {width}x{height}")
            img.load()
            array = np.asarray(img)
    except CorruptFileError:
        raise
    except Exception as e:  # Pillow's many ways of saying "damaged"
        raise CorruptFileError(f"corrupt .gcz file: the label map does not decode: {e}") from None
    if array.ndim == 3:
        if not (array[..., 1:3] == array[..., :1]).all():
            raise CorruptFileError("corrupt .gcz file: the label map is not single-channel")
        array = array[..., 0]
    if array.shape != (height, width) or array.dtype != np.uint8:
        raise CorruptFileError(f"corrupt .gcz file: the label map has shape {array.shape} "
                               f"and dtype {array.dtype}")
    if array.size and array.max() >= num_classes:
        raise CorruptFileError(
            f"corrupt .gcz file: the label map holds class id {int(array.max())}, the model "
            f"knows {num_classes} classes")
    return np.ascontiguousarray(array)
