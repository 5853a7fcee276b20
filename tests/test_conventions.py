"""The field's conventions (issue 33): a console command with a fast --help, the embedder as an nn.Module, the
hub-mixin shape offline, model names, licences that travel with the weights, and extras that say what to install."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

import ajepa
from ajepa.inference import Embedder
from ajepa.models import ENCODER_SIZES


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_version_and_help_answer_without_importing_torch():
    for args in (["--version"], ["--help"], ["embed", "--help"], ["export", "--help"]):
        code = ("import sys\nfrom ajepa.__main__ import main\ntry:\n    rc = main(%r)\nexcept SystemExit as e:\n"
                "    rc = e.code\nprint('RC', rc, 'torch' in sys.modules)" % (args,))
        proc = _run(code)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.strip().splitlines()[-1] == "RC 0 False", (args, proc.stdout[-500:])
    assert f"ajepa {ajepa.__version__}" in _run("from ajepa.__main__ import main; main(['--version'])").stdout


def test_an_unknown_command_says_what_there_is(capsys):
    from ajepa.__main__ import main

    assert main(["fly"]) == 2
    assert "embed" in capsys.readouterr().err


def test_a_missing_extra_is_one_line_naming_it(monkeypatch, capsys):
    from ajepa import extras
    from ajepa.__main__ import main

    with pytest.raises(extras.MissingExtraError, match=r"pip install 'ajepa\[train\]'"):
        extras.require("a_module_that_is_not_there", "train")
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # as if not installed
    assert main(["hear-validate"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'ajepa[hear]'" in err[0]


@pytest.fixture(scope="module")
def small() -> Embedder:
    enc = replace(ENCODER_SIZES["mini"], embed_dim=32, depth=2, num_heads=2)
    return Embedder.from_config(enc, clip_seconds=1.0, device="cpu", average_layers="all")


def test_the_embedder_is_a_module_that_says_its_output_width(small):
    assert isinstance(small, torch.nn.Module) and small.sampling_rate == 16000
    audio = torch.randn(3, 16000) * 0.1
    out = small(audio)
    assert out.shape == (3, small.output_dim) and small.output_dim == small.embed(audio.numpy(), sr=16000).shape[1]
    assert f"output_dim={small.output_dim}" in repr(small)
    assert dict(small.named_children())["frontend"] is small.frontend  # .to() and .eval() reach the front end


def test_save_pretrained_and_from_pretrained_round_trip_offline(small, tmp_path):
    folder = small.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    for p in folder.iterdir():  # plain file permissions, not owner-only
        assert stat.S_IMODE(p.stat().st_mode) & 0o044 == 0o044 & ~_umask()
    back = ajepa.from_pretrained(folder, device="cpu", bf16=False)
    wav = np.random.default_rng(0).standard_normal(12000).astype(np.float32) * 0.1
    np.testing.assert_allclose(back.embed(wav, sr=16000), small.embed(wav, sr=16000), atol=1e-6)
    assert json.loads((folder / "config.json").read_text())["license"] == "Apache-2.0"  # random weights: no data
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlicense: apache-2.0") and "ajepa.from_pretrained" in card


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_model_names_and_the_default_licence():
    assert ajepa.list_models() == ["default"]
    model = ajepa.from_pretrained("default", device="cpu")
    assert model.license == "CC-BY-NC-4.0"
    from ajepa.pretrained import DEFAULT_MODEL_DIR

    assert "CC BY-NC 4.0" in (DEFAULT_MODEL_DIR / "LICENSE").read_text()
    assert "Model card" in (DEFAULT_MODEL_DIR / "README.md").read_text()


def test_the_default_licence_is_said_once_per_process():
    code = ("import logging, ajepa, numpy as np\nlogging.basicConfig(level=logging.WARNING)\n"
            "x = np.zeros(16000, np.float32)\nfor _ in range(3):\n    ajepa.embed(x, sr=16000)\najepa.load()\n")
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.count("CC-BY-NC-4.0") == 1


def test_an_export_inherits_the_licence_of_its_training_data(tmp_path):
    from ajepa.inference.model_card import infer_license

    assert infer_license({"source": "synthetic"}) == "Apache-2.0"
    root = tmp_path / "data"
    (root / "esc50").mkdir(parents=True)
    (root / "fsdd").mkdir()
    assert infer_license({"source": "folder", "root": str(root), "exclude": []}) == "CC-BY-NC-4.0"
    assert infer_license({"source": "folder", "root": str(root), "exclude": ["esc50"]}) == "unknown"


def test_a_curated_model_card_is_never_replaced_by_an_export(small, tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "README.md").write_text("# Our card, written by hand\n")
    small.save_pretrained(folder)
    assert (folder / "README.md").read_text() == "# Our card, written by hand\n"
    small.save_pretrained(tmp_path / "fresh")
    first = (tmp_path / "fresh" / "README.md").read_text()
    small.save_pretrained(tmp_path / "fresh")  # a generated card is regenerated
    assert (tmp_path / "fresh" / "README.md").read_text() == first
