"""Queued work survives a Redis crash when Redis persists with AOF (the production setting).

A private redis-server (append-only file, fsync on every write) is started on a free port, tasks are
queued with no worker running, Redis is killed with SIGKILL and restarted on the same data folder,
and a worker started afterwards finishes every queued task.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from backend.queue import EMBED_IMAGE
from tests.integration.test_worker_faults import Cluster, _rows, wait_for
from tests.workers.tasks.worker_test_support import make_env, seed_project, write_tiny_model

pytestmark = [pytest.mark.integration, pytest.mark.redis]
REDIS = shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_redis(port: int, folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
                             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    client = redis.Redis(port=port)
    wait_for(lambda: _ping(client), 30, "redis-server to answer", [proc])
    return proc


def _ping(client) -> bool:
    import redis

    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.mark.skipif(REDIS is None, reason="redis-server binary not installed")
def test_queued_tasks_survive_a_redis_crash(tmp_path):
    port = _free_port()
    folder = tmp_path / "redis"
    folder.mkdir()
    server = _start_redis(port, folder)
    cluster = None
    try:
        model_dir = write_tiny_model(tmp_path / "model")
        env = make_env(tmp_path, f"sqlite:///{tmp_path / 'maskloop.db'}", model_dir,
                       broker_url=f"redis://127.0.0.1:{port}/0")
        cluster = Cluster(env, tmp_path)
        ids = seed_project(env, n_images=2)
        for image_id in ids["image_ids"]:
            cluster.send(EMBED_IMAGE, image_id=image_id, model_version_id=ids["model_version_id"])
        server.kill()  # SIGKILL: no clean shutdown, only the append-only file remains
        server.wait(timeout=10)
        assert (folder / "appendonlydir").exists() or list(folder.glob("*.aof"))
        server = _start_redis(port, folder)
        worker = cluster.start()
        wait_for(lambda: len(_rows(env, "SELECT DISTINCT image_id FROM embeddings")) == 2, 180,
                 "both queued embeddings after the Redis restart", [worker])
        statuses = {r[0] for r in _rows(env, "SELECT status FROM images")}
        assert statuses == {"embedded"}
    finally:
        if cluster is not None:
            cluster.stop_all()
        server.kill()
        server.wait(timeout=10)
        time.sleep(0.1)
