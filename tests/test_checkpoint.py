import os
import pickle

import pytest
import torch

from ajepa.checkpoint import load_checkpoint, save_checkpoint
from ajepa.errors import CheckpointError


def test_round_trip(tmp_path):
    state = {"step": 7, "model": {"w": torch.arange(6.0).reshape(2, 3)}, "config": {"lr": 1e-3, "name": "x"}}
    path = save_checkpoint(tmp_path / "ckpt" / "last.pt", state)
    loaded = load_checkpoint(path)
    assert loaded["step"] == 7
    assert loaded["format"] == "ajepa-checkpoint"
    assert torch.equal(loaded["model"]["w"], state["model"]["w"])
    # No temporary files are left behind.
    assert sorted(os.listdir(path.parent)) == ["last.pt"]


def test_overwrite_is_atomic_on_failure(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "last.pt", {"step": 1})

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(CheckpointError, match="previous checkpoint there is intact"):
        save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize(
    "content",
    [
        b"not a checkpoint at all",
        b"",
        b"\x80\x02random bytes that look like a pickle",
        pickle.dumps({"format": "ajepa-checkpoint", "evil": _Evil()}),
    ],
    ids=["random-bytes", "empty", "pickle-prefix", "pickled-object"],
)
def test_bad_files_raise_checkpoint_error(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(path)


def test_foreign_torch_files_are_rejected(tmp_path):
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    torch.save({"format": "ajepa-checkpoint", "version": 99}, tmp_path / "future.pt")
    for name in ("tensor.pt", "other.pt", "future.pt"):
        with pytest.raises(CheckpointError):
            load_checkpoint(tmp_path / name)
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "missing.pt")


def test_truncated_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / "last.pt", {"model": {"w": torch.randn(256, 256)}})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="last.pt"):
        load_checkpoint(path)


class _Payload:
    pass


def test_torch_file_with_python_objects_is_refused(tmp_path):
    torch.save({"format": "ajepa-checkpoint", "version": 1, "obj": _Payload()}, tmp_path / "objects.pt")
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        load_checkpoint(tmp_path / "objects.pt")
