"""`gcompress demo`: a photograph through a model beside classical codecs; the training demo."""

import os

import numpy as np
import pytest
from test_cli import run_cli, write_png

from compression.data import write_synthetic_cityscapes
from compression.demo import DEMO_CONFIG, run_demo, run_training_demo
from compression.image_io import read_image


def test_demo_compresses_a_photograph_beside_the_best_classical_codec(tiny_run, tmp_path):
    photo = write_png(tmp_path / "street.png", 96, 160)
    lines = []
    result = run_demo(str(tmp_path / "out"), photo=photo, model=tiny_run,
                      codecs=["jpeg", "webp"], log=lines.append)
    out = tmp_path / "out"
    assert (out / "street.gcz").read_bytes() == result["ours"].data
    decoded = read_image(str(out / "street_decoded.png"))
    np.testing.assert_array_equal(decoded, result["decoded"])
    grid = read_image(str(out / "street_side_by_side.png"))
    assert grid.shape[1] >= 3 * 160  # original | ours | classical
    classical = result["classical"]
    assert classical.codec in ("jpeg", "webp")
    assert len(classical.data) >= len(result["ours"].data) or not classical.reached
    assert any(line.startswith("  ours  run: ") and "PSNR" in line for line in lines)
    assert sum(line.startswith(("  jpeg", "  webp")) for line in lines) == 2


def test_demo_command_checks_its_arguments(capsys, tiny_run, tmp_path):
    code, _, err = run_cli(capsys, "demo", str(tmp_path / "missing.jpg"), "--model", tiny_run)
    assert code == 2 and "does not exist" in err
    code, _, err = run_cli(capsys, "demo", "--train", "--model", tiny_run)
    assert code == 2 and "--train trains its own model" in err
    photo = write_png(tmp_path / "p.png", 48, 64)
    code, out, err = run_cli(capsys, "demo", photo, "--model", tiny_run, "--out",
                             tmp_path / "d", "--codecs", "jpeg")
    assert code == 0, err
    assert "classical codecs with at least" in out and (tmp_path / "d" / "p.gcz").exists()
    assert "add --refine 20" in out
    code, out, err = run_cli(capsys, "demo", photo, "--model", tiny_run, "--out",
                             tmp_path / "r", "--codecs", "jpeg", "--refine", "2", "--seeds", "3")
    assert code == 0, err
    assert "refined 2 steps, best of 3 seeds" in out and "add --refine" not in out
    # A fixed-rate model has no --bpp: a stored seed's byte is the search's only price.
    assert ((tmp_path / "r" / "p.gcz").stat().st_size
            <= (tmp_path / "d" / "p.gcz").stat().st_size + 1)
    code, _, err = run_cli(capsys, "demo", photo, "--refine", "-1")
    assert code == 2 and "--refine takes a number of steps" in err


@pytest.mark.parametrize("bad", ["0", "-1"])
def test_demo_bpp_must_be_positive(capsys, bad):
    code, _, err = run_cli(capsys, "demo", "--bpp", bad)
    assert code == 2 and "--bpp must be a positive number" in err


def test_demo_trains_encodes_and_decodes(tmp_path):
    data = write_synthetic_cityscapes(
        str(tmp_path / "data"), splits={"train": 4, "val": 1},
        size=(DEMO_CONFIG.crop_height, DEMO_CONFIG.crop_width + 32), num_classes=0,
    )
    lines = []
    encoded, decoded = run_training_demo(str(tmp_path / "out"), data=data, steps=2,
                                log=lines.append, progress=False)
    out = tmp_path / "out"
    for name in ("demo.gcz", "original.png", "decoded.png", "run/config.json"):
        assert (out / name).exists(), name
    assert os.path.getsize(out / "demo.gcz") == len(encoded.data)
    assert decoded.shape == (DEMO_CONFIG.crop_height, DEMO_CONFIG.crop_width + 32, 3)
    assert encoded.bpp > 0
    assert any("bpp" in line and "PSNR" in line for line in lines)
    # Running it again resumes the same run instead of refusing the directory.
    run_training_demo(str(tmp_path / "out"), data=data, steps=3, log=lines.append,
                      progress=False)
    assert any("resuming" in line for line in lines)
