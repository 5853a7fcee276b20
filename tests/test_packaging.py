"""The built wheel is complete: it carries the Hydra configs and the default model, and it trains on its own."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    # --no-build-isolation: setuptools comes from this environment, no index is needed.
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
                           "-q", "-w", str(out)], capture_output=True, text=True, cwd=build,
                          env={**os.environ, "TMPDIR": str(build)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    (path,) = out.glob("ajepa-*.whl")
    return path


@pytest.mark.slow
def test_wheel_carries_configs_default_model_and_every_package(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for member in ("ajepa/configs/config.yaml", "ajepa/configs/experiment/cpu15.yaml",
                   "ajepa/configs/holdout/esc.yaml", "ajepa/configs/model/mini.yaml",
                   "ajepa/pretrained/default/model.safetensors", "ajepa/objectives/jepa.py", "ajepa/cli/embed.py",
                   "ajepa/inference/embedder.py", "ajepa/evals/suite.py", "ajepa/py.typed",
                   "ajepa/pretrained/default/LICENSE", "ajepa/pretrained/default/README.md"):
        assert member in names, member
    assert not [n for n in names if n.startswith("evals/")]  # no top-level package named evals
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "ajepa = ajepa.__main__:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    meta = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "CC-BY-NC-4.0" in meta and "Apache-2.0" in meta
    requires = [line for line in meta.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert not [r for r in requires if any(heavy in r for heavy in ("hydra", "librosa", "scikit", "matplotlib"))]
    sources = {str(p.relative_to(REPO)) for p in (REPO / "ajepa").rglob("*.py")}
    assert sources <= names, sorted(sources - names)[:5]


@pytest.mark.slow
def test_unpacked_wheel_trains_outside_the_repo(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = "import ajepa.train as t; print(t.CONFIG_DIR)"
    where = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert where.returncode == 0, where.stderr[-2000:]
    assert Path(where.stdout.strip()) == site / "ajepa" / "configs"
    run = subprocess.run(
        [sys.executable, "-m", "ajepa.train", "model.encoder.depth=1", "model.predictor.depth=1", "data.batch_size=2",
         "data.num_workers=0", "data.synthetic_size=8", "trainer.max_steps=2", "trainer.log_every=1",
         "trainer.progress=false", "trainer.tensorboard=false", "trainer.plots=false", f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Training finished: 2 steps" in run.stdout
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
