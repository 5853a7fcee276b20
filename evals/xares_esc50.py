"""``python -m evals.xares_esc50`` in a checkout: the same program as ``python -m ajepa.evals.xares_esc50``."""

import sys

from ajepa.evals.xares_esc50 import main

if __name__ == "__main__":
    sys.exit(main())
