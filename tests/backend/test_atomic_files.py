"""backend.core.files.atomic_write: all or nothing, and the permissions of an ordinary new file."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from backend.core.files import atomic_write


def test_written_file_has_the_umask_permissions_not_the_temp_files(tmp_path):
    # in a child process, so that setting the umask cannot touch files other tests create meanwhile
    code = ("import os, sys; os.umask(int(sys.argv[2], 8)); from backend.core.files import atomic_write; "
            "atomic_write(sys.argv[1], lambda p: p.write_bytes(b'data'))")
    for umask, mode in (("022", 0o644), ("077", 0o600), ("002", 0o664)):
        target = tmp_path / f"out_{umask}.bin"
        subprocess.run([sys.executable, "-c", code, str(target), umask], check=True, cwd=os.getcwd())
        assert target.read_bytes() == b"data"
        assert stat.S_IMODE(target.stat().st_mode) == mode, (umask, oct(target.stat().st_mode))


def test_a_failed_write_leaves_neither_the_file_nor_a_temporary_one(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def fail(p):
        p.write_bytes(b"half")
        raise RuntimeError("disk went away")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
