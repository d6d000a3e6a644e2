"""``python -m compression``: the same as the ``gcompress`` command."""

import sys

from compression.cli import main

if __name__ == "__main__":
    sys.exit(main())
