"""Compare the GAN codec with classical codecs at the same rate.

Usage (from the repository root)::

    python scripts/compare_codecs.py --model RUN_DIR --images DIR [--limit N] --out-dir DIR

The same as ``gcompress compare`` (see :mod:`compression.compare` for what
is measured and written).  Codecs that are not installed (HEIC needs
``pillow_heif``, JPEG XL the ``cjxl``/``djxl`` tools) are skipped and the
reason is printed.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from compression.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["compare", *sys.argv[1:]]))
