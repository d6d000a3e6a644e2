"""compression.rate_control, and variable-rate models end to end: nested channels, k in the file."""

import dataclasses

import numpy as np
import pytest
from conftest import TINY, TINY_VARIABLE_RATE
from skimage import data as skdata

from compression import bitstream
from compression.codec import decode_image, encode_image, file_stats, noise_seed, read_symbols
from compression.context_model import encode_symbols_in_context
from compression.correction import apply_correction
from compression.entropy_model import encode_symbols
from compression.errors import ConfigError, CorruptFileError, RateError
from compression.image_io import pad_to_multiple, to_float
from compression.metrics import ms_ssim
from compression.rate_control import (
    channel_choices,
    choose_channels,
    file_bpp,
    highest_rate_position,
    largest_rows,
    partial_channel,
)


def fake_code(sizes):
    """A ``code`` whose file for ``k`` channels is ``sizes[k]`` bytes; records the calls."""
    calls = []

    def code(k):
        calls.append(k)
        return bytes(sizes[k])

    return code, calls


def test_channel_choices():
    assert list(channel_choices(TINY)) == [4]
    assert list(channel_choices(TINY_VARIABLE_RATE)) == [2, 3, 4, 5, 6]


def test_the_largest_k_that_fits_is_chosen():
    sizes = {1: 100, 2: 180, 3: 260, 4: 340}
    for target_bytes, expected in ((1000, 4), (340, 4), (339, 3), (260, 3), (200, 2), (100, 1)):
        code, _ = fake_code(sizes)
        k, data = choose_channels(code, range(1, 5), 8, file_bpp(target_bytes, 8))
        assert (k, len(data)) == (expected, sizes[expected])


def test_the_search_stops_at_the_first_fit_from_the_top():
    code, calls = fake_code({1: 100, 2: 180, 3: 260, 4: 340})
    choose_channels(code, range(1, 5), 8, 1e9)
    assert calls == [4]
    code, calls = fake_code({1: 100, 2: 180, 3: 260, 4: 340})
    assert choose_channels(code, range(1, 5), 8, None)[0] == 4 and calls == [4]


def test_a_size_that_does_not_grow_with_k_still_never_exceeds_the_target():
    # Coders round: a larger k may (rarely) give a smaller file.  The target holds anyway.
    code, _ = fake_code({1: 100, 2: 190, 3: 185, 4: 340})
    k, data = choose_channels(code, range(1, 5), 8, file_bpp(188, 8))
    assert k == 3 and len(data) <= 188


def test_targets_below_the_range_name_it():
    code, _ = fake_code({2: 100, 3: 150, 4: 200})
    with pytest.raises(RateError, match=r"0\.5000 bpp \(2 of 4 channels\); its range for "
                                        r"this image is 0\.5000-1\.0000 bpp"):
        choose_channels(code, range(2, 5), 1600, 0.4)
    code, _ = fake_code({4: 200})
    with pytest.raises(RateError, match=r"fixed-rate model's file for this image, 1\.0000 bpp"):
        choose_channels(code, [4], 1600, 0.9)
    # A rate-adaptive model cuts channels at its lowest rate; its largest file (every
    # channel at its highest rate) ends the range the error names.
    code, _ = fake_code({2: 100, 3: 150, 4: 200})
    with pytest.raises(RateError, match=r"\(2 of 4 channels\); its range for this image is "
                                        r"0\.5000-2\.0000 bpp"):
        choose_channels(code, range(2, 5), 1600, 0.4, largest_bytes=400)
    code, _ = fake_code({4: 200})
    with pytest.raises(RateError, match=r"1\.0000 bpp \(at its lowest rate\); its range for "
                                        r"this image is 1\.0000-2\.0000 bpp"):
        choose_channels(code, [4], 1600, 0.9, largest_bytes=400)
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(RateError, match="positive number"):
            choose_channels(code, [4], 1600, bad)


def test_the_most_rows_that_fit_are_found_by_bisection():
    calls = []

    def code(rows):
        calls.append(rows)
        return bytes(100 + 10 * rows)

    for target_bytes, expected in ((1000, 23), (330, 23), (329, 22), (200, 10), (115, 1)):
        calls.clear()
        rows, data = largest_rows(code, 24, 8, file_bpp(target_bytes, 8))
        assert (rows, len(data)) == (expected, 100 + 10 * expected)
        assert len(calls) <= 5  # log2(23) codings, not 23
    assert largest_rows(code, 24, 8, file_bpp(109, 8)) == (None, None)
    assert largest_rows(code, 1, 8, 1e9) == (None, None)  # a one-row map has no part to code


