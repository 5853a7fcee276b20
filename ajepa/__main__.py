"""``python -m ajepa embed|export ...``: the command-line programs of :mod:`ajepa.cli` (training: ``python -m ajepa.train``)."""

from __future__ import annotations

import sys

COMMANDS = {"embed": "embed audio files into an .npz (ajepa.cli.embed)",
            "export": "export an encoder of a training checkpoint as safetensors + JSON (ajepa.cli.export)"}


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the subcommand's ``main``."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        lines = "\n".join(f"  {name:<8}{what}" for name, what in COMMANDS.items())
        print(f"usage: python -m ajepa {{{','.join(COMMANDS)}}} ...\n\n{lines}\n\n"
              "training: python -m ajepa.train [hydra overrides]", file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    if argv[0] == "embed":
        from ajepa.cli.embed import main as command
    else:
        from ajepa.cli.export import main as command
    return command(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
