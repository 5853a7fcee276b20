"""``python -m evals.download`` in a checkout: the same program as ``python -m ajepa.evals.download`` (docs keep the short name)."""

import sys

from ajepa.evals.download import main

if __name__ == "__main__":
    sys.exit(main())
