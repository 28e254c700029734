"""``python -m emseg_tutorial``: see :mod:`emseg_tutorial.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
