"""Tests for compression.bitstream: the .gcz container and file I/O."""

import dataclasses
import os
import struct
import zlib

import numpy as np
import pytest

from compression import bitstream
from compression.bitstream import (
    FLAG_CONTEXT_CODED,
    FLAG_MODEL_NAME,
    FLAG_SELECTIVE_MASK,
    FLAG_SEMANTIC_MAP,
    HEADER_SIZE,
    MAGIC,
    MAX_SYMBOLS,
    Header,
    fingerprint,
    fingerprint_hex,
    pack,
    read_file,
    unpack,
    write_file,
)
from compression.entropy_model import (
    decode_symbols,
    encode_symbols,
    probabilities_from_counts,
)
from compression.errors import (
    BitstreamError,
    CompressionError,
    CorruptFileError,
    ImageTooLargeError,
    NotAGczFileError,
    TruncatedFileError,
    UnsupportedVersionError,
)

FP = bytes(range(16))
FIELDS = {
    "fingerprint": FP,
    "image_height": 100,
    "image_width": 180,
    "bottleneck_channels": 3,
    "bottleneck_height": 7,
    "bottleneck_width": 12,
    "num_centers": 5,
    "seed": 0x0123456789ABCDEF,
    "version": 1,  # the fixed layout; version 2 has its own tests below
}
# Byte offsets of version 1's header fields (see docs/format.md).
VERSION_AT, FLAGS_AT, SEED_AT = 4, 5, 38


def make_header(**changes) -> Header:
    return Header(**{**FIELDS, **changes})


def raw_file(
    *,
    magic=MAGIC,
    version=1,
    flags=0,
    fp=FP,
    image=(100, 180),
    bottleneck=(3, 7, 12),
    centers=5,
    seed=1,
    payload=b"payload!",
) -> bytes:
    """Hand-built file with a correct CRC, bypassing Header validation."""
    body = struct.pack(
        ">4sBH16sIIHHHBQI", magic, version, flags, fp, *image, *bottleneck,
        centers, seed, len(payload),
    ) + payload
    return body + struct.pack(">I", zlib.crc32(body))


def with_fixed_crc(data: bytes) -> bytes:
    """Recompute the trailing CRC after editing ``data``."""
    return data[:-4] + struct.pack(">I", zlib.crc32(data[:-4]))


@pytest.fixture
def valid_file() -> bytes:
    return pack(make_header(), b"\x01\x02\x03\x04\x05\x06\x07\x08")


# --- Header ----------------------------------------------------------------


def test_header_size_and_layout():
    assert HEADER_SIZE == 50
    data = pack(make_header(flags=FLAG_SEMANTIC_MAP), b"xyz")
    assert len(data) == HEADER_SIZE + 3 + 4
    assert data[:4] == MAGIC
    assert data[VERSION_AT] == 1
    assert data[FLAGS_AT:FLAGS_AT + 2] == b"\x00\x01"
    assert data[7:23] == FP
    assert data[23:31] == struct.pack(">II", 100, 180)
    assert data[31:37] == struct.pack(">HHH", 3, 7, 12)
    assert data[37] == 5
    assert data[SEED_AT:46] == struct.pack(">Q", FIELDS["seed"])
    assert data[46:50] == struct.pack(">I", 3)
    assert data[50:53] == b"xyz"
    assert data[53:] == struct.pack(">I", zlib.crc32(data[:53]))


@pytest.mark.parametrize("payload", [b"", b"a", bytes(range(256)) * 3])
@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"flags": FLAG_SEMANTIC_MAP | FLAG_SELECTIVE_MASK},
        {"image_height": 1, "image_width": 1, "bottleneck_channels": 1,
         "bottleneck_height": 1, "bottleneck_width": 1, "num_centers": 2, "seed": 0},
        {"image_height": 2**32 - 1, "image_width": 2**32 - 1,
         "bottleneck_channels": 2**15, "bottleneck_height": 2**16 - 1,
         "bottleneck_width": 1, "num_centers": 255, "seed": 2**64 - 1},
    ],
)
def test_pack_unpack_round_trip(payload, changes):
    header = make_header(**changes)
    parsed, parsed_payload = unpack(pack(header, payload))
    assert parsed == header
    assert parsed_payload == payload


