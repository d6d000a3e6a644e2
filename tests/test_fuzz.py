"""``scripts/fuzz_decoder.py``: mutated .gcz files give only the project's own errors."""

import importlib.util
import os

from conftest import REPO_ROOT


def _harness():
    spec = importlib.util.spec_from_file_location(
        "fuzz_decoder", os.path.join(REPO_ROOT, "scripts", "fuzz_decoder.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _memory_limit():
    """A mutant may raise this process's resident memory by at most 0.25 GiB.

    The harness's limit is absolute (peak resident memory of the process), as
    the command line's fresh process wants; here the pytest process already
    holds what earlier test modules left resident (2.6 GiB after the
    tf.distribute tests, against under 1 GiB before them), so the limit is
    taken from where it stands.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 + 2**28
    return None  # not Linux: the harness measures no memory either


def test_two_thousand_mutants_below_tensorflow():
    lines = []
    summary = _harness().run(2000, level="entropy", seed=1, time_limit=30,
                             memory_limit=_memory_limit(), log=lines.append)
    assert summary["ok"], summary["unexpected"]
    assert summary["crc_fixed"] == 1000
    assert summary["seconds"] < 60
    assert "UNEXPECTED" not in summary["outcomes"]
    # Every crafted kind was tried, and payload damage rarely decodes silently.
    assert set(summary["by_kind"]) >= {"claim", "payload-empty", "payload-flip", "header"}
    assert summary["silent"] <= 0.05 * summary["payload_mutants"]
    assert any("silent decodes" in line for line in lines)


def test_fifty_mutants_through_the_whole_decoder(tiny_model):
    summary = _harness().run(50, level="full", seed=2, model=tiny_model, time_limit=60,
                             memory_limit=_memory_limit(), log=lambda *_: None)
    assert summary["ok"], summary["unexpected"]
    assert sum(summary["outcomes"].values()) == 50


def test_probe_decodes_honest_files_of_the_claimed_sizes(tiny_model):
    rows = _harness().probe(tiny_model, [(48, 80), (96, 160)], log=lambda *_: None)
    assert [(r["height"], r["width"]) for r in rows] == [(48, 80), (96, 160)]
    # Honest files: a payload beyond the 23-byte version 2 header and CRC.
    assert all(r["seconds"] >= 0 and r["file_bytes"] > 23 + 8 for r in rows)
