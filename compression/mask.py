"""The selective-compression mask in ``.gcz`` files: derive, code losslessly, decode.

A selective file (header flag bit 1, see docs/format.md) codes only the
bottleneck entries inside a binary mask ``[h, w]`` (``h = ceil(H/16)``); the
decoder synthesises the rest from the label map (paper section 4.2).  The
mask is stored in one of three ways, named by its first byte:

* ``0`` **classes**: ``u8 n`` then ``n`` class ids.  The mask is every cell
  that holds a pixel of one of them in the file's label map
  (:func:`mask_from_labels`), so it costs ``2 + n`` bytes whatever its shape.
* ``1`` **bitmap**: any mask, range-coded row by row; each cell's probability
  comes from adaptive counts of its context, the three cells above it (its
  row is coded in one call, so decoding is ``h`` calls, not ``h * w``).
* ``2`` **classes + corrections**: the class list as in ``0``, then the
  bitmap coding of the cells where the mask differs from what the list gives
  on the decoder's label map.  For a coarse label map (``label_factor``),
  which can lose a thin pole the full-resolution map had, so the list alone
  would not keep it.

Decoding never trusts the bytes: sizes come from the header, ids are checked
against the model's classes, and anything else is a
:class:`~compression.errors.CorruptFileError`.
"""

import numpy as np

from compression.config import DOWNSAMPLING
from compression.errors import ConfigError, CorruptFileError

__all__ = ["mask_from_labels", "class_ids", "encode_mask_classes", "encode_mask_bitmap",
           "encode_mask_corrected", "decode_mask", "MASK_CLASSES", "MASK_BITMAP",
           "MASK_CORRECTED"]

MASK_CLASSES = 0
MASK_BITMAP = 1
MASK_CORRECTED = 2
_WORD = np.dtype(">u4")


