"""End-to-end training runs in subprocesses: the CLI, SIGKILL + resume, 2-process DDP (gloo), torch.compile.

Every run is tiny (mini model cut to one layer, 1 s clips, batch 4, a handful of steps, no DataLoader
workers) so the whole file stays within a few minutes on two CPU cores.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ajepa.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "model.encoder.depth=1", "model.predictor.depth=1", "data.clip_seconds=1.0", "data.num_workers=0",
    "data.synthetic_size=64", "trainer.log_every=1", "trainer.progress=false", "trainer.tensorboard=false",
    "trainer.plots=false",
]


def cli(run_dir: Path, *overrides: str) -> list[str]:
    return [*TINY, f"hydra.run.dir={run_dir}", *overrides]


def env() -> dict[str, str]:
    # One intra-op thread per process: the runs are tiny and the CI machine has two cores for everything.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run_train(args: list[str], launcher: list[str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    cmd = [*(launcher or [sys.executable, "-m"]), "ajepa.train", *args]
    proc = subprocess.run(cmd, cwd=REPO, env=env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def logged_losses(run_dir: Path) -> dict[int, float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    steps = [r["step"] for r in records]
    assert steps == sorted(set(steps)), f"duplicated or unordered steps in metrics.jsonl: {steps}"
    return {r["step"]: r["loss"] for r in records}


def test_cli_run_prints_absolute_output_paths(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_train(cli(run_dir, "trainer.max_steps=2", "data.batch_size=4", "trainer.plots=true"))
    printed = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.strip().partition(": ")
        printed[key] = value.strip().split("   ")[0]
    for key in ("checkpoint", "metrics", "plot masks"):
        path = Path(printed[key])
        assert path.is_absolute() and path.is_file(), (key, proc.stdout)
    assert Path(printed["checkpoint"]) == run_dir / "checkpoints" / "last.pt"
    assert (run_dir / ".hydra" / "config.yaml").is_file()


def test_sigkill_then_resume_gives_identical_losses(tmp_path):
    steps, kill_after = 8, 3
    common = ["data.batch_size=4", f"trainer.max_steps={steps}", "trainer.checkpoint_every=1",
              "trainer.keep_step_checkpoints=true"]
    ref_dir, run_dir = tmp_path / "reference", tmp_path / "interrupted"
    run_train(cli(ref_dir, *common))
    reference = logged_losses(ref_dir)
    assert sorted(reference) == list(range(1, steps + 1))

    proc = subprocess.Popen([sys.executable, "-m", "ajepa.train", *cli(run_dir, *common)], cwd=REPO, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = run_dir / "checkpoints" / f"step_{kill_after:06d}.pt"
    deadline = time.monotonic() + 150
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    killed_at = load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"]
    assert kill_after <= killed_at < steps

    run_train(cli(run_dir, *common, "resume=true"))
    assert logged_losses(run_dir) == reference  # bitwise: same hardware, same seed


@pytest.mark.skipif(sys.platform == "win32", reason="gloo multi-process test needs a POSIX launcher")
def test_two_process_ddp_matches_one_process_at_the_same_global_batch(tmp_path):
    steps = 3
    single_dir, ddp_dir = tmp_path / "single", tmp_path / "ddp"
    run_train(cli(single_dir, "data.batch_size=4", f"trainer.max_steps={steps}"))
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m"]
    proc = run_train(cli(ddp_dir, "data.batch_size=2", f"trainer.max_steps={steps}"), launcher=launcher,
                     timeout=240)

    single, ddp = logged_losses(single_dir), logged_losses(ddp_dir)
    assert sorted(ddp) == list(range(1, steps + 1))
    # Same clips and masks per global batch; only float summation order differs (all-reduce vs one batch).
    for step in single:
        assert ddp[step] == pytest.approx(single[step], rel=1e-4), (step, single, ddp)
    ckpt = load_checkpoint(ddp_dir / "checkpoints" / "last.pt")
    assert ckpt["data"]["world_size"] == 2 and ckpt["step"] == steps
    # Rank 0 alone writes: one summary, one metrics file, one Hydra record.
    assert proc.stdout.count("Training finished") == 1
    assert sorted(p.name for p in ddp_dir.iterdir()) == [".hydra", "checkpoints", "metrics.jsonl", "train.log"]


@pytest.mark.parametrize("backend", [
    "aot_eager",
    # The real compiler: it builds C++ kernels (1-2 min cold on 2 cores); AJEPA_SKIP_INDUCTOR=1 skips it locally.
    pytest.param("inductor", marks=pytest.mark.skipif(
        bool(os.environ.get("AJEPA_SKIP_INDUCTOR")), reason="AJEPA_SKIP_INDUCTOR is set")),
])
def test_compiled_train_step_matches_eager(tmp_path, backend):
    if backend == "inductor" and not any(shutil.which(cxx) for cxx in ("g++", "c++", "clang++")):
        pytest.skip("torch.compile with inductor needs a C++ compiler on CPU; none found")
    from ajepa.train import compose_config
    from ajepa.training.loop import train

    # aot_eager runs the whole capture (Dynamo graph of the forward incl. dynamic mask sizes, AOTAutograd
    # backward) and skips only kernel generation, so it checks the trainer's side of torch.compile quickly.
    args = [*TINY, "data.batch_size=4", "trainer.max_steps=2"]
    eager = train(compose_config(args), tmp_path / "eager")
    compiled = train(compose_config([*args, "trainer.compile=true", f"trainer.compile_backend={backend}"]),
                     tmp_path / "compiled")
    assert [r["loss"] for r in compiled.records] == pytest.approx([r["loss"] for r in eager.records], rel=1e-3)
