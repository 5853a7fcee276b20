"""``python -m evals.diagnose`` in a checkout: the same program as ``python -m ajepa.evals.diagnose`` (docs keep the short name)."""

import sys

from ajepa.evals.diagnose import main

if __name__ == "__main__":
    sys.exit(main())
