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
import struct

import numpy as np

from compression import bitstream
from compression.config import DOWNSAMPLING
from compression.entropy_model import bound_bits, decode_symbols, encode_symbols
from compression.errors import (
    ConfigError,
    CorruptFileError,
    ModelMismatchError,
    UnsupportedVersionError,
)
from compression.image_io import crop_to, image_from_array, pad_to_multiple, to_float
from compression.label_map import check_label_map, decode_label_map, encode_label_map
from compression.rate_control import (
    channel_choices,
    check_channels,
    choose_channels,
    file_bpp,
)

__all__ = ["EncodeResult", "encode", "decode", "encode_image", "decode_image", "read_symbols",
           "read_payload", "split_payload", "file_stats", "describe_model", "DEFAULT_MAX_PIXELS"]

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
    (all ``C`` for a fixed-rate model); ``payload_bpp`` is the entropy-coded
    bottleneck alone and ``label_bpp`` the label map a semantic model's file
    carries (0 otherwise).
    """

    data: bytes
    height: int
    width: int
    bpp: float
    payload_bpp: float
    bound_bpp: float
    channels: int = 0
    label_bpp: float = 0.0


def _default_seed(symbols):
    """A deterministic noise seed from the symbols: equal images give equal files."""
    digest = hashlib.blake2b(np.ascontiguousarray(symbols).tobytes(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & (2**63 - 1)


def encode_image(model, image, seed=None, bpp=None, channels=None, labels=None):
    """Encode ``image`` (uint8 ``[H, W, 3]`` or ``[H, W]``) -> :class:`EncodeResult`.

    ``bpp``: the whole file must be at most this many bits per pixel.  A
    variable-rate model codes the largest number of leading channels that
    fits (:func:`compression.rate_control.choose_channels`); a fixed-rate
    model codes all of them.  Either raises
    :class:`~compression.errors.RateError`, naming the achievable range, when
    even its smallest file is larger.  ``channels``: code exactly this many
    leading channels instead (one of
    :func:`~compression.rate_control.channel_choices`).  Neither: all channels.
    ``labels``: the image's label map ``[H, W]`` of class ids, required by a
    semantic model (and refused by others); the file carries it losslessly
    (:mod:`compression.label_map`) and its bytes count towards ``bpp``.
    """
    choices = channel_choices(model.config)
    if channels is not None:
        if bpp is not None:
            raise ValueError("pass bpp or channels, not both")
        check_channels(model.config, channels)
        choices = range(channels, channels + 1)
    image = image_from_array(image)
    if seed is not None and not 0 <= int(seed) < 2**64:
        raise ValueError(f"seed must be in [0, 2**64) (the file stores a u64), got {seed}")
    h, w = image.shape[:2]
    classes = model.config.semantic_classes
    label_bytes = b""
    if classes:
        if labels is None:
            raise ConfigError("this model is conditioned on semantic label maps: pass the "
                              "image's label map (--labels LABELMAP.png, labels=...)")
        label_bytes = encode_label_map(check_label_map(labels, h, w, classes))
    elif labels is not None:
        raise ConfigError("this model takes no label map (it is not a semantic model); "
                          "drop --labels")
    padded, _ = pad_to_multiple(image, DOWNSAMPLING)
    symbols = model.encode(to_float(padded))
    payloads = {}

    def code(k):
        kept = symbols[:, :, :k]
        payloads[k] = encode_symbols(kept, model.probabilities[:k])
        header = bitstream.Header(
            flags=bitstream.FLAG_SEMANTIC_MAP if classes else 0,
            fingerprint=model.fingerprint,
            image_height=h, image_width=w,
            bottleneck_channels=k,
            bottleneck_height=symbols.shape[0], bottleneck_width=symbols.shape[1],
            num_centers=model.config.num_centers,
            seed=_default_seed(kept) if seed is None else int(seed),
            model_name=getattr(model, "name", ""),
        )
        return bitstream.pack(header, _join(label_bytes, payloads[k]) if classes
                              else payloads[k])

    k, data = choose_channels(code, choices, h * w, bpp)
    pixels = h * w
    return EncodeResult(
        data=data, height=h, width=w,
        bpp=file_bpp(len(data), pixels),
        payload_bpp=file_bpp(len(payloads[k]), pixels),
        bound_bpp=bound_bits(symbols[:, :, :k].shape, model.config.num_centers) / pixels,
        channels=k,
        label_bpp=file_bpp(len(label_bytes), pixels),
    )


_LABEL_LENGTH = struct.Struct(">I")


def _join(label_bytes, symbol_bytes):
    """A semantic file's payload: u32 label-map length, the label map, the symbol stream."""
    return _LABEL_LENGTH.pack(len(label_bytes)) + label_bytes + symbol_bytes


