"""Fixtures for API tests: an app on a fresh database (SQLite by default, PostgreSQL on request)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image as PILImage

from backend.cli.server import run_migrations
from backend.core.config import Settings
from backend.db.models import Image
from backend.db.session import session_scope
from backend.main import create_app
from backend.storage import LocalStorage, keys


@dataclass
class Api:
    client: TestClient
    settings: Settings
    admin: dict

    def login(self, username: str, password: str) -> dict:
        r = self.client.post("/api/v1/auth/login", json={"username": username, "password": password})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    def make_user(self, username: str, role: str = "annotator", password: str = "password123") -> tuple[int, dict]:
        r = self.client.post("/api/v1/users", json={"username": username, "password": password, "role": role},
                             headers=self.admin)
        assert r.status_code == 201, r.text
        return r.json()["id"], self.login(username, password)

    def make_project(self, name: str = "p", labels=("cat", "dog")) -> dict:
        body = {"name": name, "labels": [{"name": n, "color": "#123456"} for n in labels]}
        r = self.client.post("/api/v1/projects", json=body, headers=self.admin)
        assert r.status_code == 201, r.text
        return r.json()

    def add_image(self, project_id: int, height: int = 24, width: int = 32, seed: int = 0) -> int:
        """Store a small PNG and its row directly (the upload route is tested in test_images)."""
        rng = np.random.default_rng(seed)
        arr = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        path = Path(self.settings.resolved_data_dir) / f"img{seed}.png"
        PILImage.fromarray(arr).save(path)
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        key = keys.image_key(sha, "png")
        LocalStorage(self.settings.resolved_storage_root).put_bytes(key, data)
        with session_scope(self.settings.resolved_database_url) as s:
            img = Image(project_id=project_id, file_name=f"img{seed}.png", storage_key=key, sha256=sha,
                        width=width, height=height, status="new")
            s.add(img)
            s.flush()
            return img.id


def _make_api(tmp_path: Path, database_url: str | None, monkeypatch) -> Api:
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("MASKLOOP_DATA_DIR", str(data))
    # Tasks go to an embedded broker file nobody consumes: requests never need a worker.
    monkeypatch.setenv("MASKLOOP_BROKER_URL", f"sqla+sqlite:///{data / 'broker.db'}")
    monkeypatch.setenv("MASKLOOP_DEFAULT_MODEL_DIR", str(tmp_path / "no-model"))
    if database_url:
        monkeypatch.setenv("DATABASE_URL", database_url)
    else:
        monkeypatch.delenv("DATABASE_URL", raising=False)
    from backend.core.config import get_settings

    get_settings.cache_clear()
    settings = get_settings()
    run_migrations(settings.resolved_database_url)
    from backend.api.routes.auth import create_user_record

    with session_scope(settings.resolved_database_url) as s:
        create_user_record(s, "admin", "adminpass1", "admin")
    client = TestClient(create_app(settings))
    api = Api(client, settings, {})
    api.admin = api.login("admin", "adminpass1")
    return api


@pytest.fixture
def api(tmp_path, monkeypatch) -> Api:
    yield _make_api(tmp_path, None, monkeypatch)
    from backend.core.config import get_settings

    get_settings.cache_clear()


@pytest.fixture
def pg_api(tmp_path, monkeypatch, postgres_url) -> Api:
    yield _make_api(tmp_path, postgres_url, monkeypatch)
    from backend.core.config import get_settings

    get_settings.cache_clear()


@pytest.fixture(params=["sqlite", "postgres"])
def any_api(request, tmp_path, monkeypatch) -> Api:
    if request.param == "sqlite":
        yield _make_api(tmp_path, None, monkeypatch)
    else:
        yield _make_api(tmp_path, request.getfixturevalue("postgres_url"), monkeypatch)
    from backend.core.config import get_settings

    get_settings.cache_clear()


def rle_of(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}
