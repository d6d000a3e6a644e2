"""Semantic label maps inside ``.gcz`` files: read, check, code losslessly, decode.

A semantic model's decoder needs the label map (paper section 3.3), so the
file carries it, coded losslessly: as a lossless WebP or a PNG of the ids,
whichever is smaller for the map at hand (WebP's lossless mode predicts from
neighbours and codes runs, which suits piecewise-constant maps; PNG is the
fallback where Pillow has no WebP).  Both formats name themselves by their
magic bytes, so the file needs no extra field for the choice.

Decoding is bounded like the rest of the reader: the map's size is checked
against the header before its pixels are decoded, and any failure is a
:class:`~compression.errors.CorruptFileError`.
"""

import io
import os

import numpy as np
from PIL import Image, UnidentifiedImageError, features

from compression.errors import CompressionError, ConfigError, CorruptFileError, ImageReadError
from compression.files import open_regular

__all__ = ["read_label_map", "check_label_map", "encode_label_map", "decode_label_map",
           "label_format"]

_SINGLE_CHANNEL = ("L", "P", "I", "I;16", "I;16B", "I;16L")
_FORMATS = {b"\x89PNG": "PNG", b"RIFF": "WEBP"}


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


def encode_label_map(labels):
    """uint8 ids ``[H, W]`` (see :func:`check_label_map`) -> the smaller lossless coding."""
    labels = np.ascontiguousarray(labels, dtype=np.uint8)
    codings = [_encode(labels, "PNG")]
    if features.check("webp"):
        webp = _encode(labels, "WEBP")
        if np.array_equal(decode_label_map(webp, labels.shape, 256), labels):
            codings.append(webp)
    return min(codings, key=len)


def label_format(data):
    """``"PNG"`` or ``"WEBP"``: how a stored label map is coded (by its magic), else None."""
    return _FORMATS.get(bytes(data[:4]))


def decode_label_map(data, shape, num_classes):
    """Invert :func:`encode_label_map`: uint8 ``shape`` ids below ``num_classes``.

    Raises CorruptFileError for anything else: another format, another size
    (checked before the pixels are decoded), a colour map, ids out of range.
    """
    fmt = label_format(data)
    if fmt is None:
        raise CorruptFileError("corrupt .gcz file: the label map is neither PNG nor WebP")
    height, width = shape
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
