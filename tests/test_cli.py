"""The ``gcompress`` command line: encode/decode/info end to end with the tiny run."""

import os
import re
import subprocess

import numpy as np
import pytest
from conftest import PYTHON, REPO_ROOT, subprocess_env
from PIL import Image

from compression import cli
from compression.cli import main
from compression.codec import decode
from compression.image_io import read_image

LINE = re.compile(r"(?P<src>\S+) -> (?P<dst>\S+): (?P<bytes>\d+) bytes, (?P<bpp>[\d.]+) bpp "
                  r"\((?P<k>\d+) of (?P<channels>\d+) channels(?: \+ (?P<rows>\d+) of "
                  r"(?P<height>\d+) rows of channel (?P<partial>\d+))?; "
                  r"bound (?P<bound>[\d.]+) bpp\)")


def write_png(path, h, w, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([xx * 4 % 256, yy * 3 % 256, (xx + yy) % 256], -1)
    image = np.clip(image + rng.integers(-10, 10, image.shape), 0, 255).astype(np.uint8)
    Image.fromarray(image).save(path)
    return str(path)


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    return [write_png(folder / "a.png", 32, 48, 0), write_png(folder / "b.png", 40, 33, 1)]


_MODELS = {}


@pytest.fixture(autouse=True)
def reuse_models(request, monkeypatch):
    """Every command loads its --model; load each run once per module (graphs are slow)."""
    if "tiny_run" not in request.fixturenames:
        return
    _MODELS.setdefault(request.getfixturevalue("tiny_run"),
                       request.getfixturevalue("tiny_model"))

    def load(path):
        if path not in _MODELS:
            _MODELS[path] = real_load(path)
        return _MODELS[path]

    real_load = cli._load
    monkeypatch.setattr(cli, "_load", load)


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_version_and_help():
    env = subprocess_env()
    version = subprocess.run([PYTHON, "-m", "compression.cli", "--version"], cwd=REPO_ROOT,
                             env=env, capture_output=True, text=True, timeout=60)
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("gcompress ")
    helped = subprocess.run(
        [PYTHON, "-c", "import sys\nfrom compression.cli import main\ntry:\n    main(['--help'])\n"
         "except SystemExit as e:\n    assert e.code == 0\n"
         "print('tensorflow imported:', 'tensorflow' in sys.modules)"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0, helped.stderr
    for command in ("train", "encode", "decode", "info", "demo"):
        assert command in helped.stdout
    assert "tensorflow imported: False" in helped.stdout  # --help stays instant


def test_python_dash_m_compression_is_gcompress():
    proc = subprocess.run([PYTHON, "-m", "compression", "--version"], cwd=REPO_ROOT,
                          env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("gcompress ")


def test_no_command(capsys):
    code, out, _ = run_cli(capsys)
    assert code == 2 and "COMMAND" in out


def test_encode_decode_end_to_end(capsys, tiny_run, tiny_model, images, tmp_path):
    code, out, err = run_cli(capsys, "encode", images[0], "--model", tiny_run)
    assert code == 0, err
    match = LINE.fullmatch(out.strip())
    assert match, out
    gcz = images[0][:-4] + ".gcz"
    assert match["src"] == images[0] and match["dst"] == gcz
    assert int(match["bytes"]) == os.path.getsize(gcz)
    assert float(match["bpp"]) == pytest.approx(8 * os.path.getsize(gcz) / (32 * 48), abs=1e-4)
    assert float(match["bound"]) > 0

    decoded_dir = tmp_path / "decoded"
    code, out, err = run_cli(capsys, "decode", gcz, "--model", tiny_run, "--out-dir", decoded_dir)
    assert code == 0, err
    assert out.strip() == f"{gcz} -> {decoded_dir / 'a.png'}: 48x32"
    decoded = read_image(decoded_dir / "a.png")
    with open(gcz, "rb") as f:
        np.testing.assert_array_equal(decoded, decode(tiny_model, f.read()))


def test_output_option(capsys, tiny_run, images, tmp_path):
    target = tmp_path / "custom.gcz"
    code, out, _ = run_cli(capsys, "encode", images[0], "--model", tiny_run, "-o", target)
    assert code == 0 and target.exists() and str(target) in out
    png = tmp_path / "custom.png"
    code, _, _ = run_cli(capsys, "decode", target, "--model", tiny_run, "-o", png)
    assert code == 0 and read_image(png).shape == (32, 48, 3)
    code, _, err = run_cli(capsys, "encode", *images, "--model", tiny_run, "-o", target)
    assert code == 2 and "-o/--output takes one input" in err


def test_pad_edges_codes_the_last_column_too(capsys, tiny_run, tiny_model, images, tmp_path):
    # b.png is 40x33: one column beyond a multiple of 16, left out unless --pad-edges.
    sizes = {}
    for flag in ((), ("--pad-edges",)):
        target = tmp_path / f"b{len(flag)}.gcz"
        code, _, err = run_cli(capsys, "encode", images[1], "--model", tiny_run, "-o", target,
                               *flag)
        assert code == 0, err
        code, out, err = run_cli(capsys, "info", target)
        assert code == 0, err
        assert ("repeated_edge none" in out) == bool(flag), out
        decoded = decode(tiny_model, target.read_bytes())
        assert decoded.shape == (40, 33, 3)
        sizes[flag] = target.stat().st_size
        if not flag:
            np.testing.assert_array_equal(decoded[:, 32], decoded[:, 31])
    assert sizes[()] < sizes[("--pad-edges",)]


def test_directory_input_and_out_dir(capsys, tiny_run, images, tmp_path):
    folder = os.path.dirname(images[0])
    with open(os.path.join(folder, "notes.txt"), "w") as f:
        f.write("not an image; a directory input skips it")
    encoded = tmp_path / "encoded"
    code, out, err = run_cli(capsys, "encode", folder, "--model", tiny_run, "--out-dir", encoded)
    assert code == 0, err
    assert sorted(os.listdir(encoded)) == ["a.gcz", "b.gcz"]
    assert len(out.strip().splitlines()) == 2
    decoded = tmp_path / "decoded"
    code, _, err = run_cli(capsys, "decode", encoded, "--model", tiny_run, "--out-dir", decoded)
    assert code == 0, err
    assert read_image(decoded / "a.png").shape == (32, 48, 3)
    assert read_image(decoded / "b.png").shape == (40, 33, 3)


def test_outputs_are_not_overwritten_without_force(capsys, tiny_run, images, tmp_path):
    target = tmp_path / "out.gcz"
    target.write_bytes(b"precious")
    code, _, err = run_cli(capsys, "encode", images[0], "--model", tiny_run, "-o", target)
    assert code == 1 and "--force" in err
    assert target.read_bytes() == b"precious"
    code, _, err = run_cli(capsys, "encode", images[0], "--model", tiny_run, "-o", target,
                           "--force")
    assert code == 0, err
    assert target.read_bytes()[:4] == b"\x89GCZ"

    png = tmp_path / "out.png"
    png.write_bytes(b"precious")
    code, _, err = run_cli(capsys, "decode", target, "--model", tiny_run, "-o", png)
    assert code == 1 and "--force" in err
    assert png.read_bytes() == b"precious"
    code, _, _ = run_cli(capsys, "decode", target, "--model", tiny_run, "-o", png, "--force")
    assert code == 0 and read_image(png).shape == (32, 48, 3)
    assert not [n for n in os.listdir(tmp_path) if "partial" in n or n.endswith(".tmp")]


def test_one_bad_file_does_not_stop_the_batch(capsys, tiny_run, images, tmp_path):
    folder = os.path.dirname(images[0])
    bad = os.path.join(folder, "aa-broken.png")
    with open(bad, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n garbage")
    out_dir = tmp_path / "out"
    code, out, err = run_cli(capsys, "encode", folder, "--model", tiny_run, "--out-dir", out_dir)
    assert code == 1
    assert f"gcompress: {bad}: " in err and "1 of 3 files failed" in err
    assert sorted(os.listdir(out_dir)) == ["a.gcz", "b.gcz"]
    assert len(out.strip().splitlines()) == 2


def test_decode_of_a_non_gcz_file(capsys, tiny_run, images, tmp_path):
    fake = tmp_path / "fake.gcz"
    fake.write_bytes(open(images[0], "rb").read())
    code, _, err = run_cli(capsys, "decode", fake, "--model", tiny_run, "--out-dir", tmp_path)
    assert code == 1 and "not a .gcz file" in err
    assert not (tmp_path / "fake.png").exists()


def test_decode_with_another_model(capsys, tiny_run, other_run, images, tmp_path):
    gcz = tmp_path / "a.gcz"
    assert run_cli(capsys, "encode", images[0], "--model", tiny_run, "-o", gcz)[0] == 0
    code, _, err = run_cli(capsys, "decode", gcz, "--model", other_run, "--out-dir", tmp_path)
    assert code == 1 and "decode it with the model that encoded it" in err


def test_bpp_is_the_largest_file_size(capsys, tiny_run, images, tmp_path):
    gcz = tmp_path / "a.gcz"
    assert run_cli(capsys, "encode", images[0], "--model", tiny_run, "-o", gcz)[0] == 0
    rate = 8 * gcz.stat().st_size / (32 * 48)
    # A fixed-rate model has one file size: a smaller target is refused, naming it.
    code, _, err = run_cli(capsys, "encode", images[0], "--model", tiny_run, "--bpp",
                           f"{rate * 0.9:.4f}", "-o", tmp_path / "b.gcz")
    assert code == 1
    assert f"below this fixed-rate model's file for this image, {rate:.4f} bpp" in err
    assert "train --min-channels" in err and not (tmp_path / "b.gcz").exists()
    code, out, _ = run_cli(capsys, "encode", images[0], "--model", tiny_run, "--bpp",
                           f"{rate + 1e-4:.4f}", "-o", tmp_path / "c.gcz")
    assert code == 0 and (tmp_path / "c.gcz").read_bytes() == gcz.read_bytes()
    assert LINE.search(out)["k"] == LINE.search(out)["channels"] == "4"
    for bad in ("0", "-0.1", "nan"):
        code, _, err = run_cli(capsys, "encode", images[0], "--model", tiny_run, "--bpp", bad)
        assert code == 2 and "--bpp must be a positive number" in err


def test_variable_rate_encode_and_info(capsys, variable_rate_run, tmp_path):
    # Big enough that the 54-byte header is a small part of a file.
    image = write_png(tmp_path / "big.png", 256, 384)
    sizes = {}
    for target in ("0.03", "0.045", "10"):
        gcz = tmp_path / f"{target}.gcz"
        code, out, _ = run_cli(capsys, "encode", image, "--model", variable_rate_run,
                               "--bpp", target, "-o", gcz)
        assert code == 0, out
        match = LINE.search(out)
        assert match["channels"] == "6" and 2 <= int(match["k"]) <= 6
        assert 8 * gcz.stat().st_size / (256 * 384) <= float(target)
        sizes[target] = int(match["k"])  # whole channels
        # Asked for well more than every channel needs: the line says it is the model's limit.
        every = match["k"] == "6" and match["rows"] is None
        assert ("the largest file this model writes" in out) == (
            every and float(match["bpp"]) < 0.9 * float(target)), out
        _, info, _ = run_cli(capsys, "info", gcz)
        if match["rows"] is None:
            assert f"channels {match['k']}, last_channel_rows all" in info
        else:  # --bpp spent the rest of the budget on rows of one more channel
            assert int(match["partial"]) == int(match["k"]) + 1 and match["height"] == "16"
            assert 1 <= int(match["rows"]) < 16
            assert (f"channels {match['partial']}, last_channel_rows {match['rows']} of 16"
                    in info)
        assert run_cli(capsys, "decode", gcz, "--model", variable_rate_run, "-o",
                       tmp_path / f"{target}.png")[0] == 0
    assert sizes["10"] == 6 and sizes["0.03"] <= sizes["0.045"]
    code, _, err = run_cli(capsys, "encode", image, "--model", variable_rate_run, "--bpp",
                           "0.001", "-o", tmp_path / "none.gcz")
    assert code == 1 and "below the smallest file this model writes" in err
    assert "(2 of 6 channels); its range for this image is" in err


def test_encode_with_refinement(capsys, variable_rate_run, tmp_path):
    image = write_png(tmp_path / "a.png", 64, 96)
    plain, refined = tmp_path / "plain.gcz", tmp_path / "refined.gcz"
    assert run_cli(capsys, "encode", image, "--model", variable_rate_run, "-o", plain)[0] == 0
    code, out, _ = run_cli(capsys, "encode", image, "--model", variable_rate_run, "--refine",
                           "3", "-o", refined)
    assert code == 0
    assert re.search(r"refined: (step [1-3] of 3|no step of 3 beat the encoder's own)", out)
    assert refined.stat().st_size <= plain.stat().st_size
    assert run_cli(capsys, "decode", refined, "--model", variable_rate_run, "-o",
                   tmp_path / "r.png")[0] == 0
    for command in ("encode", "evaluate"):
        args = [image] if command == "encode" else ["--images", str(tmp_path)]
        code, _, err = run_cli(capsys, command, *args, "--model", variable_rate_run,
                               "--refine", "-2")
        assert code == 2 and "--refine takes a number of steps >= 0" in err


def test_encode_with_a_seed_search(capsys, variable_rate_run, tmp_path):
    image = write_png(tmp_path / "a.png", 64, 96)
    searched = tmp_path / "s.gcz"
    code, out, err = run_cli(capsys, "encode", image, "--model", variable_rate_run, "--seeds",
                             "5", "--refine", "1", "-o", searched)
    assert code == 0, err
    match = re.search(r"seed (\d) of 5 tried|the derived seed beat 4 others", out)
    assert match
    assert run_cli(capsys, "info", searched)[1].count("seed") >= 1
    assert run_cli(capsys, "decode", searched, "--model", variable_rate_run, "-o",
                   tmp_path / "s.png")[0] == 0
    for bad, message in ((["--seeds", "0"], "--seeds takes a number of seeds >= 1"),
                         (["--seeds", "3", "--seed", "1"], "pass --seed or --seeds, not both")):
        code, _, err = run_cli(capsys, "encode", image, "--model", variable_rate_run, *bad)
        assert code == 2 and message in err
    code, _, err = run_cli(capsys, "encode", image, "--model", variable_rate_run, "--seeds",
                           "1000")
    assert code == 1 and "2..129 seeds" in err


def test_info(capsys, tiny_run, tiny_model, images, tmp_path):
    gcz = tmp_path / "a.gcz"
    assert run_cli(capsys, "encode", images[0], "--model", tiny_run, "-o", gcz, "--seed",
                   "42")[0] == 0
    broken = tmp_path / "broken.gcz"
    broken.write_bytes(gcz.read_bytes()[:-3])
    code, out, err = run_cli(capsys, "info", gcz, broken)
    assert code == 1
    assert out.startswith(f"{gcz}: height 32, width 48, bytes {gcz.stat().st_size}, bpp ")
    assert f"model {tiny_model.fingerprint.hex()[:16]}, model_name run, seed 42" in out
    assert re.search(r", color_correction means \d+,\d+,\d+ gains \d\.\d\d,\d\.\d\d,"
                     r"\d\.\d\d, version 2", out), out
    assert f"gcompress: {broken}: truncated .gcz file" in err


def test_unwritable_outputs(capsys, tiny_run, images, tmp_path):
    regular = tmp_path / "a-file"
    regular.write_text("")
    code, _, err = run_cli(capsys, "encode", images[0], "--model", tiny_run, "--out-dir",
                           regular / "sub")
    assert code == 2 and err.startswith("gcompress: error: ") and "a-file" in err
    code, _, err = run_cli(capsys, "encode", images[0], "--model", tiny_run, "-o",
                           regular / "x.gcz")
    assert code == 1 and "cannot write" in err
    gcz = tmp_path / "a.gcz"
    assert run_cli(capsys, "encode", images[0], "--model", tiny_run, "-o", gcz)[0] == 0
    code, _, err = run_cli(capsys, "decode", gcz, "--model", tiny_run, "-o", regular / "x.png")
    assert code == 1 and "cannot write" in err


def test_missing_model_and_inputs(capsys, tiny_run, images, tmp_path):
    code, _, err = run_cli(capsys, "encode", images[0], "--model", tmp_path / "nope")
    assert code == 2 and "does not exist" in err
    code, _, err = run_cli(capsys, "encode", tmp_path / "missing.png", "--model", tiny_run)
    assert code == 1 and "no such file" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "encode", tmp_path / "empty", "--model", tiny_run)
    assert code == 2 and "no input files" in err


# --- hostile inputs and safe outputs ------------------------------------------------


def test_decode_refuses_devices_and_fifos(capsys, tiny_run, tmp_path):
    fifo = tmp_path / "x.gcz"
    os.mkfifo(fifo)
    for src in ("/dev/zero", fifo):  # neither reads forever nor blocks
        code, _, err = run_cli(capsys, "decode", src, "--model", tiny_run, "--out-dir", tmp_path)
        assert code == 1 and "not a regular .gcz file" in err and "cannot read" in err, err
    code, _, err = run_cli(capsys, "info", fifo)
    assert code == 1 and "FIFO" in err


def test_decode_pixel_limit(capsys, tiny_run, images, tmp_path):
    gcz = tmp_path / "a.gcz"
    assert run_cli(capsys, "encode", images[0], "--model", tiny_run, "-o", gcz)[0] == 0
    code, _, err = run_cli(capsys, "decode", gcz, "--model", tiny_run, "--out-dir", tmp_path,
                           "--max-pixels", "100")
    assert code == 1 and "--max-pixels" in err and "1536 pixels" in err
    assert not (tmp_path / "a.png").exists()
    assert run_cli(capsys, "decode", gcz, "--model", tiny_run, "--out-dir", tmp_path,
                   "--max-pixels", "0")[0] == 0  # 0: no limit


def test_encode_never_touches_a_users_partial_file_or_a_symlinks_target(
        capsys, tiny_run, images, tmp_path):
    folder = os.path.dirname(images[0])
    mine = os.path.join(folder, "a.gcz.partial")
    with open(mine, "wb") as f:
        f.write(b"my notes")
    target = tmp_path / "precious"
    target.write_bytes(b"keep")
    os.symlink(target, os.path.join(folder, "a.gcz"))
    code, _, err = run_cli(capsys, "encode", images[0], "--model", tiny_run)
    assert code == 1 and "--force" in err
    assert run_cli(capsys, "encode", images[0], "--model", tiny_run, "--force")[0] == 0
    assert target.read_bytes() == b"keep"  # the link was replaced, not written through
    with open(mine, "rb") as f:
        assert f.read() == b"my notes"
    assert not [n for n in os.listdir(folder) if n.endswith(".tmp")]


def test_two_inputs_with_one_output_name(capsys, tiny_run, images, tmp_path):
    bmp = os.path.join(os.path.dirname(images[0]), "a.bmp")
    Image.open(images[0]).save(bmp)
    code, _, err = run_cli(capsys, "encode", images[0], bmp, "--model", tiny_run, "--force")
    assert code == 2 and images[0] in err and bmp in err and "both" in err
    assert not os.path.exists(images[0][:-4] + ".gcz")  # refused before any work


def test_leading_dash_names_and_info_on_a_directory(capsys, tiny_run, images, tmp_path,
                                                    monkeypatch):
    monkeypatch.chdir(os.path.dirname(images[0]))
    os.rename("a.png", "-a.png")
    with pytest.raises(SystemExit):
        main(["encode", "-a.png", "--model", str(tiny_run)])
    err = capsys.readouterr().err
    assert "put -- before" in err and "-- -a.png" in err
    assert run_cli(capsys, "encode", "--model", tiny_run, "--", "-a.png")[0] == 0
    (tmp_path / "nothing").mkdir()
    code, _, err = run_cli(capsys, "info", tmp_path / "nothing")
    assert code == 2 and "no .gcz files" in err


def test_seed_range(capsys, tiny_run, images, tmp_path):
    code, _, err = run_cli(capsys, "encode", images[0], "--model", tiny_run, "--seed",
                           str(2**64))
    assert code == 2 and "--seed" in err
    gcz = tmp_path / "a.gcz"
    assert run_cli(capsys, "encode", images[0], "--model", tiny_run, "-o", gcz, "--seed",
                   str(2**64 - 1))[0] == 0
    assert run_cli(capsys, "decode", gcz, "--model", tiny_run, "--out-dir", tmp_path)[0] == 0


def test_mistakes_are_reported_before_tensorflow_loads(tmp_path):
    # A missing input or model is known without TensorFlow (which takes seconds to load).
    code = ("import sys\nfrom compression.cli import main\n"
            f"a = main(['encode', {str(tmp_path / 'missing.png')!r}, '--model', 'x'])\n"
            f"b = main(['decode', {str(tmp_path)!r} + '/*.gcz', '--model', 'x'])\n"
            f"open({str(tmp_path / 'p.png')!r}, 'wb').write(b'x')\n"
            f"c = main(['encode', {str(tmp_path / 'p.png')!r}, '--model', {str(tmp_path)!r}])\n"
            "print(a, b, c, 'tensorflow' in sys.modules)")
    proc = subprocess.run([PYTHON, "-c", code], cwd=REPO_ROOT, env=subprocess_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "2", "2", "False"], (proc.stdout, proc.stderr)
    assert "missing.png: no such file" in proc.stderr and "no config.json" in proc.stderr


def test_sigterm_handling_ends_with_the_command(capsys, tmp_path):
    import signal

    before = signal.getsignal(signal.SIGTERM)
    run_cli(capsys, "info", tmp_path / "missing.gcz")
    assert signal.getsignal(signal.SIGTERM) is before  # main() leaves the process as it was


@pytest.fixture(scope="module")
def semantic_run(tmp_path_factory):
    import dataclasses

    from conftest import TINY

    from compression.inference import initialize_run

    run = tmp_path_factory.mktemp("semantic_cli") / "run"
    initialize_run(dataclasses.replace(TINY, semantic_classes=5), run)
    return str(run)


def test_semantic_encode_with_label_maps(capsys, semantic_run, tmp_path):
    images, labels = tmp_path / "leftImg8bit", tmp_path / "gtFine"
    images.mkdir()
    labels.mkdir()
    for i in range(2):
        write_png(images / f"f{i}_leftImg8bit.png", 48, 64, seed=i)
        ids = np.zeros((48, 64), np.uint8)
        ids[24:] = 3 + i
        Image.fromarray(ids).save(labels / f"f{i}_gtFine_labelIds.png")
    code, _, err = run_cli(capsys, "encode", images, "--model", semantic_run)
    assert code == 2 and "semantic model (5 classes): pass each image's label map" in err
    code, _, err = run_cli(capsys, "encode", images, "--model", semantic_run, "--labels",
                           labels / "f0_gtFine_labelIds.png")
    assert code == 2 and "pass a folder of label maps" in err
    code, out, err = run_cli(capsys, "encode", images, "--model", semantic_run, "--labels",
                             labels, "--out-dir", tmp_path / "out")
    assert code == 0, err
    assert out.count("label map ") == 2
    gcz = tmp_path / "out" / "f1_leftImg8bit.gcz"
    _, info, _ = run_cli(capsys, "info", gcz)
    assert re.search(r"label_bpp 0\.\d+", info) and "label_bpp 0.0000" not in info
    code, out, err = run_cli(capsys, "decode", gcz, "--model", semantic_run, "-o",
                             tmp_path / "f1.png")
    assert code == 0 and "64x48" in out, err
    # A label map of the wrong size names both sizes and the fix.
    Image.fromarray(np.zeros((40, 64), np.uint8)).save(labels / "f0_gtFine_labelIds.png")
    code, _, err = run_cli(capsys, "encode", images / "f0_leftImg8bit.png", "--model",
                           semantic_run, "--labels", labels, "-o", tmp_path / "x.gcz")
    assert code == 1 and "the label map is 64x40" in err and "the image is 64x48" in err
    code, _, err = run_cli(capsys, "encode", images / "f0_leftImg8bit.png", "--model",
                           semantic_run, "--labels", tmp_path / "nothing")
    assert code == 2 and "--labels" in err and "does not exist" in err


def test_selective_encode_keep_and_synthesize(capsys, semantic_run, tmp_path):
    import dataclasses

    from conftest import TINY

    from compression.inference import initialize_run

    run = tmp_path / "selective"
    initialize_run(dataclasses.replace(
        TINY, semantic_classes=5, selective_probability=0.5,
        class_names=("sky", "building", "road", "car", "person")), run)
    write_png(tmp_path / "street.png", 48, 64)
    ids = np.zeros((48, 64), np.uint8)
    ids[24:] = 2
    ids[30:40, 10:20] = 3  # a car
    Image.fromarray(ids).save(tmp_path / "street_labels.png")
    common = ["--model", run, "--labels", tmp_path / "street_labels.png"]
    code, out, err = run_cli(capsys, "encode", tmp_path / "street.png", *common, "--keep",
                             "car", "-o", tmp_path / "car.gcz")
    assert code == 0, err
    assert "kept 33.3% of the bottleneck" in out and "mask 0.0" in out   # 4 of 12 cells
    code, out, err = run_cli(capsys, "encode", tmp_path / "street.png", *common,
                             "--synthesize", "sky,building,road,person", "-o",
                             tmp_path / "synth.gcz")
    assert code == 0 and "kept 33.3%" in out, err
    assert (tmp_path / "car.gcz").read_bytes() == (tmp_path / "synth.gcz").read_bytes()
    code, out, err = run_cli(capsys, "encode", tmp_path / "street.png", *common, "--keep",
                             "car", "--label-factor", "4", "-o", tmp_path / "car4.gcz")
    assert code == 0 and "kept 33.3%" in out, err
    with pytest.raises(SystemExit):
        run_cli(capsys, "encode", tmp_path / "street.png", *common, "--label-factor", "3",
                "-o", tmp_path / "bad.gcz")
    assert "--label-factor" in capsys.readouterr().err
    _, info, _ = run_cli(capsys, "info", tmp_path / "car.gcz")
    assert "kept_fraction 0.3333" in info and re.search(r"mask_bpp 0\.0\d+", info)
    code, out, err = run_cli(capsys, "decode", tmp_path / "car.gcz", "--model", run, "-o",
                             tmp_path / "car.png")
    assert code == 0 and "64x48" in out, err
    code, _, err = run_cli(capsys, "encode", tmp_path / "street.png", *common, "--keep",
                           "bus", "-o", tmp_path / "bus.gcz")
    assert code == 2 and "unknown class 'bus'" in err and "3 car" in err
    code, _, err = run_cli(capsys, "encode", tmp_path / "street.png", "--model", semantic_run,
                           "--labels", tmp_path / "street_labels.png", "--keep", "3", "-o",
                           tmp_path / "x.gcz")
    assert code == 2 and "not trained for selective compression" in err
