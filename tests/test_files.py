import os

import pytest
import torch

from kdlab import files
from kdlab.files import atomic_torch_save, atomic_write


def test_atomic_write_writes_bytes_and_text_with_the_usual_mode(tmp_path):
    path = atomic_write(tmp_path / "sub" / "a.bin", b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    atomic_write(path, "héllo")
    assert path.read_text(encoding="utf-8") == "héllo"
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~files._umask()
    assert os.listdir(path.parent) == ["a.bin"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = atomic_write(tmp_path / "a.txt", "old")

    def broken(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, "new")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_atomic_torch_save_round_trips(tmp_path):
    state = {"w": torch.arange(6.0).reshape(2, 3)}
    atomic_torch_save(state, tmp_path / "s.pt")
    assert torch.equal(torch.load(tmp_path / "s.pt")["w"], state["w"])