def split_payload(header, payload):
    """``(label_map_bytes or None, symbol_stream)`` of a file's payload (see docs/format.md)."""
    if not header.flags & bitstream.FLAG_SEMANTIC_MAP:
        return None, payload
    if len(payload) < _LABEL_LENGTH.size:
        raise CorruptFileError("corrupt .gcz file: the payload is too short for its label map")
    (length,) = _LABEL_LENGTH.unpack_from(payload)
    end = _LABEL_LENGTH.size + length
    if end > len(payload):
        raise CorruptFileError(f"corrupt .gcz file: a label map of {length} bytes does not fit "
                               f"the {len(payload)}-byte payload")
    return payload[_LABEL_LENGTH.size:end], payload[end:]


def encode(model, image, seed=None, bpp=None, labels=None):
    """Encode ``image`` (uint8 ``[H, W, 3]``) to ``.gcz`` bytes; see :func:`encode_image`."""
    return encode_image(model, image, seed, bpp, labels=labels).data


def _check_header(model, header):
    cfg = model.config
    if header.flags & bitstream.FLAG_SELECTIVE_MASK:
        raise UnsupportedVersionError(
            f"the file uses an extension (flags {header.flags:#06x}: selective mask) that this "
            "version of gcompress cannot decode yet"
        )
    if header.fingerprint != model.fingerprint:
        raise ModelMismatchError(
            f"this file was written by model {describe_model(header)}, "
            f"but the loaded model is {bitstream.fingerprint_hex(model.fingerprint)} "
            f"({model.run_dir}); decode it with the model that encoded it"
        )
    # The fingerprint matched, so these can only fail for a crafted file; they
    # still bound the decoder's memory before any allocation.
    if bool(header.flags & bitstream.FLAG_SEMANTIC_MAP) != bool(cfg.semantic_classes):
        raise CorruptFileError(
            "header is inconsistent: " + ("a label map is stored, but the model takes none"
                                          if not cfg.semantic_classes else
                                          "the semantic model's label map is missing"))
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


def read_payload(model, data, max_pixels=DEFAULT_MAX_PIXELS):
    """Everything of decoding below the neural decoder: ``(header, symbols [h, w, k], labels)``.

    Reads and verifies the container (bytes or a path), checks the pixel
    limit and the header against ``model`` (its ``config``, ``fingerprint``
    and ``probabilities``; no TensorFlow is needed) and entropy-decodes the
    payload; ``labels`` is the label map ``[H, W]`` of a semantic model's
    file, else None.  Raises only the project's errors (``BitstreamError``
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
    label_bytes, payload = split_payload(header, payload)
    labels = None
    if label_bytes is not None:
        labels = decode_label_map(label_bytes, (header.image_height, header.image_width),
                                  model.config.semantic_classes)
    probabilities = model.probabilities[:header.bottleneck_channels]
    return header, decode_symbols(payload, header.bottleneck_shape, probabilities), labels


def read_symbols(model, data, max_pixels=DEFAULT_MAX_PIXELS):
    """``(header, symbols [h, w, k])`` of a file: :func:`read_payload` without the label map."""
    return read_payload(model, data, max_pixels)[:2]


def decode_image(model, data, max_pixels=DEFAULT_MAX_PIXELS):
    """Decode a ``.gcz`` file -> ``(uint8 image [H, W, 3], header)``.

    ``data`` is the file's bytes or its path.  Work and memory are bounded
    before anything is allocated: a file claiming more than ``max_pixels``
    pixels raises :class:`~compression.errors.ImageTooLargeError` (``None``:
    no limit), a payload too short for the claimed size or not exactly the
    coder's stream raises :class:`~compression.errors.CorruptFileError`, and
    large images decode in tiles straight into the uint8 result.
    """
    header, symbols, labels = read_payload(model, data, max_pixels)
    if labels is not None:
        labels = pad_to_multiple(labels, DOWNSAMPLING)[0]
    reconstruction = model.decode(symbols, header.seed, labels=labels, as_uint8=True)
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
    label_bytes, payload = split_payload(header, payload)
    return {
        "height": header.image_height,
        "width": header.image_width,
        "bytes": data_size,
        "bpp": 8 * data_size / pixels,
        "payload_bpp": 8 * len(payload) / pixels,
        "label_bpp": 8 * len(label_bytes or b"") / pixels,
        "bound_bpp": bound_bits(header.bottleneck_shape, header.num_centers) / pixels,
        "channels": header.bottleneck_channels,
        "model": bitstream.fingerprint_hex(header.fingerprint),
        "model_name": header.model_name or "-",
        "seed": header.seed,
    }
