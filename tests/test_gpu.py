"""The GPU path: bf16 autocast training, fused AdamW, torch.compile, torchrun with NCCL, bf16 embedding.

Every test here needs CUDA and skips with a reason without it; ``bench/gpu_check.sh`` runs them (``-m gpu``) with the
GPU benchmarks on a lent GPU machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from ajepa.train import compose_config
from ajepa.training.loop import train

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (bench/gpu_check.sh)")]

TINY = ["model.encoder.depth=2", "model.predictor.depth=1", "data.batch_size=8", "data.num_workers=0",
        "data.synthetic_size=64", "trainer.log_every=1", "trainer.progress=false", "trainer.tensorboard=false",
        "trainer.plots=false", "device=cuda"]


def test_cuda_training_uses_bf16_autocast_and_fused_adamw(tmp_path):
    from ajepa.training.optim import build_optimizer
    from ajepa.runtime import autocast_dtype

    cfg = compose_config([*TINY, "trainer.max_steps=3"])
    assert autocast_dtype(cfg.trainer.precision, torch.device("cuda")) == torch.bfloat16
    from ajepa.training.loop import build_model

    opt = build_optimizer(build_model(cfg, torch.device("cuda")), cfg.optim, torch.device("cuda"))
    assert opt.defaults.get("fused") is True
    result = train(cfg, tmp_path)
    assert result.steps == 3 and np.isfinite(result.final_loss)


def test_compiled_training_step_matches_eager_losses(tmp_path):
    eager = train(compose_config([*TINY, "trainer.max_steps=3", "trainer.precision=fp32"]), tmp_path / "eager")
    compiled = train(compose_config([*TINY, "trainer.max_steps=3", "trainer.precision=fp32", "trainer.compile=true"]),
                     tmp_path / "compiled")
    for a, b in zip(eager.records, compiled.records, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-3)


def test_single_gpu_torchrun_with_nccl(tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m", "ajepa.train",
           *TINY, "trainer.max_steps=2", f"hydra.run.dir={run}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ})
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(np.isfinite(r["loss"]) for r in records)


def test_bf16_embedding_stays_close_to_fp32():
    from ajepa.inference import load

    fp32 = load(device="cuda")
    bf16 = load(device="cuda", bf16=True)
    wav = np.random.default_rng(0).standard_normal((4, 48000)).astype(np.float32) * 0.1
    a, b = fp32.embed(wav, 16000), bf16.embed(wav, 16000)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cos.min() >= 0.999, cos
