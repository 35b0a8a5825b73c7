"""``python -m rfcore``: the ``rfcore`` command line, also as ``torchrun ... -m rfcore train``."""

import sys

from rfcore.cli import main

if __name__ == "__main__":
    sys.exit(main())
