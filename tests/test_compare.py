"""Classical codecs at our rate: the quality search, unreachable targets, the reports."""

import csv
import glob
import os

import numpy as np
import pytest
from PIL import Image
from skimage import data as samples

from compression.classical import available_codecs, missing_codecs
from compression.cli import main
from compression.compare import COLUMNS, OURS, SUMMARY_COLUMNS, codec_rows, summarize


@pytest.fixture(scope="module")
def photo():
    # 400x600 photograph, downscaled 4x to keep the quality searches fast.
    return np.asarray(Image.fromarray(samples.coffee()).reduce(4))


def codecs(*names):
    available = available_codecs()
    for name in names:
        if name not in available:
            pytest.skip(f"{name} unavailable: {missing_codecs().get(name)}")
    return [available[n] for n in names]


def test_finds_quality_not_exceeding_target(photo):
    h, w = photo.shape[:2]
    target = 0.6
    rows, results, notes = codec_rows(photo, target, codecs("jpeg", "webp"), name="coffee")
    assert [r["method"] for r in rows] == ["jpeg", "webp"] and not notes
    for row, result in zip(rows, results, strict=True):
        assert row["reached"] and row["bpp"] <= target
        assert row["bpp"] == pytest.approx(8 * row["bytes"] / (h * w))
        assert row["bytes"] == len(result.data) and row["target_bpp"] == target
        assert 0 < row["ms_ssim"] <= 1 and row["psnr"] > 15
        # The search found the largest such file: one quality step up is too big.
        codec = codecs(row["method"])[0]
        if row["quality"] < codec.max_quality:
            bigger = codec.encode(photo, row["quality"] + 1)
            assert 8 * len(bigger) / (h * w) > target


def test_reports_unreachable_targets(photo):
    rows, _, notes = codec_rows(photo, 0.01, codecs("jpeg"), name="coffee")
    assert rows[0]["reached"] is False and rows[0]["bpp"] > 0.01
    assert rows[0]["quality"] == 1  # the smallest file JPEG can make
    assert len(notes) == 1 and "jpeg cannot reach 0.0100 bpp on coffee" in notes[0]


def test_summary_means_over_reached_images_only():
    def row(image, method, bpp, psnr, reached=True):
        return {"image": image, "method": method, "bpp": bpp, "psnr": psnr, "ms_ssim": 0.5,
                "reached": reached}

    rows = [row("a", OURS, 0.05, 20.0), row("a", "jpeg", 0.04, 22.0),
            row("b", OURS, 0.07, 24.0), row("b", "jpeg", 0.3, 30.0, reached=False)]
    ours, jpeg = summarize(rows)
    assert (ours["method"], ours["images"], ours["reached"]) == (OURS, 2, 2)
    assert ours["psnr"] == pytest.approx(22.0)
    assert (jpeg["images"], jpeg["reached"]) == (2, 1)
    assert jpeg["bpp"] == pytest.approx(0.04) and jpeg["psnr"] == pytest.approx(22.0)
    assert jpeg["ours_psnr"] == pytest.approx(20.0)  # ours on the same image "a"
    # Image "b": JPEG's smallest file overshot our rate; it is reported apart.
    assert jpeg["over_bpp"] == pytest.approx(0.3) and jpeg["over_psnr"] == pytest.approx(30.0)
    assert ours["over_bpp"] is None
    assert set(ours) == set(SUMMARY_COLUMNS)


def test_compare_command_writes_reports(tiny_run, tiny_data, tmp_path, capsys):
    codecs("jpeg", "webp")
    images = os.path.join(str(tiny_data), "leftImg8bit", "val")
    out = tmp_path / "cmp"
    argv = ["compare", "--model", tiny_run, "--images", images, "--out-dir", str(out),
            "--codecs", "jpeg,webp,jxl", "--grids", "1"]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    with open(out / "results.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames) == COLUMNS
    if "jxl" in missing_codecs():
        assert "jxl skipped:" in stdout
        assert [r["method"] for r in rows] == [OURS, "jpeg", "webp"] * 2
    ours = [r for r in rows if r["method"] == OURS]
    for row in rows:
        assert row["target_bpp"] == next(o["bpp"] for o in ours if o["image"] == row["image"])
        if row["reached"] == "True":
            assert float(row["bpp"]) <= float(row["target_bpp"])
    # A 64x128 JPEG cannot get anywhere near the tiny model's rate.
    jpeg = [r for r in rows if r["method"] == "jpeg"]
    assert all(r["reached"] == "False" for r in jpeg)
    summary = (out / "summary.txt").read_text()
    assert "jpeg cannot reach" in summary and "reached" in summary
    with open(out / "summary.csv", newline="") as f:
        methods = [r["method"] for r in csv.DictReader(f)]
    assert methods[:3] == [OURS, "jpeg", "webp"]
    assert Image.open(out / "rate_distortion.png").size[0] > 100
    assert len(glob.glob(str(out / "grid_*.png"))) == 1
    assert len(glob.glob(str(out / "files" / "*.gcz"))) == 2

    # An earlier comparison is not replaced without --force.
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "pass --force" in err and "Traceback" not in err
    assert main(argv + ["--force", "--limit", "1"]) == 0


def test_a_codec_failing_on_an_image_costs_only_its_row(photo):
    from compression.classical import Codec
    from compression.errors import CompressionError

    class Broken(Codec):
        name = "broken"

        def encode(self, image, quality):
            raise CompressionError("tool crashed")

    jpeg, = codecs("jpeg")
    rows, results, notes = codec_rows(photo, 0.5, [Broken(), jpeg], name="coffee")
    assert [r["method"] for r in rows] == ["jpeg"] and len(results) == 1
    assert any("broken failed on coffee: tool crashed" in n for n in notes)


def test_compare_at_a_rate_of_a_variable_rate_model(variable_rate_run, tiny_data, tmp_path,
                                                    capsys):
    images = os.path.join(str(tiny_data), "leftImg8bit", "val")
    base = ["compare", "--model", variable_rate_run, "--images", images, "--codecs", "webp",
            "--grids", "0"]

    def ours(out):
        with open(out / "results.csv", newline="") as f:
            return [r for r in csv.DictReader(f) if r["method"] == OURS]

    assert main(base + ["--out-dir", str(tmp_path / "all")]) == 0
    assert main(base + ["--out-dir", str(tmp_path / "k2"), "--channels", "2"]) == 0
    full, two = ours(tmp_path / "all"), ours(tmp_path / "k2")
    assert all(float(a["bpp"]) < float(b["bpp"]) for a, b in zip(two, full, strict=True))
    target = max(float(r["bpp"]) for r in two) * 1.01
    assert main(base + ["--out-dir", str(tmp_path / "bpp"), "--bpp", f"{target:.5f}"]) == 0
    assert all(float(r["bpp"]) <= target for r in ours(tmp_path / "bpp"))
    assert main(base + ["--out-dir", str(tmp_path / "refined"), "--channels", "2",
                        "--refine", "2"]) == 0
    refined = ours(tmp_path / "refined")
    assert all(int(a["bytes"]) <= int(b["bytes"]) for a, b in zip(refined, two, strict=True))
    capsys.readouterr()
    assert main(base + ["--out-dir", str(tmp_path / "bad"), "--channels", "9"]) == 2
    assert "this model codes 2..6 leading channels" in capsys.readouterr().err
    assert main(base + ["--out-dir", str(tmp_path / "bad"), "--bpp", "0"]) == 2
    assert "--bpp must be a positive number" in capsys.readouterr().err
