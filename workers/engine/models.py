"""A per-process cache of loaded SAM models, so each worker loads a checkpoint once.

Checkpoints are resolved as: the model version's checkpoint in storage (its row's
``checkpoint_key``, else ``keys.checkpoint_key(id)``) when present, else, for a version whose row
records no checkpoint (one that ships with Maskloop), ``Settings.default_model_dir / "model.pt"``.
A recorded checkpoint missing from storage is an error, never replaced by the default model.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers.engine.errors import BadInputError

logger = logging.getLogger(__name__)

_LOCK = threading.Lock()
_CACHE: dict[tuple[str, float, str], Any] = {}


@dataclass(frozen=True)
class ModelSpec:
    """Where a model version's weights are: ``checkpoint`` path and ``arch`` (None: read from file)."""

    model_version_id: int | str
    checkpoint: Path
    arch: str | None = None


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"unknown device {device!r}; expected auto, cpu or cuda")
    return device


def resolve_spec(model_version_id: int | str, *, storage: Any, default_model_dir: Path,
                 arch: str | None = None, checkpoint_key: str | None = None) -> ModelSpec:
    """Find the checkpoint of a model version (see module docstring); ``checkpoint_key`` is the
    row's recorded key when it has one."""
    from backend.storage import keys

    key = checkpoint_key or keys.checkpoint_key(model_version_id)
    if storage.exists(key):
        return ModelSpec(model_version_id, storage.local_path(key), arch)
    if checkpoint_key:  # the version names its own weights: another model's would be silently wrong
        raise BadInputError(f"model version {model_version_id}: its checkpoint {key} is missing from storage")
    default = Path(default_model_dir) / "model.pt"
    if default.is_file():
        return ModelSpec(model_version_id, default, arch)
    raise BadInputError(f"model version {model_version_id}: no checkpoint at {key} in storage "
                        f"and no default model at {default}")


def load_model(spec: ModelSpec, device: str = "cpu") -> Any:
    """Build the SAM model of ``spec`` on ``device`` (eval mode), cached per process.

    Raises ``BadInputError`` when the file is missing or does not load.
    """
    path = Path(spec.checkpoint)
    if not path.is_file():
        raise BadInputError(f"model version {spec.model_version_id}: checkpoint {path} does not exist")
    cache_key = (str(path.resolve()), path.stat().st_mtime, device)
    with _LOCK:
        if cache_key in _CACHE:
            return _CACHE[cache_key]
        from workers.sam import build_sam

        try:
            # arch None: build_sam reads the arch recorded in a Maskloop checkpoint.
            model = build_sam(spec.arch or None, checkpoint=str(path), device=device)
        except Exception as exc:
            raise BadInputError(
                f"model version {spec.model_version_id}: checkpoint {path.name} does not load "
                f"({type(exc).__name__}: {exc})") from exc
        model.to(device).eval()
        _CACHE[cache_key] = model
        logger.info("loaded model version %s from %s on %s", spec.model_version_id, path, device)
        return model


def clear_cache() -> None:
    """Forget every loaded model (tests; a promoted version replacing a file in place)."""
    with _LOCK:
        _CACHE.clear()
