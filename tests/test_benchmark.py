"""``scripts/benchmark.py --quick``: runs end to end and writes the documented JSON.

Only the structure and sanity of the numbers are checked, never their size:
timings depend on the machine and on whatever else it is doing.
"""

import json
import os
import subprocess

import numpy as np
from conftest import PYTHON, REPO_ROOT, TINY, subprocess_env

SCRIPT = os.path.join(REPO_ROOT, "scripts", "benchmark.py")


def positive(value):
    return isinstance(value, (int, float)) and value > 0


def test_quick_benchmark_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([PYTHON, SCRIPT, "--quick", "--out", str(out)], cwd=REPO_ROOT,
                          env=subprocess_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    for heading in ("(a) ceiling", "(b, c) codec", "(d) peak resident memory",
                    "(e) training step", "findings"):
        assert heading in proc.stdout
    with open(out) as f:
        result = json.load(f)

    assert {"date", "quick", "machine", "settings", "ceiling", "inference", "memory",
            "training", "findings", "seconds"} <= set(result)
    assert result["quick"] is True
    assert {"cpu", "cores", "memory_gib", "tensorflow"} <= set(result["machine"])

    assert set(result["ceiling"]) == {"onednn_on", "onednn_off"}
    for row in result["ceiling"].values():
        assert positive(row["matmul_gflops"]) and positive(row["conv_gflops"])

    inference = result["inference"]
    assert {(r["model"], r["onednn"]) for r in inference} == {
        (m, o) for m in ("small", "paper") for o in (True, False)}
    for row in inference:
        assert "error" not in row, row
        for key in ("encode_s", "decode_s", "encode_gflops", "decode_gflops",
                    "decode_ceiling_ratio", "entropy_encode_s", "entropy_decode_s", "bpp"):
            assert positive(row[key]), (key, row)
        assert 0 < row["entropy_share"] < 1
        assert row["entropy_share"] == (row["entropy_encode_s"] + row["entropy_decode_s"]) \
            / row["decode_s"]

    memory = result["memory"]
    assert [(r["model"], r["size"]) for r in memory] == [
        (m, f"{h}x{w}") for m in ("small", "paper") for h, w in result["settings"]["memory_sizes"]]
    for row in memory:
        assert "error" not in row, row
        assert row["peak_rss_mb"] >= row["rss_after_load_mb"] > 0

    training = result["training"]
    assert {(r["model"], r["onednn"]) for r in training} >= {
        ("small", True), ("small", False), ("paper", True)}
    for row in training:
        assert positive(row.get("step_s")) or row.get("skipped"), row

    for key in ("inference_decode", "inference_encode", "training", "paper_decode"):
        assert isinstance(result["findings"][key], str)

    # An existing --out is refused (before anything is measured).
    proc = subprocess.run([PYTHON, SCRIPT, "--quick", "--out", str(out)], cwd=REPO_ROOT,
                          env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "pass --force" in proc.stderr


def test_initialize_run_gives_a_loadable_untrained_model(tmp_path):
    from compression.codec import decode_image, encode_image
    from compression.inference import initialize_run, load_model, session_config

    prefix = initialize_run(TINY, tmp_path / "run", seed=3)
    assert os.path.basename(prefix) == "ckpt-0"
    config = session_config()
    with load_model(tmp_path / "run", tf_config=config) as model:
        assert model.config == TINY and not model.has_learned_probabilities
        image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
        decoded, header = decode_image(model, encode_image(model, image).data)
    assert decoded.shape == image.shape and header.image_width == 56
