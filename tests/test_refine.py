"""Encode-time refinement (compression.refine): files that decode closer at no more bytes."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from skimage import data as skdata

from compression import bitstream, codec, refine
from compression.codec import decode, default_seed, encode_image
from compression.errors import ConfigError
from compression.image_io import pad_to_multiple, to_float
from compression.losses import distortion_loss


def photo(name="coffee", step=4):
    return np.ascontiguousarray(getattr(skdata, name)()[::step, ::step, :3])


def mse(a, b):
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def test_refined_files_decode_closer_at_no_more_bytes(variable_rate_model):
    model, image = variable_rate_model, photo()
    # Uncorrected: the colour correction alone takes most of what the tiny model can gain.
    plain = encode_image(model, image, channels=4, correct=False)
    refined = encode_image(model, image, channels=4, refine=8, correct=False)
    assert len(refined.data) <= len(plain.data)
    assert refined.refined_step > 0 and plain.refined_step == 0
    assert refined.channels == 4 and refined.bpp == pytest.approx(8 * len(refined.data) / 15000)
    assert mse(decode(model, refined.data), image) < mse(decode(model, plain.data), image)


def test_a_target_rate_holds_at_every_step(variable_rate_model):
    model, image = variable_rate_model, photo("astronaut", 4)
    pixels = image.shape[0] * image.shape[1]
    # A target exactly at the encoder's 3-channel file: no iterate may be a byte longer.
    target = 8 * len(encode_image(model, image, channels=3).data) / pixels
    refined = encode_image(model, image, bpp=target, refine=6)
    # Refinement runs at 3 channels; the bytes it saves may buy rows of a 4th.
    whole = refined.channels - (refined.last_channel_rows is not None)
    assert whole == 3 and refined.bpp <= target


def test_the_chosen_step_is_scored_as_its_file_decodes(variable_rate_model):
    # The refinement's distortion of its choice is that of decoding the file
    # it wrote, the noise seed derived from the new symbols and the crop included.
    model, image = variable_rate_model, photo()
    cfg, k = model.config, 4
    padded, _ = pad_to_multiple(image, 16)
    files = {}

    def code(symbols):
        files[symbols.tobytes()] = symbols.copy()
        return symbols[:, :, :k].tobytes()

    result = refine.refine_symbols(model, to_float(padded), image.shape[:2], k, code,
                                   lambda data: True, steps=5)
    assert result.steps == 5 and result.distortion <= result.initial_distortion
    symbols = result.symbols[:, :, :k]
    decoded = model.decode(symbols, default_seed(symbols))[:100, :150]
    expected = cfg.lambda_mse * float(distortion_loss(
        tf.constant(to_float(image)[None]), tf.constant(decoded[None]), cfg.chroma_weight))
    assert result.distortion == pytest.approx(expected, rel=1e-3)


def test_refinement_scores_the_colour_corrected_decode(variable_rate_model):
    # A file that carries a colour correction is scored as the decoder will correct it.
    model, image = variable_rate_model, photo()
    cfg, k = model.config, 4
    padded, _ = pad_to_multiple(image, 16)
    result = refine.refine_symbols(model, to_float(padded), image.shape[:2], k,
                                   lambda s: s[:, :, :k].tobytes(), lambda data: True, steps=2,
                                   correct=True)
    symbols = result.symbols[:, :, :k]
    y = model.decode(symbols, default_seed(symbols))[:100, :150].astype(np.float64)
    x = to_float(image).astype(np.float64)
    dx, dy = x - x.mean((0, 1)), y - y.mean((0, 1))
    sx, sy = dx.std((0, 1)), dy.std((0, 1))
    gain = np.sqrt(np.maximum((dx * dy).mean((0, 1)) / (sx * sy), 0)) * sx / sy
    corrected = np.clip(gain * dy + x.mean((0, 1)), -1, 1).astype(np.float32)
    expected = cfg.lambda_mse * float(distortion_loss(
        tf.constant(to_float(image)[None]), tf.constant(corrected[None]), cfg.chroma_weight))
    assert result.distortion == pytest.approx(expected, rel=1e-3)
    uncorrected = refine.refine_symbols(model, to_float(padded), image.shape[:2], k,
                                        lambda s: s[:, :, :k].tobytes(), lambda data: True,
                                        steps=1)
    assert result.initial_distortion < uncorrected.initial_distortion


def test_an_explicit_seed_is_kept(variable_rate_model):
    result = encode_image(variable_rate_model, photo(), channels=2, seed=7, refine=2)
    header, _ = bitstream.unpack(result.data)
    assert header.seed == 7


def test_refinement_builds_one_graph_per_count_of_ms_ssim_scales(variable_rate_model):
    # Sizes are dynamic: a folder of photographs of many sizes adds at most five graphs.
    model, image = variable_rate_model, photo("chelsea", 8)  # 38x57: two MS-SSIM scales
    encode_image(model, image, channels=2, refine=1)
    ops = len(model.graph.get_operations())
    encode_image(model, image[::-1], channels=3, refine=1)  # same size, other content and k
    encode_image(model, image[:, :40], channels=2, refine=1, seeds=2)  # other size, 2 scales
    assert len(model.graph.get_operations()) == ops
    encode_image(model, image[:20], channels=2, refine=1)  # 20 pixels high: one scale
    assert len(model.graph.get_operations()) > ops


def model_distortion(model, image, decoded):
    cfg = model.config
    assert not cfg.lambda_ms_ssim  # TINY: the model's distortion is its weighted MSE
    return cfg.lambda_mse * float(distortion_loss(
        tf.constant(to_float(image)[None]), tf.constant(decoded[None]), cfg.chroma_weight))


def test_the_seed_search_keeps_the_seed_that_decodes_best(variable_rate_model):
    model, image, k = variable_rate_model, photo(), 3
    padded, _ = pad_to_multiple(image, 16)
    symbols = model.encode(to_float(padded))
    choice = refine.choose_seed(model, to_float(padded), image.shape[:2], symbols, k,
                                lambda s, seed: bytes([0 if seed is None else seed + 1]),
                                lambda data: True, seeds=6)
    h, w = image.shape[:2]
    losses = {seed: model_distortion(model, image, model.decode(
        symbols[:, :, :k], default_seed(symbols[:, :, :k]) if seed is None else seed)[:h, :w])
        for seed in [None, 0, 1, 2, 3, 4]}
    assert choice.tried == 6 and choice.initial_distortion == pytest.approx(losses[None], 1e-4)
    assert choice.distortion == pytest.approx(min(losses.values()), rel=1e-4)
    assert losses[choice.seed] == pytest.approx(choice.distortion, rel=1e-4)
    assert choice.data == bytes([0 if choice.seed is None else choice.seed + 1])


def test_searched_seeds_are_stored_and_decode(variable_rate_model):
    model, image = variable_rate_model, photo("astronaut", 4)
    plain = encode_image(model, image, channels=3, correct=False)
    searched = encode_image(model, image, channels=3, seeds=12, correct=False)
    header, _ = bitstream.unpack(searched.data)
    assert header.seed == searched.seed and searched.seed in [None, *range(11)]
    assert len(searched.data) - len(plain.data) == (0 if searched.seed is None else 1)
    assert searched.payload_bpp == plain.payload_bpp  # the same symbols
    # The search ranks by the model's loss (MSE and MS-SSIM), which the squared error
    # alone follows to within a little (the argmin itself is tested above).
    assert mse(decode(model, searched.data), image) <= 1.001 * mse(decode(model, plain.data),
                                                                   image)
    both = encode_image(model, image, channels=3, seeds=12, refine=2, correct=False)
    assert both.seed == searched.seed == bitstream.unpack(both.data)[0].seed


def test_the_seeds_byte_counts_towards_the_target(variable_rate_model):
    model, image = variable_rate_model, photo("astronaut", 4)
    pixels = image.shape[0] * image.shape[1]
    plain = encode_image(model, image, channels=3)
    exact = encode_image(model, image, bpp=8 * len(plain.data) / pixels, seeds=12)
    assert exact.seed is None and exact.data == plain.data  # no room for the byte


def test_a_speckled_decode_is_recoded_with_the_seed_search(variable_rate_model, monkeypatch):
    model, image = variable_rate_model, photo("astronaut", 4)
    pixels = image.shape[0] * image.shape[1]
    # No decode counted as speckled (an untrained model's may well be): the derived seed.
    monkeypatch.setattr(codec, "SPECKLE_LIMIT", np.inf)
    plain = encode_image(model, image, channels=3)
    assert plain.seed is None
    searched = encode_image(model, image, channels=3, seeds=codec.SPECKLE_SEEDS)
    assert searched.seed is not None  # the test below needs a search that moves
    # Every decode counted as a speckled patch: the file is the seed search's.
    monkeypatch.setattr(codec, "SPECKLE_LIMIT", -np.inf)
    monkeypatch.setattr(codec, "SPECKLE_TYPICAL", np.inf)
    guarded = encode_image(model, image, channels=3)
    assert (guarded.seed, guarded.data) == (searched.seed, searched.data)
    assert decode(model, guarded.data).shape == image.shape
    # A seed the caller chose is kept, and so is a file without room for the seed's byte.
    assert encode_image(model, image, channels=3, seed=5).seed == 5
    exact = encode_image(model, image, bpp=8 * len(plain.data) / pixels)
    assert exact.seed is None and exact.data == plain.data
    # An untrained model's decode is speckled everywhere, not in a patch: left alone.
    monkeypatch.setattr(codec, "SPECKLE_TYPICAL", 1.0)
    assert encode_image(model, image, channels=3).data == plain.data


@pytest.fixture(scope="module")
def selective_model(tmp_path_factory):
    """An initialised semantic TINY for selective compression: labels and masks."""
    from conftest import TINY

    from compression.inference import initialize_run, load_model

    run = tmp_path_factory.mktemp("refine_selective") / "run"
    initialize_run(dataclasses.replace(
        TINY, semantic_classes=3, class_names=["sky", "road", "car"],
        selective_probability=0.5), run)
    model = load_model(run)
    yield model
    model.close()


def test_semantic_and_selective_files_refine(selective_model):
    model, image = selective_model, photo()
    labels = np.zeros((100, 150), np.uint8)
    labels[50:] = 1
    labels[60:80, 40:90] = 2
    plain = encode_image(model, image, labels=labels, keep="car")
    refined = encode_image(model, image, labels=labels, keep="car", refine=3)
    assert len(refined.data) <= len(plain.data)
    assert refined.kept_fraction == plain.kept_fraction < 1
    assert decode(model, refined.data).shape == image.shape


def test_bad_refinements_are_clear_errors(variable_rate_model, monkeypatch):
    model, image = variable_rate_model, photo("chelsea", 8)
    for steps in (-1, True, 2.5):
        with pytest.raises(ConfigError, match="refine takes a number of steps"):
            encode_image(model, image, refine=steps)
    with pytest.raises(ConfigError, match=f"1..{refine.MAX_STEPS} steps"):
        encode_image(model, image, refine=refine.MAX_STEPS + 1)
    for seeds in (0, False, 1.5):
        with pytest.raises(ConfigError, match="seeds takes a number of seeds >= 1"):
            encode_image(model, image, seeds=seeds)
    with pytest.raises(ConfigError, match=f"2..{refine.MAX_SEEDS} seeds"):
        encode_image(model, image, seeds=refine.MAX_SEEDS + 1)
    with pytest.raises(ConfigError, match="pass seed or seeds, not both"):
        encode_image(model, image, seeds=4, seed=3)
    monkeypatch.setattr(refine, "MAX_PIXELS", 32 * 32)
    with pytest.raises(ConfigError, match="without --refine, or downscale it"):
        encode_image(model, image, refine=1)
    with pytest.raises(ConfigError, match="without --seeds, or downscale it"):
        encode_image(model, image, seeds=2)
