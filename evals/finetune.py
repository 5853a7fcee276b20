"""``python -m evals.finetune`` in a checkout: the same program as ``python -m ajepa.evals.finetune`` (docs keep the short name)."""

import sys

from ajepa.evals.finetune import main

if __name__ == "__main__":
    sys.exit(main())
