"""Why does transfer fall as training goes on? Measures on every kept checkpoint of one run.

    python -m ajepa.evals.diagnose runs/diag_6400_esc_s0 --clips 256 --out reports/diagnosis_esc

For the run's initial model (step 0, rebuilt from its seed) and each ``checkpoints/step_*.pt``
(``trainer.keep_step_checkpoints=true``), on a fixed set of full-length crops of
the run's own pretraining corpus and the run's own masks:

- ``positional_share_<i>``: the variance of the per-position means of the target encoder's hidden state ``i``
  (normalised as the read-out normalises it) over its total variance: how much of a token is where it is rather
  than what is there. Hidden state 0 is the patch embedding; the last is the encoder output.
- ``loss_model``: the objective's prediction loss of the model on those masks; ``loss_position``: the same loss
  when every target is predicted by the mean target at its position (means from the other half of the clips);
  ``loss_zero``: predicting zeros. ``explained_beyond_position = 1 - loss_model / loss_position``: the share
  of the position-only loss that reading the context removes.
- ``teacher_student_distance``: ``|theta_target - theta_context| / |theta_target|`` over the encoder weights, and
  ``teacher_student_cosine``: the mean cosine of the two encoders' outputs on the same tokens.
- ``target_rank``: the effective rank of the target tokens; ``grad_norm``: the mean logged gradient norm over the
  steps since the previous checkpoint; ``probe_accuracy``: the run's in-training transfer probe at that step.

Writes ``diagnosis.json`` and ``diagnosis.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ajepa.checkpoint import load_checkpoint
from ajepa.features.audio import clip_samples
from ajepa.io import atomic_write
from ajepa.masking import MaskCollator, apply_masks
from ajepa.training.config import RunConfig, run_config_from_dict
from ajepa.training.loader import build_dataset
from ajepa.training.loop import build_model, build_tokenizer
from ajepa.training.monitors import effective_rank

__all__ = ["diagnose_checkpoint", "fixed_clips", "main"]

log = logging.getLogger(__name__)


def fixed_clips(cfg: RunConfig, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` full-length crops ``(count, N)`` of the run's corpus, spread over it, and their lengths."""
    data = replace(cfg.data, cache_mb=0.0, gain_db=None)
    dataset = build_dataset(data, cfg.frontend.sample_rate, seed=0)
    full = clip_samples(cfg.data.clip_seconds, cfg.frontend.sample_rate)
    wavs = []
    for index in np.linspace(0, len(dataset) - 1, 8 * count).astype(int):
        item = dataset[(int(index), 0)]
        if item["length"] == full and not item["skipped"]:
            wavs.append(torch.as_tensor(item["wav"]))
        if len(wavs) == count:
            break
    if len(wavs) < 4:
        raise ValueError(f"found {len(wavs)} full-length clips in the run's corpus; need at least 4")
    return torch.stack(wavs), torch.full((len(wavs),), full)


def positional_share(h: torch.Tensor) -> float:
    """``h (B, N, D)`` -> variance of the per-position means over the total variance (summed over channels)."""
    h = h.double()
    total = h.reshape(-1, h.shape[-1]).var(0, unbiased=False).sum()
    between = h.mean(0).var(0, unbiased=False).sum()
    return float(between / total.clamp(min=1e-12))


