"""Keep TensorFlow's start-up lines off the terminal of a command-line user.

TensorFlow 2.21 writes lines such as ``I0000 ... port.cc:153] oneDNN custom
operations are on`` and, on a machine without a GPU, ``E0000 ...
cuda_platform.cc:52] failed call to cuInit``, from C++ before its logging is
initialised; ``TF_CPP_MIN_LOG_LEVEL`` does not reach them (an upstream absl
issue: TensorFlow would have to call ``absl::InitializeLog``).  They are not
errors, but look like ones.  :func:`filter_startup_lines` routes file
descriptor 2 through a pipe and drops exactly those lines (absl's format:
``I0000 00:00:<time> <thread> <file>.cc:<line>]`` at levels I and W, the
CUDA probe's E line, oneDNN's E line about float16 (seen when ``export``
writes reduced-precision weights; TensorFlow falls back to Eigen, nothing
fails), and absl's ``WARNING: All log messages before ...`` banner);
everything else, progress bars included, passes through at once.
``GCOMPRESS_TF_LOGS=1`` turns the filter off.
"""

import atexit
import os
import re
import sys
import threading

__all__ = ["filter_startup_lines", "is_startup_line"]

_STARTUP = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|[IW]\d{4} [\d:.]+ +\d+ [\w./-]+\.cc:\d+\]"
    rb"|E\d{4} [\d:.]+ +\d+ cuda_\w+\.cc:\d+\] failed call to cuInit"
    rb"|E\d{4} [\d:.]+ +\d+ util\.cc:\d+\] oneDNN supports DT_HALF only on platforms)")
_installed = []


def is_startup_line(line):
    """True for one of TensorFlow's start-up log lines (bytes, without or with newline)."""
    return bool(_STARTUP.match(line))


def _pump(read_fd, out_fd):
    pending = b""
    while True:
        try:
            chunk = os.read(read_fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        text = b"".join(line + b"\n" for line in lines if not is_startup_line(line))
        # A partial line that cannot be the start of a log line (a progress
        # bar redrawn with \r, a prompt) goes out now, not at its newline.
        if pending and not re.match(rb"^[IWE]\d|^WARNING: All", pending):
            text, pending = text + pending, b""
        if text:
            os.write(out_fd, text)
    if pending and not is_startup_line(pending):
        os.write(out_fd, pending)


def filter_startup_lines():
    """Install the filter on file descriptor 2 for the rest of the process (once)."""
    if _installed or os.environ.get("GCOMPRESS_TF_LOGS") == "1" or not hasattr(os, "pipe"):
        return
    try:
        sys.stderr.flush()
        original = os.dup(2)
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 2)
        os.close(write_fd)
    except OSError:
        return
    thread = threading.Thread(target=_pump, args=(read_fd, original), daemon=True,
                              name="tensorflow-startup-filter")
    thread.start()
    _installed.append(thread)

    def restore():
        # Give fd 2 back before the interpreter ends, so the pump sees the end
        # of the pipe and writes out everything still in it.
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(original, 2)
        thread.join(timeout=5)

    atexit.register(restore)
