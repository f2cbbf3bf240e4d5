"""End-to-end fixtures: the real app started as `make run` starts it (`maskloop run`: migrations,
admin account, Celery worker on the embedded broker, API serving frontend/dist), a model directory
with a `lite` SAM (random weights, seeded) and its exported decoders, and headless Chromium."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ADMIN_PASSWORD = "e2e-admin-password"
SCREENSHOTS = ROOT / "artifacts" / "screenshots"


@dataclass
class RunningApp:
    base_url: str
    admin_password: str
    data_dir: Path

    @contextmanager
    def client(self) -> Iterator[httpx.Client]:
        """An API client logged in as the admin."""
        with httpx.Client(base_url=self.base_url + "/api/v1", timeout=30) as c:
            r = c.post("/auth/login", json={"username": "admin", "password": self.admin_password})
            r.raise_for_status()
            c.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
            yield c


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ensure_frontend_built() -> None:
    dist = ROOT / "frontend" / "dist"
    sources = [p for p in (ROOT / "frontend" / "src").rglob("*") if p.is_file()]
    index = dist / "index.html"
    newest = max((p.stat().st_mtime for p in sources), default=0)
    if not index.is_file() or index.stat().st_mtime < newest:
        subprocess.run(["npm", "run", "build"], cwd=ROOT / "frontend", check=True, capture_output=True)


def _make_model_dir(target: Path) -> None:
    """A lite SAM with seeded random weights, its checkpoint and its single/multimask decoders."""
    import torch

    from workers.sam.build import build_sam, save_checkpoint
    from workers.sam.onnx import export_onnx_decoder

    torch.manual_seed(0)
    model = build_sam("lite", device="cpu")
    target.mkdir(parents=True)
    save_checkpoint(model, target / "model.pt", "lite")
    export_onnx_decoder(model, target / "decoder.onnx")
    export_onnx_decoder(model, target / "decoder_multimask.onnx", return_single_mask=False)
    (target / "config.json").write_text(json.dumps({"arch": "lite"}))


@pytest.fixture(scope="session")
def running_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    _ensure_frontend_built()
    base = tmp_path_factory.mktemp("e2e")
    model_dir = base / "model"
    _make_model_dir(model_dir)
    data_dir = base / "data"
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "MASKLOOP_DATABASE_URL", "MASKLOOP_BROKER_URL")}
    env.update(MASKLOOP_DATA_DIR=str(data_dir), MASKLOOP_ADMIN_PASSWORD=ADMIN_PASSWORD, MASKLOOP_HOST="127.0.0.1",
               MASKLOOP_PORT=str(port), MASKLOOP_DEFAULT_MODEL_DIR=str(model_dir), CUDA_VISIBLE_DEVICES="")
    log = open(base / "server.log", "wb")
    proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "maskloop"), "run"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"`maskloop run` exited with {proc.returncode}:\n{(base / 'server.log').read_text()[-3000:]}")
            try:
                if httpx.get(url + "/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the app did not answer within 120 s:\n{(base / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield RunningApp(url, ADMIN_PASSWORD, data_dir)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser):  # noqa: ANN001 - playwright types
    context = browser.new_context(viewport={"width": 1400, "height": 950})
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    p.page_errors = errors  # type: ignore[attr-defined]
    yield p
    context.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
