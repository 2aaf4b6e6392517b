"""Atomic file writes: a temporary file in the same folder, flushed, fsynced, then renamed."""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import torch


def atomic_write(path, data):
    """Write `data` (bytes or str) to `path` so that a crash never leaves a half-written file there."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private; give it the mode open() would
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def atomic_torch_save(obj, path):
    """torch.save `obj` to `path` atomically."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write(path, buffer.getvalue())


def _umask():
    """The process's file-creation mask."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
