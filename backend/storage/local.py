"""Blob storage on the local file system under one root directory."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import BinaryIO

from backend.core.files import atomic_write
from backend.storage.blobs import BlobNotFound, BlobStorage
from backend.storage.keys import validate_key


class LocalStorage(BlobStorage):
    def __init__(self, root: Path | str):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        validate_key(key)
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise ValueError(f"storage key escapes the storage root: {key!r}")
        return path

    def _atomic_write(self, path: Path, writer) -> None:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                writer(fh)

        atomic_write(path, write)

    def put_bytes(self, key: str, data: bytes) -> None:
        self._atomic_write(self._path(key), lambda fh: fh.write(data))

    def put_file(self, key: str, src: Path) -> None:
        def copy(fh):
            with open(src, "rb") as s:
                shutil.copyfileobj(s, fh, 1 << 20)

        self._atomic_write(self._path(key), copy)

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise BlobNotFound(key) from exc

    def open(self, key: str) -> BinaryIO:
        path = self._path(key)
        try:
            return open(path, "rb")
        except FileNotFoundError as exc:
            raise BlobNotFound(key) from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def local_path(self, key: str) -> Path:
        path = self._path(key)
        if not path.is_file():
            raise BlobNotFound(key)
        return path

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError as exc:
            raise BlobNotFound(key) from exc
