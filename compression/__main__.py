"""``python -m compression``: the same as the ``gcompress`` command."""

import sys

from compression.cli import console_main

if __name__ == "__main__":
    sys.exit(console_main())
