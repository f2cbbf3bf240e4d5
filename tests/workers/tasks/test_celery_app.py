"""The Celery app's configuration: routes from the queue contract, reliability settings."""
from __future__ import annotations

import subprocess
import sys

import pytest
import sqlalchemy.exc

from backend.queue import TASK_QUEUES

REPO = str(__import__("pathlib").Path(__file__).resolve().parents[3])


def test_app_config_and_registered_tasks() -> None:
    import workers.tasks  # noqa: F401
    from workers.celery_app import app

    conf = app.conf
    assert {n: r["queue"] for n, r in conf.task_routes.items()} == TASK_QUEUES
    assert set(TASK_QUEUES) <= set(app.tasks)
    assert conf.task_acks_late and conf.task_reject_on_worker_lost and conf.worker_prefetch_multiplier == 1
    assert conf.task_ignore_result and conf.task_serializer == "json" and conf.accept_content == ["json"]
    assert conf.task_soft_time_limit < conf.task_time_limit
    task = app.tasks["maskloop.train_round"]
    assert issubclass(sqlalchemy.exc.OperationalError, task.autoretry_for)
    assert not issubclass(ValueError, task.autoretry_for)
    assert task.retry_backoff and task.max_retries >= 3


def _conf(env: dict[str, str]) -> subprocess.CompletedProcess:
    code = ("from workers.celery_app import app; print(app.conf.broker_url); "
            "print(app.conf.broker_transport_options)")
    return subprocess.run([sys.executable, "-c", code], env={**env, "PATH": "/usr/bin:/bin"}, capture_output=True, cwd=REPO,
                          text=True, timeout=60)


def test_broker_options_per_transport(tmp_path) -> None:
    out = _conf({"MASKLOOP_DATA_DIR": str(tmp_path)}).stdout.splitlines()
    assert out == [f"sqla+sqlite:///{tmp_path.resolve()}/broker.db", "{}"]
    out = _conf({"REDIS_URL": "redis://127.0.0.1:6379/3", "MASKLOOP_VISIBILITY_TIMEOUT": "7"}).stdout.splitlines()
    assert out == ["redis://127.0.0.1:6379/3", "{'visibility_timeout': 7}"]


@pytest.mark.parametrize("value", ["soon", "-1"])
def test_bad_visibility_timeout_is_named(value: str) -> None:
    proc = _conf({"REDIS_URL": "redis://x", "MASKLOOP_VISIBILITY_TIMEOUT": value})
    assert proc.returncode != 0 and "MASKLOOP_VISIBILITY_TIMEOUT" in proc.stderr


def test_transient_db_error_is_retried_then_succeeds(monkeypatch) -> None:
    """The retry policy itself: a lost DB connection (OperationalError) is retried; bad input is not."""
    import workers.tasks.rounds as rounds

    calls: list[int] = []

    def flaky(round_id: int) -> str:
        calls.append(round_id)
        if len(calls) < 3:
            raise sqlalchemy.exc.OperationalError("SELECT 1", {}, ConnectionError("server closed the connection"))
        return "succeeded"

    monkeypatch.setattr(rounds, "train_round_impl", flaky)
    result = rounds.train_round.apply(kwargs={"round_id": 7})
    assert result.get() == "succeeded" and calls == [7, 7, 7]

    def bad(round_id: int) -> str:
        calls.append(round_id)
        raise ValueError("not transient")

    calls.clear()
    monkeypatch.setattr(rounds, "train_round_impl", bad)
    result = rounds.train_round.apply(kwargs={"round_id": 8})
    assert result.failed() and calls == [8]
