"""``ajepa COMMAND ...`` (or ``python -m ajepa COMMAND ...``): the command-line programs, one entry point.

Each command is a module's ``main``, imported only when it runs, so ``ajepa --help``, ``ajepa --version`` and
``ajepa COMMAND --help`` answer without importing torch.
"""

from __future__ import annotations

import importlib
import sys

from ajepa.extras import MissingExtraError

# command -> (module whose main() runs it, what it does)
COMMANDS = {
    "embed": ("ajepa.cli.embed", "embed audio files, folders or manifests into an .npz"),
    "export": ("ajepa.cli.export", "export an encoder of a training checkpoint as safetensors + JSON + model card"),
    "train": ("ajepa.train", "pre-train with Hydra overrides (the same as python -m ajepa.train)"),
    "eval": ("ajepa.evals.suite", "frozen-encoder probes: methods x seeds x tasks in one report"),
    "predict": ("ajepa.evals.predict", "label audio files with a fine-tuned classifier"),
    "hear-validate": ("ajepa.hear", "run the HEAR 2021 validator on ajepa.hear (torch imported first)"),
}


def usage() -> str:
    """The top-level help text."""
    lines = "\n".join(f"  {name:<15}{what}" for name, (_, what) in COMMANDS.items())
    return (f"usage: ajepa {{{','.join(COMMANDS)}}} ... | --version\n\n{lines}\n\n"
            "`ajepa COMMAND --help` describes each one.")


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the command's ``main``; a missing optional dependency is one line naming the extra."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] in (["--version"], ["-V"]):
        from ajepa import __version__

        print(f"ajepa {__version__}")
        return 0
    if not argv or argv[0] not in COMMANDS:
        print(usage(), file=sys.stderr if argv[:1] not in (["-h"], ["--help"]) else sys.stdout)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    command, rest = argv[0], argv[1:]
    module_name = COMMANDS[command][0]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # an extra that is not installed (ajepa.extras names it)
        print(f"error: ajepa {command}: {exc}", file=sys.stderr)
        return 2
    try:
        if command == "train":  # Hydra reads sys.argv itself
            sys.argv = [f"{sys.argv[0]} train", *rest]
            module.main()
            return 0
        if command == "hear-validate":
            return module.validate_main(rest)
        return int(module.main(rest) or 0)
    except MissingExtraError as exc:
        print(f"error: ajepa {command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
