"""Helpers for the worker tests: a temp data dir, a database with the schema, a tiny random-init
``lite`` model as the default model, and a seeded project with small images."""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from PIL import Image
from pycocotools import mask as mask_utils

from worker_test_schema import create_schema


@dataclass
class Env:
    data_dir: Path
    db_url: str
    model_dir: Path
    env: dict[str, str]

    def engine(self) -> sa.Engine:
        return sa.create_engine(self.db_url)


def png_bytes(seed: int, h: int = 48, w: int = 64) -> bytes:
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 40, np.uint8)
    y, x = rng.integers(4, h // 2), rng.integers(4, w // 2)
    img[y:y + h // 3, x:x + w // 3] = rng.integers(150, 255, 3)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def write_tiny_model(folder: Path) -> Path:
    """A random-init ``lite`` model (seeded) saved as ``folder/model.pt``."""
    import torch

    from workers.sam import build_sam, save_checkpoint

    torch.manual_seed(0)
    save_checkpoint(build_sam("lite", device="cpu"), folder / "model.pt", "lite")
    return folder


def make_env(tmp_path: Path, db_url: str, model_dir: Path, monkeypatch=None, broker_url: str | None = None) -> Env:
    create_schema(db_url)
    env = {"MASKLOOP_DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": db_url,
           "MASKLOOP_DEFAULT_MODEL_DIR": str(model_dir), "MASKLOOP_DEVICE": "cpu"}
    if broker_url:
        env["MASKLOOP_BROKER_URL"] = broker_url
    if monkeypatch is not None:
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        _reset_caches()
    return Env(tmp_path / "data", db_url, model_dir, env)


def _reset_caches() -> None:
    from backend.core.config import get_settings
    from workers.engine import db
    from workers.engine.models import clear_cache

    get_settings.cache_clear()
    db.forget_schema()
    clear_cache()


def tables() -> dict[str, sa.Table]:
    """The server's tables (``backend.db.models``)."""
    from backend.db.models import Base

    return Base.metadata.tables


def rows(env: Env, sql: str, **params) -> list:
    """The rows of one SQL query on the test database."""
    eng = env.engine()
    with eng.connect() as conn:
        out = list(conn.execute(sa.text(sql), params))
    eng.dispose()
    return out


def insert(env: Env, table: str, **values) -> int:
    """Insert one row with the models' column defaults; returns its id."""
    eng = env.engine()
    with eng.begin() as conn:
        row_id = conn.execute(sa.insert(tables()[table]).values(**values)).inserted_primary_key[0]
    eng.dispose()
    return int(row_id)


def seed_project(env: Env, n_images: int = 3, *, corrupt: set[int] = frozenset()) -> dict[str, list[int] | int]:
    """One project with model version 1 active and ``n_images`` PNGs in storage (indexes in
    ``corrupt`` get garbage bytes). Returns ids."""
    from backend.storage import LocalStorage, keys

    store = LocalStorage(env.data_dir / "storage")
    eng = env.engine()
    T = tables()
    ids = []
    with eng.begin() as conn:
        mv = conn.execute(sa.insert(T["model_versions"]).values(name="default", arch="lite")).inserted_primary_key[0]
        pid = conn.execute(sa.insert(T["projects"]).values(name="p", stage="assisted_manual",
                                                           active_model_version_id=mv)).inserted_primary_key[0]
        conn.execute(sa.insert(T["labels"]).values(project_id=pid, name="thing", color="#ff0000"))
        for i in range(n_images):
            data = b"garbage, not an image" if i in corrupt else png_bytes(i)
            sha = hashlib.sha256(data).hexdigest()
            store.put_bytes(keys.image_key(sha, "png"), data)
            ids.append(conn.execute(sa.insert(T["images"]).values(
                project_id=pid, file_name=f"im{i}.png", width=64, height=48, sha256=sha,
                storage_key=keys.image_key(sha, "png"), status="new")).inserted_primary_key[0])
    eng.dispose()
    return {"project_id": pid, "model_version_id": mv, "image_ids": ids}


def add_annotations(env: Env, ids: dict, per_image: int = 2) -> None:
    """Accepted manual annotations: rectangles inside each 48x64 image."""
    for n, image_id in enumerate(ids["image_ids"]):
        for k in range(per_image):
            seg = _rle_box(48, 64, 4 + 10 * k, 14 + 10 * k, 6 + 3 * n, 30 + 3 * n)
            insert(env, "annotations", image_id=image_id, segmentation=seg, bbox=[6 + 3 * n, 4 + 10 * k, 24, 10],
                   area=240.0, stage="assisted_manual", source="manual", review_state="accepted")


def _rle_box(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> dict:
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    return {"size": [h, w], "counts": rle["counts"].decode("ascii")}