def test_the_highest_rate_position_that_fits_is_found_by_bisection():
    calls = []

    def code(byte):  # files shrink as the byte (the rate weight) grows
        calls.append(byte)
        return bytes(1000 - 2 * byte)

    for target_bytes, expected in ((5000, 0), (1000, 0), (999, 1), (800, 100), (801, 100),
                                   (490, 255), (100, 255)):
        calls.clear()
        assert highest_rate_position(code, 8, file_bpp(target_bytes, 8)) == expected
        assert len(calls) <= 9  # 1 + log2(255) codings, not 256
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(RateError, match="positive number"):
            highest_rate_position(code, 8, bad)


def test_a_partial_channel_keeps_its_leading_rows():
    symbols = np.arange(2 * 3 * 2).reshape(2, 3, 2) + 1
    kept = partial_channel(symbols, 1)
    np.testing.assert_array_equal(kept[:, :, 0], symbols[:, :, 0])
    np.testing.assert_array_equal(kept[:, :, 1], [[2, 4, 6], [0, 0, 0]])
    assert symbols.min() == 1  # a copy


# --- with a real variable-rate model --------------------------------------


def street(h=256, w=384):
    return np.ascontiguousarray(skdata.astronaut()[:h, :w])


def test_every_leading_k_decodes_and_the_file_records_it(variable_rate_model):
    model = variable_rate_model
    image = street()
    padded, _ = pad_to_multiple(image, 16)
    symbols = model.encode(to_float(padded))
    assert symbols.shape[2] == 6
    sizes, direct = [], {}
    for k in channel_choices(model.config):
        # Any leading k decodes directly ...
        direct[k] = model.decode(symbols[:, :, :k], seed=7, as_uint8=True)
        assert direct[k].shape == (256, 384, 3)
        # ... and through a file that records k and restores exactly those symbols.
        result = encode_image(model, image, seed=7, channels=k)
        assert result.channels == k
        header, restored = read_symbols(model, result.data)
        assert header.bottleneck_channels == k and file_stats(result.data)["channels"] == k
        np.testing.assert_array_equal(restored, symbols[:, :, :k])
        np.testing.assert_array_equal(decode_image(model, result.data)[0],
                                      apply_correction(direct[k], header.correction))
        sizes.append(len(result.data))
    assert sizes == sorted(sizes)
    # The dropped channels change the picture: k matters to the decoder.  (Compared
    # before the correction: this 6-step model's decodes can correlate so weakly with
    # the photograph that the fitted gain is 0 and every corrected file is flat.)
    assert not np.array_equal(direct[2], direct[6])


def test_channel_counts_outside_the_model_are_refused(variable_rate_model, tiny_model):
    image = street(64, 64)
    for model, bad in ((variable_rate_model, 1), (variable_rate_model, 7), (tiny_model, 3)):
        with pytest.raises(RateError, match=f"not {bad}"):
            encode_image(model, image, channels=bad)
    with pytest.raises(ValueError, match="not both"):
        encode_image(variable_rate_model, image, bpp=0.1, channels=3)
    with pytest.raises(ConfigError, match=r"symbols must have shape \[h, w, 2..6\]"):
        variable_rate_model.decode(np.zeros((4, 4, 1), np.int32), seed=0)


