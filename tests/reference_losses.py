"""Short fixed-seed runs whose per-step losses are recorded in ``tests/data/reference_losses.json``.

The refactoring test (``test_reference_losses.py``) re-runs them and compares; the file was recorded before the
objectives left the model (issue 17), so it proves the move kept the maths. Re-record only for an intended change
of behaviour, and say so in the commit:

    .venv/bin/python tests/reference_losses.py --write
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REFERENCE = Path(__file__).with_name("data") / "reference_losses.json"
COMMON = ["model.encoder.depth=2", "model.predictor.depth=1", "data.batch_size=4", "data.num_workers=0",
          "data.synthetic_size=64", "trainer.max_steps=6", "trainer.log_every=1", "trainer.progress=false",
          "trainer.tensorboard=false", "trainer.plots=false", "trainer.cpu_threads=1", "seed=3"]
RUNS = {
    "jepa_vicreg": ["objective.variance_weight=1.0", "objective.covariance_weight=0.04"],
    "jepa_targets_2_layers": ["objective.target_layers=2", "objective.loss=l2"],
    "mae_vicreg": ["objective=mae", "objective.variance_weight=1.0", "objective.covariance_weight=0.04"],
}
KEYS = ("loss", "loss_prediction", "loss_variance", "loss_covariance", "effective_rank")


def run_losses(name: str, run_dir: Path) -> list[dict[str, float]]:
    """Train run ``name`` in ``run_dir``; its per-step values of ``KEYS`` (those it logs)."""
    from ajepa.train import compose_config
    from ajepa.training.loop import train

    result = train(compose_config([*COMMON, *RUNS[name]]), run_dir)
    return [{k: r[k] for k in KEYS if k in r} for r in result.records]


if __name__ == "__main__":
    import tempfile

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--write", action="store_true", help=f"write {REFERENCE}")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        values = {name: run_losses(name, Path(tmp) / name) for name in RUNS}
    text = json.dumps(values, indent=1)
    if args.write:
        REFERENCE.write_text(text + "\n")
    else:
        sys.stdout.write(text + "\n")
