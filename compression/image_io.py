"""Reading, validating, padding and writing images.

Every image the package handles is a ``uint8`` array of shape ``[H, W, 3]``
(RGB).  :func:`read_image` turns any file Pillow can open into that form;
:func:`image_from_array` does the same for arrays passed by API users.  The
model needs sizes that are multiples of 16, so :func:`pad_to_multiple` pads by
reflection and :func:`crop_to` removes the padding from the reconstruction.
:func:`to_float` / :func:`to_uint8` convert to and from the ``[-1, 1]`` range
the networks use.
"""

import io
import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from compression.errors import CompressionError, ImageReadError
from compression.files import open_regular, write_atomic

__all__ = [
    "MIN_SIZE",
    "read_image",
    "image_from_array",
    "pad_to_multiple",
    "crop_to",
    "extend_to",
    "write_image",
    "to_float",
    "to_uint8",
]

# The encoder downsamples by 16: a smaller image would be coded as one
# bottleneck pixel that is mostly padding, which is never what a user wants.
MIN_SIZE = 16

# Modes that hold one 16- or 32-bit integer channel.  Pillow's convert() clips
# these to 255 instead of scaling, which would turn most photos white.
_WIDE_INT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _too_small(what, h, w, min_size):
    return ImageReadError(
        f"{what} is {w}x{h} pixels (width x height); the minimum is {min_size}x{min_size}"
    )


def _wide_to_rgb(img):
    """A single-channel 16/32-bit integer or float image -> uint8 ``[H, W, 3]``.

    Integer modes are read as 16-bit data (0..65535, the PNG/TIFF convention)
    and scaled to 8 bits.  Float images in ``[0, 1]`` are scaled by 255; any
    other float range is taken as 8-bit values and clipped.
    """
    data = np.asarray(img)
    if img.mode == "F":
        data = data.astype(np.float64)
        finite = data[np.isfinite(data)]
        if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0:
            data = data * 255.0
        gray = np.clip(np.round(np.nan_to_num(data)), 0, 255).astype(np.uint8)
    else:
        # 65535 / 255 = 257 exactly, so this maps 0 -> 0 and 65535 -> 255.
        data = np.clip(data.astype(np.float64), 0, 65535) / 257.0
        gray = np.round(data).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def _has_alpha(img):
    """True if ``img`` carries transparency (an alpha band or a transparent colour)."""
    # Not `"A" in getbands()`: the LAB mode has an "A" band that is colour.
    if img.mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        return True
    # Palette and RGB/L images can mark one colour transparent in `info`.
    return "transparency" in img.info


def _to_rgb_array(img, path):
    """Convert an opened Pillow image of any mode to uint8 ``[H, W, 3]``."""
    if _has_alpha(img):
        warnings.warn(
            f"{path}: the alpha channel (transparency) is dropped; transparent areas "
            "keep whatever colour they hold", stacklevel=3,
        )
    if img.mode in _WIDE_INT_MODES or img.mode == "F":
        return _wide_to_rgb(img)
    if img.mode != "RGB":
        # Covers L, 1, P, PA, LA, RGBA, CMYK, YCbCr, I;16 RGB ... Pillow drops
        # alpha here without compositing, which is what we want.
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8)


def _upright(img, path):
    """Apply the EXIF orientation; a broken EXIF block only costs the rotation."""
    try:
        # Returns a transposed copy without the orientation tag, so nothing
        # downstream rotates the image a second time.
        return ImageOps.exif_transpose(img)
    except Exception as e:  # malformed EXIF must not make a decodable photo unreadable
        warnings.warn(f"{path}: ignoring unreadable EXIF orientation ({e})", stacklevel=3)
        return img


