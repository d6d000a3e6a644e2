"""The models that ship inside the package, by name (``--model street``).

Each lives in ``compression/models/<name>/`` as an export
(:func:`compression.export.export_model`: inference weights, ``config.json``
and a ``card.json`` model card with its data, steps, rates and validation
figures).  They are package data, so ``pip install`` brings them and nothing
is downloaded at run time.

Names resolve after paths: ``--model street`` is the shipped model unless a
directory or checkpoint called ``street`` exists where you run it.  This
module needs no TensorFlow, so the command line can resolve and list models
before loading it.
"""

import json
import os

from compression.errors import CompressionError, ModelLoadError
from compression.files import read_regular

__all__ = ["MODELS_DIR", "PREFERRED", "shipped_models", "shipped_path", "default_model",
           "shipped_by_fingerprint", "resolve_name", "known_models_hint"]

#: Where the shipped models are installed.
MODELS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models")
#: The default model is the first of these that is installed: ``general`` is
#: for everyone's photos, ``street`` for street scenes.
PREFERRED = ("general", "street")
_CARD = "card.json"


def shipped_models(models_dir=None):
    """``{name: card}`` of every installed shipped model, sorted by name.

    A folder without a readable card and ``config.json`` is not a model and
    is left out.
    """
    models_dir = MODELS_DIR if models_dir is None else models_dir
    found = {}
    if not os.path.isdir(models_dir):
        return found
    for name in sorted(os.listdir(models_dir)):
        folder = os.path.join(models_dir, name)
        if not os.path.isfile(os.path.join(folder, "config.json")):
            continue
        try:
            card = json.loads(read_regular(os.path.join(folder, _CARD), 1 << 20, "model card"))
        except (CompressionError, ValueError):
            continue
        if isinstance(card, dict):
            found[name] = card
    return found


def shipped_path(name, models_dir=None):
    """The folder of shipped model ``name``, or None when there is no such model."""
    if not isinstance(name, str) or name in ("", ".", "..") or os.sep in name or (
            os.altsep and os.altsep in name):
        return None
    models_dir = MODELS_DIR if models_dir is None else models_dir
    return os.path.join(models_dir, name) if name in shipped_models(models_dir) else None


def default_model(models_dir=None):
    """The name of the model used without ``--model`` (see :data:`PREFERRED`).

    Raises :class:`ModelLoadError` when no shipped model is installed.
    """
    installed = shipped_models(models_dir)
    for name in PREFERRED + tuple(installed):
        if name in installed:
            return name
    raise ModelLoadError(
        "no shipped model is installed (compression/models/ is empty); pass --model with a "
        "run directory from 'gcompress train', or reinstall gcompress")


def shipped_by_fingerprint(fingerprint_hex, models_dir=None):
    """The name of the shipped model with this fingerprint (hex), or None.

    A version 2 file stores the fingerprint's first 8 bytes: a prefix of at
    least 16 hex digits matches the model whose fingerprint starts with it.
    """
    if len(fingerprint_hex) < 16:
        return None
    for name, card in shipped_models(models_dir).items():
        if str(card.get("fingerprint", "")).startswith(fingerprint_hex):
            return name
    return None


def resolve_name(model):
    """A ``--model`` value as a path: an existing path as given, else a shipped model's folder.

    Anything else is returned unchanged, for the caller's "does not exist" error.
    """
    model = os.fspath(model)
    if os.path.exists(model) or os.path.exists(model + ".index"):
        return model
    return shipped_path(model) or model


def known_models_hint():
    """``"pass a run directory or a shipped model (street, ...)"``, for "not found" errors."""
    names = sorted(shipped_models())
    listed = f" or a shipped model ({', '.join(names)})" if names else ""
    return f"pass a run directory{listed}"
