"""``python -m evals.suite`` in a checkout: the same program as ``python -m ajepa.evals.suite`` (docs keep the short name)."""

import sys

from ajepa.evals.suite import main

if __name__ == "__main__":
    sys.exit(main())
