"""The ``.gcz`` compressed-file container: header, payload, CRC32.

Version 2 (written since 2026-12; byte-by-byte table in ``docs/format.md``)
spends 23-26 bytes besides the payload and the model's name, where version 1
spent 54: integers are unsigned LEB128 varints, the bottleneck size follows
from the image size, the model fingerprint is cut to its first 8 bytes and a
default noise seed is not stored (the decoder derives it from the symbols).
Files written since 2026-12-05 spend 6 more on a colour correction (flag
bit 5; :mod:`compression.correction`)::

    size  field
       4  magic               b"\x89GCZ"
       1  version             u8: 2
     1-3  flags               varint bitmask (bit 0 semantic map, bit 1
                              selective mask, bit 2 model name, bit 3
                              context-coded, bit 4 seed stored, bit 5
                              colour correction, bit 6 partial channel,
                              bit 7 rate position, bits 8 and 9 the
                              last rows / columns not coded)
       8  model fingerprint   the first 8 bytes of the 16-byte digest
     1-5  image height H      varint >= 1
     1-5  image width W       varint >= 1
     1-3  bottleneck C        varint >= 1 (h = ceil(H/16), w = ceil(W/16))
       1  centres L           u8 >= 2
     1-3  last channel rows   varint, only with flag bit 6: the payload codes
                              this many leading rows (1 .. h-1) of channel C
       1  rate position       u8, only with flag bit 7: where between its
                              trained rate weights a rate-adaptive model
                              coded the file (compression.gain)
    1-10  noise seed          varint, only with flag bit 4
       6  colour correction   only with flag bit 5: 3 u8 means, 3 u8 gains
       n  model name          only with flag bit 2: u8 length m >= 1, m bytes
     1-5  payload length N    varint
       N  payload
       4  CRC32               u32 big-endian, zlib.crc32 of all bytes before it

Version 1 files (a fixed 50-byte big-endian header: the full fingerprint,
u32 sizes, the bottleneck's h and w, a u64 seed, a u32 payload length) are
read as before, and written when ``Header(version=1)`` asks for it.

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
    "BOTTLENECK_STRIDE",
    "CORRECTION_SIZE",
    "DEFAULT_MAX_PIXELS",
    "FILE_FINGERPRINT_SIZE",
    "FINGERPRINT_SIZE",
    "FLAG_COLOR_CORRECTION",
    "FLAG_CONTEXT_CODED",
    "FLAG_EXPLICIT_SEED",
    "FLAG_EXTENDED_COLUMNS",
    "FLAG_EXTENDED_ROWS",
    "FLAG_MODEL_NAME",
    "FLAG_PARTIAL_CHANNEL",
    "FLAG_RATE_POSITION",
    "FLAG_SELECTIVE_MASK",
    "FLAG_SEMANTIC_MAP",
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "KNOWN_FLAGS",
    "MAGIC",
    "MAX_MODEL_NAME",
    "MAX_SYMBOLS",
    "READ_VERSIONS",
    "Header",
    "bottleneck_size",
    "check_pixels",
    "fingerprint",
    "fingerprint_hex",
    "max_payload_size",
    "pack",
    "read_file",
    "unpack",
    "write_file",
]

#: First four bytes of every .gcz file.  The leading non-ASCII byte (as in
#: PNG) makes text files and 7-bit-mangled transfers fail the check at once.
MAGIC = b"\x89GCZ"
#: The container version this code writes (by default; it also writes version 1).
FORMAT_VERSION = 2
#: The container versions this code reads.
READ_VERSIONS = (1, 2)
#: Flag bit: a semantic label map is stored with the payload (reserved).
FLAG_SEMANTIC_MAP = 1 << 0
#: Flag bit: a selective-compression mask is stored with the payload (reserved).
FLAG_SELECTIVE_MASK = 1 << 1
#: Flag bit: the model's name follows the fixed header (set by ``Header.model_name``).
FLAG_MODEL_NAME = 1 << 2
#: Flag bit: the symbols are coded in context (:mod:`compression.context_model`),
#: with the model's context table instead of its per-channel distributions.
FLAG_CONTEXT_CODED = 1 << 3
#: Flag bit (version 2): the noise seed is stored.  Without it the decoder
#: derives the seed from the decoded symbols (``codec.default_seed``), as the
#: encoder did; version 1 always stores the seed and never sets this bit.
FLAG_EXPLICIT_SEED = 1 << 4
#: Flag bit (version 2): a colour correction follows the seed
#: (:mod:`compression.correction`), which the decoder applies to its output.
FLAG_COLOR_CORRECTION = 1 << 5
#: Flag bit (version 2): the payload codes only the leading ``last_channel_rows``
#: rows of the last channel (a file that fills its rate budget with part of
#: one more channel, :mod:`compression.rate_control`); the rest is filled as a
#: dropped channel's.
FLAG_PARTIAL_CHANNEL = 1 << 6
#: Flag bit (version 2): a rate-adaptive model coded the payload at the rate
#: position in the header's ``rate_position`` byte (:mod:`compression.gain`).
FLAG_RATE_POSITION = 1 << 7
#: Flag bit (version 2): the bottleneck codes ``floor(H / 16)`` rows instead of
#: ``ceil(H / 16)``: the image's last ``H mod 16`` rows are not coded, and the
#: decoder repeats the decoded picture's last row into them.  A padded block
#: row that holds one or two of the image's rows costs as many bits as any
#: other (for a 481x321 photograph, 8% of the file), so the encoder leaves
#: such rows out and spends those bits on the rest.
FLAG_EXTENDED_ROWS = 1 << 8
#: Flag bit (version 2): as :data:`FLAG_EXTENDED_ROWS`, for the last ``W mod 16``
#: columns (``floor(W / 16)`` bottleneck columns).
FLAG_EXTENDED_COLUMNS = 1 << 9
#: Bytes of the colour correction: each channel's mean, then its gain.
CORRECTION_SIZE = 6
_V1_FLAGS = FLAG_SEMANTIC_MAP | FLAG_SELECTIVE_MASK | FLAG_MODEL_NAME | FLAG_CONTEXT_CODED
#: Every flag bit this reader understands; any other bit set is rejected.
KNOWN_FLAGS = (_V1_FLAGS | FLAG_EXPLICIT_SEED | FLAG_COLOR_CORRECTION | FLAG_PARTIAL_CHANNEL
               | FLAG_RATE_POSITION | FLAG_EXTENDED_ROWS | FLAG_EXTENDED_COLUMNS)
#: Longest model name a file can carry, in UTF-8 bytes.
MAX_MODEL_NAME = 255
#: Length of the model fingerprint in bytes.
FINGERPRINT_SIZE = 16
#: Bytes of the fingerprint a file stores, by version: version 2 keeps the
#: first 8 (64 bits tell models apart; the header is not a signature).
FILE_FINGERPRINT_SIZE = {1: 16, 2: 8}
#: Pixels per bottleneck cell along each axis: version 2 derives the
#: bottleneck's ``h = ceil(H / 16)`` and ``w = ceil(W / 16)`` from the image size.
BOTTLENECK_STRIDE = 16


def bottleneck_size(image_height: int, image_width: int, flags: int = 0) -> tuple[int, int]:
    """``(h, w)`` of the bottleneck of an ``image_height x image_width`` image:
    ``ceil(H / 16)``, ``ceil(W / 16)`` (the encoder pads to a multiple of 16),
    or ``floor`` along an axis whose ``FLAG_EXTENDED_*`` bit ``flags`` sets."""
    def cells(size, extended):
        return size // BOTTLENECK_STRIDE if extended else -(-size // BOTTLENECK_STRIDE)

    return (cells(image_height, flags & FLAG_EXTENDED_ROWS),
            cells(image_width, flags & FLAG_EXTENDED_COLUMNS))


#: Default limit on the pixels (H * W) a file may claim: see :func:`check_pixels`.
DEFAULT_MAX_PIXELS = 2**24
#: Upper bound on h * w * C.  It keeps a corrupt (or hostile) header from
#: making the decoder allocate absurd memory: the u16 fields alone would allow
#: 2**48 symbols.  2**31 int32 symbols is 8 GiB, far beyond any real image.
MAX_SYMBOLS = 2**31

# magic, version, flags, fingerprint, H, W, C, h, w, L, seed, payload length
_HEADER = struct.Struct(">4sBH16sIIHHHBQI")
_CRC = struct.Struct(">I")
#: Size of version 1's fixed header in bytes (everything before the name and payload).
HEADER_SIZE = _HEADER.size
_MAX_PAYLOAD = 2**32 - 1
_MAX_VARINT = 10  # bytes of a u64
# The longest version 2 header: magic, version, flags, fingerprint, H, W, C, L,
# rows, rate position, seed, correction, name, payload length.
_V2_MAX_HEADER = (4 + 1 + 3 + 8 + 5 + 5 + 3 + 1 + 3 + 1 + _MAX_VARINT + CORRECTION_SIZE + 1
                  + MAX_MODEL_NAME + 5)


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
        fingerprint: digest of the model that wrote the file (see
            :func:`fingerprint`): 16 bytes in version 1; version 2 keeps the
            first 8 (given 16, it cuts them).
        image_height: original image height ``H`` in pixels, u32 >= 1.
        image_width: original image width ``W`` in pixels, u32 >= 1.
        bottleneck_channels: ``C``, u16 >= 1.
        bottleneck_height: ``h``, u16 >= 1; in version 2 ``ceil(H / 16)``, or
            ``floor(H / 16) >= 1`` (the image's last ``H mod 16`` rows not coded:
            :data:`FLAG_EXTENDED_ROWS` follows it).
        bottleneck_width: ``w``, u16 >= 1; in version 2 ``ceil(W / 16)``, or
            ``floor(W / 16) >= 1`` (:data:`FLAG_EXTENDED_COLUMNS` follows it).
        num_centers: quantiser centres ``L``, u8 >= 2.
        seed: seed of the generator's noise, u64; in version 2 ``None``
            means "not stored: the one the codec derives from the symbols".
        flags: bitmask of ``FLAG_*`` values (only :data:`KNOWN_FLAGS` allowed).
            :data:`FLAG_MODEL_NAME` follows ``model_name`` and
            :data:`FLAG_EXPLICIT_SEED` follows ``seed`` and
            :data:`FLAG_COLOR_CORRECTION` follows ``correction`` (they are
            set for you).
        version: container format version, 2 (:data:`FORMAT_VERSION`) or 1.
        model_name: the name of the model that wrote the file (e.g. a shipped
            model's, ``"street"``), at most :data:`MAX_MODEL_NAME` UTF-8 bytes
            of printable text; ``""``: none (the fingerprint identifies the
            model either way; the name says which one to get).
        correction: version 2: the :data:`CORRECTION_SIZE` bytes of a colour
            correction (:mod:`compression.correction`), or None.
        last_channel_rows: version 2: the payload codes only this many leading
            rows (``1 .. bottleneck_height - 1``) of the last channel, or None
            (all; :data:`FLAG_PARTIAL_CHANNEL` follows it).
        rate_position: version 2: the byte of a rate-adaptive model's rate
            position (0-255, :mod:`compression.gain`), or None (a model of one
            rate; :data:`FLAG_RATE_POSITION` follows it).
    """

    fingerprint: bytes
    image_height: int
    image_width: int
    bottleneck_channels: int
    bottleneck_height: int
    bottleneck_width: int
    num_centers: int
    seed: int | None
    flags: int = 0
    version: int = FORMAT_VERSION
    model_name: str = ""
    correction: bytes | None = None
    last_channel_rows: int | None = None
    rate_position: int | None = None

    def __post_init__(self) -> None:
        """Validate and normalise the fields (frozen, hence ``object.__setattr__``)."""
        try:
            digest = bytes(self.fingerprint)
        except TypeError:
            raise TypeError(
                f"fingerprint must be bytes, got {type(self.fingerprint).__name__}"
            ) from None
        version = _check_int("version", self.version, 1, 2**8 - 1)
        if version not in READ_VERSIONS:
            raise ValueError(f"version must be 2 or 1, got {version}")
        stored = FILE_FINGERPRINT_SIZE[version]
        if len(digest) not in (stored, FINGERPRINT_SIZE):
            raise ValueError(
                f"fingerprint must be {FINGERPRINT_SIZE} bytes, got {len(digest)}"
            )
        object.__setattr__(self, "fingerprint", digest[:stored])
        object.__setattr__(self, "version", version)
        if self.seed is None and version == 1:
            raise ValueError("seed is required: version 1 files store it")
        if self.last_channel_rows is not None and version == 1:
            raise ValueError("version 1 files code whole channels (no last_channel_rows)")
        if self.rate_position is not None and version == 1:
            raise ValueError("version 1 files have no rate position")

        limits = {
            "image_height": (1, 2**32 - 1),
            "image_width": (1, 2**32 - 1),
            "bottleneck_channels": (1, 2**16 - 1),
            "bottleneck_height": (1, 2**16 - 1),
            "bottleneck_width": (1, 2**16 - 1),
            "num_centers": (2, 2**8 - 1),
            "seed": (0, 2**64 - 1),
            "flags": (0, 2**16 - 1),
        }
        for name, (low, high) in limits.items():
            if name == "seed" and self.seed is None:
                continue
            object.__setattr__(self, name, _check_int(name, getattr(self, name), low, high))

        known = KNOWN_FLAGS if version == 2 else _V1_FLAGS
        if self.flags & ~known:
            raise ValueError(
                f"flags has unknown bits set: 0x{self.flags:04x} "
                f"(known mask 0x{known:04x} in version {version})"
            )
        if version == 2:
            if self.seed is not None:
                object.__setattr__(self, "flags", self.flags | FLAG_EXPLICIT_SEED)
            elif self.flags & FLAG_EXPLICIT_SEED:
                raise ValueError("flags has the stored-seed bit set but seed is None")
            if self.correction is not None:
                object.__setattr__(self, "flags", self.flags | FLAG_COLOR_CORRECTION)
            elif self.flags & FLAG_COLOR_CORRECTION:
                raise ValueError("flags has the colour-correction bit set but correction is None")
            if self.last_channel_rows is not None:
                object.__setattr__(self, "last_channel_rows", _check_int(
                    "last_channel_rows", self.last_channel_rows, 1,
                    self.bottleneck_height - 1))
                object.__setattr__(self, "flags", self.flags | FLAG_PARTIAL_CHANNEL)
            elif self.flags & FLAG_PARTIAL_CHANNEL:
                raise ValueError("flags has the partial-channel bit set but "
                                 "last_channel_rows is None")
            if self.rate_position is not None:
                object.__setattr__(self, "rate_position", _check_int(
                    "rate_position", self.rate_position, 0, 2**8 - 1))
                object.__setattr__(self, "flags", self.flags | FLAG_RATE_POSITION)
            elif self.flags & FLAG_RATE_POSITION:
                raise ValueError("flags has the rate-position bit set but rate_position is None")
            self._derive_extension()
        if self.correction is not None:
            if version == 1:
                raise ValueError("version 1 files carry no colour correction")
            try:
                correction = bytes(self.correction)
            except TypeError:
                raise TypeError(f"correction must be bytes, got "
                                f"{type(self.correction).__name__}") from None
            if len(correction) != CORRECTION_SIZE:
                raise ValueError(f"correction must be {CORRECTION_SIZE} bytes, "
                                 f"got {len(correction)}")
            object.__setattr__(self, "correction", correction)
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

    def _derive_extension(self) -> None:
        """Version 2: set the ``FLAG_EXTENDED_*`` bits from the bottleneck's size (``floor``
        instead of ``ceil`` of the image's over 16), and check that size against the image's."""
        for flag, size, cells, what in (
                (FLAG_EXTENDED_ROWS, self.image_height, self.bottleneck_height, "rows"),
                (FLAG_EXTENDED_COLUMNS, self.image_width, self.bottleneck_width, "columns")):
            short = size // BOTTLENECK_STRIDE
            if cells == short and size % BOTTLENECK_STRIDE and short >= 1:
                object.__setattr__(self, "flags", self.flags | flag)
            elif self.flags & flag:
                raise ValueError(
                    f"flags has the extended-{what} bit set, but {cells} bottleneck {what} "
                    f"are not floor({size} / 16) = {short} >= 1 with {size} image {what} "
                    f"not a multiple of 16")
        derived = bottleneck_size(self.image_height, self.image_width, self.flags)
        if (self.bottleneck_height, self.bottleneck_width) != derived:
            raise ValueError(
                f"a version 2 header derives the bottleneck from the image size: "
                f"{derived[0]}x{derived[1]} for {self.image_height}x{self.image_width}, "
                f"got {self.bottleneck_height}x{self.bottleneck_width}")

    @property
    def extended(self) -> tuple[int, int]:
        """``(rows, columns)`` at the image's bottom and right that the bottleneck does not
        cover: the decoder repeats its picture's edge into them (``(0, 0)``: none)."""
        return (max(0, self.image_height - BOTTLENECK_STRIDE * self.bottleneck_height),
                max(0, self.image_width - BOTTLENECK_STRIDE * self.bottleneck_width))

    @property
    def overhead(self) -> int:
        """Bytes of a file besides the payload: header, model-name field and CRC.

        Version 2 stores the payload's length as a varint, so this is for a
        payload under 128 bytes; :meth:`file_size` is exact for any length.
        """
        return self.file_size(0)

    def file_size(self, payload_length: int) -> int:
        """Bytes of the whole file with a payload of ``payload_length`` bytes."""
        if self.version == 1:
            name = len(self.model_name.encode("utf-8"))
            return HEADER_SIZE + (1 + name if name else 0) + payload_length + _CRC.size
        return len(_head_v2(self, payload_length)) + payload_length + _CRC.size

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
        The file's bytes: the header in ``header.version``'s layout, the
        payload, the CRC32.  Version 1 takes ``HEADER_SIZE + len(payload) + 4``
        bytes, plus ``1 + len(name)`` for a ``model_name``.

    Raises:
        ValueError: the payload is too long.
        TypeError: ``header`` is not a :class:`Header`.
    """
    if not isinstance(header, Header):
        raise TypeError(f"header must be a Header, got {type(header).__name__}")
    payload = bytes(payload)
    if len(payload) > _MAX_PAYLOAD:
        raise ValueError(f"payload is {len(payload)} bytes; the maximum is {_MAX_PAYLOAD}")
    if header.version == 2:
        body = _head_v2(header, len(payload)) + payload
        return body + _CRC.pack(zlib.crc32(body))
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
        UnsupportedVersionError: a version other than 1 and 2, or unknown flag bits.
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
    if version not in READ_VERSIONS:
        newer = (" (written by a newer version of this software?)"
                 if version > max(READ_VERSIONS) else "")
        raise UnsupportedVersionError(
            f"unsupported .gcz format version {version}{newer}: this reader "
            f"supports versions {' and '.join(map(str, READ_VERSIONS))}"
        )
    if version == 2:
        return _unpack_v2(data)
    if found < HEADER_SIZE:
        raise TruncatedFileError(
            f"truncated .gcz file: expected at least {HEADER_SIZE} bytes for the "
            f"header, found {found}"
        )

    fields = _HEADER.unpack_from(data)
    payload_length = fields[-1]
    if fields[2] & ~_V1_FLAGS and found >= HEADER_SIZE + _CRC.size and _crc_intact(data):
        # Intact, with flags this reader does not know: a newer writer, whose
        # layout after the fixed header may differ, so nothing else is checked.
        raise _unknown_flags(fields[2], _V1_FLAGS)
    head = HEADER_SIZE + _name_size(fields[2], data)
    body_end = _check_body(data, head, payload_length)

    (_, _, flags, digest, height, width, channels, b_height, b_width,
     centers, seed, _) = fields
    # A valid CRC with unknown flags means a newer writer, not corruption.
    if flags & ~_V1_FLAGS:
        raise _unknown_flags(flags, _V1_FLAGS)
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


def _varint(value: int) -> bytes:
    """Unsigned LEB128: 7 bits a byte, low bits first, the top bit set on all but the last."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(data: bytes, at: int, what: str, limit: int = 2**64 - 1) -> tuple[int, int]:
    """``(value, next offset)`` of the varint at ``data[at]``.

    Raises TruncatedFileError when ``data`` ends inside it and CorruptFileError
    for an encoding no writer makes: longer than needed, or above ``limit``.
    """
    value = 0
    for i in range(_MAX_VARINT):
        if at + i >= len(data):
            raise TruncatedFileError(
                f"truncated .gcz file: it ends inside its header ({what}) at byte {at + i}")
        byte = data[at + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if i and not byte:
                raise CorruptFileError(f"corrupt .gcz file: its {what} is not a minimal varint")
            if value > limit:
                raise CorruptFileError(
                    f"corrupt .gcz file: its {what} is {value}, above {limit}")
            return value, at + i + 1
    raise CorruptFileError(f"corrupt .gcz file: its {what} runs over {_MAX_VARINT} bytes")


def _head_v2(header: Header, payload_length: int) -> bytes:
    """Everything of a version 2 file before its payload (see the module docstring)."""
    head = (MAGIC + bytes([2]) + _varint(header.flags) + header.fingerprint
            + _varint(header.image_height) + _varint(header.image_width)
            + _varint(header.bottleneck_channels) + bytes([header.num_centers]))
    if header.last_channel_rows is not None:
        head += _varint(header.last_channel_rows)
    if header.rate_position is not None:
        head += bytes([header.rate_position])
    if header.seed is not None:
        head += _varint(header.seed)
    if header.correction is not None:
        head += header.correction
    if header.model_name:
        name = header.model_name.encode("utf-8")
        head += bytes([len(name)]) + name
    return head + _varint(payload_length)


def _parse_v2(data: bytes) -> tuple[dict, int, int]:
    """``(Header fields, payload length, header size)`` of a version 2 file's head.

    Only the header is read: TruncatedFileError when ``data`` ends inside it.
    """
    at = len(MAGIC) + 1
    flags, at = _read_varint(data, at, "flags", 2**16 - 1)
    if flags & ~KNOWN_FLAGS:
        raise _unknown_flags(flags)
    size = FILE_FINGERPRINT_SIZE[2]
    if len(data) < at + size:
        raise TruncatedFileError(
            f"truncated .gcz file: it ends inside its header (fingerprint) at byte {len(data)}")
    fields = {"flags": flags, "fingerprint": data[at:at + size], "version": 2}
    at += size
    for name, what, limit in (("image_height", "image height", 2**32 - 1),
                              ("image_width", "image width", 2**32 - 1),
                              ("bottleneck_channels", "channel count", 2**16 - 1)):
        fields[name], at = _read_varint(data, at, what, limit)
    if len(data) <= at:
        raise TruncatedFileError(
            f"truncated .gcz file: it ends inside its header (centres) at byte {at}")
    fields["num_centers"] = data[at]
    at += 1
    fields["last_channel_rows"] = None
    if flags & FLAG_PARTIAL_CHANNEL:
        fields["last_channel_rows"], at = _read_varint(data, at, "last channel's rows",
                                                       2**16 - 1)
    fields["rate_position"] = None
    if flags & FLAG_RATE_POSITION:
        if len(data) <= at:
            raise TruncatedFileError(
                f"truncated .gcz file: it ends inside its header (rate position) at byte {at}")
        fields["rate_position"] = data[at]
        at += 1
    fields["seed"] = None
    if flags & FLAG_EXPLICIT_SEED:
        fields["seed"], at = _read_varint(data, at, "noise seed")
    fields["correction"] = None
    if flags & FLAG_COLOR_CORRECTION:
        if len(data) < at + CORRECTION_SIZE:
            raise TruncatedFileError("truncated .gcz file: it ends inside its header "
                                     f"(colour correction) at byte {len(data)}")
        fields["correction"] = bytes(data[at:at + CORRECTION_SIZE])
        at += CORRECTION_SIZE
    name_size = _name_size(flags, data, at)
    fields["model_name"] = bytes(data[at + 1:at + name_size])
    at += name_size
    if len(fields["model_name"]) + 1 < name_size:
        raise TruncatedFileError(
            f"truncated .gcz file: it ends inside its header (model name) at byte {len(data)}")
    payload_length, at = _read_varint(data, at, "payload length", _MAX_PAYLOAD)
    fields["bottleneck_height"], fields["bottleneck_width"] = bottleneck_size(
        fields["image_height"], fields["image_width"], flags)
    return fields, payload_length, at


def _crc_intact(data: bytes) -> bool:
    return len(data) >= _CRC.size and (
        _CRC.unpack_from(data, len(data) - _CRC.size)[0]
        == zlib.crc32(memoryview(data)[:len(data) - _CRC.size]))


def _unpack_v2(data: bytes) -> tuple[Header, bytes]:
    """:func:`unpack` for version 2: the same checks, in the same order."""
    try:
        fields, payload_length, head = _parse_v2(data)
    except UnsupportedVersionError:
        if _crc_intact(data):
            raise  # intact, from a newer writer: its layout after the flags may differ
        fields = None
    except TruncatedFileError:
        if _crc_intact(data):
            raise CorruptFileError(
                "corrupt .gcz file: its header runs past its end") from None
        raise
    if fields is None:
        raise CorruptFileError("corrupt .gcz file: CRC32 mismatch (unknown flags set)")
    body_end = _check_body(data, head, payload_length)
    try:
        fields["model_name"] = fields["model_name"].decode("utf-8")
        header = Header(**fields)
    except ValueError as exc:  # UnicodeDecodeError included
        raise CorruptFileError(f"corrupt .gcz file: {exc}") from exc
    return header, data[head:body_end]


def _check_body(data: bytes, head: int, payload_length: int) -> int:
    """The end of the payload, after checking the file's length and CRC (both versions).

    Raises TruncatedFileError when ``data`` is shorter than header, payload
    and CRC, and CorruptFileError for a CRC mismatch or bytes after the CRC.
    """
    found = len(data)
    body_end = head + payload_length
    expected = body_end + _CRC.size
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
    return body_end


def _unknown_flags(flags: int, known: int = KNOWN_FLAGS) -> UnsupportedVersionError:
    return UnsupportedVersionError(
        f"unsupported .gcz file: flags 0x{flags:04x} use bits this reader "
        f"does not know (it knows 0x{known:04x})"
    )


def _name_size(flags: int, data: bytes, at: int = HEADER_SIZE) -> int:
    """Bytes of the model-name field at ``data[at]``: 0, or 1 + its length byte.

    Raises TruncatedFileError when ``data`` ends before the length byte, and
    CorruptFileError for a zero length (a writer never stores an empty name).
    """
    if not flags & FLAG_MODEL_NAME:
        return 0
    if len(data) <= at:
        raise TruncatedFileError(
            f"truncated .gcz file: it ends before its model name at byte {at}")
    if data[at] == 0:
        raise CorruptFileError("corrupt .gcz file: the model-name flag is set with an empty name")
    return 1 + data[at]


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


def _check_payload_size(length: int, bottleneck: tuple[int, int, int]) -> None:
    if length > max_payload_size(bottleneck):
        h, w, c = bottleneck
        raise CorruptFileError(
            f"corrupt .gcz file: a payload of {length} bytes is longer than "
            f"any coder writes for a {h}x{w}x{c} bottleneck")


# How much of a file with flags this reader does not know read_file reads to
# check its CRC (so it can say "newer writer" rather than "corrupt").
_UNKNOWN_LAYOUT_LIMIT = 2**24


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
            data = handle.read(len(MAGIC) + 1)
            if data[:len(MAGIC)] == MAGIC and data[len(MAGIC):] == b"\x02":
                data += handle.read(_V2_MAX_HEADER - len(data))
                try:
                    fields, payload_length, head = _parse_v2(data)
                except (TruncatedFileError, UnsupportedVersionError):
                    # Too short for its header, or newer flags: unpack says which
                    # (one whole file of a newer writer, up to a bound, for its CRC).
                    return unpack(data + handle.read(_UNKNOWN_LAYOUT_LIMIT))
                check_pixels(fields["image_height"], fields["image_width"], max_pixels)
                bottleneck = (fields["bottleneck_height"], fields["bottleneck_width"],
                              fields["bottleneck_channels"])
                _check_payload_size(payload_length, bottleneck)
                # One byte more than the file should have, so unpack sees trailing bytes.
                data += handle.read(max(0, head + payload_length + _CRC.size + 1 - len(data)))
                return unpack(data)
            data += handle.read(HEADER_SIZE - len(data))
            if len(data) == HEADER_SIZE and data[:len(MAGIC)] == MAGIC and (
                    data[len(MAGIC)] == 1):
                fields = _HEADER.unpack(data)
                height, width, channels, b_height, b_width = fields[4:9]
                check_pixels(height, width, max_pixels)
                _check_payload_size(fields[-1], (b_height, b_width, channels))
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
    """Lower-case hex of a fingerprint, for error messages (32 characters; a
    version 2 file's 8-byte prefix: 16)."""
    return bytes(fp).hex()
