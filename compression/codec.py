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

import numpy as np

from compression import bitstream
from compression.encoder import DOWNSAMPLING
from compression.entropy_model import bound_bits, decode_symbols, encode_symbols
from compression.errors import CorruptFileError, ModelMismatchError, UnsupportedVersionError
from compression.image_io import crop_to, image_from_array, pad_to_multiple, to_float, to_uint8

__all__ = ["EncodeResult", "encode", "decode", "encode_image", "decode_image", "file_stats"]


@dataclasses.dataclass(frozen=True)
class EncodeResult:
    """An encoded image: the file ``data`` and its rate figures.

    ``bpp`` is the whole file (header and CRC included) in bits per pixel of
    the original image; ``bound_bpp`` is ``C log2(L) / 256`` scaled to the
    padded size, the rate a coder without an entropy model would reach.
    """

    data: bytes
    height: int
    width: int
    bpp: float
    payload_bpp: float
    bound_bpp: float


def _default_seed(symbols):
    """A deterministic noise seed from the symbols: equal images give equal files."""
    digest = hashlib.blake2b(np.ascontiguousarray(symbols).tobytes(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & (2**63 - 1)


def encode_image(model, image, seed=None):
    """Encode ``image`` (uint8 ``[H, W, 3]`` or ``[H, W]``) -> :class:`EncodeResult`."""
    image = image_from_array(image)
    if model.config.semantic_classes:
        raise UnsupportedVersionError(
            "this model is conditioned on semantic label maps; the .gcz format does not "
            "carry label maps yet, so it cannot code files"
        )
    h, w = image.shape[:2]
    padded, _ = pad_to_multiple(image, DOWNSAMPLING)
    symbols = model.encode(to_float(padded))
    if seed is None:
        seed = _default_seed(symbols)
    if not 0 <= int(seed) < 2**63:
        raise ValueError(f"seed must be in [0, 2**63), got {seed}")
    payload = encode_symbols(symbols, model.probabilities)
    header = bitstream.Header(
        fingerprint=model.fingerprint,
        image_height=h, image_width=w,
        bottleneck_channels=symbols.shape[2],
        bottleneck_height=symbols.shape[0], bottleneck_width=symbols.shape[1],
        num_centers=model.config.num_centers,
        seed=int(seed),
    )
    data = bitstream.pack(header, payload)
    pixels = h * w
    return EncodeResult(
        data=data, height=h, width=w,
        bpp=8 * len(data) / pixels,
        payload_bpp=8 * len(payload) / pixels,
        bound_bpp=bound_bits(symbols.shape, model.config.num_centers) / pixels,
    )


def encode(model, image, seed=None):
    """Encode ``image`` (uint8 ``[H, W, 3]``) to the bytes of a ``.gcz`` file."""
    return encode_image(model, image, seed).data


def _check_header(model, header):
    cfg = model.config
    if header.flags:
        raise UnsupportedVersionError(
            f"the file uses extensions (flags {header.flags:#06x}: semantic map / selective "
            "mask) that this version of gcompress cannot decode yet"
        )
    if header.fingerprint != model.fingerprint:
        raise ModelMismatchError(
            f"this file was written by model {bitstream.fingerprint_hex(header.fingerprint)}, "
            f"but the loaded model is {bitstream.fingerprint_hex(model.fingerprint)} "
            f"({model.run_dir}); decode it with the model that encoded it"
        )
    # The fingerprint matched, so these can only fail for a crafted file; they
    # still bound the decoder's memory before any allocation.
    expected = (
        math.ceil(header.image_height / DOWNSAMPLING),
        math.ceil(header.image_width / DOWNSAMPLING),
        cfg.channels,
    )
    if header.bottleneck_shape != expected or header.num_centers != cfg.num_centers:
        raise CorruptFileError(
            f"header is inconsistent: bottleneck {header.bottleneck_shape} with "
            f"{header.num_centers} centres for a {header.image_height}x{header.image_width} "
            f"image; the model expects {expected} with {cfg.num_centers} centres"
        )


def decode_image(model, data):
    """Decode ``.gcz`` bytes -> ``(uint8 image [H, W, 3], header)``."""
    header, payload = bitstream.unpack(data)
    _check_header(model, header)
    symbols = decode_symbols(payload, header.bottleneck_shape, model.probabilities)
    reconstruction = model.decode(symbols, header.seed)
    image = crop_to(to_uint8(reconstruction), (header.image_height, header.image_width))
    return image, header


def decode(model, data):
    """Decode the bytes of a ``.gcz`` file to a uint8 image ``[H, W, 3]``."""
    return decode_image(model, data)[0]


def file_stats(data):
    """Header fields and rates of ``.gcz`` bytes, without a model (for ``gcompress info``)."""
    header, payload = bitstream.unpack(data)
    pixels = header.image_height * header.image_width
    return {
        "height": header.image_height,
        "width": header.image_width,
        "bytes": len(data),
        "bpp": 8 * len(data) / pixels,
        "payload_bpp": 8 * len(payload) / pixels,
        "bound_bpp": bound_bits(header.bottleneck_shape, header.num_centers) / pixels,
        "model": bitstream.fingerprint_hex(header.fingerprint),
        "seed": header.seed,
    }
