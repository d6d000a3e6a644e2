"""Tests of compression.classical (rate matching) and compression.report."""

import csv
import json
import math
import os
import stat
import sys

import numpy as np
import pytest
from PIL import Image
from skimage import data as samples

from compression import classical
from compression.classical import (
    JxlCodec,
    available_codecs,
    compare_at_rate,
    encode_at_bpp,
    missing_codecs,
)
from compression.errors import CompressionError
from compression.image_io import read_image
from compression.report import (
    comparison_grid,
    format_table,
    rate_distortion_plot,
    write_csv,
    write_json,
)


@pytest.fixture(scope="module")
def coffee():
    # 400x600 photo, downscaled 2x to keep the quality searches fast.
    return np.asarray(Image.fromarray(samples.coffee()).reduce(2))


def _needs(name):
    if name not in available_codecs():
        pytest.skip(f"{name} unavailable: {missing_codecs().get(name)}")


def test_every_known_codec_is_listed_once():
    available, missing = available_codecs(), missing_codecs()
    assert set(available) | set(missing) == set(classical.CODEC_NAMES)
    assert not set(available) & set(missing)
    assert all(isinstance(reason, str) and reason for reason in missing.values())


@pytest.mark.parametrize("name", ["jpeg", "webp"])
def test_quality_search_meets_target(coffee, name):
    _needs(name)
    h, w = coffee.shape[:2]
    target = 0.4
    result = encode_at_bpp(coffee, name, target)
    assert result.reached and result.codec == name
    assert result.bpp == pytest.approx(8 * len(result.data) / (h * w))
    assert result.bpp <= target
    assert result.decoded.shape == coffee.shape and result.decoded.dtype == np.uint8
    codec = available_codecs()[name]
    if result.quality < codec.max_quality:
        # The next quality up would exceed the target: the largest file was found.
        bigger = codec.encode(coffee, result.quality + 1)
        assert 8 * len(bigger) / (h * w) > target


@pytest.mark.parametrize("name", ["jpeg", "webp"])
def test_at_least_gives_the_smallest_file_not_below_the_target(coffee, name):
    _needs(name)
    h, w = coffee.shape[:2]
    result = encode_at_bpp(coffee, name, 0.4, at_least=True)
    assert result.reached and result.bpp >= 0.4
    codec = available_codecs()[name]
    if result.quality > codec.min_quality:
        smaller = codec.encode(coffee, result.quality - 1)
        assert 8 * len(smaller) / (h * w) < 0.4
    # Below the smallest file: that file (it has more bits than asked).
    tiny = encode_at_bpp(coffee, name, 0.001, at_least=True)
    assert tiny.reached and tiny.quality == codec.min_quality
    # Above the largest: the largest, and not reached.
    huge = encode_at_bpp(coffee, name, 1000.0, at_least=True)
    assert not huge.reached and huge.quality == codec.max_quality


def test_unreachable_target_gives_smallest_file(coffee):
    _needs("jpeg")
    result = encode_at_bpp(coffee, "jpeg", 0.01)
    assert not result.reached
    assert result.quality == available_codecs()["jpeg"].min_quality
    assert result.bpp > 0.01


def test_bad_arguments(coffee):
    with pytest.raises(ValueError, match="unknown codec"):
        encode_at_bpp(coffee, "bpg", 0.1)
    with pytest.raises(ValueError, match="positive"):
        encode_at_bpp(coffee, "jpeg", 0)
    for name, reason in missing_codecs().items():
        with pytest.raises(ValueError, match="not available"):
            encode_at_bpp(coffee, name, 0.1)
        assert reason


def test_compare_at_rate_rows(coffee):
    _needs("jpeg")
    rows = compare_at_rate(coffee, 0.3, codecs=["jpeg"])
    assert len(rows) == 1
    row = rows[0]
    assert set(row) >= {"codec", "quality", "bpp", "target_bpp", "reached", "psnr", "ms_ssim"}
    assert row["codec"] == "jpeg" and row["target_bpp"] == 0.3 and row["reached"]
    assert 15 < row["psnr"] < 50 and 0.5 < row["ms_ssim"] < 1.0


