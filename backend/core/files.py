"""Atomic file writes: a reader never sees a half-written file, and a failure leaves none behind."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def _umask() -> int:
    """The process's umask, read without changing it (``os.umask`` can only be read by setting it, which
    would race with other threads creating files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Create ``path`` through ``write(tmp)``, which fills a temporary file in the same folder.

    The temporary file is flushed to disk and renamed over ``path`` only when ``write`` returns; on
    any error (or interruption) it is removed and ``path`` keeps its old content, if any. The file gets
    the permissions of any file this process creates (``0o666`` less the umask), not the temporary
    file's private ``0o600``, so another process or user of the deployment (the API serving what a
    worker wrote) can read it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fchmod(fh.fileno(), 0o666 & ~_umask())
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
