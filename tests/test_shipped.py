"""compression.shipped: models by name, the default model, decode without --model."""

import json
import os

import numpy as np
import pytest
from test_cli import run_cli, write_png

from compression import shipped
from compression.errors import ModelLoadError
from compression.export import export_model
from compression.inference import load_model


def fake_model(models_dir, name, card):
    folder = models_dir / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "card.json").write_text(json.dumps(card))
    return folder


def test_registry(tmp_path):
    models = tmp_path / "models"
    assert shipped.shipped_models(models) == {}
    with pytest.raises(ModelLoadError, match="no shipped model is installed"):
        shipped.default_model(models)
    fake_model(models, "zeta", {"fingerprint": "aa" * 16})
    assert shipped.default_model(models) == "zeta"  # none preferred: the first installed
    fake_model(models, "street", {"fingerprint": "bb" * 16})
    fake_model(models, "general", {"fingerprint": "cc" * 16})
    (models / "notes").mkdir()  # not a model: no config.json
    broken = fake_model(models, "broken", {})
    (broken / "card.json").write_text("{not json")
    assert list(shipped.shipped_models(models)) == ["general", "street", "zeta"]
    assert shipped.default_model(models) == "general"
    # A version 1 file names all 16 bytes, a version 2 file the first 8.
    assert shipped.shipped_by_fingerprint("bb" * 16, models) == "street"
    assert shipped.shipped_by_fingerprint("bb" * 8, models) == "street"
    assert shipped.shipped_by_fingerprint("bb", models) is None  # too short to name one
    assert shipped.shipped_by_fingerprint("dd" * 16, models) is None
    assert shipped.shipped_path("street", models) == os.path.join(models, "street")
    for bad in ("broken", "notes", "..", "", "street/..", None):
        assert shipped.shipped_path(bad, models) is None


@pytest.fixture
def installed(tiny_run, tmp_path, monkeypatch):
    """The tiny run exported as the only shipped model, 'tiny'."""
    models = tmp_path / "models"
    export_model(tiny_run, models / "tiny", dtype="float32",
                 card={"name": "tiny", "summary": "a test model",
                       "description": "a test model, trained 12 steps on synthetic data",
                       "rate": {"summary": "0.5 bpp"},
                       "validation": [{"summary": "synthetic: 10 dB"}]})
    monkeypatch.setattr(shipped, "MODELS_DIR", str(models))
    return models / "tiny"


def test_names_resolve_after_paths(installed, tmp_path, monkeypatch):
    assert shipped.resolve_name("tiny") == str(installed)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny").mkdir()  # a local folder of that name wins
    assert shipped.resolve_name("tiny") == "tiny"
    assert shipped.resolve_name("elsewhere") == "elsewhere"


def test_encode_and_decode_with_no_model(installed, tiny_run, capsys, tmp_path):
    image = write_png(tmp_path / "photo.png", 40, 56)
    code, out, err = run_cli(capsys, "encode", image)
    assert code == 0, err
    gcz = tmp_path / "photo.gcz"
    assert gcz.exists() and "(4 of 4 channels" in out
    _, info, _ = run_cli(capsys, "info", gcz)
    assert "model_name tiny" in info
    os.remove(image)
    code, out, err = run_cli(capsys, "decode", gcz)
    assert code == 0, err
    assert (tmp_path / "photo.png").exists() and "56x40" in out
    # The float32 export is the same model as its run (one fingerprint), so a file
    # the run wrote decodes with no --model too.
    other = tmp_path / "other.gcz"
    assert run_cli(capsys, "encode", write_png(tmp_path / "o.png", 32, 32), "--model",
                   tiny_run, "-o", other)[0] == 0
    code, _, err = run_cli(capsys, "decode", other, "-o", tmp_path / "o2.png")
    assert code == 0, err


def test_a_file_of_an_unshipped_model_names_the_model_it_needs(installed, other_run, capsys,
                                                               tmp_path):
    gcz = tmp_path / "x.gcz"
    assert run_cli(capsys, "encode", write_png(tmp_path / "x.png", 32, 32), "--model",
                   other_run, "-o", gcz)[0] == 0
    code, _, err = run_cli(capsys, "decode", gcz, "-o", tmp_path / "x2.png")
    assert code == 1
    assert "it was written by model 'run' (" in err and "not a shipped model" in err
    assert "pass --model" in err and "Traceback" not in err


def test_a_file_of_an_earlier_version_of_a_shipped_model_says_so(installed, tiny_run, capsys,
                                                                 tmp_path):
    # Re-shipped models keep their names and change their fingerprints (float16: another one).
    export_model(tiny_run, tmp_path / "old", dtype="float16", card={"name": "tiny"})
    gcz = tmp_path / "x.gcz"
    assert run_cli(capsys, "encode", write_png(tmp_path / "x.png", 32, 32), "--model",
                   tmp_path / "old", "-o", gcz)[0] == 0
    code, _, err = run_cli(capsys, "decode", gcz, "-o", tmp_path / "x2.png")
    assert code == 1 and "an earlier version of the shipped 'tiny'" in err
    assert "pass --model" in err and "Traceback" not in err


