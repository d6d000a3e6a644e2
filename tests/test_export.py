"""compression.export / ``gcompress export``: inference-only weights that load like a run."""

import json
import os

import numpy as np
import pytest

from compression.cli import main
from compression.codec import decode, encode
from compression.errors import CompressionError, ModelMismatchError
from compression.export import export_model
from compression.image_io import pad_to_multiple, to_float
from compression.inference import load_model


def _image():
    return np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)


def test_float32_export_is_the_same_model(tiny_run, tiny_model, tmp_path):
    card = export_model(tiny_run, tmp_path / "m32", dtype="float32")
    assert card["fingerprint"] == card["source_fingerprint"] == tiny_model.fingerprint.hex()
    with load_model(tmp_path / "m32") as exported:
        data = encode(tiny_model, _image(), seed=3)
        assert encode(exported, _image(), seed=3) == data  # byte-identical files
        np.testing.assert_array_equal(decode(exported, data), decode(tiny_model, data))
    # Only inference weights: no optimiser moments, no discriminator.
    checkpoint = os.path.join(tmp_path / "m32", f"ckpt-{card['step']}.data-00000-of-00001")
    trained = [f for f in os.listdir(tiny_run) if f.endswith(".data-00000-of-00001")][0]
    assert os.path.getsize(checkpoint) < os.path.getsize(os.path.join(tiny_run, trained)) / 2


def test_float16_export_halves_the_weights_and_is_another_model(tiny_run, tiny_model,
                                                                tmp_path, capsys):
    assert main(["export", str(tiny_run), str(tmp_path / "m16")]) == 0
    assert "float16 weights" in capsys.readouterr().out
    card = json.loads((tmp_path / "m16" / "card.json").read_text())
    assert card["dtype"] == "float16" and card["fingerprint"] != card["source_fingerprint"]
    with load_model(tmp_path / "m16") as exported:
        image = _image()
        # float16 rounding only: the decoders agree on the same symbols, and the
        # encoders on nearly every symbol (one that sat on a decision boundary
        # may flip, and then the whole picture around it changes; seen with the
        # barely trained tiny model, so the images are not compared end to end).
        padded = to_float(pad_to_multiple(image, 16)[0])
        symbols = tiny_model.encode(padded)
        assert np.mean(exported.encode(padded) == symbols) > 0.95
        ours = exported.decode(symbols, seed=5, as_uint8=True)
        theirs = tiny_model.decode(symbols, seed=5, as_uint8=True)
        assert np.abs(ours.astype(int) - theirs).mean() < 2
        with pytest.raises(ModelMismatchError):  # files name the model that wrote them
            decode(exported, encode(tiny_model, image))
    with pytest.raises(CompressionError, match="not empty"):
        export_model(tiny_run, tmp_path / "m16")
    with pytest.raises(CompressionError, match="dtype"):
        export_model(tiny_run, tmp_path / "other", dtype="int8")
