"""``python -m evals.speech_commands`` in a checkout: the same program as ``python -m ajepa.evals.speech_commands`` (docs keep the short name)."""

import sys

from ajepa.evals.speech_commands import main

if __name__ == "__main__":
    sys.exit(main())
