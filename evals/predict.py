"""``python -m evals.predict`` in a checkout: the same program as ``python -m ajepa.evals.predict`` (docs keep the short name)."""

import sys

from ajepa.evals.predict import main

if __name__ == "__main__":
    sys.exit(main())
