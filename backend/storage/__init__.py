"""Blob storage: images, thumbnails, embeddings, checkpoints, decoders and exports."""
from backend.storage.blobs import BlobStorage, BlobNotFound
from backend.storage.local import LocalStorage
from backend.storage import keys

__all__ = ["BlobStorage", "BlobNotFound", "LocalStorage", "keys", "get_storage"]


def get_storage(settings=None) -> "BlobStorage":
    from backend.core.config import get_settings

    settings = settings or get_settings()
    return LocalStorage(settings.resolved_storage_root)
