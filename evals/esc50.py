"""``python -m evals.esc50`` in a checkout: the same program as ``python -m ajepa.evals.esc50`` (docs keep the short name)."""

import sys

from ajepa.evals.esc50 import main

if __name__ == "__main__":
    sys.exit(main())
