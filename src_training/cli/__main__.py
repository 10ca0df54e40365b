"""``python -m src_training.cli``: the ``deepsim`` command (torchrun starts it this way)."""

import sys

from src_training.cli import main

if __name__ == "__main__":
    sys.exit(main())