def test_header_normalises_numpy_values():
    header = make_header(image_height=np.int64(5), fingerprint=bytearray(FP))
    assert type(header.image_height) is int
    assert type(header.fingerprint) is bytes
    assert header.bottleneck_shape == (7, 12, 3)
    assert header.version == 1
    assert header.flags == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("image_height", 0),
        ("image_width", 2**32),
        ("bottleneck_channels", 0),
        ("bottleneck_height", 2**16),
        ("bottleneck_width", -1),
        ("num_centers", 1),
        ("num_centers", 256),
        ("seed", -1),
        ("seed", 2**64),
        ("flags", 2**16),
        ("flags", 16),
        ("flags", FLAG_MODEL_NAME),  # the bit follows model_name
        ("model_name", "x" * 256),
        ("model_name", "tab\there"),
        ("version", 3),
        ("version", 0),
    ],
)
def test_header_rejects_out_of_range_fields(field, value):
    with pytest.raises(ValueError, match=field):
        make_header(**{field: value})


def test_header_rejects_wrong_types_and_sizes():
    with pytest.raises(ValueError, match="fingerprint"):
        make_header(fingerprint=b"short")
    with pytest.raises(TypeError, match="fingerprint"):
        make_header(fingerprint=3.5)
    with pytest.raises(TypeError, match="image_width"):
        make_header(image_width=2.0)
    with pytest.raises(TypeError, match="seed"):
        make_header(seed=True)
    with pytest.raises(ValueError, match="maximum"):
        make_header(bottleneck_height=2**16 - 1, bottleneck_width=2**16 - 1)
    # Exactly MAX_SYMBOLS is allowed.
    make_header(bottleneck_height=2**15, bottleneck_width=2**15, bottleneck_channels=2)
    assert 2**15 * 2**15 * 2 == MAX_SYMBOLS
    with pytest.raises(TypeError):
        pack("not a header", b"")


# --- unpack errors ------------------------------------------------------------


@pytest.mark.parametrize(
    "data", [b"PK\x03\x04" + bytes(60), b"\x89PNG\r\n\x1a\n" + bytes(60), b"GCZ\x89" * 20,
             b"ab", b"\x89GX", b"\x00"]
)
def test_wrong_magic(data):
    with pytest.raises(NotAGczFileError, match="not a .gcz file"):
        unpack(data)


def test_every_truncation_is_reported(valid_file):
    for length in range(len(valid_file)):
        with pytest.raises(TruncatedFileError):
            unpack(valid_file[:length])


def test_truncation_message_gives_sizes(valid_file):
    with pytest.raises(TruncatedFileError, match=f"expected {len(valid_file)} bytes.*found 55"):
        unpack(valid_file[:55])
    with pytest.raises(TruncatedFileError, match=f"at least {HEADER_SIZE} bytes.*found 20"):
        unpack(valid_file[:20])


@pytest.mark.parametrize("position", [FLAGS_AT, 7, 20, 30, 37, SEED_AT, 50, 57, -4, -1])
def test_crc_detects_flips(valid_file, position):
    data = bytearray(valid_file)
    data[position] ^= 0x10
    with pytest.raises(CorruptFileError, match="CRC32"):
        unpack(bytes(data))


@pytest.mark.parametrize(("mask", "error"), [(0x10, TruncatedFileError), (0x08, CorruptFileError)])
def test_damaged_payload_length(valid_file, mask, error):
    # A larger length looks like truncation, a smaller one fails the CRC.
    data = bytearray(valid_file)
    data[49] ^= mask
    with pytest.raises(error):
        unpack(bytes(data))


@pytest.mark.parametrize("version", [0, 3, 255])
def test_unsupported_version(valid_file, version):
    data = bytearray(valid_file)
    data[VERSION_AT] = version
    # Whether or not the CRC was updated, the version is reported first.
    for candidate in (bytes(data), with_fixed_crc(bytes(data)), bytes(data[:10])):
        with pytest.raises(UnsupportedVersionError,
                           match=f"version {version}.*supports versions 1 and 2"):
            unpack(candidate)


@pytest.mark.parametrize("flags", [16, 0x8000, 0xFFFF, 0x0113])
def test_unknown_flag_bits(flags):
    with pytest.raises(UnsupportedVersionError, match="flags"):
        unpack(raw_file(flags=flags))


def test_known_flag_bits_accepted():
    header, _ = unpack(raw_file(flags=FLAG_SEMANTIC_MAP | FLAG_SELECTIVE_MASK))
    assert header.flags == 3
    header, _ = unpack(raw_file(flags=FLAG_CONTEXT_CODED))
    assert header.flags == FLAG_CONTEXT_CODED == 8


