"""compression.codec: real .gcz round trips with the tiny trained model, and every way to fail."""

import dataclasses
import random
import struct
import time
import zlib

import numpy as np
import pytest
from skimage import data as skdata

from compression import bitstream
from compression.codec import (
    coded_size,
    decode,
    decode_image,
    default_seed,
    encode,
    encode_image,
    file_stats,
    noise_seed,
    read_payload,
    read_symbols,
)
from compression.correction import apply_correction, fit_correction
from compression.entropy_model import decode_symbols
from compression.errors import (
    BitstreamError,
    ConfigError,
    CorruptFileError,
    ImageReadError,
    ImageTooLargeError,
    ModelMismatchError,
    NotAGczFileError,
    RateError,
    TruncatedFileError,
    UnsupportedVersionError,
)
from compression.image_io import crop_to, pad_to_multiple, to_float


def photo(name, step=4):
    """A scikit-image sample photograph, downscaled by ``step`` for speed."""
    return np.ascontiguousarray(getattr(skdata, name)()[::step, ::step, :3])


def gradient(h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1),
                     (xx + yy) % 256], -1).astype(np.uint8)


def noise(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


IMAGES = {
    "astronaut": lambda: photo("astronaut"),
    "chelsea": lambda: photo("chelsea"),
    "coffee": lambda: photo("coffee"),
    "16x16": lambda: noise(16, 16),
    "17x33": lambda: noise(17, 33, 1),
    "portrait 100x37": lambda: gradient(100, 37),
    "513x1023 gradient": lambda: gradient(513, 1023),
    "513x1023 zeros": lambda: np.zeros((513, 1023, 3), np.uint8),
}


def check_round_trip(model, image, extend=True):
    result = encode_image(model, image, extend=extend)
    assert result.data[:4] == bitstream.MAGIC
    decoded, header = decode_image(model, result.data)
    assert decoded.dtype == np.uint8
    assert decoded.shape[:2] == image.shape[:2]
    assert (header.image_height, header.image_width) == image.shape[:2]
    # Decoding is a pure function of the file.
    np.testing.assert_array_equal(decode(model, result.data), decoded)
    # The entropy coder is lossless: the payload holds exactly the encoder's symbols, of
    # the image less the last one or two rows (columns) beyond a multiple of 16.
    h, w = image.shape[:2]
    ch, cw = coded_size(h, w, extend)
    assert header.extended == result.extended == (h - ch, w - cw)
    padded, _ = pad_to_multiple(image[:ch, :cw] if image.ndim == 3 else
                                np.repeat(image[:ch, :cw, None], 3, axis=2), 16)
    _, payload = bitstream.unpack(result.data)
    symbols = decode_symbols(payload, header.bottleneck_shape, model.probabilities)
    np.testing.assert_array_equal(symbols, model.encode(to_float(padded)))
    assert header.bottleneck_shape == (-(-ch // 16), -(-cw // 16), model.config.channels)
    # The rows and columns left out repeat the decoded picture's edge.
    np.testing.assert_array_equal(decoded[ch:], np.broadcast_to(decoded[ch - 1:ch],
                                                                decoded[ch:].shape))
    np.testing.assert_array_equal(decoded[:, cw:], np.broadcast_to(decoded[:, cw - 1:cw],
                                                                   decoded[:, cw:].shape))
    return result, decoded


@pytest.mark.parametrize("size, coded", [
    ((321, 481), (320, 480)), ((18, 34), (16, 32)), ((19, 35), (19, 35)), ((15, 17), (15, 16)),
    ((320, 480), (320, 480)), ((360, 481), (360, 480))])
def test_only_one_or_two_rows_beyond_a_multiple_of_16_are_left_out(size, coded):
    assert coded_size(*size) == coded
    assert coded_size(*size, extend=False) == size


def test_a_file_without_its_last_rows_is_smaller_and_pads_them_when_asked(tiny_model):
    # 10 block rows and 6 block columns, and one pixel row and column more
    image = np.ascontiguousarray(skdata.astronaut()[:161, :97])
    left_out, _ = check_round_trip(tiny_model, image)
    padded, _ = check_round_trip(tiny_model, image, extend=False)
    assert left_out.extended == (1, 1) and padded.extended == (0, 0)
    assert bitstream.unpack(left_out.data)[0].bottleneck_shape[:2] == (10, 6)
    assert bitstream.unpack(padded.data)[0].bottleneck_shape[:2] == (11, 7)
    assert file_stats(left_out.data)["repeated_edge"] == "1 rows, 1 columns"
    assert file_stats(padded.data)["repeated_edge"] == "none"
    assert left_out.payload_bpp < padded.payload_bpp


def test_semantic_and_selective_files_may_not_leave_rows_out(semantic_model):
    image, labels = photo("coffee")[:97], street_labels(97, 150)
    result = encode_image(semantic_model, image, labels=labels)
    assert result.extended == (0, 0)  # semantic files code every row
    header, payload = bitstream.unpack(result.data)
    crafted = dataclasses.replace(header, bottleneck_height=6,
                                  flags=header.flags & ~bitstream.FLAG_EXTENDED_ROWS)
    with pytest.raises(CorruptFileError, match="semantic and selective files code every row"):
        decode(semantic_model, bitstream.pack(crafted, payload))


@pytest.mark.parametrize("name", list(IMAGES))
def test_round_trip(tiny_model, name):
    image = IMAGES[name]()
    _, decoded = check_round_trip(tiny_model, image)
    assert decoded.shape == image.shape


def test_grayscale_round_trip(tiny_model):
    gray = gradient(40, 50)[..., 0]
    result, decoded = check_round_trip(tiny_model, gray)
    # Files carry no channel count: grayscale decodes to three channels of its size.
    assert decoded.shape == gray.shape + (3,)
    assert result.data == encode(tiny_model, np.repeat(gray[..., None], 3, axis=2))


def test_coded_rate_below_the_bound(tiny_model):
    """The learned per-channel probabilities code a real photo below C log2(L) / 256."""
    image = np.ascontiguousarray(skdata.astronaut())  # 512x512: the header is ~0.2% of it
    result = encode_image(tiny_model, image)
    assert result.bound_bpp == pytest.approx(tiny_model.config.bpp_bound())
    ratio = result.bpp / result.bound_bpp
    print(f"astronaut 512x512: {len(result.data)} bytes, {result.bpp:.4f} bpp (payload "
          f"{result.payload_bpp:.4f}), bound {result.bound_bpp:.4f}: ratio {ratio:.3f}")
    assert result.payload_bpp < result.bpp < result.bound_bpp
    stats = file_stats(result.data)
    assert stats["bpp"] == pytest.approx(result.bpp)
    assert stats["model"] == tiny_model.fingerprint.hex()[:16]  # version 2 keeps 8 bytes
    assert stats["version"] == 2 and stats["seed"] == "from the symbols"
    assert stats["entropy"] == "per-channel"  # a run directory has no context table


def test_files_carry_the_colour_correction_the_decoder_applies(tiny_model):
    image = photo("chelsea", 8)
    plain = encode_image(tiny_model, image, seed=3, correct=False)
    corrected = encode_image(tiny_model, image, seed=3)
    assert corrected.corrected and not plain.corrected
    assert len(corrected.data) == len(plain.data) + bitstream.CORRECTION_SIZE
    assert corrected.payload_bpp == plain.payload_bpp  # the same symbols
    header, _ = bitstream.unpack(corrected.data)
    assert bitstream.unpack(plain.data)[0].correction is None
    raw = decode(tiny_model, plain.data)  # what the decoder draws before correcting
    assert header.correction == fit_correction(image, raw)
    np.testing.assert_array_equal(decode(tiny_model, corrected.data),
                                  apply_correction(raw, header.correction))
    # The 6 bytes count towards a target: exactly the uncorrected file's rate
    # leaves no room for them in this fixed-rate model's only file.
    exact = 8 * len(plain.data) / (image.shape[0] * image.shape[1])
    assert encode_image(tiny_model, image, seed=3, bpp=exact, correct=False).data == plain.data
    with pytest.raises(RateError):
        encode_image(tiny_model, image, seed=3, bpp=exact)


def test_noise_seed_from_the_header_is_used(tiny_model):
    image = photo("chelsea", 8)
    # Without the colour correction: the tiny model's decodes correlate too
    # weakly with the photograph for its gains to keep their texture.
    def encode(model, image, seed=None):
        return encode_image(model, image, seed=seed, correct=False).data

    a1, a2, b = (encode(tiny_model, image, seed=s) for s in (1, 1, 2))
    assert a1 == a2
    assert bitstream.unpack(a1)[1] == bitstream.unpack(b)[1]  # same symbols
    assert bitstream.unpack(b)[0].seed == 2
    np.testing.assert_array_equal(decode(tiny_model, a1), decode(tiny_model, a2))
    assert not np.array_equal(decode(tiny_model, a1), decode(tiny_model, b))
    # Without a seed, equal images give equal files, and the file stores none:
    # the decoder derives the encoder's seed from the symbols it decodes.
    derived = encode(tiny_model, image)
    assert derived == encode(tiny_model, image.copy())
    header, _ = bitstream.unpack(derived)
    assert header.seed is None and len(derived) < len(a1)
    symbols = read_symbols(tiny_model, derived)[1]
    explicit = encode(tiny_model, image, seed=default_seed(symbols))
    np.testing.assert_array_equal(decode(tiny_model, derived), decode(tiny_model, explicit))


def test_bad_seed(tiny_model):
    with pytest.raises(ValueError, match="seed"):
        encode(tiny_model, noise(16, 16), seed=-1)
    with pytest.raises(ValueError, match="2\\*\\*64"):
        encode(tiny_model, noise(16, 16), seed=2**64)


def test_seeds_are_u64_end_to_end(tiny_model):
    # The container stores a u64; seeds of 2**63 and above used to reach
    # session.run as a raw TypeError.
    image = noise(16, 32, 4)
    for seed in (2**63, 2**64 - 1):
        data = encode(tiny_model, image, seed=seed)
        assert bitstream.unpack(data)[0].seed == seed
        assert decode(tiny_model, data).shape == (16, 32, 3)
    # Uncorrected: on a noise image this tiny model's decodes can correlate so
    # weakly with it that the fitted gain is 0 and every corrected file is flat.
    def raw(seed):
        return decode(tiny_model, encode_image(tiny_model, image, seed=seed, correct=False).data)

    assert not np.array_equal(raw(2**63), raw(0))


# --- errors -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_file(tiny_model):
    return encode(tiny_model, noise(32, 48, 3), seed=5)


def repack(data, **changes):
    """``data`` with header fields replaced and a valid CRC (a crafted file)."""
    header, payload = bitstream.unpack(data)
    fields = {f: getattr(header, f) for f in header.__dataclass_fields__}
    fields.update(changes)
    if fields["version"] == 1:  # version 1 has no colour correction
        fields["correction"] = None
        fields["flags"] &= ~bitstream.FLAG_COLOR_CORRECTION
    return bitstream.pack(bitstream.Header(**fields), payload)


def test_not_a_gcz(tiny_model):
    png = b"\x89PNG\r\n\x1a\n" + bytes(100)
    for data in (png, b"hello world, this is text", b"GCZ!"):
        with pytest.raises(NotAGczFileError):
            decode(tiny_model, data)


def test_truncated(tiny_model, small_file):
    head = len(small_file) - len(bitstream.unpack(small_file)[1]) - 4
    for n in (0, 3, 6, head - 1, head, len(small_file) - 1):
        with pytest.raises(TruncatedFileError):
            decode(tiny_model, small_file[:n])


def test_crc_flip(tiny_model, small_file):
    data = bytearray(small_file)
    data[-5] ^= 0x01  # the payload's last byte
    with pytest.raises(CorruptFileError, match="CRC"):
        decode(tiny_model, bytes(data))


def test_unsupported_version(tiny_model, small_file):
    data = bytearray(small_file)
    data[4] = 3
    with pytest.raises(UnsupportedVersionError, match="version 3"):
        decode(tiny_model, bytes(data))


def test_unknown_flags(tiny_model, small_file):
    body = bytearray(small_file[:-4])
    body[5] |= 0x80  # the flags varint's byte, and a second one: bit 10, unknown here
    body[6:6] = b"\x08"
    with pytest.raises(UnsupportedVersionError, match="flags"):
        decode(tiny_model, bytes(body) + struct.pack(">I", zlib.crc32(body)))
    with pytest.raises(CorruptFileError, match="a selective mask without a label map"):
        decode(tiny_model, repack(small_file, flags=bitstream.FLAG_SELECTIVE_MASK))
    with pytest.raises(CorruptFileError, match="a label map is stored, but the model takes none"):
        decode(tiny_model, repack(small_file, flags=bitstream.FLAG_SEMANTIC_MAP))


def test_model_mismatch(tiny_model, other_model, small_file):
    theirs = encode(other_model, noise(32, 48, 3))
    with pytest.raises(ModelMismatchError) as info:
        decode(tiny_model, theirs)
    message = str(info.value)
    assert other_model.fingerprint.hex()[:16] in message  # what the file stores
    assert tiny_model.fingerprint.hex() in message
    with pytest.raises(ModelMismatchError):
        decode(tiny_model, repack(small_file, fingerprint=bytes(16)))


def test_inconsistent_header(tiny_model, small_file):
    # Version 1 stores the bottleneck's size, which must fit the image's.
    as_v1 = {"version": 1, "fingerprint": tiny_model.fingerprint, "flags": 0, "model_name": ""}
    with pytest.raises(CorruptFileError, match="inconsistent"):
        decode(tiny_model, repack(small_file, image_height=200, **as_v1))
    # Version 2 derives it, so a larger claim needs more symbols than the payload holds.
    with pytest.raises(CorruptFileError):
        decode(tiny_model, repack(small_file, image_height=200, bottleneck_height=13))
    with pytest.raises(CorruptFileError, match="inconsistent"):
        decode(tiny_model, repack(small_file, num_centers=4))


def test_random_damage_only_raises_codec_errors(tiny_model, small_file):
    """Byte flips, truncations and CRC-fixed payload damage: clean errors, no hang."""
    rng = random.Random(1234)
    header_size = bitstream.HEADER_SIZE
    outcomes = {}
    start = time.monotonic()
    for trial in range(300):
        data = bytearray(small_file)
        kind = trial % 3
        if kind == 0:  # raw flips: the CRC (or magic/version/length) catches them
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] ^= rng.randint(1, 255)
        elif kind == 1:  # truncations, possibly with a flip
            data = data[:rng.randrange(len(data))]
            if data and rng.random() < 0.5:
                data[rng.randrange(len(data))] ^= rng.randint(1, 255)
        else:  # flips past the magic/version with a fixed CRC: a crafted file
            body = data[:-4]
            for _ in range(rng.randint(1, 3)):
                body[rng.randrange(5, len(body))] ^= rng.randint(1, 255)
            data = body + struct.pack(">I", zlib.crc32(body))
        try:
            image = decode(tiny_model, bytes(data))
        except (BitstreamError, ModelMismatchError) as e:
            outcomes[type(e).__name__] = outcomes.get(type(e).__name__, 0) + 1
        else:
            assert image.dtype == np.uint8 and image.ndim == 3
            outcomes["decoded"] = outcomes.get("decoded", 0) + 1
    elapsed = time.monotonic() - start
    print(f"300 damaged files in {elapsed:.1f} s: {outcomes}; header is {header_size} bytes")
    assert elapsed < 60
    assert {"CorruptFileError", "TruncatedFileError", "ModelMismatchError"} <= set(outcomes)


# --- bounded decoding -----------------------------------------------------------


def crafted(model, height, width, payload=b""):
    """A file with a valid CRC and the model's fingerprint claiming ``height x width``."""
    header = bitstream.Header(
        fingerprint=model.fingerprint, image_height=height, image_width=width,
        bottleneck_channels=model.config.channels, bottleneck_height=-(-height // 16),
        bottleneck_width=-(-width // 16), num_centers=model.config.num_centers, seed=0)
    return bitstream.pack(header, payload)


def test_a_small_file_cannot_claim_a_huge_image(tiny_model):
    start = time.monotonic()
    with pytest.raises(ImageTooLargeError, match="--max-pixels"):
        decode(tiny_model, crafted(tiny_model, 65536, 65536))
    # Under the limit, an empty payload must still justify its size.
    with pytest.raises(CorruptFileError, match="too short"):
        decode(tiny_model, crafted(tiny_model, 1024, 1024))
    assert time.monotonic() - start < 5  # refused before any decoding work
    with pytest.raises(ImageTooLargeError):
        decode(tiny_model, crafted(tiny_model, 64, 64), max_pixels=64 * 63)


def test_empty_short_and_overlong_payloads_are_refused(tiny_model, small_file):
    header, payload = bitstream.unpack(small_file)
    for bad in (b"", payload[:-4], payload + bytes(4), payload + b"\xff" * 8):
        with pytest.raises(CorruptFileError):
            decode(tiny_model, bitstream.pack(header, bad))


def test_decode_accepts_a_path(tiny_model, small_file, tmp_path):
    path = tmp_path / "a.gcz"
    path.write_bytes(small_file)
    np.testing.assert_array_equal(decode(tiny_model, str(path)), decode(tiny_model, small_file))
    np.testing.assert_array_equal(decode(tiny_model, path), decode(tiny_model, small_file))
    with pytest.raises(TypeError, match="bytes or the path"):
        decode(tiny_model, 12345)


def test_tiled_uint8_decode_equals_the_float_path(tiny_model):
    rng = np.random.default_rng(3)
    symbols = rng.integers(0, tiny_model.config.num_centers, (10, 13, tiny_model.config.channels))
    whole = tiny_model.decode(symbols, 7, tile=0)
    tiled = tiny_model.decode(symbols, 7, tile=4, as_uint8=True)
    assert tiled.dtype == np.uint8
    from compression.image_io import to_uint8

    # Tiles see the same neighbourhood and statistics: equal up to float rounding.
    assert np.abs(tiled.astype(int) - to_uint8(whole).astype(int)).max() <= 1


@pytest.mark.parametrize("shape", [(15, 15, 3), (15, 40, 3), (40, 15), (16, 15, 3)])
def test_image_too_small(tiny_model, shape):
    with pytest.raises(ImageReadError, match="minimum is 16x16"):
        encode(tiny_model, np.zeros(shape, np.uint8))


@pytest.mark.parametrize("bad", [np.zeros((32, 32, 3), np.float32), np.zeros((32, 32, 4),
                                 np.uint8), [[0] * 32] * 32])
def test_bad_arrays(tiny_model, bad):
    with pytest.raises(ImageReadError, match="expected a uint8 array"):
        encode(tiny_model, bad)


# --- semantic models: the label map travels in the file -----------------------


@pytest.fixture(scope="module")
def semantic_model(tmp_path_factory):
    """An initialised (untrained) semantic TINY with 5 classes: to the codec, a semantic model."""
    from conftest import TINY

    from compression.inference import initialize_run, load_model

    run = tmp_path_factory.mktemp("semantic") / "run"
    initialize_run(dataclasses.replace(TINY, semantic_classes=5), run)
    model = load_model(run)
    yield model
    model.close()


def street_labels(h, w):
    labels = np.zeros((h, w), np.uint8)
    labels[: h // 3] = 0                 # sky
    labels[h // 3: 2 * h // 3] = 1       # buildings
    labels[2 * h // 3:] = 3              # road
    labels[h // 2: 3 * h // 4, w // 4: w // 2] = 4  # a car
    return labels


def test_semantic_round_trip_carries_the_label_map(semantic_model):
    image, labels = photo("coffee"), street_labels(100, 150)
    result = encode_image(semantic_model, image, labels=labels)
    header, symbols, decoded_labels, mask = read_payload(semantic_model, result.data)
    assert mask is None  # not a selective file
    assert header.flags & bitstream.FLAG_SEMANTIC_MAP
    np.testing.assert_array_equal(decoded_labels, labels)  # lossless
    decoded = decode(semantic_model, result.data)  # the file is all the decoder needs
    assert decoded.shape == image.shape
    stats = file_stats(result.data)
    assert stats["label_bpp"] == pytest.approx(result.label_bpp) and result.label_bpp > 0
    # Every byte is accounted for: header and name, the label map with its
    # length, the symbols, the CRC.
    overhead = bitstream.unpack(result.data)[0].overhead + 4
    assert len(result.data) * 8 == pytest.approx(
        (result.label_bpp + result.payload_bpp) * 100 * 150 + 8 * overhead)
    # The label map changes the picture: the decoder uses it.
    other = labels.copy()
    other[:] = 2
    # Uncorrected (an untrained model's fitted gain can be 0 and flatten a file).
    def raw(labels):
        return decode(semantic_model,
                      encode_image(semantic_model, image, labels=labels, correct=False).data)

    assert not np.array_equal(raw(other), raw(labels))


def test_semantic_models_need_a_matching_label_map(semantic_model, tiny_model):
    image = photo("coffee")
    with pytest.raises(ConfigError, match="pass the image's label map"):
        encode_image(semantic_model, image)
    with pytest.raises(ConfigError, match="the label map is 150x99.*the image is 150x100"):
        encode_image(semantic_model, image, labels=street_labels(99, 150))
    with pytest.raises(ConfigError, match="class id 5, but this model knows 5 classes"):
        encode_image(semantic_model, image, labels=np.full((100, 150), 5, np.uint8))
    with pytest.raises(ConfigError, match="takes no label map"):
        encode_image(tiny_model, image, labels=street_labels(100, 150))


def test_a_damaged_label_map_in_a_file_is_a_corrupt_file(semantic_model):
    data = encode(semantic_model, photo("coffee"), labels=street_labels(100, 150))
    header, payload = bitstream.unpack(data)
    for bad in (payload[:3], b"\xff\xff\xff\xff" + payload[4:],
                payload[:4] + b"GIF8" + payload[8:]):
        with pytest.raises(CorruptFileError):
            read_payload(semantic_model, bitstream.pack(header, bad))
    plain = dataclasses.replace(header, flags=header.flags & ~bitstream.FLAG_SEMANTIC_MAP)
    with pytest.raises(CorruptFileError, match="label map is missing"):
        read_payload(semantic_model, bitstream.pack(plain, payload))


def test_rate_control_counts_the_label_map(semantic_model):
    image, labels = photo("coffee"), street_labels(100, 150)
    full = encode_image(semantic_model, image, labels=labels)
    assert encode_image(semantic_model, image, labels=labels, bpp=full.bpp).data == full.data
    with pytest.raises(RateError):
        encode_image(semantic_model, image, labels=labels, bpp=full.bpp - full.label_bpp / 2)


# -- selective compression (paper section 4.2) --------------------------------

STREET_CLASSES = ("sky", "building", "pole", "road", "car")


@pytest.fixture(scope="module")
def selective_model(tmp_path_factory):
    """An initialised semantic TINY trained-for-selective by config, with class names."""
    from conftest import TINY

    from compression.inference import initialize_run, load_model

    run = tmp_path_factory.mktemp("selective") / "run"
    initialize_run(dataclasses.replace(TINY, semantic_classes=5, class_names=STREET_CLASSES,
                                       selective_probability=0.5), run)
    model = load_model(run)
    yield model
    model.close()


def test_selective_file_codes_only_the_kept_cells(selective_model):
    from compression.mask import mask_from_labels

    image, labels = photo("coffee"), street_labels(100, 150)
    full = encode_image(selective_model, image, labels=labels)
    cars = encode_image(selective_model, image, labels=labels, keep="car")
    header, symbols, decoded_labels, mask = read_payload(selective_model, cars.data)
    assert header.flags & bitstream.FLAG_SELECTIVE_MASK
    np.testing.assert_array_equal(mask, mask_from_labels(labels, [4]))
    np.testing.assert_array_equal(decoded_labels, labels)
    _, all_symbols, _, _ = read_payload(selective_model, full.data)
    kept = mask.astype(bool)
    # Inside the mask the symbols are the full file's; outside nothing was stored.
    np.testing.assert_array_equal(symbols[kept], all_symbols[kept])
    assert (symbols[~kept] == 0).all()
    assert cars.kept_fraction == pytest.approx(mask.mean()) and 0 < cars.kept_fraction < 0.5
    assert cars.payload_bpp < 0.6 * full.payload_bpp and cars.bpp < full.bpp
    # The class list costs 3 bytes: kind, count, id (plus its u32 length).
    assert cars.mask_bpp == pytest.approx(8 * 3 / (100 * 150))
    stats = file_stats(cars.data)
    assert stats["kept_fraction"] == pytest.approx(cars.kept_fraction)
    assert stats["mask_bpp"] == pytest.approx(cars.mask_bpp)
    overhead = bitstream.unpack(cars.data)[0].overhead + 4 + 4
    assert len(cars.data) * 8 == pytest.approx(
        (cars.label_bpp + cars.mask_bpp + cars.payload_bpp) * 100 * 150 + 8 * overhead)
    decoded = decode(selective_model, cars.data)
    assert decoded.shape == image.shape
    # The mask changes the picture.  Compared uncorrected: an untrained model's
    # fitted gain can be 0, which would flatten both files to the same mean.
    def raw(**kw):
        return decode(selective_model, encode_image(selective_model, image, labels=labels,
                                                    correct=False, **kw).data)

    assert not np.array_equal(raw(keep="car"), raw())


def test_selective_decoding_ignores_the_symbols_outside_the_mask(selective_model):
    """w_hat is zeroed outside the mask, so whatever stands there cannot matter."""
    image, labels = photo("coffee"), street_labels(100, 150)
    data = encode_image(selective_model, image, labels=labels, keep="car").data
    header, symbols, _, mask = read_payload(selective_model, data)
    padded = pad_to_multiple(labels, 16)[0]
    noisy = symbols.copy()
    noisy[~mask.astype(bool)] = np.random.default_rng(0).integers(
        0, 5, noisy[~mask.astype(bool)].shape)
    # The file stores no seed: it is derived from the kept cells' symbols, as
    # the encoder derived it, so the decoded file is this decode.
    assert header.seed is None
    seed = noise_seed(header, symbols, mask)
    a = selective_model.decode(symbols, seed, labels=padded, mask=mask)
    full = selective_model.decode(symbols, seed, labels=padded, mask=mask, as_uint8=True)
    np.testing.assert_array_equal(decode(selective_model, data),
                                  apply_correction(crop_to(full, (100, 150)), header.correction))
    b = selective_model.decode(noisy, seed, labels=padded, mask=mask)
    np.testing.assert_array_equal(a, b)
    c = selective_model.decode(noisy, seed, labels=padded)  # no mask: they count
    assert not np.array_equal(a, c)


def test_fully_synthesised_and_explicit_masks(selective_model):
    image, labels = photo("coffee"), street_labels(100, 150)
    nothing = encode_image(selective_model, image, labels=labels, keep="none")
    _, symbols, _, mask = read_payload(selective_model, nothing.data)
    assert nothing.kept_fraction == 0 and not mask.any() and nothing.payload_bpp == 0
    assert decode(selective_model, nothing.data).shape == image.shape
    explicit = np.zeros((7, 10), np.uint8)
    explicit[2:5, 3:8] = 1
    boxed = encode_image(selective_model, image, labels=labels, mask=explicit)
    _, _, _, mask = read_payload(selective_model, boxed.data)
    np.testing.assert_array_equal(mask, explicit)
    assert file_stats(boxed.data)["kept_fraction"] == pytest.approx(15 / 70)


def test_selective_compression_errors(selective_model, semantic_model):
    image, labels = photo("coffee"), street_labels(100, 150)
    with pytest.raises(ConfigError, match="not trained for selective compression"):
        encode_image(semantic_model, image, labels=labels, keep="0")
    with pytest.raises(ConfigError, match="unknown class 'bus'.*4 car"):
        encode_image(selective_model, image, labels=labels, keep="car,bus")
    with pytest.raises(ConfigError, match="unknown class '5'"):
        encode_image(selective_model, image, labels=labels, keep=[5])
    with pytest.raises(ConfigError, match="7x10 array of 0 and 1"):
        encode_image(selective_model, image, labels=labels, mask=np.ones((7, 9), np.uint8))
    with pytest.raises(ConfigError, match="7x10 array of 0 and 1"):
        encode_image(selective_model, image, labels=labels, mask=np.full((7, 10), 2))
    with pytest.raises(ValueError, match="not both"):
        encode_image(selective_model, image, labels=labels, keep="car",
                     mask=np.ones((7, 10), np.uint8))


def test_a_damaged_mask_is_a_corrupt_file(selective_model):
    image, labels = photo("coffee"), street_labels(100, 150)
    data = encode_image(selective_model, image, labels=labels, keep="car").data
    header, payload = bitstream.unpack(data)
    (label_length,) = struct.unpack_from(">I", payload)
    at = 4 + label_length  # the mask's u32 length, then kind, count, ids
    for bad in (payload[:at + 4] + b"\x07" + payload[at + 5:],     # unknown coding
                payload[:at + 6] + b"\x09" + payload[at + 7:],     # class id 9 of 5
                payload[:at] + b"\xff\xff\xff\xff" + payload[at + 4:]):  # overlong section
        with pytest.raises(CorruptFileError):
            read_payload(selective_model, bitstream.pack(header, bad))


def test_mutated_selective_payloads_give_only_codec_errors(selective_model):
    """Label map, mask and symbols of a selective file, damaged (CRC made to match)."""
    from compression.errors import CompressionError

    image, labels = photo("coffee"), street_labels(100, 150)
    data = encode_image(selective_model, image, labels=labels, keep="car,road").data
    header, payload = bitstream.unpack(data)
    rng = np.random.default_rng(7)
    decoded = refused = 0
    for _ in range(300):
        bad = bytearray(payload)
        for _ in range(int(rng.integers(1, 4))):
            at = int(rng.integers(0, len(bad)))
            bad[at] = int(rng.integers(0, 256))
        if rng.random() < 0.2:
            bad = bad[:int(rng.integers(0, len(bad)))]
        try:
            _, symbols, out_labels, mask = read_payload(selective_model,
                                                        bitstream.pack(header, bytes(bad)))
        except CompressionError:
            refused += 1
            continue
        decoded += 1
        assert symbols.shape[:2] == mask.shape == (7, 10) and out_labels.shape == (100, 150)
        assert out_labels.max() < 5 and set(np.unique(mask)) <= {0, 1}
    assert refused > 100


def test_coarse_label_maps_in_selective_files(selective_model):
    from compression.label_map import coarse_labels
    from compression.mask import MASK_BITMAP, MASK_CLASSES, MASK_CORRECTED, mask_from_labels

    image, labels = photo("coffee"), street_labels(100, 150)
    coarse = encode_image(selective_model, image, labels=labels, keep="car", label_factor=4)
    _, _, seen, mask = read_payload(selective_model, coarse.data)
    np.testing.assert_array_equal(seen, coarse_labels(labels, 4))
    np.testing.assert_array_equal(mask, mask_from_labels(labels, [4]))
    header, payload = bitstream.unpack(coarse.data)
    (label_length,) = struct.unpack_from(">I", payload)
    assert payload[4 + label_length + 4] == MASK_CLASSES   # the coarse map gives the same cells
    # A one-pixel pole on a column the coarse map skips: the mask must still keep
    # it, so it is stored as a bitmap.
    pole = labels.copy()
    pole[10:60, 73] = 2
    result = encode_image(selective_model, image, labels=pole, keep="car,pole", label_factor=4)
    header, payload = bitstream.unpack(result.data)
    (label_length,) = struct.unpack_from(">I", payload)
    assert payload[4 + label_length + 4] in (MASK_BITMAP, MASK_CORRECTED)
    _, _, seen, mask = read_payload(selective_model, result.data)
    assert not (seen == 2).any()
    np.testing.assert_array_equal(mask, mask_from_labels(pole, [2, 4]))
    assert decode(selective_model, result.data).shape == image.shape
    with pytest.raises(ConfigError, match="label_factor must be one of"):
        encode_image(selective_model, image, labels=labels, label_factor=3)