def _fake_tool(path, body):
    path.write_text(f"#!{sys.executable}\nimport shutil, sys\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


@pytest.mark.skipif(os.name != "posix", reason="fake tools are Python scripts with a shebang")
def test_jxl_wiring_with_fake_tools(tmp_path, coffee):
    # Stand-ins for cjxl/djxl that just copy the PNG: checks the file passing,
    # not JPEG XL itself (the real tools are usually absent on CI).
    cjxl = _fake_tool(tmp_path / "cjxl", "assert sys.argv[3] == '-q'\n"
                                         "shutil.copy(sys.argv[1], sys.argv[2])")
    djxl = _fake_tool(tmp_path / "djxl", "shutil.copy(sys.argv[1], sys.argv[2])")
    codec = JxlCodec(cjxl, djxl)
    np.testing.assert_array_equal(codec.decode(codec.encode(coffee, 50)), coffee)
    failing = JxlCodec(_fake_tool(tmp_path / "bad", "sys.exit('boom')"), djxl)
    with pytest.raises(CompressionError, match="boom"):
        failing.encode(coffee, 50)


def test_rate_distortion_plot(tmp_path):
    rows = [
        {"method": "ours", "bpp": 0.07, "psnr": 24.0, "ms_ssim": 0.90},
        {"method": "ours", "bpp": 0.03, "psnr": 22.0, "ms_ssim": 0.85},
        {"method": "jpeg", "bpp": 0.11, "psnr": 21.5, "ms_ssim": 0.70},
        {"method": "lossless", "bpp": 12.0, "psnr": math.inf, "ms_ssim": 1.0},
    ]
    path = tmp_path / "rd.png"
    rate_distortion_plot(rows, path, title="coffee")
    rate_distortion_plot(rows, path)  # regenerating replaces the file
    with Image.open(path) as img:
        assert img.format == "PNG" and img.width > img.height > 100


def test_comparison_grid(tmp_path, coffee):
    path = tmp_path / "grid.png"
    panels = [("ours", coffee, 0.071), ("jpeg", coffee[::-1].copy(), 0.112), ("raw", coffee, None)]
    comparison_grid(coffee, panels, path)
    grid = read_image(path)
    assert grid.shape[1] == 4 * coffee.shape[1] + 3 * 4
    assert grid.shape[0] > coffee.shape[0]  # caption strip
    comparison_grid(coffee, panels, path, max_width=400)  # downscaled to fit
    assert read_image(path).shape[1] <= 400


def test_tables_csv_json(tmp_path):
    rows = [
        {"codec": "jpeg", "bpp": 0.1126, "psnr": 21.67123, "reached": False},
        {"codec": "avif", "bpp": np.float32(0.1), "psnr": math.inf, "reached": True},
    ]
    table = format_table(rows, ["codec", "bpp", "psnr", "reached"])
    lines = table.splitlines()
    assert lines[0].split() == ["codec", "bpp", "psnr", "reached"]
    assert "21.67" in lines[2] and "inf" in lines[3] and "yes" in lines[3]
    assert len({len(line) for line in lines[:2]}) == 1  # header and rule align
    assert "0.113" in format_table(rows, ["bpp"], formats={"bpp": ".3f"})

    write_csv(rows, tmp_path / "r.csv")
    with open(tmp_path / "r.csv", newline="") as f:
        back = list(csv.DictReader(f))
    assert back[0]["codec"] == "jpeg" and float(back[0]["psnr"]) == 21.67123
    assert back[1]["psnr"] == "inf"

    write_json(rows, tmp_path / "r.json")
    loaded = json.loads((tmp_path / "r.json").read_text())
    assert loaded[1]["psnr"] is None and loaded[1]["bpp"] == pytest.approx(0.1)


class _FloorCodec(classical.Codec):
    """Refuses qualities below ``floor``, as Debian's cjxl 0.7 refuses 0 and 1."""

    name = "floor"

    def __init__(self, floor):
        self.floor = floor

    def encode(self, image, quality):
        if quality < self.floor:
            raise CompressionError(f"quality {quality} refused")
        return bytes(100 + quality)

    def decode(self, data):
        raise AssertionError("not needed")


@pytest.mark.parametrize("floor", [0, 2, 7, 50])
def test_min_quality_is_raised_to_the_lowest_that_works(floor):
    codec = _FloorCodec(floor)
    classical._raise_min_quality(codec, np.zeros((16, 16, 3), np.uint8))
    assert codec.min_quality == floor


def test_real_jxl_tool_searches_from_a_working_quality():
    codec = available_codecs().get("jxl")
    if codec is None:
        pytest.skip(f"jxl unavailable: {missing_codecs().get('jxl')}")
    image = np.asarray(Image.fromarray(samples.coffee()).reduce(4))
    codec.encode(image, codec.min_quality)  # raises if the tool refuses it
    result = encode_at_bpp(image, codec, 0.02)
    assert result.quality == codec.min_quality and not result.reached
