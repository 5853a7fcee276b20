import os

import pytest

from ajepa.io import atomic_write


def test_atomic_write_creates_parent_and_replaces(tmp_path):
    dest = tmp_path / "a" / "b.txt"
    assert atomic_write(dest, lambda tmp: tmp.write_text("one")) == dest
    atomic_write(dest, lambda tmp: tmp.write_text("two"))
    assert dest.read_text() == "two"
    assert os.listdir(dest.parent) == ["b.txt"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    dest = tmp_path / "b.txt"
    dest.write_text("old")

    def half_then_fail(tmp):
        tmp.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        atomic_write(dest, half_then_fail)
    assert dest.read_text() == "old"
    assert os.listdir(tmp_path) == ["b.txt"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_written_file_gets_the_umask_permissions_of_a_plain_open(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write(tmp_path / "model.bin", lambda tmp: tmp.write_bytes(b"x"))
        (tmp_path / "plain.bin").write_bytes(b"x")
    finally:
        os.umask(old)
    mode = (tmp_path / "model.bin").stat().st_mode & 0o777
    assert mode == 0o640 == (tmp_path / "plain.bin").stat().st_mode & 0o777  # not mkstemp's owner-only 0o600