def read_image(path, min_size=MIN_SIZE):
    """Read an image file as uint8 RGB ``[H, W, 3]``.

    Any format Pillow reads is accepted (PNG, JPEG, BMP, WebP, TIFF, GIF - the
    first frame -, AVIF ...).  The EXIF orientation is applied, so the array
    is upright as a viewer shows it.  Grayscale, palette, CMYK and 16-bit
    images become 8-bit RGB; an alpha channel is dropped with a warning.

    Raises :class:`ImageReadError` if the file is missing, is not an image
    Pillow can read, or is smaller than ``min_size`` x ``min_size`` pixels.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ImageReadError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ImageReadError(f"{path} is a directory, not an image file")
    try:  # a regular file only: Pillow would wait forever on a FIFO
        handle, _ = open_regular(path, "image file")
    except CompressionError as e:
        raise ImageReadError(str(e)) from None
    try:
        with handle, Image.open(handle) as img:
            img.seek(0)  # animated GIF/WebP/APNG: the first frame
            img.load()
            img = _upright(img, path)
            array = _to_rgb_array(img, path)
    except UnidentifiedImageError:
        raise ImageReadError(f"{path} is not an image Pillow can read") from None
    except Image.DecompressionBombError as e:
        raise ImageReadError(f"{path} is too large to read safely: {e}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        # Truncated or corrupt data surfaces as any of these from the plugins.
        raise ImageReadError(f"{path} is damaged or not fully readable: {e}") from None
    h, w = array.shape[:2]
    if h < min_size or w < min_size:
        raise _too_small(path, h, w, min_size)
    return np.ascontiguousarray(array)


def image_from_array(arr, min_size=MIN_SIZE):
    """Validate an array given by an API user -> uint8 ``[H, W, 3]``.

    Accepts uint8 ``[H, W, 3]`` (returned as is, made contiguous) or uint8
    ``[H, W]`` grayscale (repeated to three channels).  Anything else raises
    :class:`ImageReadError` naming the expected form, as does an image smaller
    than ``min_size`` x ``min_size``.
    """
    expected = "expected a uint8 array of shape [H, W, 3] (RGB) or [H, W] (grayscale)"
    if not isinstance(arr, np.ndarray):
        raise ImageReadError(f"{expected}, got {type(arr).__name__}")
    if arr.dtype != np.uint8:
        hint = ""
        if np.issubdtype(arr.dtype, np.floating):
            hint = " (convert floats in [-1, 1] with compression.image_io.to_uint8)"
        raise ImageReadError(f"{expected}, got dtype {arr.dtype}{hint}")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageReadError(f"{expected}, got shape {list(arr.shape)}")
    h, w = arr.shape[:2]
    if h < min_size or w < min_size:
        raise _too_small("the image", h, w, min_size)
    return np.ascontiguousarray(arr)


def _reflect_indices(n, target):
    """Indices ``0..target-1`` into an axis of length ``n``, mirrored past the end.

    The mirror excludes the edge pixel (like ``numpy.pad(mode="reflect")``) and
    repeats with period ``2n - 2``, so it works however large the pad is;
    a length-1 axis just repeats its only pixel.
    """
    idx = np.arange(target)
    if n == 1:
        return np.zeros(target, dtype=np.intp)
    period = 2 * n - 2
    idx = idx % period
    return np.where(idx < n, idx, period - idx)


def pad_to_multiple(image, multiple=16):
    """Pad ``image`` at the bottom and right to sizes that are multiples of ``multiple``.

    Returns ``(padded, (H, W))`` where ``(H, W)`` is the original size, for
    :func:`crop_to`.  Padding mirrors the image (reflection without repeating
    the edge row/column) because a mirrored border continues the image's
    texture, so the encoder spends few bits on it and the edge is not
    distorted by a hard step; it works for any size >= 1, repeating the
    reflection when the pad is longer than the image.  Trailing axes (channels)
    are kept.
    """
    image = np.asarray(image)
    if image.ndim < 2:
        raise ValueError(f"expected an image [H, W, ...], got shape {list(image.shape)}")
    if int(multiple) < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    multiple = int(multiple)
    h, w = image.shape[:2]
    if h < 1 or w < 1:
        raise ValueError(f"cannot pad an empty image of shape {list(image.shape)}")
    th = -(-h // multiple) * multiple
    tw = -(-w // multiple) * multiple
    if (th, tw) == (h, w):
        return image, (h, w)
    padded = image[_reflect_indices(h, th)][:, _reflect_indices(w, tw)]
    return padded, (h, w)


def crop_to(image, size):
    """The top-left ``size = (H, W)`` part of ``image`` (undoes :func:`pad_to_multiple`)."""
    image = np.asarray(image)
    h, w = (int(s) for s in size)
    if image.ndim < 2 or h < 1 or w < 1 or h > image.shape[0] or w > image.shape[1]:
        raise ValueError(f"cannot crop an image of shape {list(image.shape)} to {h}x{w} (HxW)")
    return np.ascontiguousarray(image[:h, :w])


def extend_to(image, size):
    """``image`` brought to ``size = (H, W)``: cropped at the bottom and right where it is
    larger (as :func:`crop_to`), its last row and column repeated where it is smaller (the
    rows and columns a file leaves uncoded, :data:`compression.bitstream.FLAG_EXTENDED_ROWS`)."""
    image = np.asarray(image)
    h, w = (int(s) for s in size)
    if image.ndim < 2 or min(h, w, *image.shape[:2]) < 1:
        raise ValueError(f"cannot extend an image of shape {list(image.shape)} to {h}x{w} (HxW)")
    image = image[:h, :w]
    grow = [(0, h - image.shape[0]), (0, w - image.shape[1])] + [(0, 0)] * (image.ndim - 2)
    return np.ascontiguousarray(np.pad(image, grow, mode="edge") if any(grow[0] + grow[1])
                                else image)


def _format_for(path):
    """Pillow format name for ``path``'s extension; PNG when there is none or it is unknown."""
    ext = os.path.splitext(path)[1].lower()
    return Image.registered_extensions().get(ext, "PNG")


def _save_options(fmt):
    # Decoded images are written once and often compared against the
    # original, so lossy formats get a high quality instead of Pillow's 75.
    if fmt in ("JPEG", "WEBP", "AVIF"):
        return {"quality": 95}
    return {}


def write_image(path, array, overwrite=False):
    """Write a uint8 ``[H, W, 3]`` (or ``[H, W]``) image to ``path``.

    The format follows the extension (PNG when there is none or Pillow does
    not know it).  The file is written to a temporary name in the same
    directory and then moved into place, so a reader never sees a partial
    file and an interrupted write leaves the old one intact.  An existing
    file is only replaced with ``overwrite=True``; otherwise
    :class:`FileExistsError` is raised.  Other write failures raise
    :class:`~compression.errors.CompressionError`.
    """
    path = os.fspath(path)
    array = image_from_array(np.asarray(array), min_size=1)
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{path} exists; pass --force (overwrite=True) to overwrite it")
    fmt = _format_for(path)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **_save_options(fmt))
    write_atomic(path, buffer.getbuffer(), overwrite=overwrite)


def to_float(image):
    """uint8 image -> float32 in ``[-1, 1]`` (0 -> -1, 255 -> 1), the networks' range."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"to_float expects a uint8 image, got dtype {image.dtype}")
    return image.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def to_uint8(image):
    """Float image in ``[-1, 1]`` -> uint8, rounded to nearest and clipped (NaN -> 0).

    Inverse of :func:`to_float`: ``to_uint8(to_float(x)) == x`` for every uint8.
    """
    image = np.asarray(image, dtype=np.float32)
    image = np.nan_to_num(image, nan=-1.0, posinf=1.0, neginf=-1.0)
    return np.clip(np.round((image + 1.0) * 127.5), 0, 255).astype(np.uint8)
