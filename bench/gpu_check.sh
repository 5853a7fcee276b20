#!/usr/bin/env bash
# GPU readiness in one go (at most ~8 minutes on one GPU): the GPU-marked tests, then the train-step and embedding
# benchmarks on the GPU, all into one results file. On a machine without CUDA it runs the CPU-safe parts (the
# GPU tests then skip with their reason) and says that the GPU part did not run.
#
#   bash bench/gpu_check.sh [results.txt]        # default: gpu_check_results.txt
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-gpu_check_results.txt}"
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python
{
  echo "# ajepa GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  "$PY" - <<'PYEOF'
import platform, torch
print(f"torch {torch.__version__}, CUDA build {torch.version.cuda}, Python {platform.python_version()}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"GPU: {p.name}, {p.total_memory / 2**30:.0f} GiB, {torch.cuda.device_count()} device(s), bf16 {torch.cuda.is_bf16_supported()}")
else:
    print("GPU: none (CUDA not available): the GPU tests skip and the GPU benchmarks are not run")
PYEOF
  echo; echo "## GPU-marked tests (bf16 autocast step, fused AdamW, torch.compile, torchrun + NCCL, bf16 embedding)"
  timeout 360 "$PY" -m pytest -q -m gpu tests/test_gpu.py -rs 2>&1 | tail -15
  if "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo; echo "## Embedding throughput on the GPU, fp32 and bf16 (bench/embed.py)"
    timeout 150 "$PY" bench/embed.py --sizes tiny,small --batches 32 --repeats 3 --device cuda 2>&1 | tail -12
    timeout 150 "$PY" bench/embed.py --sizes tiny,small --batches 32 --repeats 3 --device cuda --bf16 2>&1 | tail -12
    echo; echo "## The recipe's training step on the GPU (cpu15 preset, synthetic audio, 200 steps)"
    timeout 150 "$PY" -m ajepa.train experiment=cpu15 data.source=synthetic data.root=null data.sampling=file \
      data.cache_mb=0 trainer.max_steps=200 trainer.log_every=50 device=cuda hydra.run.dir="$(mktemp -d)" 2>&1 \
      | grep -E "step +(50|100|150|200)/|Training finished" | tail -6
  else
    echo; echo "## GPU benchmarks: not run (no CUDA device on this machine)"
    # The GPU run's training command, checked on the CPU for 20 steps, so that its overrides are known to work
    echo; echo "## The recipe's training command on the CPU (20 steps, the same overrides with device=cpu)"
    timeout 150 "$PY" -m ajepa.train experiment=cpu15 data.source=synthetic data.root=null data.sampling=file \
      data.cache_mb=0 trainer.max_steps=20 trainer.log_every=10 device=cpu hydra.run.dir="$(mktemp -d)" 2>&1 \
      | grep -E "step +(10|20)/|Training finished|Error" | tail -4
  fi
} 2>&1 | tee "$OUT"
echo "results: $OUT"
