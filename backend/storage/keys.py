"""The one place where blob keys (relative paths inside the storage root) are built."""
from __future__ import annotations

import re

_SAFE = re.compile(r"^[A-Za-z0-9_.\-/]+$")


def validate_key(key: str) -> str:
    if not key or not _SAFE.match(key) or key.startswith("/") or ".." in key.split("/"):
        raise ValueError(f"invalid storage key: {key!r}")
    return key


def image_key(sha256: str, ext: str) -> str:
    """Original image files are content-addressed."""
    return f"images/{sha256[:2]}/{sha256}.{ext.lstrip('.').lower()}"


def thumbnail_key(sha256: str) -> str:
    return f"thumbnails/{sha256[:2]}/{sha256}.jpg"


def embedding_key(sha256: str, model_version_id: int | str, dtype: str = "float16") -> str:
    """Embeddings are keyed by (image hash, model version): they only fit that version's decoder."""
    return f"embeddings/{model_version_id}/{sha256[:2]}/{sha256}.{dtype}.mlem"


def model_dir(model_version_id: int | str) -> str:
    return f"models/{model_version_id}"


def checkpoint_key(model_version_id: int | str) -> str:
    return f"models/{model_version_id}/model.pt"


def decoder_key(model_version_id: int | str, variant: str = "single") -> str:
    name = "decoder.onnx" if variant == "single" else f"decoder_{variant}.onnx"
    return f"models/{model_version_id}/{name}"


def round_dir(round_id: int) -> str:
    return f"rounds/{round_id}"


def export_key(export_id: int | str, ext: str) -> str:
    return f"exports/{export_id}.{ext}"