@pytest.mark.parametrize("extra", [b"\0", b"garbage", bytes(1000)])
def test_trailing_bytes(valid_file, extra):
    with pytest.raises(CorruptFileError, match="after the CRC"):
        unpack(valid_file + extra)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"image": (0, 10)},
        {"image": (10, 0)},
        {"bottleneck": (0, 1, 1)},
        {"bottleneck": (1, 0, 1)},
        {"bottleneck": (1, 1, 0)},
        {"centers": 0},
        {"centers": 1},
        {"bottleneck": (2**16 - 1, 2**16 - 1, 2**16 - 1)},
    ],
)
def test_out_of_bounds_fields_are_corrupt(kwargs):
    with pytest.raises(CorruptFileError, match="corrupt"):
        unpack(raw_file(**kwargs))


def test_raw_file_helper_matches_pack():
    header = make_header(seed=1)
    assert raw_file(seed=1, payload=b"p") == pack(header, b"p")


def test_random_damage_only_raises_bitstream_errors():
    """Flips, truncations, appends: only BitstreamError, through the decoder too."""
    rng = np.random.default_rng(11)
    counts = rng.dirichlet(np.full(5, 0.3), size=4) * 1000
    probs = probabilities_from_counts(counts)
    symbols = rng.integers(0, 5, size=(6, 9, 4))
    header = make_header(bottleneck_channels=4, bottleneck_height=6, bottleneck_width=9)
    good = pack(header, encode_symbols(symbols, probs))

    def decode_all(data: bytes) -> None:
        parsed, payload = unpack(data)
        out = decode_symbols(payload, parsed.bottleneck_shape, probs)
        assert out.shape == (6, 9, 4)

    decode_all(good)
    failures = 0
    for trial in range(400):
        data = bytearray(good)
        kind = trial % 4
        if kind == 0:  # flip 1-3 bytes anywhere
            for pos in rng.integers(0, len(data), size=rng.integers(1, 4)):
                data[pos] ^= int(rng.integers(1, 256))
        elif kind == 1:  # truncate
            del data[int(rng.integers(0, len(data))):]
        elif kind == 2:  # append garbage
            data += rng.bytes(int(rng.integers(1, 20)))
        else:  # damage the payload but keep the CRC valid: reaches the decoder
            for pos in rng.integers(HEADER_SIZE, len(data) - 4, size=rng.integers(1, 6)):
                data[pos] = int(rng.integers(0, 256))
            data = bytearray(with_fixed_crc(bytes(data)))
        try:
            decode_all(bytes(data))
        except BitstreamError:
            failures += 1
    # Everything but (some) CRC-valid payload edits must be caught.
    assert failures >= 300


# --- files ----------------------------------------------------------------


def test_write_and_read_file(tmp_path):
    path = tmp_path / "image.gcz"
    header = make_header()
    write_file(path, header, b"payload")
    assert read_file(path) == (header, b"payload")
    assert read_file(str(path)) == (header, b"payload")
    assert os.listdir(tmp_path) == ["image.gcz"]  # no temp files left behind
    if os.name == "posix":
        umask = os.umask(0)
        os.umask(umask)
        assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


def test_write_refuses_to_overwrite(tmp_path):
    path = tmp_path / "image.gcz"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="--force"):
        write_file(path, make_header(), b"new")
    assert path.read_bytes() == b"precious"
    assert os.listdir(tmp_path) == ["image.gcz"]

    write_file(path, make_header(), b"new", overwrite=True)
    assert read_file(path)[1] == b"new"
    assert os.listdir(tmp_path) == ["image.gcz"]