def mask_from_labels(labels, keep):
    """uint8 ``[ceil(H/16), ceil(W/16)]``: 1 for every cell with a pixel of a class in ``keep``.

    ``labels`` ``[H, W]`` of class ids.  A cell is kept if any of its pixels
    is, so a kept object is coded whole, its border cells included; the
    padding of sides that are not multiples of 16 counts as not kept.
    """
    labels = np.asarray(labels)
    h, w = labels.shape
    hits = np.isin(labels, np.asarray(sorted(keep), dtype=np.int64))
    ch, cw = -(-h // DOWNSAMPLING), -(-w // DOWNSAMPLING)
    padded = np.zeros((ch * DOWNSAMPLING, cw * DOWNSAMPLING), bool)
    padded[:h, :w] = hits
    cells = padded.reshape(ch, DOWNSAMPLING, cw, DOWNSAMPLING).any(axis=(1, 3))
    return cells.astype(np.uint8)


def class_ids(spec, config):
    """Class names or ids (``"car,pedestrian"``, ``"8,9"`` or a list) -> sorted unique ids.

    Names come from ``config.class_names``.  ``"none"`` (or an empty list)
    keeps nothing: the whole image is synthesised.  An unknown name or an
    id at or above ``config.semantic_classes`` raises a ConfigError naming
    the classes the model knows.
    """
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    items = [str(i).strip() for i in items if str(i).strip()]
    names = {n: i for i, n in enumerate(config.class_names)}
    if items == ["none"] and "none" not in names:
        return []
    known = (", ".join(f"{i} {n}" for n, i in names.items()) if names
             else f"ids 0..{config.semantic_classes - 1} (the model has no class names)")
    ids = set()
    for item in items:
        if item in names:
            ids.add(names[item])
        elif item.isdigit() and int(item) < config.semantic_classes:
            ids.add(int(item))
        else:
            raise ConfigError(f"unknown class {item!r}; this model knows {known}")
    return sorted(ids)


def encode_mask_classes(ids):
    """The ``classes`` coding of a mask: the kept class ids (at most 255, each < 256)."""
    ids = sorted(set(int(i) for i in ids))
    if len(ids) > 255 or any(not 0 <= i < 256 for i in ids):
        raise ConfigError(f"a mask keeps at most 255 class ids below 256, got {ids}")
    return bytes([MASK_CLASSES, len(ids), *ids])


def _contexts(above):
    """Context 0..7 of each cell of a row: its up-left, up and up-right neighbours."""
    left = np.concatenate([[0], above[:-1]])
    right = np.concatenate([above[1:], [0]])
    return (left + 2 * above + 4 * right).astype(np.int64)


def _row_probabilities(counts, ctx):
    p = counts[ctx, 1] / counts[ctx].sum(axis=1)
    return np.clip(p, 1e-4, 1 - 1e-4)


def _bitmap_words(mask):
    """Range-code a 0/1 array ``[h, w]`` row by row -> big-endian 32-bit words."""
    import constriction

    mask = mask.astype(np.int32)
    model = constriction.stream.model.Bernoulli(perfect=False)
    encoder = constriction.stream.queue.RangeEncoder()
    counts = np.full((8, 2), 0.5)
    above = np.zeros(mask.shape[1], np.int32)
    for row in mask:
        ctx = _contexts(above)
        encoder.encode(row, model, _row_probabilities(counts, ctx))
        np.add.at(counts, (ctx, row), 1)
        above = row
    return encoder.get_compressed().astype(_WORD).tobytes()


def _bitmap_from_words(data, shape):
    """Invert :func:`_bitmap_words`; CorruptFileError for anything that is not its stream."""
    import constriction

    h, w = shape
    if len(data) % _WORD.itemsize:
        raise CorruptFileError("corrupt .gcz file: the mask bitmap is not whole 32-bit words")
    words = np.frombuffer(data, _WORD).astype(np.uint32)
    model = constriction.stream.model.Bernoulli(perfect=False)
    counts = np.full((8, 2), 0.5)
    above = np.zeros(w, np.int32)
    rows = []
    try:
        decoder = constriction.stream.queue.RangeDecoder(words)
        for _ in range(h):
            ctx = _contexts(above)
            row = np.asarray(decoder.decode(model, _row_probabilities(counts, ctx)), np.int32)
            np.add.at(counts, (ctx, row), 1)
            rows.append(row)
            above = row
    except Exception as e:  # constriction's ways of rejecting a stream
        raise CorruptFileError(f"corrupt .gcz file: the mask bitmap does not decode: {e}") \
            from None
    return np.array(rows, np.uint8).reshape(h, w)


def _check_bitmap(mask):
    mask = np.asarray(mask)
    if mask.ndim != 2 or not np.isin(mask, (0, 1)).all():
        raise ConfigError(f"a mask must be a 2-D array of 0 and 1, got shape {mask.shape}")
    return mask.astype(np.uint8)


def encode_mask_bitmap(mask):
    """The ``bitmap`` coding of any binary mask ``[h, w]`` (see the module docstring)."""
    return bytes([MASK_BITMAP]) + _bitmap_words(_check_bitmap(mask))


def encode_mask_corrected(ids, mask, derived):
    """The ``classes + corrections`` coding: the class list, then the bitmap of the cells
    where ``mask`` differs from ``derived`` (the mask the list gives on the
    decoder's label map), which is mostly zeros."""
    head = encode_mask_classes(ids)
    flips = _check_bitmap(mask) ^ _check_bitmap(derived)
    return bytes([MASK_CORRECTED]) + head[1:] + _bitmap_words(flips)


def _class_list(data):
    """``(ids, end)`` of the class list after a mask's coding byte."""
    if len(data) < 2 or len(data) < 2 + data[1]:
        raise CorruptFileError("corrupt .gcz file: the mask's class list has the wrong length")
    return list(data[2:2 + data[1]]), 2 + data[1]


def _derived(ids, labels, shape, num_classes):
    if ids != sorted(set(ids)) or any(i >= num_classes for i in ids):
        raise CorruptFileError(f"corrupt .gcz file: the mask keeps classes {ids}, the "
                               f"model knows {num_classes}")
    if labels is None:
        raise CorruptFileError("corrupt .gcz file: a class mask without a label map")
    mask = mask_from_labels(labels, ids)
    if mask.shape != tuple(shape):
        raise CorruptFileError(f"corrupt .gcz file: the label map gives a {mask.shape} "
                               f"mask, the bottleneck is {tuple(shape)}")
    return mask


def decode_mask(data, shape, labels=None, num_classes=256):
    """Invert any of the codings: uint8 ``shape`` ``(h, w)`` mask of 0 and 1.

    ``labels`` (``[H, W]``, the map the file's decoder sees) is needed for
    the codings that name classes; ``num_classes`` bounds their ids.
    """
    data = bytes(data)
    if not data:
        raise CorruptFileError("corrupt .gcz file: the selective mask is empty")
    kind = data[0]
    if kind == MASK_BITMAP:
        return _bitmap_from_words(data[1:], shape)
    if kind not in (MASK_CLASSES, MASK_CORRECTED):
        raise CorruptFileError(f"corrupt .gcz file: unknown mask coding {kind}")
    ids, end = _class_list(data)
    if kind == MASK_CLASSES and end != len(data):
        raise CorruptFileError("corrupt .gcz file: the mask's class list has the wrong length")
    mask = _derived(ids, labels, shape, num_classes)
    if kind == MASK_CORRECTED:
        mask ^= _bitmap_from_words(data[end:], shape)
    return mask
