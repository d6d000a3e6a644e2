"""The codec: images to real ``.gcz`` files and back (format: docs/format.md).

Encoding pads the image by reflection to a multiple of 16, runs the encoder,
entropy-codes the quantiser's symbols with the model's learned per-channel
probabilities and writes them with a header (sizes, noise seed, model
fingerprint, CRC).  Decoding checks everything in the header against the
model, decodes the symbols bit-exactly, runs the decoder with the stored
noise seed and crops back to the original size, so any image of at least
16x16 pixels round-trips to exactly its own size.

A :class:`~compression.inference.CompressionModel` is loaded once and codes
any number of images: no graph is rebuilt per image.
"""

import dataclasses
import hashlib
import math
import os

import numpy as np

from compression import bitstream
from compression.config import DOWNSAMPLING
from compression.entropy_model import bound_bits, decode_symbols, encode_symbols
from compression.errors import (
    CorruptFileError,
    ModelMismatchError,
    RateError,
    UnsupportedVersionError,
)
from compression.image_io import crop_to, image_from_array, pad_to_multiple, to_float
from compression.rate_control import channel_choices, choose_channels, file_bpp

__all__ = ["EncodeResult", "encode", "decode", "encode_image", "decode_image", "read_symbols",
           "file_stats", "describe_model", "DEFAULT_MAX_PIXELS"]

#: Decoding refuses files that claim more pixels than this unless told otherwise
#: (``max_pixels``, ``--max-pixels``); see :func:`compression.bitstream.check_pixels`.
DEFAULT_MAX_PIXELS = bitstream.DEFAULT_MAX_PIXELS


@dataclasses.dataclass(frozen=True)
class EncodeResult:
    """An encoded image: the file ``data`` and its rate figures.

    ``bpp`` is the whole file (header and CRC included) in bits per pixel of
    the original image; ``bound_bpp`` is ``k log2(L) / 256`` scaled to the
    padded size, the rate a coder without an entropy model would reach;
    ``channels`` is ``k``, the leading bottleneck channels the file codes
    (all ``C`` for a fixed-rate model).
    """

    data: bytes
    height: int
    width: int
    bpp: float
    payload_bpp: float
    bound_bpp: float
    channels: int = 0


