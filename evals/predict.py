"""Label audio files with a fine-tuned classifier (``python -m evals.finetune ... --export DIR``).

    python -m evals.predict ft_model/ dog.wav clips/ list.csv --top-k 3 [--json predictions.json]

Prints each file's top-k labels with probabilities, and per window of the model's clip length for long files
(``--windows``). Inputs are files, folders (searched recursively) and manifests, as for ``python -m ajepa embed``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ajepa.errors import AudioInputError, CheckpointError
from ajepa.io import atomic_write
from evals.classifier import load_classifier, predict_files

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status 0 when every input was labelled, 1 on a bad model or input (with the reason)."""
    p = argparse.ArgumentParser(prog="python -m evals.predict", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="a saved classifier folder (model.safetensors + config.json)")
    p.add_argument("inputs", nargs="+", help="audio files, folders or manifests")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--windows", action="store_true", help="also print every window's top-k")
    p.add_argument("--json", default=None, help="write all predictions (windows included) to this JSON file")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    from ajepa.cli.embed import collect_inputs

    try:
        model, labels = load_classifier(args.model, device=args.device)
        files, missing = collect_inputs(args.inputs)
        if missing:
            raise AudioInputError("; ".join(f"{path}: {why}" for path, why in missing))
        results = predict_files(model, labels, files, top_k=args.top_k)
    except (CheckpointError, AudioInputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for r in results:
        print(r["path"] + "\t" + "  ".join(f"{label} {prob:.3f}" for label, prob in r["top"]))
        if args.windows:
            for w in r["windows"]:
                print(f"  {w['start_s']:7.2f}-{w['end_s']:7.2f} s\t" +
                      "  ".join(f"{label} {prob:.3f}" for label, prob in w["top"]))
    if args.json:
        text = json.dumps(results, indent=1) + "\n"
        atomic_write(Path(args.json), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
