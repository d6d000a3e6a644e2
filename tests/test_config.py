"""compression.config: validation, serialisation and the bpp -> channels choice."""

import dataclasses
import json
import math

import pytest

from compression.config import PAPER_WIDTHS, CompressionConfig
from compression.errors import ConfigError

TINY = dict(channels=4, width=0.125, residual_blocks=1, discriminator_width=0.125,
            discriminator_scales=2, noise_dim=16, upsample_dim=32,
            crop_height=64, crop_width=64)
TINY_WITHOUT_CHANNELS = {k: v for k, v in TINY.items() if k != "channels"}


def test_defaults_are_the_paper_model():
    cfg = CompressionConfig()
    assert cfg.channels == 8
    assert cfg.centers == (-2.0, -1.0, 0.0, 1.0, 2.0)
    assert cfg.num_centers == 5
    assert cfg.filters == PAPER_WIDTHS == (60, 120, 240, 480, 960)
    assert cfg.discriminator_filters == (64, 128, 256, 512)
    assert cfg.residual_blocks == 9 and cfg.discriminator_scales == 3
    assert cfg.crop_size == (512, 1024)
    assert cfg.notes == ()


def test_defaults_are_the_measured_recipe():
    cfg = CompressionConfig()
    assert (cfg.quantizer, cfg.g_learning_rate, cfg.d_learning_rate, cfg.beta1,
            cfg.ema_decay) == ("bounded_ste", 1e-4, 1e-4, 0.9, 0.999)
    assert (cfg.gan_start_step, cfg.d_warmup_steps, cfg.gan_ramp_steps, cfg.freeze_encoder,
            cfg.lambda_gan, cfg.lambda_fm) == (15000, 500, 1000, True, 0.04, 0.4)


def test_a_saved_config_without_later_fields_keeps_their_first_meaning():
    # A config.json of the first release has none of the later fields: it
    # must load as the soft-quantiser model it was, whatever today's defaults.
    first = {k: v for k, v in CompressionConfig(quantizer="soft").to_dict().items()
             if k not in ("quantizer", "noise_batch", "freeze_encoder", "gan_ramp_steps",
                          "corrected_loss")}
    cfg = CompressionConfig.from_dict(first)
    assert (cfg.quantizer, cfg.noise_batch, cfg.freeze_encoder, cfg.gan_ramp_steps,
            cfg.corrected_loss) == ("soft", 1, False, 0, False)
    assert CompressionConfig.from_dict(CompressionConfig().to_dict()) == CompressionConfig()


def test_width_scales_filters():
    assert CompressionConfig(width=0.25).filters == (15, 30, 60, 120, 240)
    assert CompressionConfig(discriminator_width=0.125).discriminator_filters == (8, 16, 32, 64)


def test_discriminator_width_follows_the_generator_by_default():
    assert CompressionConfig(width=0.25).discriminator_width == 0.25
    assert CompressionConfig(width=2.0).discriminator_width == 1.0
    assert CompressionConfig().discriminator_width == 1.0
    assert CompressionConfig(width=0.25, discriminator_width=0.5).discriminator_width == 0.5
    # Saved configs carry the resolved value, so a later default never changes a model.
    assert CompressionConfig(width=0.25).to_dict()["discriminator_width"] == 0.25


def test_mse_only_model():
    assert CompressionConfig().gan
    assert not CompressionConfig(lambda_gan=0, lambda_fm=0).gan
    assert CompressionConfig(lambda_gan=0).gan  # feature matching alone is still a GAN term
    assert CompressionConfig(lambda_mse=0, lambda_ms_ssim=1.0).lambda_mse == 0.0


def test_fingerprint_json_ignores_training_only_fields_added_later():
    base = CompressionConfig(**TINY)
    tuned = dataclasses.replace(base, gan_ramp_steps=500, d_warmup_steps=100,
                                freeze_encoder=True, lambda_ms_ssim=1.0, lr_decay_step=9,
                                noise_batch=4, lambda_rate=3.0, corrected_loss=True)
    assert tuned.fingerprint_json() == base.fingerprint_json()
    assert tuned.to_json() != base.to_json()
    assert dataclasses.replace(base, channels=5).fingerprint_json() != base.fingerprint_json()


