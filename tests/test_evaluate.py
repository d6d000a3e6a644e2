"""``gcompress evaluate``: real files, rate/quality/time columns, CSV/JSON, bad images."""

import csv
import json
import math
import os
import shutil

import pytest

from compression.cli import main
from compression.errors import CompressionError, ImageReadError
from compression.evaluate import COLUMNS, evaluate, find_images, summarize


@pytest.fixture(scope="module")
def val_dir(tiny_data):
    """The two 64x128 validation images of the synthetic tree (in a city subfolder)."""
    return os.path.join(str(tiny_data), "leftImg8bit", "val")


def assert_clean_error(err, *fragments):
    assert err.startswith("gcompress: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


def check_row(row):
    h, w = int(row["height"]), int(row["width"])
    size, bpp = int(row["bytes"]), float(row["bpp"])
    payload, bound = float(row["payload_bpp"]), float(row["bound_bpp"])
    assert (h, w) == (64, 128)
    assert size > 0 and bpp == pytest.approx(8 * size / (h * w))
    # The entropy-coded payload stays under the fixed-length bound (up to the
    # range coder's final 32-bit word); the whole file adds the version 2
    # header and CRC (magic 4, version 1, flags 1, fingerprint 8, H 1, W 2,
    # C 1, L 1, payload length 1, CRC 4: 24 bytes, 0.023 bpp of a 64x128
    # image), the colour correction (6 bytes) and the model's name ("run": 1 + 3 bytes).
    assert 0 < payload <= bound + 32 / (h * w)
    assert bpp == pytest.approx(payload + 8 * (24 + 6 + 4) / (h * w))
    assert math.isfinite(float(row["psnr"])) and float(row["psnr"]) > 0
    assert 0 < float(row["ms_ssim"]) <= 1
    assert float(row["encode_s"]) > 0 and float(row["decode_s"]) > 0


def test_evaluate_command_writes_csv_with_documented_columns(tiny_run, val_dir, tmp_path,
                                                             capsys):
    out = tmp_path / "results.csv"
    assert main(["evaluate", "--model", tiny_run, "--images", val_dir, "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "mean of 2" in stdout and f"wrote 2 rows to {out}" in stdout
    with open(out, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames) == COLUMNS
    assert len(rows) == 2
    assert all(row["image"].startswith(val_dir) for row in rows)
    for row in rows:
        check_row(row)

    # An existing --out is refused before any work, and replaced with --force.
    assert main(["evaluate", "--model", tiny_run, "--images", val_dir, "--out", str(out)]) == 2
    assert_clean_error(capsys.readouterr().err, "exists; pass --force")
    assert main(["evaluate", "--model", tiny_run, "--images", val_dir, "--out", str(out),
                 "--force", "--limit", "1"]) == 0
    with open(out, newline="") as f:
        assert len(list(csv.DictReader(f))) == 1


def test_json_output_glob_and_bad_image_skipped(tiny_run, val_dir, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = sorted(find_images(val_dir))[0]
    shutil.copy(good, folder / "a_good.png")
    (folder / "b_broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    out = tmp_path / "results.json"
    status = main(["evaluate", "--model", tiny_run, "--images", str(folder / "*.png"),
                   "--out", str(out)])
    captured = capsys.readouterr()
    assert status == 1
    assert "b_broken.png" in captured.err and "(skipped)" in captured.err
    assert "1 of 2 images failed" in captured.err and "Traceback" not in captured.err
    with open(out) as f:
        rows = json.load(f)
    assert [os.path.basename(r["image"]) for r in rows] == ["a_good.png"]
    assert set(rows[0]) == set(COLUMNS)
    check_row(rows[0])


@pytest.mark.parametrize("argv, message", [
    (["--out", "results.txt"], "must end in .csv or .json"),
    (["--limit", "0"], "--limit must be a positive integer"),
])
def test_bad_arguments_are_clean_errors(tiny_run, val_dir, tmp_path, capsys, argv, message):
    argv = [str(tmp_path / a) if a.startswith("results") else a for a in argv]
    assert main(["evaluate", "--model", tiny_run, "--images", val_dir, *argv]) == 2
    assert_clean_error(capsys.readouterr().err, message)


def test_no_images_is_a_clean_error(tiny_run, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["evaluate", "--model", tiny_run, "--images", str(empty)]) == 2
    assert_clean_error(capsys.readouterr().err, "no images found")
    assert main(["evaluate", "--model", tiny_run, "--images", str(tmp_path / "nope")]) == 2
    assert_clean_error(capsys.readouterr().err, "does not exist")


def test_evaluate_api(tiny_model, val_dir, tmp_path):
    paths = find_images(val_dir)
    bad = tmp_path / "tiny.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(bad)  # below the 16x16 minimum
    with pytest.raises(ImageReadError):
        evaluate(tiny_model, [bad], warm_up=False)
    errors, seen = [], []
    rows = evaluate(tiny_model, [paths[0], bad], on_error=lambda p, e: errors.append((p, e)),
                    on_row=lambda i, row: seen.append(i), warm_up=False,
                    work_dir=str(tmp_path))
    assert len(rows) == 1 and seen == [0]
    assert errors[0][0] == str(bad) and isinstance(errors[0][1], ImageReadError)
    assert os.path.exists(tmp_path / "image.gcz")  # the real file that was decoded
    mean = summarize(rows + rows)
    assert mean["image"] == "mean of 2" and mean["bpp"] == pytest.approx(rows[0]["bpp"])
    assert summarize([]) == {}


def test_evaluate_at_a_rate_or_a_channel_count(variable_rate_run, val_dir, tmp_path, capsys):
    out = tmp_path / "k3.json"
    assert main(["evaluate", "--model", variable_rate_run, "--images", val_dir, "--channels",
                 "3", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [row["channels"] for row in rows] == [3, 3]
    assert "(3 channels)" in capsys.readouterr().out
    target = max(row["bpp"] for row in rows)
    from compression.inference import load_model

    with load_model(variable_rate_run) as model:
        fitted = evaluate(model, find_images(val_dir), bpp=target)
    assert all(row["bpp"] <= target and row["channels"] >= 3 for row in fitted)
    refined = tmp_path / "k3_refined.json"
    assert main(["evaluate", "--model", variable_rate_run, "--images", val_dir, "--channels",
                 "3", "--refine", "2", "--out", str(refined)]) == 0
    for plain, better in zip(rows, json.loads(refined.read_text()), strict=True):
        assert better["channels"] == 3 and better["bytes"] <= plain["bytes"]
    searched = tmp_path / "k3_seeds.json"
    assert main(["evaluate", "--model", variable_rate_run, "--images", val_dir, "--channels",
                 "3", "--seeds", "3", "--out", str(searched)]) == 0
    for plain, other in zip(rows, json.loads(searched.read_text()), strict=True):
        assert other["bytes"] - plain["bytes"] in (0, 1)  # at most the stored seed's byte
    # Below every image's smallest file: each image is reported and skipped.
    code = main(["evaluate", "--model", variable_rate_run, "--images", val_dir, "--bpp", "0.001"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("below the smallest file this model writes") == 2


def test_semantic_models_are_evaluated_with_their_label_maps(tiny_data, val_dir, tmp_path):
    import dataclasses

    from conftest import TINY

    from compression.inference import initialize_run, load_model

    run = tmp_path / "semantic"
    initialize_run(dataclasses.replace(TINY, semantic_classes=4), run)
    with load_model(run) as model:
        rows = evaluate(model, find_images(val_dir))
        assert len(rows) == 2 and all(row["label_bpp"] > 0 for row in rows)
        # A photo outside the Cityscapes layout has no label map to find.
        loose = tmp_path / "loose.png"
        shutil.copy(rows[0]["image"], loose)
        with pytest.raises(CompressionError, match="only images in the Cityscapes layout"):
            evaluate(model, [str(loose)])