def test_a_file_claiming_channels_outside_the_model_is_corrupt(variable_rate_model):
    data = encode_image(variable_rate_model, street(64, 64), channels=2).data
    header, payload = bitstream.unpack(data)
    for bad in (1, 7):
        forged = bitstream.pack(dataclasses.replace(header, bottleneck_channels=bad), payload)
        with pytest.raises(CorruptFileError, match=r"expects \(4, 4, '2..6'\)"):
            decode_image(variable_rate_model, forged)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rate_control_never_exceeds_the_target(variable_rate_model, seed):
    model = variable_rate_model
    rng = np.random.default_rng(seed)
    h, w = (int(n) for n in rng.integers(64, 300, 2))
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.clip(np.stack([xx * 2, yy * 3, xx + yy], -1) % 256
                    + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
    sizes = {k: len(encode_image(model, image, channels=k).data)
             for k in channel_choices(model.config)}
    fitted = 0
    for target in np.geomspace(0.01, 2.0, 25):
        fits = [k for k, size in sizes.items() if file_bpp(size, h * w) <= target]
        if not fits:
            with pytest.raises(RateError, match="below the smallest file"):
                encode_image(model, image, bpp=float(target))
            continue
        result = encode_image(model, image, bpp=float(target))
        assert result.bpp <= target and result.bpp == file_bpp(len(result.data), h * w)
        # The largest k that fits, and perhaps part of one more.
        whole = result.channels - (result.last_channel_rows is not None)
        assert whole == max(fits)
        assert result.last_channel_rows is None or result.channels in sizes
        fitted += 1
    assert fitted >= 5


def test_a_file_with_a_partial_channel_decodes_as_the_decoder_does(variable_rate_model):
    model = variable_rate_model
    image = street(128, 192)
    padded, _ = pad_to_multiple(image, 16)
    symbols = partial_channel(model.encode(to_float(padded))[:, :, :4], 3)
    whole = encode_image(model, image, channels=4)
    header, _ = bitstream.unpack(whole.data)
    # The codec's own stream, with a header saying 3 of 8 rows of channel 4 are coded.
    payload = (encode_symbols_in_context(symbols, model.context_table[:4], 3)
               if header.flags & bitstream.FLAG_CONTEXT_CODED
               else encode_symbols(symbols, model.probabilities[:4], 3))
    data = bitstream.pack(dataclasses.replace(header, last_channel_rows=3), payload)
    assert file_stats(data)["last_channel_rows"] == "3 of 8"
    restored_header, restored = read_symbols(model, data)
    np.testing.assert_array_equal(restored, symbols)
    direct = model.decode(symbols, noise_seed(restored_header, symbols),
                          as_uint8=True, last_rows=3)
    decoded = decode_image(model, data)[0]
    np.testing.assert_array_equal(decoded, apply_correction(direct, header.correction))
    # Part of a channel is neither the channels before it nor all of it.
    for k in (3, 4):
        full = model.decode(symbols[:, :, :k], seed=0, as_uint8=True)
        assert not np.array_equal(model.decode(symbols, 0, as_uint8=True, last_rows=3), full)
    for bad in (0, 8, 2.0):
        with pytest.raises(ConfigError, match="last_rows"):
            model.decode(symbols, 0, last_rows=bad)
    with pytest.raises(ConfigError, match="at least 2 whole channels"):
        model.decode(symbols[:, :, :2], 0, last_rows=3)


def test_a_partial_channel_after_too_few_whole_ones_is_corrupt(variable_rate_model):
    data = encode_image(variable_rate_model, street(64, 64), channels=2).data
    header, payload = bitstream.unpack(data)
    forged = bitstream.pack(dataclasses.replace(header, last_channel_rows=1), payload)
    with pytest.raises(CorruptFileError, match="decodes at least 2 whole channels"):
        decode_image(variable_rate_model, forged)


def test_rate_control_fills_the_budget_with_part_of_a_channel_when_it_decodes_better(
        variable_rate_model):
    model = variable_rate_model
    image = street(160, 240)
    pixels = 160 * 240
    sizes = {k: len(encode_image(model, image, channels=k).data)
             for k in channel_choices(model.config)}
    partial = 0
    for k in (2, 3, 4, 5):
        for share in (0.3, 0.6, 0.9):
            target = file_bpp(sizes[k] + share * (sizes[k + 1] - sizes[k]), pixels)
            result = encode_image(model, image, bpp=target)
            assert result.bpp <= target
            whole = encode_image(model, image, channels=k)
            if result.last_channel_rows is None:
                assert result.channels == k
                continue
            partial += 1
            assert result.channels == k + 1 and 1 <= result.last_channel_rows < 10
            assert k < result.effective_channels < k + 1
            assert result.bpp > whole.bpp  # the budget is spent ...
            # ... on a file that decodes better than k whole channels (the encoder's test).
            assert (ms_ssim(image, decode_image(model, result.data)[0])
                    > ms_ssim(image, decode_image(model, whole.data)[0]))
            # Without a target, and with an exact k, files code whole channels.
            assert encode_image(model, image, channels=k + 1).last_channel_rows is None
    assert partial  # some budgets between two whole channels are spent on a part