@pytest.mark.parametrize("cfg", [
    CompressionConfig(),
    CompressionConfig(**TINY),
    CompressionConfig(channels=3, centers=(-1.5, 0.25, 2), sigma=2.5, noise=False,
                      semantic_classes=34, semantic_channels=4, ema_decay=0.999,
                      gan_start_step=1000, lambda_fm=0),
])
def test_json_round_trip(cfg):
    text = cfg.to_json()
    back = CompressionConfig.from_json(text)
    assert back == cfg
    assert back.to_json() == text
    payload = json.loads(text)
    assert payload["format"] == "gcompress-config" and payload["version"] == 1
    assert payload["config"]["centers"] == list(cfg.centers)
    assert "_notes" not in payload["config"]


def test_from_dict_accepts_bare_field_mapping():
    cfg = CompressionConfig(**TINY)
    assert CompressionConfig.from_dict(cfg.to_dict()) == cfg
    assert CompressionConfig.from_json(json.dumps(cfg.to_dict())) == cfg


def test_save_and_load(tmp_path):
    cfg = CompressionConfig(**TINY, ema_decay=0.9)
    path = tmp_path / "config.json"
    cfg.save(str(path))
    assert CompressionConfig.load(str(path)) == cfg
    assert not (tmp_path / "config.json.tmp").exists()


def test_config_is_immutable():
    cfg = CompressionConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.channels = 4


def test_ints_and_centres_are_normalised():
    cfg = CompressionConfig(centers=[-1, 0, 1], sigma=2)
    assert cfg.centers == (-1.0, 0.0, 1.0)
    assert isinstance(cfg.sigma, float)


@pytest.mark.parametrize("fields, field_name", [
    (dict(channels=0), "channels"),
    (dict(channels=-3), "channels"),
    (dict(channels=True), "channels"),        # bool where an int is expected
    (dict(channels=4.0), "channels"),
    (dict(residual_blocks=False), "residual_blocks"),
    (dict(batch_size=1.5), "batch_size"),
    (dict(centers=(0.0,)), "centers"),          # fewer than two centres
    (dict(centers=(-1.0, 0.0, 0.0, 1.0)), "centers"),  # duplicate
    (dict(centers=(0.0, -1.0, 1.0)), "centers"),        # not sorted
    (dict(centers="abc"), "centers"),
    (dict(width=0.001), "width"),               # zero encoder channels
    (dict(width=0.0), "width"),
    (dict(discriminator_width=0.001), "discriminator_width"),
    (dict(crop_height=100), "crop_height"),     # not a multiple of 16
    (dict(crop_width=1000), "crop_width"),
    (dict(lambda_mse=-1.0), "lambda_mse"),
    (dict(lambda_fm=-0.5), "lambda_fm"),
    (dict(lambda_gan=-2), "lambda_gan"),
    (dict(g_learning_rate=-1e-4), "g_learning_rate"),
    (dict(sigma=0.0), "sigma"),
    (dict(sigma=float("nan")), "sigma"),
    (dict(beta1=1.0), "beta1"),
    (dict(ema_decay=1.0), "ema_decay"),
    (dict(histogram_decay=-0.1), "histogram_decay"),
    (dict(upsample_dim=12), "upsample_dim"),
    (dict(noise="yes"), "noise"),
    (dict(noise_dim=0), "noise_dim"),
    (dict(gan_ramp_steps=-1), "gan_ramp_steps"),
    (dict(d_warmup_steps=1.5), "d_warmup_steps"),
    (dict(lr_decay_step=-5), "lr_decay_step"),
    (dict(lr_decay_factor=0.0), "lr_decay_factor"),
    (dict(lr_decay_factor=2.0), "lr_decay_factor"),
    (dict(noise_batch=0), "noise_batch"),
    (dict(freeze_encoder="no"), "freeze_encoder"),
    (dict(corrected_loss=1), "corrected_loss"),
    (dict(lambda_ms_ssim=-1.0), "lambda_ms_ssim"),
    (dict(lambda_rate=-0.5), "lambda_rate"),
    (dict(lambda_rate="high"), "lambda_rate"),
    (dict(lambda_mse=0.0), "lambda_mse"),               # no distortion term at all
])
def test_invalid_values_raise_config_error_naming_the_field(fields, field_name):
    with pytest.raises(ConfigError, match=field_name) as info:
        CompressionConfig(**fields)
    assert isinstance(info.value, ValueError)


def test_unknown_json_field_is_named():
    data = CompressionConfig(**TINY).to_dict()
    data["chanels"] = 4
    with pytest.raises(ConfigError, match="chanels"):
        CompressionConfig.from_dict(data)
    payload = {"format": "gcompress-config", "version": 1, "config": data}
    with pytest.raises(ConfigError, match="chanels"):
        CompressionConfig.from_json(json.dumps(payload))