def test_write_without_hard_links_falls_back(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(bitstream.os, "link", no_links)
    path = tmp_path / "image.gcz"
    write_file(path, make_header(), b"abc")
    assert read_file(path)[1] == b"abc"
    with pytest.raises(FileExistsError, match="--force"):
        write_file(path, make_header(), b"def")
    assert os.listdir(tmp_path) == ["image.gcz"]


def test_failed_write_leaves_destination_untouched(tmp_path, monkeypatch):
    path = tmp_path / "image.gcz"
    write_file(path, make_header(), b"old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bitstream.os, "replace", broken_replace)
    with pytest.raises(CompressionError, match="cannot write .*No space left"):
        write_file(path, make_header(), b"new", overwrite=True)
    monkeypatch.undo()
    assert read_file(path)[1] == b"old"
    assert os.listdir(tmp_path) == ["image.gcz"]


def test_unwritable_destinations(tmp_path):
    with pytest.raises(CompressionError, match="cannot write"):
        write_file(tmp_path / "missing" / "image.gcz", make_header(), b"")
    with pytest.raises(CompressionError, match="directory"):
        write_file(tmp_path, make_header(), b"", overwrite=True)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs non-root POSIX")
def test_read_only_directory(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(CompressionError, match="cannot write"):
            write_file(locked / "image.gcz", make_header(), b"")
    finally:
        locked.chmod(0o700)


def test_read_file_errors(tmp_path):
    with pytest.raises(CompressionError, match="cannot read"):
        read_file(tmp_path / "absent.gcz")
    with pytest.raises(CompressionError, match="cannot read"):
        read_file(tmp_path)
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a compressed image\n")
    with pytest.raises(NotAGczFileError):
        read_file(text)
    empty = tmp_path / "empty.gcz"
    empty.write_bytes(b"")
    with pytest.raises(TruncatedFileError):
        read_file(empty)


def test_read_file_is_bounded(tmp_path):
    fifo = tmp_path / "x.gcz"
    os.mkfifo(fifo)
    with pytest.raises(CompressionError, match="FIFO"):  # refused, not waited on
        read_file(fifo)
    with pytest.raises(CompressionError, match="device"):
        read_file("/dev/zero")
    # A claim over the pixel limit is refused from the header alone.
    huge = tmp_path / "huge.gcz"
    huge.write_bytes(pack(make_header(image_height=65536, image_width=65536,
                                      bottleneck_height=4096, bottleneck_width=4096), b""))
    with pytest.raises(ImageTooLargeError, match="--max-pixels"):
        read_file(huge)
    assert read_file(huge, max_pixels=None)[1] == b""
    # A payload length no coder writes for the bottleneck: refused before reading it.
    body = bytearray(pack(make_header(), b"")[:-4])
    body[HEADER_SIZE - 4:HEADER_SIZE] = (2**32 - 1).to_bytes(4, "big")
    (tmp_path / "long.gcz").write_bytes(bytes(body) + bytes(100))
    with pytest.raises(CorruptFileError, match="longer than any coder"):
        read_file(tmp_path / "long.gcz")


# --- fingerprint ------------------------------------------------------------


def test_fingerprint_is_stable_and_sensitive():
    config = '{"channels": 8, "centers": [-2, -1, 0, 1, 2]}'
    weights = [np.arange(12, dtype=np.float32).reshape(3, 4), np.ones(5, dtype=np.float64)]
    base = fingerprint(config, weights)
    assert isinstance(base, bytes)
    assert len(base) == 16
    assert fingerprint(config, [w.copy() for w in weights]) == base
    # Formatting and key order of the JSON do not matter.
    assert fingerprint('{ "centers":[-2,-1,0,1,2],\n "channels":8 }', weights) == base
    # Byte order of the arrays does not matter (same values).
    swapped = [w.astype(w.dtype.newbyteorder(">")) for w in weights]
    assert fingerprint(config, swapped) == base
    # Non-contiguous views hash by value.
    assert fingerprint(config, [np.asfortranarray(weights[0]), weights[1]]) == base

    changed = [
        fingerprint('{"channels": 4, "centers": [-2, -1, 0, 1, 2]}', weights),
        fingerprint(config, [np.nextafter(weights[0], 100), weights[1]]),
        fingerprint(config, [weights[0].reshape(4, 3), weights[1]]),
        fingerprint(config, [weights[0].astype(np.float64), weights[1]]),
        fingerprint(config, weights[:1]),
        fingerprint(config, [weights[1], weights[0]]),
        fingerprint(config, [np.concatenate([weights[0].ravel(), [1.0]]), np.ones(4)]),
        fingerprint(config, []),
    ]
    assert len(set(changed + [base])) == len(changed) + 1


def test_fingerprint_rejects_bad_input():
    with pytest.raises(ValueError, match="JSON"):
        fingerprint("{not json", [])
    with pytest.raises(ValueError, match="object"):
        fingerprint("{}", [np.array([object()])])


def test_fingerprint_hex():
    assert fingerprint_hex(FP) == "000102030405060708090a0b0c0d0e0f"
    assert len(fingerprint_hex(fingerprint("{}", []))) == 32


# --- the model name (flag bit 2) --------------------------------------------


@pytest.mark.parametrize("name", ["street", "g", "Straßen-Modell 2", "x" * 255, "é" * 127])
def test_model_name_round_trip(name, tmp_path):
    header = make_header(model_name=name)
    assert header.flags == FLAG_MODEL_NAME
    data = pack(header, b"abcd")
    encoded = name.encode("utf-8")
    assert data[HEADER_SIZE] == len(encoded)
    assert data[HEADER_SIZE + 1:HEADER_SIZE + 1 + len(encoded)] == encoded
    assert len(data) == header.overhead + 4 == HEADER_SIZE + 1 + len(encoded) + 4 + 4
    assert unpack(data) == (header, b"abcd")
    path = tmp_path / "a.gcz"
    path.write_bytes(data)
    assert read_file(path) == (header, b"abcd")
    # Every proper prefix is reported as truncated, never as anything worse.
    for end in range(len(data)):
        with pytest.raises(TruncatedFileError):
            unpack(data[:end]) if end >= 4 else unpack(MAGIC[:end])


def test_a_damaged_model_name_is_a_corrupt_file():
    data = bytearray(pack(make_header(model_name="street"), b"abcd"))
    data[HEADER_SIZE] = 0  # empty name with the flag set
    with pytest.raises(CorruptFileError, match="empty name"):
        unpack(with_fixed_crc(bytes(data)))
    data = bytearray(pack(make_header(model_name="street"), b"abcd"))
    data[HEADER_SIZE + 1] = 0xFF  # not UTF-8
    with pytest.raises(CorruptFileError):
        unpack(with_fixed_crc(bytes(data)))
    data[HEADER_SIZE + 1] = 0x07  # a control character
    with pytest.raises(CorruptFileError, match="printable"):
        unpack(with_fixed_crc(bytes(data)))
    data = bytearray(pack(make_header(model_name="street"), b"abcd"))
    data[HEADER_SIZE] = 9  # a longer name than stored: the CRC no longer fits
    with pytest.raises(BitstreamError):
        unpack(bytes(data))


def test_files_without_a_name_are_as_before():
    header = make_header()
    assert header.model_name == "" and header.overhead == HEADER_SIZE + 4
    assert len(pack(header, b"xyz")) == HEADER_SIZE + 3 + 4


# --- version 2: the compact header ------------------------------------------

V2 = {**FIELDS, "version": 2, "bottleneck_height": 7, "bottleneck_width": 12}


def v2_header(**changes) -> Header:
    return Header(**{**V2, **changes})


def test_version_2_is_what_is_written_and_is_compact():
    header = Header(**{k: v for k, v in V2.items() if k not in ("version", "seed")}, seed=None,
                    model_name="street")
    assert header.version == bitstream.FORMAT_VERSION == 2
    assert header.fingerprint == FP[:8] and header.flags == FLAG_MODEL_NAME
    data = pack(header, bytes(600))
    # magic 4, version 1, flags 1, fingerprint 8, H 1, W 2, C 1, L 1, name 7,
    # payload length 2, CRC 4: 32 bytes where version 1 takes 61.
    assert len(data) - 600 == 32 == header.overhead + 1
    assert len(pack(dataclasses.replace(header, version=1, seed=0, fingerprint=FP),
                    bytes(600))) - 600 == 61
    assert data[:6] == MAGIC + bytes([2, FLAG_MODEL_NAME]) and data[6:14] == FP[:8]
    assert unpack(data) == (header, bytes(600))


@pytest.mark.parametrize("seed", [0, 1, 127, 128, 2**63, 2**64 - 1])
def test_version_2_stores_a_given_seed_and_sets_its_flag(seed):
    header = v2_header(seed=seed)
    assert header.flags & bitstream.FLAG_EXPLICIT_SEED
    assert unpack(pack(header, b"xy")) == (header, b"xy")
    none = v2_header(seed=None)
    assert not none.flags & bitstream.FLAG_EXPLICIT_SEED
    assert len(pack(none, b"xy")) < len(pack(header, b"xy"))


def test_version_2_stores_a_colour_correction_after_the_seed():
    correction = bytes([118, 121, 97, 60, 64, 71])
    for seed in (None, 5):
        header = v2_header(seed=seed, correction=correction, model_name="general")
        assert header.flags & bitstream.FLAG_COLOR_CORRECTION
        data = pack(header, b"xy")
        assert unpack(data) == (header, b"xy")
        plain = pack(dataclasses.replace(header, flags=header.flags
                                         & ~bitstream.FLAG_COLOR_CORRECTION,
                                         correction=None), b"xy")
        assert len(data) == len(plain) + bitstream.CORRECTION_SIZE
        assert correction in data and correction not in plain
        for end in range(4, len(data)):  # every prefix, the correction's bytes included
            with pytest.raises(TruncatedFileError):
                unpack(data[:end])


def test_bottleneck_size_is_the_image_size_over_16_rounded_up():
    assert bitstream.bottleneck_size(360, 480) == (23, 30)
    assert bitstream.bottleneck_size(16, 17) == (1, 2)
    assert bitstream.bottleneck_size(1, 1) == (1, 1)


def test_bottleneck_size_rounds_down_along_an_extended_axis():
    rows, columns = bitstream.FLAG_EXTENDED_ROWS, bitstream.FLAG_EXTENDED_COLUMNS
    assert bitstream.bottleneck_size(321, 481, rows | columns) == (20, 30)
    assert bitstream.bottleneck_size(321, 481, rows) == (20, 31)
    assert bitstream.bottleneck_size(321, 481, columns) == (21, 30)


def test_a_bottleneck_that_leaves_out_the_last_rows_sets_its_flag_and_round_trips():
    header = Header(fingerprint=FP, image_height=321, image_width=481, bottleneck_channels=4,
                    bottleneck_height=20, bottleneck_width=31, num_centers=5, seed=None)
    assert header.flags & bitstream.FLAG_EXTENDED_ROWS
    assert not header.flags & bitstream.FLAG_EXTENDED_COLUMNS
    assert header.extended == (1, 0)
    read, payload = unpack(pack(header, b"\x01\x02"))
    assert read == header and payload == b"\x01\x02"
    assert read.bottleneck_shape == (20, 31, 4)
    both = dataclasses.replace(header, bottleneck_width=30)
    assert unpack(pack(both, b""))[0].extended == (1, 1)
    # The flag fits the flags varint's second byte: no byte more than a rate-adaptive file's.
    positioned = dataclasses.replace(both, rate_position=7)
    assert len(pack(positioned, b"")) == len(pack(dataclasses.replace(
        positioned, bottleneck_height=21, bottleneck_width=31, flags=0), b""))


@pytest.mark.parametrize("size, cells, fragment", [
    (320, 20, r"not floor\(320 / 16\) = 20 >= 1 with 320 image rows not a multiple"),
    (15, 0, "bottleneck_height must be in"),  # nothing left to code
    (321, 19, "derives the bottleneck from the image size: 21x"),
])
def test_a_bottleneck_must_cover_all_but_the_last_rows(size, cells, fragment):
    with pytest.raises(ValueError, match=fragment):
        Header(fingerprint=FP, image_height=size, image_width=64, bottleneck_channels=4,
               bottleneck_height=cells, bottleneck_width=4, num_centers=5, seed=None,
               flags=bitstream.FLAG_EXTENDED_ROWS if size == 320 else 0)


@pytest.mark.parametrize("changes, fragment", [
    ({"bottleneck_height": 8}, "derives the bottleneck from the image size: 7x12"),
    ({"seed": None, "version": 1}, "version 1 files store it"),
    ({"seed": None, "flags": 16}, "stored-seed bit set but seed is None"),
    ({"fingerprint": FP[:7]}, "fingerprint must be 16 bytes"),
    ({"flags": 32}, "colour-correction bit set but correction is None"),
    ({"flags": 64}, "partial-channel bit set but last_channel_rows is None"),
    ({"flags": 1 << 10}, "unknown bits"),
    ({"flags": bitstream.FLAG_EXTENDED_ROWS}, "extended-rows bit set, but 7 bottleneck rows"),
    ({"flags": 128}, "rate-position bit set but rate_position is None"),
    ({"rate_position": 256}, r"rate_position must be in \[0, 255\], got 256"),
    ({"rate_position": 3, "version": 1}, "version 1 files have no rate position"),
    ({"last_channel_rows": 7}, r"last_channel_rows must be in \[1, 6\], got 7"),
    ({"last_channel_rows": 0}, r"last_channel_rows must be in \[1, 6\], got 0"),
    ({"last_channel_rows": 3, "version": 1}, "version 1 files code whole channels"),
    ({"correction": b"\x01" * 5}, "correction must be 6 bytes"),
    ({"correction": b"\x01" * 6, "version": 1}, "version 1 files carry no colour"),
])
def test_version_2_header_is_validated(changes, fragment):
    with pytest.raises(ValueError, match=fragment):
        v2_header(**changes)


def test_version_2_prefixes_are_truncated_and_damage_is_a_bitstream_error():
    data = pack(v2_header(model_name="general"), bytes(range(200)))
    for end in range(4, len(data)):
        with pytest.raises(TruncatedFileError):
            unpack(data[:end])
    rng = np.random.default_rng(0)
    for _ in range(300):
        damaged = bytearray(data)
        for pos in rng.integers(5, len(data), size=rng.integers(1, 4)):
            damaged[pos] = rng.integers(0, 256)
        if bytes(damaged) != data:
            with pytest.raises(BitstreamError):
                unpack(bytes(damaged))


def test_a_partial_last_channel_costs_one_byte_and_round_trips():
    whole = pack(v2_header(seed=None), b"xyz")
    header = v2_header(seed=None, last_channel_rows=4)
    assert header.flags & bitstream.FLAG_PARTIAL_CHANNEL
    data = pack(header, b"xyz")
    assert len(data) == len(whole) + 1  # the rows' varint; the flag shares the flags byte
    assert unpack(data) == (header, b"xyz")
    assert header.file_size(3) == len(data)
    for end in range(4, len(data)):
        with pytest.raises(TruncatedFileError):
            unpack(data[:end])


def test_a_rate_position_costs_two_bytes_and_round_trips():
    whole = pack(v2_header(seed=None), b"xyz")
    for position in (0, 77, 255):
        header = v2_header(seed=None, rate_position=position, last_channel_rows=2)
        assert header.flags & bitstream.FLAG_RATE_POSITION
        data = pack(header, b"xyz")
        # The byte, and the flags varint's second byte (bit 7); the rows' varint.
        assert len(data) == len(whole) + 3
        assert unpack(data) == (header, b"xyz")
        assert header.file_size(3) == len(data)
        for end in range(4, len(data)):
            with pytest.raises(TruncatedFileError):
                unpack(data[:end])


def test_version_2_varints_are_minimal_and_flags_known():
    data = bytearray(pack(v2_header(seed=None), b"xyz"))
    # H = 100 is one byte at offset 14; a two-byte spelling of it is refused.
    assert data[14] == 100
    padded = bytes(data[:14]) + bytes([100 | 0x80, 0]) + bytes(data[15:])
    with pytest.raises(CorruptFileError, match="image height is not a minimal varint"):
        unpack(with_fixed_crc(padded))
    newer = bytearray(data)
    newer[5] |= 0x80  # a flag bit this reader does not know (bit 10: a two-byte varint)
    newer[6:6] = b"\x08"
    with pytest.raises(UnsupportedVersionError, match="flags 0x04"):
        unpack(with_fixed_crc(bytes(newer)))  # intact: written by a newer writer
    with pytest.raises(CorruptFileError, match="CRC32"):
        unpack(bytes(newer))  # damaged


def test_version_2_read_file_round_trip_and_bounds(tmp_path):
    header = v2_header(model_name="street", seed=None)
    path = tmp_path / "a.gcz"
    write_file(path, header, b"abcd")
    assert read_file(path) == (header, b"abcd")
    huge = tmp_path / "huge.gcz"
    huge.write_bytes(pack(v2_header(image_height=65536, image_width=65536,
                                    bottleneck_height=4096, bottleneck_width=4096), b""))
    with pytest.raises(ImageTooLargeError, match="--max-pixels"):
        read_file(huge)
    # A payload length no coder writes for 7x12x3 symbols: refused before reading it.
    data = pack(header, b"")
    long = data[:-5] + bytes([0xFF, 0xFF, 0xFF, 0x0F])  # varint 2**28 - 1
    (tmp_path / "long.gcz").write_bytes(long + bytes(100))
    with pytest.raises(CorruptFileError, match="longer than any coder"):
        read_file(tmp_path / "long.gcz")
    newer = bytearray(pack(header, b"abcd"))
    newer[5] |= 0x80
    newer[6:6] = b"\x08"
    (tmp_path / "newer.gcz").write_bytes(with_fixed_crc(bytes(newer)))
    with pytest.raises(UnsupportedVersionError, match="flags"):
        read_file(tmp_path / "newer.gcz")
