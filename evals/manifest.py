"""``python -m evals.manifest`` in a checkout: the same program as ``python -m ajepa.evals.manifest`` (docs keep the short name)."""

import sys

from ajepa.evals.manifest import main

if __name__ == "__main__":
    sys.exit(main())
