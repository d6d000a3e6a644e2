"""compression.quiet: TensorFlow's start-up lines are dropped, everything else passes."""

import os
import subprocess
import threading

from conftest import PYTHON, REPO_ROOT, subprocess_env

from compression.quiet import _pump, is_startup_line

STARTUP = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"I0000 00:00:1795566600.467484   23683 port.cc:153] oneDNN custom operations are on.",
    b"I0000 00:00:1795566600.468664   23683 cudart_stub.cc:31] Could not find cuda drivers",
    b"E0000 00:00:1795566892.507000   30367 cuda_platform.cc:52] failed call to cuInit: "
    b"INTERNAL: CUDA error",
    b"E0000 00:00:1795972103.428191   17350 util.cc:131] oneDNN supports DT_HALF only on "
    b"platforms with AVX-512. Falling back to the default Eigen-based implementation if present.",
]
KEPT = [
    b"gcompress: error: model 'x' does not exist",
    b"E0000 00:00:1795566892.507000   30367 some_op.cc:52] a real error",
    b" 45%|####5     | 450/1000 [00:10<00:12, 44.1step/s]",
    b"Traceback (most recent call last):",
]


def test_only_startup_lines_match():
    assert all(is_startup_line(line) for line in STARTUP)
    assert not any(is_startup_line(line) for line in KEPT)


def _read_until(fd, expected, timeout=10):
    import select

    got = b""
    while len(got) < len(expected):
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            break
        got += os.read(fd, 4096)
    return got


def test_the_pump_drops_startup_lines_and_forwards_the_rest_at_once():
    read_in, write_in = os.pipe()
    read_out, write_out = os.pipe()
    thread = threading.Thread(target=_pump, args=(read_in, write_out), daemon=True)
    thread.start()
    os.write(write_in, b"\n".join(STARTUP[:2] + KEPT[:1]) + b"\n")
    assert _read_until(read_out, KEPT[0] + b"\n") == KEPT[0] + b"\n"
    # A progress bar redrawn without a newline is not held back.
    os.write(write_in, b"\r" + KEPT[2])
    assert _read_until(read_out, b"\r" + KEPT[2]) == b"\r" + KEPT[2]
    os.write(write_in, b"\n" + STARTUP[3] + b"\n" + KEPT[1] + b"\n")
    os.close(write_in)
    thread.join(timeout=5)
    os.close(write_out)
    assert _read_until(read_out, b"\n" + KEPT[1] + b"\n") == b"\n" + KEPT[1] + b"\n"


def test_a_command_that_loads_tensorflow_prints_no_startup_lines(tiny_run, tmp_path):
    proc = subprocess.run([PYTHON, "-m", "compression", "export", str(tiny_run),
                           str(tmp_path / "out")], cwd=REPO_ROOT, env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "parameters" in proc.stdout
    assert "I0000" not in proc.stderr and "cuInit" not in proc.stderr, proc.stderr
    assert "absl::InitializeLog" not in proc.stderr


def test_info_prints_no_startup_lines(tiny_run, tmp_path):
    # info reads a file without a model, but the codec module imports TensorFlow.
    from PIL import Image

    Image.new("RGB", (32, 48), (90, 120, 60)).save(tmp_path / "a.png")
    env = subprocess_env()
    del env["TF_CPP_MIN_LOG_LEVEL"]  # as in a user's shell
    encoded = subprocess.run([PYTHON, "-m", "compression", "encode", str(tmp_path / "a.png"),
                              "--model", str(tiny_run), "-o", str(tmp_path / "a.gcz")],
                             cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert encoded.returncode == 0, encoded.stderr
    proc = subprocess.run([PYTHON, "-m", "compression", "info", str(tmp_path / "a.gcz")],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "height 48, width 32" in proc.stdout, proc.stderr
    assert proc.stderr == "", proc.stderr
