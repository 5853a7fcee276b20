"""logmel_stats and its CLI on a temporary folder."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from ajepa.errors import AudioInputError
from ajepa.features.audio import load_audio
from ajepa.features.logmel import FrontendConfig, LogMelFrontend
from ajepa.features.stats import logmel_stats, main


@pytest.fixture()
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for i, seconds in enumerate([0.3, 0.5, 1.0]):
        sf.write(tmp_path / f"clip{i}.wav", (0.1 * (i + 1) * rng.standard_normal(int(16000 * seconds))), 16000)
    sf.write(tmp_path / "sub_8k.flac", 0.2 * rng.standard_normal(4000), 8000)
    (tmp_path / "broken.wav").write_bytes(rng.bytes(1000))
    return tmp_path


def _reference(paths) -> tuple[float, float]:
    frontend = LogMelFrontend(normalize=False)
    values = torch.cat([frontend(load_audio(p).unsqueeze(0)).flatten() for p in paths]).double()
    return values.mean().item(), values.std(unbiased=False).item()


def test_stats_match_concatenated_logmels(folder) -> None:
    stats = logmel_stats(folder)
    good = sorted(p for p in folder.iterdir() if p.name != "broken.wav")
    mean, std = _reference(good)
    assert stats.files == 4 and stats.skipped == 1
    assert stats.norm_mean == pytest.approx(mean, abs=1e-6) and stats.norm_std == pytest.approx(std, abs=1e-6)
    stats = logmel_stats(good)
    assert (stats.norm_mean, stats.norm_std) == pytest.approx((mean, std), abs=1e-6)


def test_long_file_is_streamed_in_exact_chunks(tmp_path, monkeypatch) -> None:
    import ajepa.features.stats as stats_module

    sf.write(tmp_path / "long.wav", np.random.default_rng(1).standard_normal(16000) * 0.1, 16000)
    whole = logmel_stats(tmp_path)
    monkeypatch.setattr(stats_module, "_CHUNK_FRAMES", 7)  # forces many overlapping chunks
    chunked = logmel_stats(tmp_path)
    assert chunked.frames == whole.frames == LogMelFrontend().num_frames(16000)
    assert chunked.norm_mean == pytest.approx(whole.norm_mean, abs=1e-6)
    assert chunked.norm_std == pytest.approx(whole.norm_std, abs=1e-6)


def test_max_files_and_no_readable_audio(folder) -> None:
    picked = logmel_stats(folder, max_files=2)  # evenly spaced over 5 sorted files: the first and the last
    assert (picked.files, picked.skipped) == (1, 1)
    with pytest.raises(AudioInputError, match="no readable audio"):
        logmel_stats([folder / "broken.wav"])


def test_cli_writes_json_with_config_field_names(folder, tmp_path, capsys) -> None:
    out = tmp_path / "stats.json"
    assert main([str(folder), "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    written = json.loads(out.read_text())
    assert printed == written
    assert set(written) == {"norm_mean", "norm_std", "files", "skipped"}
    assert {"norm_mean", "norm_std"} <= set(FrontendConfig.__dataclass_fields__)
    assert (written["files"], written["skipped"]) == (4, 1)
    assert written["norm_mean"] == pytest.approx(logmel_stats(folder).norm_mean)


def test_cli_module_entry_point(folder) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ajepa.features.stats", str(folder), "--max-files", "3"],
        capture_output=True, text=True, check=False, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) | {"norm_mean": 0, "norm_std": 0} == {
        "norm_mean": 0, "norm_std": 0, "files": 2, "skipped": 1,
    }
    assert "frontend.norm_mean=" in result.stderr


def test_cli_missing_folder_fails_cleanly(tmp_path, capsys) -> None:
    assert main([str(tmp_path / "absent")]) == 2
    assert "no such" in capsys.readouterr().err
