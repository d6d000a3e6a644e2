"""The flat public API of ``compression`` and ``noisegen``."""

import subprocess

from conftest import PYTHON, subprocess_env

import compression
import noisegen


def test_every_public_name_resolves():
    assert sorted(compression.__all__) == sorted(compression._EXPORTS)
    for package in (compression, noisegen):
        for name in package.__all__:
            assert getattr(package, name) is not None, (package.__name__, name)


def test_import_compression_does_not_load_tensorflow():
    # The CLI sets TensorFlow's logging and oneDNN variables after importing
    # compression; that only works while the import leaves TensorFlow alone.
    code = "import sys, compression; print('tensorflow' in sys.modules)"
    out = subprocess.run([PYTHON, "-c", code], env=subprocess_env(), capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "False"
