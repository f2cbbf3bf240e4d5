"""A small synchronous client of Maskloop's public REST API, used by the robot annotators."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from backend.services.embedding_format import EmbeddingHeader, decode_embedding

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)


class ApiError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, detail: Any):
        super().__init__(f"{method} {path} -> {status}: {detail}")
        self.status = status
        self.detail = detail


class MaskloopClient:
    def __init__(self, base_url: str, timeout: float = 120.0):
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url + "/api/v1", timeout=timeout)
        self.token: str | None = None

    def close(self) -> None:
        self.http.close()

    # -- plumbing ------------------------------------------------------------------------------
    def _request(self, method: str, path: str, expect: tuple[int, ...] = (200, 201), **kw) -> httpx.Response:
        headers = kw.pop("headers", {}) or {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        resp = self.http.request(method, path, headers=headers, **kw)
        if resp.status_code not in expect:
            try:
                detail = resp.json()
            except ValueError:
                detail = resp.text[:500]
            raise ApiError(method, path, resp.status_code, detail)
        return resp

    def get(self, path: str, **kw) -> Any:
        return self._request("GET", path, **kw).json()

    def post(self, path: str, json: Any = None, **kw) -> Any:
        resp = self._request("POST", path, json=json, **kw)
        return resp.json() if resp.content else None

    def patch(self, path: str, json: Any) -> Any:
        return self._request("PATCH", path, json=json).json()

    def delete(self, path: str) -> None:
        self._request("DELETE", path, expect=(200, 204))

    # -- resources -----------------------------------------------------------------------------
    def login(self, username: str, password: str) -> dict:
        data = self.post("/auth/login", {"username": username, "password": password})
        self.token = data["access_token"]
        return data["user"]

    def wait_until(self, fetch, done, *, timeout: float, what: str, interval: float = 0.5) -> Any:
        """Poll ``fetch()`` until ``done(value)``; raises TimeoutError naming ``what``."""
        deadline = time.monotonic() + timeout
        while True:
            value = fetch()
            if done(value):
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}: {value}")
            time.sleep(interval)

    def upload_images(self, project_id: int, paths: list[Path], chunk: int = 16) -> list[dict]:
        images: list[dict] = []
        for i in range(0, len(paths), chunk):
            files = [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in paths[i : i + chunk]]
            data = self.post(f"/projects/{project_id}/images", files=files)
            if data.get("errors"):
                raise ApiError("POST", "images", 400, data["errors"])
            images.extend(data.get("created", []) + data.get("duplicates", []))
        return images

    def fetch_embedding(self, image_id: int, *, dtype: str = "float16", timeout: float = 600.0
                        ) -> tuple["np.ndarray", EmbeddingHeader, int]:
        """Fetch the wire-format embedding, waiting while the worker computes it."""
        deadline = time.monotonic() + timeout
        while True:
            resp = self._request("GET", f"/images/{image_id}/embedding", expect=(200, 202), params={"dtype": dtype})
            if resp.status_code == 200:
                emb, header = decode_embedding(resp.content)
                return emb, header, len(resp.content)
            if time.monotonic() > deadline:
                raise TimeoutError(f"embedding of image {image_id} not ready after {timeout:.0f}s")
            time.sleep(min(float(resp.headers.get("Retry-After", "1")), 2.0))

    def decoder_bytes(self, model_version_id: int, variant: str = "") -> bytes | None:
        name = "decoder.onnx" if not variant else f"decoder_{variant}.onnx"
        resp = self._request("GET", f"/models/{model_version_id}/{name}", expect=(200, 404))
        return resp.content if resp.status_code == 200 else None