def test_invalid_value_in_json_is_named():
    data = CompressionConfig(**TINY).to_dict()
    data["crop_width"] = 70
    with pytest.raises(ConfigError, match="crop_width"):
        CompressionConfig.from_json(json.dumps(data))


def test_bad_json_and_newer_format_are_config_errors():
    with pytest.raises(ConfigError, match="JSON"):
        CompressionConfig.from_json("{not json")
    with pytest.raises(ConfigError, match="object"):
        CompressionConfig.from_json("[1, 2]")
    newer = json.dumps({"format": "gcompress-config", "version": 99, "config": {}})
    with pytest.raises(ConfigError, match="newer"):
        CompressionConfig.from_json(newer)


@pytest.mark.parametrize("channels, bound", [(2, 0.0181), (4, 0.0363), (8, 0.0726),
                                             (16, 0.1451)])
def test_bpp_bound(channels, bound):
    cfg = CompressionConfig(channels=channels)
    assert round(cfg.bpp_bound(), 4) == bound
    assert cfg.bpp_bound() == pytest.approx(channels * math.log2(5) / 256)


def test_bpp_bound_depends_on_number_of_centres():
    cfg = CompressionConfig(channels=8, centers=(-1, 1))
    assert cfg.bpp_bound() == pytest.approx(8 / 256)


@pytest.mark.parametrize("bpp, channels", [
    (0.018, 2), (0.036, 4), (0.073, 8), (0.145, 16),  # the paper's rounded rates
    (0.0175, 1), (0.035, 3), (0.07, 7), (0.0726, 8), (0.15, 16), (1.0, 112),
])
def test_for_bpp_picks_largest_channels_within_two_percent(bpp, channels):
    cfg = CompressionConfig.for_bpp(bpp)
    assert cfg.channels == channels
    assert cfg.bpp_bound() <= bpp * 1.02
    assert dataclasses.replace(cfg, channels=channels + 1).bpp_bound() > bpp * 1.02
    assert len(cfg.notes) == 1 and f"C={channels}" in cfg.notes[0]


@pytest.mark.parametrize("channels", [1, 2, 4, 8, 16])
def test_for_bpp_at_exact_bound_keeps_that_channel_count(channels):
    bound = CompressionConfig(channels=channels).bpp_bound()
    assert CompressionConfig.for_bpp(bound).channels == channels


def test_for_bpp_passes_other_fields_and_notes_do_not_affect_equality():
    cfg = CompressionConfig.for_bpp(0.05, **TINY_WITHOUT_CHANNELS)
    assert cfg.channels == 5 and cfg.width == 0.125
    assert cfg == CompressionConfig(**dict(TINY_WITHOUT_CHANNELS, channels=5))
    # Fewer centres -> fewer bits per channel -> more channels for the same rate.
    three = CompressionConfig.for_bpp(0.05, centers=(-1, 0, 1))
    assert three.channels == math.floor(0.05 * 1.02 / (math.log2(3) / 256))


@pytest.mark.parametrize("bpp", [0.005, 0.0088, 0.0, -0.1, float("nan"), True, "0.07"])
def test_for_bpp_rejects_unreachable_or_invalid_rates(bpp):
    with pytest.raises(ConfigError, match="bpp"):
        CompressionConfig.for_bpp(bpp)


def test_for_bpp_refuses_explicit_channels():
    with pytest.raises(ConfigError, match="channels"):
        CompressionConfig.for_bpp(0.07, channels=4)


# --- hostile or damaged config.json -------------------------------------------------


@pytest.mark.parametrize("content, fragment", [
    (b'{"format": "gcompress-config", "version": "1", "config": {}}', "must be an integer"),
    (b"\xff\xfe{not utf-8", "not UTF-8"),
    (b"[" * 200_000, "nested too deeply"),
    (b'{"format": "gcompress-config", "version": 1, "config": {"channels": 4', "not valid JSON"),
])
def test_every_unreadable_config_is_a_config_error_naming_the_file(tmp_path, content, fragment):
    path = tmp_path / "config.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=fragment) as info:
        CompressionConfig.load(path)
    assert str(path) in str(info.value)


def test_a_config_path_that_is_a_directory(tmp_path):
    (tmp_path / "config.json").mkdir()
    with pytest.raises(ConfigError, match="directory"):
        CompressionConfig.load(tmp_path / "config.json")