@torch.no_grad()
def diagnose_checkpoint(path: Path | None, wav: torch.Tensor, lengths: torch.Tensor,
                        cfg: RunConfig | None = None) -> dict[str, Any]:
    """The measures of one checkpoint (see the module docstring); ``path=None`` measures the run's initial model,
    built from ``cfg`` and its seed (step 0)."""
    if path is None:
        ckpt: dict[str, Any] = {"step": 0}
    else:
        ckpt = load_checkpoint(path)
        cfg = run_config_from_dict(ckpt["config"])
    model = build_model(cfg, torch.device("cpu"))
    if path is not None:
        model.load_state_dict(ckpt["model"])
    model.eval()
    tokenizer = build_tokenizer(cfg, torch.device("cpu"))
    tok = tokenizer(wav, lengths)
    encoder = model.learned_encoder
    depth = len(encoder.blocks)
    states = encoder.forward_intermediates(tok.tokens, tok.grid, list(range(depth + 1)))
    out: dict[str, Any] = {"step": int(ckpt["step"])}
    for i, h in enumerate(states):
        out[f"positional_share_{i}"] = positional_share(h)
    masks = MaskCollator(cfg.masking, tok.grid, cfg.seed).masks(wav.shape[0], batch_index=10**6)
    copies, half = masks.copies, wav.shape[0] // 2
    # Position means from the first half of the clips; every loss scored on the second half's masks.
    per_token = model.targets(tok.tokens, tok.grid, tok.valid)
    scored = slice(half * copies, None)
    context_idx, target_idx = masks.context_idx[scored], masks.target_idx[scored]
    result = model(tok.tokens[half:], tok.grid, context_idx, target_idx, tok.valid[half:])
    targets = apply_masks(per_token[half:].repeat_interleave(copies, 0), target_idx)
    position_mean = per_token[:half].mean(0, keepdim=True).expand(target_idx.shape[0], -1, -1).contiguous()
    out["loss_model"] = float(result["loss_terms"]["prediction"])
    out["loss_position"] = float(model.objective(apply_masks(position_mean, target_idx), targets, None))
    out["loss_zero"] = float(model.objective(torch.zeros_like(targets), targets, None))
    out["explained_beyond_position"] = 1.0 - out["loss_model"] / max(out["loss_position"], 1e-12)
    out["target_rank"] = effective_rank(per_token.reshape(-1, per_token.shape[-1]))
    if model.target_encoder is not None:
        t = torch.cat([p.flatten() for p in model.target_encoder.parameters()])
        s = torch.cat([p.flatten() for p in model.context_encoder.parameters()])
        out["teacher_student_distance"] = float((t - s).norm() / t.norm())
        a = model.target_encoder(tok.tokens, tok.grid)
        b = model.context_encoder(tok.tokens, tok.grid)
        out["teacher_student_cosine"] = float(torch.nn.functional.cosine_similarity(a, b, dim=-1).mean())
    return out


def training_log(run_dir: Path) -> list[dict[str, Any]]:
    """The run's ``metrics.jsonl`` records (empty when missing)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    """``python -m ajepa.evals.diagnose RUN_DIR [--clips 256] --out DIR``."""
    p = argparse.ArgumentParser(prog="python -m ajepa.evals.diagnose", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path, help="a run folder trained with trainer.keep_step_checkpoints=true")
    p.add_argument("--clips", type=int, default=256, help="full-length crops of the run's corpus (default 256)")
    p.add_argument("--out", type=Path, required=True, help="folder for diagnosis.json and diagnosis.md")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    checkpoints = sorted((args.run_dir / "checkpoints").glob("step_*.pt"))
    if not checkpoints:
        print(f"error: {args.run_dir}/checkpoints holds no step_*.pt (train with "
              "trainer.keep_step_checkpoints=true)", file=sys.stderr)
        return 1
    cfg = run_config_from_dict(load_checkpoint(checkpoints[0])["config"])
    torch.manual_seed(0)
    wav, lengths = fixed_clips(cfg, args.clips)
    records = training_log(args.run_dir)
    rows, previous = [], 0
    for path in [None, *checkpoints]:
        row = diagnose_checkpoint(path, wav, lengths, cfg)
        window = [r for r in records if previous < r["step"] <= row["step"]]
        row["grad_norm"] = float(np.mean([r["grad_norm"] for r in window])) if window else None
        probe = [r["probe_accuracy"] for r in records if r["step"] == row["step"] and "probe_accuracy" in r]
        row["probe_accuracy"] = probe[0] if probe else None
        previous = row["step"]
        rows.append(row)
        log.info("%s", {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
    report = {"run_dir": str(args.run_dir.resolve()), "clips": int(wav.shape[0]), "checkpoints": rows}
    atomic_write(args.out / "diagnosis.json",
                 lambda tmp: tmp.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8"))
    atomic_write(args.out / "diagnosis.md", lambda tmp: tmp.write_text(markdown(rows), encoding="utf-8"))
    print(f"wrote {args.out / 'diagnosis.json'} and {args.out / 'diagnosis.md'}")
    return 0


def markdown(rows: list[dict[str, Any]]) -> str:
    """One table row per checkpoint."""
    keys = [k for k in rows[0] if k != "step"]
    lines = ["| step | " + " | ".join(keys) + " |", "|---:|" + "---:|" * len(keys)]
    for r in rows:
        cells = [("–" if r.get(k) is None else f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k])) for k in keys]
        lines.append(f"| {r['step']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
