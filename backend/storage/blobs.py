"""The small interface every blob store implements."""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import BinaryIO


class BlobNotFound(KeyError):
    """No blob is stored under that key."""


class BlobStorage(ABC):
    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically (readers never see a partial blob)."""

    @abstractmethod
    def put_file(self, key: str, src: Path) -> None:
        """Copy a local file in, atomically."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def open(self, key: str) -> BinaryIO: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def local_path(self, key: str) -> Path:
        """A path on this machine where the blob can be read (for torch.load, FileResponse)."""

    @abstractmethod
    def size(self, key: str) -> int: ...
