"""``python -m emseg_tutorial``: see :mod:`emseg_tutorial.cli`."""

import sys

if __name__ == "__main__":
    try:
        from .cli import main
    except KeyboardInterrupt:  # Ctrl-C while the libraries load: nothing started, nothing to clean
        print("interrupted (SIGINT)", file=sys.stderr)
        sys.exit(130)
    sys.exit(main())