@pytest.mark.parametrize("fields, fragment", [
    (dict(centers="12345"), "centers"), (dict(centers=[-1.0, math.inf]), "centers"),
    (dict(centers=5), "centers"), (dict(residual_blocks=100_000), "residual_blocks"),
    (dict(noise_dim=10**6), "noise_dim"), (dict(upsample_dim=2**20), "upsample_dim"),
    (dict(width=1000.0), "width"), (dict(crop_height=2**20), "crop_height"),
    (dict(discriminator_width=100.0), "discriminator_width"),
])
def test_fields_have_upper_bounds_and_sane_types(fields, fragment):
    with pytest.raises(ConfigError, match=fragment):
        CompressionConfig(**fields)


def test_variable_rate_fields():
    fixed = CompressionConfig(**TINY)
    assert fixed.min_channels is None and not fixed.variable_rate
    assert fixed.smallest_channels == fixed.channels
    assert not dataclasses.replace(fixed, min_channels=fixed.channels).variable_rate
    nested = dataclasses.replace(fixed, channels=16, min_channels=2)
    assert nested.variable_rate and nested.smallest_channels == 2
    assert nested.bpp_bound(2) == pytest.approx(2 * math.log2(5) / 256)
    assert CompressionConfig.from_json(nested.to_json()) == nested
    # Files of fixed-rate models keep their fingerprints; min_channels changes what decodes.
    assert "min_channels" not in fixed.fingerprint_json()
    assert nested.fingerprint_json() != dataclasses.replace(nested, min_channels=3
                                                            ).fingerprint_json()
    # A config.json written before the field existed means a fixed-rate model.
    old = {k: v for k, v in fixed.to_dict().items() if k != "min_channels"}
    assert CompressionConfig.from_dict(old).min_channels is None


def test_channel_weights_are_training_only_and_round_trip():
    nested = CompressionConfig(**{**TINY, "channels": 6}, min_channels=2)
    weighted = dataclasses.replace(nested, channel_weights=[1, 3, 2, 0, 1])
    assert weighted.channel_weights == (1.0, 3.0, 2.0, 0.0, 1.0)
    assert CompressionConfig.from_json(weighted.to_json()) == weighted
    # How often training draws each k does not change what a model decodes.
    assert weighted.fingerprint_json() == nested.fingerprint_json()
    old = {k: v for k, v in nested.to_dict().items() if k != "channel_weights"}
    assert CompressionConfig.from_dict(old).channel_weights == ()


@pytest.mark.parametrize("fields, fragment", [
    ({"channel_weights": [1, 1]}, r"one weight per k = 2\.\.6 \(5 values\), got 2"),
    ({"channel_weights": [0] * 5}, "at least one above 0"),
    ({"channel_weights": [1, -1, 1, 1, 1]}, ">= 0"),
    ({"channel_weights": "1,2"}, "list of finite numbers"),
    ({"channel_weights": [1, float("nan"), 1, 1, 1]}, "list of finite numbers"),
    ({"channel_weights": [1, 1, 1, 1], "min_channels": None}, "variable-rate models only"),
])
def test_channel_weights_are_validated(fields, fragment):
    with pytest.raises(ConfigError, match=fragment):
        CompressionConfig(**{**TINY, "channels": 6, "min_channels": 2, **fields})


@pytest.mark.parametrize("bad", [0, 5, -1, "2", 2.0, True])
def test_min_channels_must_be_a_count_of_leading_channels(bad):
    with pytest.raises(ConfigError, match=r"min_channels must be an integer in \[1, channels=4\]"):
        CompressionConfig(**TINY, min_channels=bad)


def test_upsampling_is_validated_and_fingerprinted_when_not_the_papers():
    base = CompressionConfig()
    assert base.upsampling == "transposed"
    assert "upsampling" not in base.fingerprint_json()  # existing models keep their hashes
    resized = dataclasses.replace(base, upsampling="resize")
    assert resized.fingerprint_json() != base.fingerprint_json()
    assert CompressionConfig.from_json(resized.to_json()).upsampling == "resize"
    # A config.json written before the field existed means the paper's upsampling.
    data = json.loads(base.to_json())["config"]
    del data["upsampling"]
    assert CompressionConfig.from_dict(data).upsampling == "transposed"
    with pytest.raises(ConfigError, match="upsampling must be 'transposed' or 'resize'"):
        CompressionConfig(upsampling="bilinear")