def _default_seed(symbols):
    """A deterministic noise seed from the symbols: equal images give equal files."""
    digest = hashlib.blake2b(np.ascontiguousarray(symbols).tobytes(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & (2**63 - 1)


def encode_image(model, image, seed=None, bpp=None, channels=None):
    """Encode ``image`` (uint8 ``[H, W, 3]`` or ``[H, W]``) -> :class:`EncodeResult`.

    ``bpp``: the whole file must be at most this many bits per pixel.  A
    variable-rate model codes the largest number of leading channels that
    fits (:func:`compression.rate_control.choose_channels`); a fixed-rate
    model codes all of them.  Either raises
    :class:`~compression.errors.RateError`, naming the achievable range, when
    even its smallest file is larger.  ``channels``: code exactly this many
    leading channels instead (one of
    :func:`~compression.rate_control.channel_choices`).  Neither: all channels.
    """
    choices = channel_choices(model.config)
    if channels is not None:
        if bpp is not None:
            raise ValueError("pass bpp or channels, not both")
        if channels not in choices:
            raise RateError(f"this model codes {choices.start}..{choices.stop - 1} leading "
                            f"channels, not {channels}")
        choices = range(channels, channels + 1)
    image = image_from_array(image)
    if model.config.semantic_classes:
        raise UnsupportedVersionError(
            "this model is conditioned on semantic label maps; the .gcz format does not "
            "carry label maps yet, so it cannot code files"
        )
    if seed is not None and not 0 <= int(seed) < 2**64:
        raise ValueError(f"seed must be in [0, 2**64) (the file stores a u64), got {seed}")
    h, w = image.shape[:2]
    padded, _ = pad_to_multiple(image, DOWNSAMPLING)
    symbols = model.encode(to_float(padded))
    payloads = {}

    def code(k):
        kept = symbols[:, :, :k]
        payloads[k] = encode_symbols(kept, model.probabilities[:k])
        header = bitstream.Header(
            fingerprint=model.fingerprint,
            image_height=h, image_width=w,
            bottleneck_channels=k,
            bottleneck_height=symbols.shape[0], bottleneck_width=symbols.shape[1],
            num_centers=model.config.num_centers,
            seed=_default_seed(kept) if seed is None else int(seed),
            model_name=getattr(model, "name", ""),
        )
        return bitstream.pack(header, payloads[k])

    k, data = choose_channels(code, choices, h * w, bpp)
    pixels = h * w
    return EncodeResult(
        data=data, height=h, width=w,
        bpp=file_bpp(len(data), pixels),
        payload_bpp=file_bpp(len(payloads[k]), pixels),
        bound_bpp=bound_bits(symbols[:, :, :k].shape, model.config.num_centers) / pixels,
        channels=k,
    )


def encode(model, image, seed=None, bpp=None):
    """Encode ``image`` (uint8 ``[H, W, 3]``) to ``.gcz`` bytes; see :func:`encode_image`."""
    return encode_image(model, image, seed, bpp).data


def _check_header(model, header):
    cfg = model.config
    if header.flags & ~bitstream.FLAG_MODEL_NAME:
        raise UnsupportedVersionError(
            f"the file uses extensions (flags {header.flags:#06x}: semantic map / selective "
            "mask) that this version of gcompress cannot decode yet"
        )
    if header.fingerprint != model.fingerprint:
        raise ModelMismatchError(
            f"this file was written by model {describe_model(header)}, "
            f"but the loaded model is {bitstream.fingerprint_hex(model.fingerprint)} "
            f"({model.run_dir}); decode it with the model that encoded it"
        )
    # The fingerprint matched, so these can only fail for a crafted file; they
    # still bound the decoder's memory before any allocation.
    expected = (
        math.ceil(header.image_height / DOWNSAMPLING),
        math.ceil(header.image_width / DOWNSAMPLING),
    )
    channels = (cfg.channels if not cfg.variable_rate
                else f"{cfg.smallest_channels}..{cfg.channels}")
    if (header.bottleneck_shape[:2] != expected
            or header.bottleneck_channels not in channel_choices(cfg)
            or header.num_centers != cfg.num_centers):
        raise CorruptFileError(
            f"header is inconsistent: bottleneck {header.bottleneck_shape} with "
            f"{header.num_centers} centres for a {header.image_height}x{header.image_width} "
            f"image; the model expects {expected + (channels,)} with {cfg.num_centers} centres"
        )


def describe_model(header):
    """``'name' (fingerprint hex)`` of the model that wrote a file, or the fingerprint alone."""
    digest = bitstream.fingerprint_hex(header.fingerprint)
    return f"{header.model_name!r} ({digest})" if header.model_name else digest


def read_symbols(model, data, max_pixels=DEFAULT_MAX_PIXELS):
    """Everything of decoding below the neural decoder: ``(header, symbols [h, w, C])``.

    Reads and verifies the container (bytes or a path), checks the pixel
    limit and the header against ``model`` (its ``config``, ``fingerprint``
    and ``probabilities``; no TensorFlow is needed) and entropy-decodes the
    payload.  Raises only the project's errors (``BitstreamError``
    subclasses, ``ModelMismatchError``); ``TypeError`` for a wrong ``data``.
    """
    if isinstance(data, (str, os.PathLike)):
        header, payload = bitstream.read_file(data, max_pixels)
    elif isinstance(data, (bytes, bytearray, memoryview)):
        header, payload = bitstream.unpack(data)
    else:
        raise TypeError(f"data must be the bytes or the path of a .gcz file, "
                        f"got {type(data).__name__}")
    bitstream.check_pixels(header.image_height, header.image_width, max_pixels)
    _check_header(model, header)
    probabilities = model.probabilities[:header.bottleneck_channels]
    return header, decode_symbols(payload, header.bottleneck_shape, probabilities)


def decode_image(model, data, max_pixels=DEFAULT_MAX_PIXELS):
    """Decode a ``.gcz`` file -> ``(uint8 image [H, W, 3], header)``.

    ``data`` is the file's bytes or its path.  Work and memory are bounded
    before anything is allocated: a file claiming more than ``max_pixels``
    pixels raises :class:`~compression.errors.ImageTooLargeError` (``None``:
    no limit), a payload too short for the claimed size or not exactly the
    coder's stream raises :class:`~compression.errors.CorruptFileError`, and
    large images decode in tiles straight into the uint8 result.
    """
    header, symbols = read_symbols(model, data, max_pixels)
    reconstruction = model.decode(symbols, header.seed, as_uint8=True)
    image = crop_to(reconstruction, (header.image_height, header.image_width))
    return image, header


def decode(model, data, max_pixels=DEFAULT_MAX_PIXELS):
    """Decode a ``.gcz`` file (bytes or path) to a uint8 image ``[H, W, 3]``."""
    return decode_image(model, data, max_pixels)[0]


def file_stats(data, max_pixels=DEFAULT_MAX_PIXELS):
    """Header fields and rates of a ``.gcz`` file (bytes or path), without a model.

    For ``gcompress info``; a path is read with :func:`compression.bitstream.read_file`.
    """
    if isinstance(data, (str, os.PathLike)):
        header, payload = bitstream.read_file(data, max_pixels)
        data_size = header.overhead + len(payload)
    else:
        header, payload = bitstream.unpack(data)
        data_size = len(data)
    pixels = header.image_height * header.image_width
    return {
        "height": header.image_height,
        "width": header.image_width,
        "bytes": data_size,
        "bpp": 8 * data_size / pixels,
        "payload_bpp": 8 * len(payload) / pixels,
        "bound_bpp": bound_bits(header.bottleneck_shape, header.num_centers) / pixels,
        "channels": header.bottleneck_channels,
        "model": bitstream.fingerprint_hex(header.fingerprint),
        "model_name": header.model_name or "-",
        "seed": header.seed,
    }