def test_models_command_and_load_by_name(installed, capsys, tmp_path):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0
    assert out.startswith("tiny (default): a test model\n")
    assert "  rate: 0.5 bpp" in out and "  synthetic: 10 dB" in out
    assert "gcompress models NAME" in out and "trained:" not in out  # the list is short
    code, full, _ = run_cli(capsys, "models", "tiny")
    assert code == 0
    assert full.startswith("tiny (default): a test model, trained 12 steps on synthetic data\n")
    assert "  trained: " in full and "gcompress models NAME" not in full
    code, _, err = run_cli(capsys, "models", "nonesuch")
    assert code == 2 and "no shipped model is named 'nonesuch'; shipped: tiny" in err
    with load_model("tiny") as model:
        assert model.name == "tiny" and model.run_dir == str(installed)
    image = write_png(tmp_path / "x.png", 32, 32)
    code, _, err = run_cli(capsys, "encode", image, "--model", "nonesuch")
    assert code == 2 and "or a shipped model (tiny)" in err


def test_no_shipped_model_and_no_model_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(shipped, "MODELS_DIR", str(tmp_path / "none"))
    image = write_png(tmp_path / "p.png", 32, 32)
    code, _, err = run_cli(capsys, "encode", image)
    assert code == 2 and "no shipped model is installed" in err
    assert run_cli(capsys, "models")[1].startswith("no shipped models are installed")


# --- the models that really ship -------------------------------------------


def test_the_package_ships_models_with_complete_cards():
    installed = shipped.shipped_models()
    assert installed, "compression/models/ holds no shipped model"
    for name, card in installed.items():
        assert card["name"] == name
        assert card["fingerprint"] and card["dtype"] in ("float16", "float32", "int8")
        for field in ("summary", "description", "data", "steps", "rate", "validation"):
            assert card.get(field), (name, field)
        assert len(card["summary"]) < 250, name  # one sentence for 'gcompress models'
        assert card["entropy_data"]["context_model"], name  # files are coded in context
        assert card["entropy_data"].get("context_net_steps"), name  # ... by the learned model
    total = sum(os.path.getsize(os.path.join(root, f))
                for root, _, files in os.walk(shipped.MODELS_DIR) for f in files)
    assert total <= 40e6  # the whole package stays under 40 MB


def test_a_shipped_model_codes_a_sample_photograph_with_no_model(capsys, tmp_path):
    from skimage import data as skdata

    from compression.metrics import psnr

    photo = tmp_path / "coffee.png"
    original = skdata.coffee()
    from PIL import Image

    Image.fromarray(original).save(photo)
    code, out, err = run_cli(capsys, "encode", photo, "--bpp", "0.05")
    assert code == 0, err
    gcz = tmp_path / "coffee.gcz"
    assert 8 * gcz.stat().st_size / original[..., 0].size <= 0.05
    _, info, _ = run_cli(capsys, "info", gcz)
    assert "entropy context" in info
    # Coded by the model's learned context model: its stream is the file's payload.
    from compression import bitstream, load_model
    from compression.codec import read_symbols
    from compression.context_net import encode_symbols_with_net

    data = gcz.read_bytes()
    with load_model("general") as model:
        header, symbols = read_symbols(model, data)
        assert model.context_net is not None
        assert bitstream.unpack(data)[1] == encode_symbols_with_net(
            symbols, model.context_net, header.last_channel_rows, header.rate_position)
    photo.unlink()
    code, _, err = run_cli(capsys, "decode", gcz)
    assert code == 0, err
    from compression.image_io import read_image

    # A trained model, not noise: an untrained one decodes coffee at about 10 dB.
    assert psnr(original, read_image(str(photo))) > 14


def test_the_wheel_carries_the_models(tmp_path):
    """A non-editable install gets the models: they are in the built wheel."""
    import shutil
    import subprocess
    import zipfile

    from conftest import PYTHON, REPO_ROOT

    # Built from a copy: a build writes build/ and *.egg-info into its source tree.
    source = tmp_path / "src"
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "runs", "build", "*.egg-info", "__pycache__", "demo"))
    subprocess.run([PYTHON, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(source)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("gcompress-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped_files = {os.path.relpath(os.path.join(root, f), REPO_ROOT)
                     for root, _, files in os.walk(shipped.MODELS_DIR) for f in files}
    assert shipped_files and shipped_files <= names, sorted(shipped_files - names)


def test_a_shipped_model_with_a_context_table(tiny_run, tiny_data, tmp_path, monkeypatch,
                                              capsys):
    """As the real shipped models: a context table, and files that decode with no --model."""
    from compression.data import find_examples
    from compression.image_io import read_image, write_image

    train = [ex.image_path for ex in find_examples(tiny_data, "train")]
    models = tmp_path / "models"
    export_model(tiny_run, models / "tiny", dtype="float32", entropy_data=train,
                 card={"name": "tiny", "description": "a test model"}, context_net_steps=50)
    monkeypatch.setattr(shipped, "MODELS_DIR", str(models))
    code, out, _ = run_cli(capsys, "models")
    assert code == 0
    assert out.startswith("tiny (default): a test model\n")  # no summary: the description
    code, out, _ = run_cli(capsys, "models", "tiny")
    assert code == 0
    assert "  entropy coding: in context (a learned context model), fitted on 6 images" in out
    image = tmp_path / "frame.png"
    write_image(str(image), np.tile(read_image(train[0]), (2, 2, 1)))  # 128x256
    assert run_cli(capsys, "encode", image)[0] == 0
    _, info, _ = run_cli(capsys, "info", tmp_path / "frame.gcz")
    # Which stream is shorter depends on this barely trained model: the writer
    # keeps the shorter (tests/test_export.py); the real models' files are in
    # context (test_a_shipped_model_codes_a_sample_photograph_with_no_model).
    assert "entropy " in info and "model_name tiny" in info
    code, _, err = run_cli(capsys, "decode", tmp_path / "frame.gcz", "-o", tmp_path / "d.png")
    assert code == 0, err
    assert read_image(str(tmp_path / "d.png")).shape == (128, 256, 3)
