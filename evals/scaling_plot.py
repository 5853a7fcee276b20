"""``python -m evals.scaling_plot`` in a checkout: the same program as ``python -m ajepa.evals.scaling_plot`` (docs keep the short name)."""

import sys

from ajepa.evals.scaling_plot import main

if __name__ == "__main__":
    sys.exit(main())
