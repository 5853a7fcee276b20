"""Label audio files with a fine-tuned classifier (``python -m ajepa.evals.finetune ... --export DIR``).

    python -m ajepa.evals.predict ft_model/ dog.wav clips/ list.csv --top-k 3 [--json predictions.json]

Prints each file's top-k labels with probabilities, and per window of the model's clip length for long files
(``--windows``). Inputs are files, folders (searched recursively) and manifests, as for ``python -m ajepa embed``;
an unreadable file is named and skipped. ``--json`` writes ``{"predictions": [...], "failed": [...]}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ajepa.errors import AudioInputError, CheckpointError, OutputError
from ajepa.features.audio import collect_audio_files
from ajepa.io import atomic_write, ensure_writable
from ajepa.evals.classifier import load_classifier, predict_files

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status 0 when every input was labelled, 1 on a bad model or when any input failed (each named on
    stderr and in the JSON's ``failed`` list; the others are still labelled)."""
    p = argparse.ArgumentParser(prog="python -m ajepa.evals.predict", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="a saved classifier folder (model.safetensors + config.json)")
    p.add_argument("inputs", nargs="+", help="audio files, folders or manifests")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--windows", action="store_true", help="also print every window's top-k")
    p.add_argument("--json", default=None, help="write all predictions (windows included) to this JSON file")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    try:
        if args.json:
            ensure_writable(args.json)  # before the work, not after it
        model, labels = load_classifier(args.model, device=args.device)
    except (CheckpointError, OutputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    files, failures = collect_audio_files(args.inputs)
    results = []
    for path in files:  # one unreadable file is reported, not fatal to the others
        try:
            results.extend(predict_files(model, labels, [path], top_k=args.top_k))
        except AudioInputError as exc:
            failures.append((path, str(exc)))
    for r in results:
        print(r["path"] + "\t" + "  ".join(f"{label} {prob:.3f}" for label, prob in r["top"]))
        if args.windows:
            for w in r["windows"]:
                print(f"  {w['start_s']:7.2f}-{w['end_s']:7.2f} s\t" +
                      "  ".join(f"{label} {prob:.3f}" for label, prob in w["top"]))
    for path, reason in failures:
        print(f"failed: {reason}" if reason.startswith(path) else f"failed: {path}: {reason}", file=sys.stderr)
    if args.json and results:
        text = json.dumps({"predictions": results, "failed": [{"path": p, "reason": r} for p, r in failures]},
                          indent=1) + "\n"
        atomic_write(Path(args.json), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return 0 if results and not failures else 1

if __name__ == "__main__":
    sys.exit(main())
