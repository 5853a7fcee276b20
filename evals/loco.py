"""``python -m evals.loco`` in a checkout: the same program as ``python -m ajepa.evals.loco`` (docs keep the short name)."""

import sys

from ajepa.evals.loco import main

if __name__ == "__main__":
    sys.exit(main())
