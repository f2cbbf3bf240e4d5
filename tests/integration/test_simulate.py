"""`maskloop simulate` end to end, small: robots drive a real server + Celery worker through all
three stages and a retraining round, with the embedded defaults and with PostgreSQL + Redis.

The model is a random-weight `lite` (the test checks the loop's plumbing and report, not quality).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
DATASET = REPO.parent / "shared" / "datasets" / "coco-mval"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def random_model_dir(tmp_path_factory) -> Path:
    import torch

    from workers.sam.build import build_sam, save_checkpoint
    from workers.sam.onnx import export_onnx_decoder

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("model")
    model = build_sam("lite").eval()
    save_checkpoint(model, d / "model.pt", "lite", {"note": "random weights for tests"})
    export_onnx_decoder(model, d / "decoder.onnx")
    export_onnx_decoder(model, d / "decoder_multimask.onnx", return_single_mask=False)
    (d / "config.json").write_text(json.dumps({"arch": "lite"}))
    return d


def _wait_healthy(url: str, procs: list[subprocess.Popen], timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{p.args} exited with {p.returncode}")
        try:
            if httpx.get(url + "/api/v1/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"server at {url} not healthy after {timeout}s")


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def _simulate(url: str, out: Path, env: dict, extra: tuple[str, ...] = ()) -> dict:
    cmd = [sys.executable, "-m", "backend.cli", "simulate", "--dataset", str(DATASET), "--url", url,
           "--password", "adminpass1", "--stage1", "2", "--stage2", "2", "--stage3", "1", "--heldout", "2",
           "--annotators", "2", "--max-clicks", "3", "--heldout-clicks", "3", "--round-steps", "2",
           "--rounds", "2", "--points-per-side", "4", "--out", str(out), *extra]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Maskloop data engine simulation" in done.stdout
    return json.loads((out / "simulation.json").read_text())


def _check_report(report: dict, out: Path) -> None:
    names = [p["name"] for p in report["phases"]]
    assert names == ["stage 1 assisted-manual", "stage 2 semi-automatic", "stage 3 fully automatic"]
    stage1, stage2, stage3 = report["phases"]
    assert stage1["images"] == 2 and stage1["masks_per_image"] == 1.0
    assert 1 <= stage1["clicks_per_mask"] <= 3 and stage1["seconds_per_mask"] > 0
    assert stage2["model_version"] != stage1["model_version"]  # round 1 was promoted
    assert "automatic_masks_per_image" in stage3
    assert [r["round"] for r in report["rounds"]] == [1, 2]
    assert all(r["model_version"] for r in report["rounds"])
    assert [m["label"] for m in report["models"]] == ["initial", "after round 1", "after round 2"]
    assert (out / "simulation.png").stat().st_size > 1000


@pytest.mark.skipif(not DATASET.is_dir(), reason="needs ../shared/datasets/coco-mval")
def test_simulate_embedded(tmp_path, random_model_dir):
    port = _free_port()
    env = {**os.environ, "MASKLOOP_DATA_DIR": str(tmp_path / "data"), "MASKLOOP_PORT": str(port),
           "MASKLOOP_DEFAULT_MODEL_DIR": str(random_model_dir), "MASKLOOP_ADMIN_PASSWORD": "adminpass1"}
    for name in ("DATABASE_URL", "REDIS_URL", "MASKLOOP_BROKER_URL"):
        env.pop(name, None)
    server = subprocess.Popen([sys.executable, "-m", "backend.cli", "run"], cwd=REPO, env=env,
                              start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, [server])
        report = _simulate(url, tmp_path / "out", env)
        _check_report(report, tmp_path / "out")
    finally:
        _stop([server])


@pytest.mark.skipif(not DATASET.is_dir(), reason="needs ../shared/datasets/coco-mval")
@pytest.mark.postgres
@pytest.mark.redis
def test_simulate_postgres_redis_separate_worker(tmp_path, random_model_dir, postgres_url, redis_server_url):
    import redis

    broker = redis_server_url.rsplit("/", 1)[0] + "/9"
    redis.Redis.from_url(broker).flushdb()
    port = _free_port()
    env = {**os.environ, "MASKLOOP_DATA_DIR": str(tmp_path / "data"), "MASKLOOP_PORT": str(port),
           "MASKLOOP_DEFAULT_MODEL_DIR": str(random_model_dir), "DATABASE_URL": postgres_url,
           "REDIS_URL": broker, "MASKLOOP_NEW_USER_PASSWORD": "adminpass1"}
    env.pop("MASKLOOP_BROKER_URL", None)
    subprocess.run([sys.executable, "-m", "backend.cli", "migrate"], cwd=REPO, env=env, check=True,
                   capture_output=True)
    subprocess.run([sys.executable, "-m", "backend.cli", "create-user", "admin", "--role", "admin"], cwd=REPO,
                   env=env, check=True, capture_output=True)
    api = subprocess.Popen([sys.executable, "-m", "backend.cli", "api"], cwd=REPO, env=env,
                           start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = subprocess.Popen([sys.executable, "-m", "backend.cli", "worker"], cwd=REPO, env=env,
                              start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, [api, worker])
        # the round recipe and the automatic filters are set through the public API
        report = _simulate(url, tmp_path / "out", env, ("--round-lr", "2e-4", "--round-train-encoder",
                                                       "--pred-iou-thresh", "0", "--stability-thresh", "0.5"))
        _check_report(report, tmp_path / "out")
        assert all(r["params"] == {"steps": 2, "learning_rate": 2e-4, "freeze_image_encoder": False}
                   for r in report["rounds"]), report["rounds"]
        assert report["config"]["pred_iou_thresh"] == 0 and report["config"]["stability_score_thresh"] == 0.5
    finally:
        _stop([api, worker])
