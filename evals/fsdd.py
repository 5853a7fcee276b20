"""``python -m evals.fsdd`` in a checkout: the same program as ``python -m ajepa.evals.fsdd`` (docs keep the short name)."""

import sys

from ajepa.evals.fsdd import main

if __name__ == "__main__":
    sys.exit(main())
