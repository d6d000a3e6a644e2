"""The ``.gcz`` compressed-file container: header, payload, CRC32.

Layout (all integers big-endian, no padding; byte-by-byte table in
``docs/format.md``)::

    offset size field
         0    4 magic               b"\\x89GCZ"
         4    1 version             u8, this code reads/writes 1
         5    2 flags               u16 bitmask (bit 0 semantic map,
                                    bit 1 selective-compression mask,
                                    bit 2 model name, bit 3 context-coded)
         7   16 model fingerprint   raw 16-byte BLAKE2b digest
        23    4 image height        u32 >= 1
        27    4 image width         u32 >= 1
        31    2 bottleneck C        u16 >= 1
        33    2 bottleneck h        u16 >= 1
        35    2 bottleneck w        u16 >= 1
        37    1 number of centres L u8  >= 2
        38    8 noise seed          u64
        46    4 payload length N    u32
        50    n model name          only with flag bit 2: u8 length m >= 1,
                                    then m bytes of UTF-8 (n = 1 + m; else 0)
      50+n    N payload
    50+n+N    4 CRC32               u32, zlib.crc32 of bytes [0, 50+n+N)

The container knows nothing about what the payload means (the entropy coder
defines that); it only guarantees that what comes out of :func:`unpack` is
exactly what went into :func:`pack`, or raises a
:class:`~compression.errors.BitstreamError` subclass.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import operator
import os
import struct
import zlib
from collections.abc import Iterable

import numpy as np

from .errors import (
    CompressionError,
    CorruptFileError,
    ImageTooLargeError,
    NotAGczFileError,
    TruncatedFileError,
    UnsupportedVersionError,
)
from .files import open_regular, write_atomic

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "FINGERPRINT_SIZE",
    "FLAG_CONTEXT_CODED",
    "FLAG_MODEL_NAME",
    "FLAG_SELECTIVE_MASK",
    "FLAG_SEMANTIC_MAP",
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "KNOWN_FLAGS",
    "MAGIC",
    "MAX_MODEL_NAME",
    "MAX_SYMBOLS",
    "Header",
    "check_pixels",
    "max_payload_size",
    "fingerprint",
    "fingerprint_hex",
    "pack",
    "read_file",
    "unpack",
    "write_file",
]

#: First four bytes of every .gcz file.  The leading non-ASCII byte (as in
#: PNG) makes text files and 7-bit-mangled transfers fail the check at once.
MAGIC = b"\x89GCZ"
#: The only container version this code writes and reads.
FORMAT_VERSION = 1
#: Flag bit: a semantic label map is stored with the payload (reserved).
FLAG_SEMANTIC_MAP = 1 << 0
#: Flag bit: a selective-compression mask is stored with the payload (reserved).
FLAG_SELECTIVE_MASK = 1 << 1
#: Flag bit: the model's name follows the fixed header (set by ``Header.model_name``).
FLAG_MODEL_NAME = 1 << 2
#: Flag bit: the symbols are coded in context (:mod:`compression.context_model`),
#: with the model's context table instead of its per-channel distributions.
FLAG_CONTEXT_CODED = 1 << 3
#: Every flag bit this reader understands; any other bit set is rejected.
KNOWN_FLAGS = FLAG_SEMANTIC_MAP | FLAG_SELECTIVE_MASK | FLAG_MODEL_NAME | FLAG_CONTEXT_CODED
#: Longest model name a file can carry, in UTF-8 bytes.
MAX_MODEL_NAME = 255
#: Length of the model fingerprint in bytes.
FINGERPRINT_SIZE = 16
#: Default limit on the pixels (H * W) a file may claim: see :func:`check_pixels`.
DEFAULT_MAX_PIXELS = 2**24
#: Upper bound on h * w * C.  It keeps a corrupt (or hostile) header from
#: making the decoder allocate absurd memory: the u16 fields alone would allow
#: 2**48 symbols.  2**31 int32 symbols is 8 GiB, far beyond any real image.
MAX_SYMBOLS = 2**31

# magic, version, flags, fingerprint, H, W, C, h, w, L, seed, payload length
_HEADER = struct.Struct(">4sBH16sIIHHHBQI")
_CRC = struct.Struct(">I")
#: Size of the fixed header in bytes (everything before the payload).
HEADER_SIZE = _HEADER.size
_MAX_PAYLOAD = 2**32 - 1


def _check_int(name: str, value: object, low: int, high: int) -> int:
    """Return ``value`` as a Python int in ``[low, high]``.

    Raises TypeError for non-integers and ValueError when out of range; both
    messages name the field.
    """
    # bool is an int subclass, but True as a height is surely a bug.
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None
    if not low <= number <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {number}")
    return number


@dataclasses.dataclass(frozen=True)
class Header:
    """Everything a decoder needs besides the payload and the model weights.

    Construction validates every field (``ValueError`` naming the field when
    out of range, ``TypeError`` when not an integer / bytes), so a
    ``Header`` always fits the on-disk integer widths.  Integer-like values
    (e.g. numpy ints) are normalised to ``int``; ``fingerprint`` to ``bytes``.

    Attributes:
        fingerprint: 16-byte digest of the model that wrote the file
            (see :func:`fingerprint`).
        image_height: original image height ``H`` in pixels, u32 >= 1.
        image_width: original image width ``W`` in pixels, u32 >= 1.
        bottleneck_channels: ``C``, u16 >= 1.
        bottleneck_height: ``h``, u16 >= 1.
        bottleneck_width: ``w``, u16 >= 1.
        num_centers: quantiser centres ``L``, u8 >= 2.
        seed: seed of the generator's noise, u64.
        flags: bitmask of ``FLAG_*`` values (only :data:`KNOWN_FLAGS` allowed).
            :data:`FLAG_MODEL_NAME` follows ``model_name`` (it is set for you).
        version: container format version; must be :data:`FORMAT_VERSION`.
        model_name: the name of the model that wrote the file (e.g. a shipped
            model's, ``"street"``), at most :data:`MAX_MODEL_NAME` UTF-8 bytes
            of printable text; ``""``: none (the fingerprint identifies the
            model either way; the name says which one to get).
    """

    fingerprint: bytes
    image_height: int
    image_width: int
    bottleneck_channels: int
    bottleneck_height: int
    bottleneck_width: int
    num_centers: int
    seed: int
    flags: int = 0
    version: int = FORMAT_VERSION
    model_name: str = ""

    def __post_init__(self) -> None:
        """Validate and normalise the fields (frozen, hence ``object.__setattr__``)."""
        try:
            digest = bytes(self.fingerprint)
        except TypeError:
            raise TypeError(
                f"fingerprint must be bytes, got {type(self.fingerprint).__name__}"
            ) from None
        if len(digest) != FINGERPRINT_SIZE:
            raise ValueError(
                f"fingerprint must be {FINGERPRINT_SIZE} bytes, got {len(digest)}"
            )
        object.__setattr__(self, "fingerprint", digest)

        limits = {
            "image_height": (1, 2**32 - 1),
            "image_width": (1, 2**32 - 1),
            "bottleneck_channels": (1, 2**16 - 1),
            "bottleneck_height": (1, 2**16 - 1),
            "bottleneck_width": (1, 2**16 - 1),
            "num_centers": (2, 2**8 - 1),
            "seed": (0, 2**64 - 1),
            "flags": (0, 2**16 - 1),
            "version": (1, 2**8 - 1),
        }
        for name, (low, high) in limits.items():
            object.__setattr__(self, name, _check_int(name, getattr(self, name), low, high))

        if self.version != FORMAT_VERSION:
            raise ValueError(
                f"version must be {FORMAT_VERSION} (the only format this code "
                f"writes), got {self.version}"
            )
        if self.flags & ~KNOWN_FLAGS:
            raise ValueError(
                f"flags has unknown bits set: 0x{self.flags:04x} "
                f"(known mask 0x{KNOWN_FLAGS:04x})"
            )
        name = self.model_name
        if not isinstance(name, str):
            raise TypeError(f"model_name must be a str, got {type(name).__name__}")
        if len(name.encode("utf-8", "surrogatepass")) > MAX_MODEL_NAME or not name.isprintable():
            raise ValueError(
                f"model_name must be printable text of at most {MAX_MODEL_NAME} UTF-8 bytes, "
                f"got {name!r}")
        if name:
            object.__setattr__(self, "flags", self.flags | FLAG_MODEL_NAME)
        elif self.flags & FLAG_MODEL_NAME:
            raise ValueError("flags has the model-name bit set but model_name is empty")
        symbols = self.bottleneck_height * self.bottleneck_width * self.bottleneck_channels
        if symbols > MAX_SYMBOLS:
            raise ValueError(
                f"bottleneck_height * bottleneck_width * bottleneck_channels = "
                f"{symbols} exceeds the maximum of {MAX_SYMBOLS} symbols"
            )

    @property
    def overhead(self) -> int:
        """Bytes of a file besides the payload: fixed header, model-name field and CRC."""
        name = len(self.model_name.encode("utf-8"))
        return HEADER_SIZE + (1 + name if name else 0) + _CRC.size

    @property
    def bottleneck_shape(self) -> tuple[int, int, int]:
        """Shape ``(h, w, C)`` of the symbol map, as the entropy coder wants it."""
        return (self.bottleneck_height, self.bottleneck_width, self.bottleneck_channels)


def pack(header: Header, payload: bytes) -> bytes:
    """Serialise a header and payload into the bytes of a ``.gcz`` file.

    Args:
        header: a validated :class:`Header`.
        payload: opaque bytes (the entropy-coded symbols), at most 2**32-1.

    Returns:
        ``HEADER_SIZE + len(payload) + 4`` bytes, plus ``1 + len(name)``
        for a ``model_name``.

    Raises:
        ValueError: the payload is too long.
        TypeError: ``header`` is not a :class:`Header`.
    """
    if not isinstance(header, Header):
        raise TypeError(f"header must be a Header, got {type(header).__name__}")
    payload = bytes(payload)
    if len(payload) > _MAX_PAYLOAD:
        raise ValueError(f"payload is {len(payload)} bytes; the maximum is {_MAX_PAYLOAD}")
    head = _HEADER.pack(
        MAGIC,
        header.version,
        header.flags,
        header.fingerprint,
        header.image_height,
        header.image_width,
        header.bottleneck_channels,
        header.bottleneck_height,
        header.bottleneck_width,
        header.num_centers,
        header.seed,
        len(payload),
    )
    if header.model_name:
        name = header.model_name.encode("utf-8")
        head += bytes([len(name)]) + name
    body = head + payload
    return body + _CRC.pack(zlib.crc32(body))


def unpack(data: bytes) -> tuple[Header, bytes]:
    """Parse and verify the bytes of a ``.gcz`` file.

    Checks, in this order (the first failure wins): magic, version, length,
    CRC32, trailing bytes, flags, field bounds.  Version comes before length
    and CRC because a future version may lay out the rest differently.

    Args:
        data: the whole file.

    Returns:
        ``(header, payload)``.

    Raises:
        TruncatedFileError: ``data`` is a proper prefix of a file.
        NotAGczFileError: ``data`` does not start with :data:`MAGIC`.
        UnsupportedVersionError: version other than 1, or unknown flag bits.
        CorruptFileError: CRC mismatch, trailing bytes, or a field out of
            bounds.
    """
    data = bytes(data)
    found = len(data)
    if found < len(MAGIC):
        if MAGIC.startswith(data):
            raise TruncatedFileError(
                f"truncated .gcz file: {found} bytes, too short even for the "
                f"{len(MAGIC)}-byte magic number"
            )
        raise NotAGczFileError("not a .gcz file: it does not start with the GCZ magic number")
    if data[: len(MAGIC)] != MAGIC:
        raise NotAGczFileError("not a .gcz file: it does not start with the GCZ magic number")
    if found < len(MAGIC) + 1:
        raise TruncatedFileError(
            f"truncated .gcz file: expected at least {HEADER_SIZE} bytes for the "
            f"header, found {found}"
        )
    version = data[len(MAGIC)]
    if version != FORMAT_VERSION:
        newer = " (written by a newer version of this software?)" if version > 1 else ""
        raise UnsupportedVersionError(
            f"unsupported .gcz format version {version}{newer}: this reader "
            f"supports version {FORMAT_VERSION}"
        )
    if found < HEADER_SIZE:
        raise TruncatedFileError(
            f"truncated .gcz file: expected at least {HEADER_SIZE} bytes for the "
            f"header, found {found}"
        )

    fields = _HEADER.unpack_from(data)
    payload_length = fields[-1]
    if fields[2] & ~KNOWN_FLAGS and found >= HEADER_SIZE + _CRC.size and (
            _CRC.unpack_from(data, found - _CRC.size)[0]
            == zlib.crc32(memoryview(data)[:found - _CRC.size])):
        # Intact, with flags this reader does not know: a newer writer, whose
        # layout after the fixed header may differ, so nothing else is checked.
        raise _unknown_flags(fields[2])
    head = HEADER_SIZE + _name_size(fields[2], data)
    expected = head + payload_length + _CRC.size
    if found < expected:
        raise TruncatedFileError(
            f"truncated .gcz file: expected {expected} bytes (header {head} + "
            f"payload {payload_length} + CRC {_CRC.size}), found {found}"
        )
    body_end = head + payload_length
    (stored_crc,) = _CRC.unpack_from(data, body_end)
    computed_crc = zlib.crc32(memoryview(data)[:body_end])
    if stored_crc != computed_crc:
        raise CorruptFileError(
            f"corrupt .gcz file: CRC32 mismatch (stored {stored_crc:08x}, "
            f"computed {computed_crc:08x})"
        )
    if found > expected:
        raise CorruptFileError(
            f"corrupt .gcz file: {found - expected} unexpected bytes after the "
            f"CRC (expected {expected} bytes, found {found})"
        )

    (_, _, flags, digest, height, width, channels, b_height, b_width,
     centers, seed, _) = fields
    # A valid CRC with unknown flags means a newer writer, not corruption.
    if flags & ~KNOWN_FLAGS:
        raise _unknown_flags(flags)
    name = b""
    if flags & FLAG_MODEL_NAME:
        name = data[HEADER_SIZE + 1:head]
    try:
        header = Header(
            model_name=name.decode("utf-8"),
            fingerprint=digest,
            image_height=height,
            image_width=width,
            bottleneck_channels=channels,
            bottleneck_height=b_height,
            bottleneck_width=b_width,
            num_centers=centers,
            seed=seed,
            flags=flags,
            version=version,
        )
    except ValueError as exc:  # UnicodeDecodeError included
        raise CorruptFileError(f"corrupt .gcz file: {exc}") from exc
    return header, data[head:body_end]


def _unknown_flags(flags: int) -> UnsupportedVersionError:
    return UnsupportedVersionError(
        f"unsupported .gcz file: flags 0x{flags:04x} use bits this reader "
        f"does not know (it knows 0x{KNOWN_FLAGS:04x})"
    )


def _name_size(flags: int, data: bytes) -> int:
    """Bytes of the model-name field after the fixed header: 0, or 1 + its length byte.

    Raises TruncatedFileError when ``data`` ends before the length byte, and
    CorruptFileError for a zero length (a writer never stores an empty name).
    """
    if not flags & FLAG_MODEL_NAME:
        return 0
    if len(data) <= HEADER_SIZE:
        raise TruncatedFileError(
            f"truncated .gcz file: it ends before its model name at byte {HEADER_SIZE}")
    if data[HEADER_SIZE] == 0:
        raise CorruptFileError("corrupt .gcz file: the model-name flag is set with an empty name")
    return 1 + data[HEADER_SIZE]


def check_pixels(height: int, width: int, max_pixels: int | None) -> None:
    """Raise :class:`ImageTooLargeError` if ``height * width`` exceeds ``max_pixels``.

    ``max_pixels=None`` disables the limit.  Like Pillow's decompression-bomb
    guard, the limit stops a small file from claiming an image so large that
    decoding it would exhaust time or memory (the default,
    :data:`DEFAULT_MAX_PIXELS`, is 2**24 = 16.8 Mpixel, e.g. 4096x4096: any
    12-Mpixel phone photo, any 4K frame; decoding that size peaks at about
    1 GiB with a width-0.25 model, see docs/reliability.md).
    """
    if max_pixels is not None and height * width > max_pixels:
        raise ImageTooLargeError(
            f"the file claims a {width}x{height} image ({height * width} pixels), more than "
            f"the decoding limit of {max_pixels} pixels; if you trust the file, raise the "
            f"limit with --max-pixels (max_pixels=...)"
        )


def max_payload_size(bottleneck_shape: tuple[int, int, int]) -> int:
    """The longest payload an entropy coder can produce for ``(h, w, C)`` symbols.

    No symbol costs more than 32 bits (the coder's probabilities have 24-bit
    precision), plus the coder's final words.
    """
    symbols = 1
    for size in bottleneck_shape:
        symbols *= int(size)
    return 4 * symbols + 16


def read_file(
    path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> tuple[Header, bytes]:
    """Read and verify a ``.gcz`` file; see :func:`unpack`.

    Reads only regular files (a FIFO or device is refused, never waited on),
    the header first: a file claiming more than ``max_pixels`` pixels (see
    :func:`check_pixels`) or a payload longer than any coder writes for its
    bottleneck is refused before its payload is read, so nothing is ever read
    beyond the size a valid file of the claimed image can have.

    Raises:
        CompressionError: the file cannot be opened or read (missing, a
            directory, a FIFO, no permission, ...).
        ImageTooLargeError: the claimed size exceeds ``max_pixels``.
        BitstreamError: a subclass, from :func:`unpack`.
    """
    path = os.fspath(path)
    handle, _ = open_regular(path, ".gcz file")
    try:
        with handle:
            data = handle.read(HEADER_SIZE)
            if len(data) == HEADER_SIZE and data[:len(MAGIC)] == MAGIC and (
                    data[len(MAGIC)] == FORMAT_VERSION):
                fields = _HEADER.unpack(data)
                height, width, channels, b_height, b_width = fields[4:9]
                check_pixels(height, width, max_pixels)
                if fields[-1] > max_payload_size((b_height, b_width, channels)):
                    raise CorruptFileError(
                        f"corrupt .gcz file: a payload of {fields[-1]} bytes is longer than "
                        f"any coder writes for a {b_height}x{b_width}x{channels} bottleneck"
                    )
                if fields[2] & FLAG_MODEL_NAME:
                    data += handle.read(1)
                    if len(data) > HEADER_SIZE:
                        data += handle.read(data[HEADER_SIZE])
                # One byte more than the file should have, so unpack sees trailing bytes.
                data += handle.read(fields[-1] + _CRC.size + 1)
    except OSError as exc:
        raise CompressionError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return unpack(data)


def write_file(
    path: str | os.PathLike, header: Header, payload: bytes, overwrite: bool = False
) -> None:
    """Write a ``.gcz`` file atomically, never clobbering without ``overwrite``.

    See :func:`compression.files.write_atomic` (temporary file, fsync,
    atomic no-clobber move, no debris, no symlink followed).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false; the
            message mentions ``--force``.
        CompressionError: the destination cannot be written (missing
            directory, no permission, is a directory, disk full, ...).
        ValueError, TypeError: from :func:`pack`.
    """
    write_atomic(path, pack(header, payload), overwrite=overwrite)


def fingerprint(config_json: str, arrays: Iterable[np.ndarray]) -> bytes:
    """16-byte BLAKE2b digest identifying a model's decoding behaviour.

    The config is re-serialised canonically (sorted keys, no whitespace) so
    formatting differences do not change the digest.  Each array contributes
    its dtype (forced little-endian, so the digest is the same on any host),
    its shape and its raw C-order bytes, each length-prefixed so that
    different splits of the same bytes cannot collide.

    Args:
        config_json: the model configuration as a JSON string.
        arrays: the decoder-side weight arrays, in a fixed order.

    Returns:
        ``FINGERPRINT_SIZE`` (16) raw bytes.

    Raises:
        ValueError: invalid JSON, or an array of object dtype.
    """
    try:
        config = json.loads(config_json)
    except (TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"config_json is not valid JSON: {exc}") from exc
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    digest = hashlib.blake2b(digest_size=FINGERPRINT_SIZE, person=b"gcz-model-v1")

    def feed(chunk: bytes) -> None:
        digest.update(struct.pack(">Q", len(chunk)))
        digest.update(chunk)

    feed(canonical.encode("ascii"))
    for index, value in enumerate(arrays):
        array = np.asarray(value)
        if array.dtype.hasobject:
            raise ValueError(f"arrays[{index}] has object dtype; cannot fingerprint it")
        array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        feed(array.dtype.str.encode("ascii"))
        feed(struct.pack(f">{array.ndim}Q", *array.shape))
        feed(array.tobytes())
    return digest.digest()


def fingerprint_hex(fp: bytes) -> str:
    """Lower-case hex of a fingerprint, for error messages (32 characters)."""
    return bytes(fp).hex()
