"""The one Celery application of Maskloop's workers, configured from ``Settings``.

Run it with ``celery -A workers.celery_app:app worker -Q gpu,train,cpu`` (``maskloop worker`` execs
exactly this). The broker is ``Settings.resolved_broker_url``: kombu's SQLAlchemy transport on a
SQLite file for the embedded ``make run`` setup, Redis in production.

Reliability settings: tasks are acknowledged *after* they finish (``task_acks_late``) and a task
whose worker process dies is rejected back to the queue (``task_reject_on_worker_lost``); each
worker reserves one message at a time (``worker_prefetch_multiplier=1``), so a killed worker holds
at most the message it was working on. With Redis an unacknowledged message becomes visible again
after ``visibility_timeout`` seconds (environment ``MASKLOOP_VISIBILITY_TIMEOUT``, default one hour,
a few seconds in the fault tests). The SQLAlchemy transport never redelivers a message consumed by
a dead worker, so with that broker a starting worker re-sends the work its database rows say was
interrupted (``workers.tasks.recovery``).

Results are ignored: task state, progress and errors live in the database rows (jobs, rounds,
images), which the API reads.
"""
from __future__ import annotations

import logging
import os

from celery import Celery
from celery.signals import worker_ready

from backend.core.config import get_settings
from backend.queue import TASK_QUEUES

logger = logging.getLogger(__name__)

DEFAULT_VISIBILITY_TIMEOUT = 3600


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer number of seconds, got {raw!r}") from exc
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


def make_app() -> Celery:
    """Build the Celery app from the current settings and environment."""
    settings = get_settings()
    broker = settings.resolved_broker_url
    visibility = _int_env("MASKLOOP_VISIBILITY_TIMEOUT", DEFAULT_VISIBILITY_TIMEOUT)
    soft_limit = _int_env("MASKLOOP_TASK_SOFT_TIME_LIMIT", 6 * 3600)
    hard_limit = _int_env("MASKLOOP_TASK_TIME_LIMIT", soft_limit + 300)

    if broker.startswith("sqla+sqlite:///"):
        # The SQLite file's folder must exist before kombu opens it.
        db_path = broker[len("sqla+sqlite:///"):]
        if db_path:
            os.makedirs(os.path.dirname(os.path.abspath(db_path)), exist_ok=True)

    app = Celery("maskloop", broker=broker, include=["workers.tasks"])
    app.conf.update(
        task_routes={name: {"queue": queue} for name, queue in TASK_QUEUES.items()},
        task_default_queue="cpu",
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        worker_max_tasks_per_child=None,
        task_soft_time_limit=soft_limit,
        task_time_limit=hard_limit,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        result_backend=None,
        broker_connection_retry_on_startup=True,
        # kombu's SQLAlchemy transport passes its options to create_engine: Redis only.
        broker_transport_options={"visibility_timeout": visibility} if broker.startswith(("redis", "rediss")) else {},
        worker_hijack_root_logger=True,
        worker_send_task_events=False,
        enable_utc=True,
    )
    return app


app = make_app()


@worker_ready.connect
def _recover_interrupted_work(sender=None, **_: object) -> None:
    """On start, re-send work a killed worker left unfinished when the broker cannot redeliver."""
    broker = app.conf.broker_url or ""
    if not broker.startswith("sqla+"):
        return
    try:
        from workers.tasks.recovery import resend_interrupted

        resend_interrupted()
    except Exception:  # noqa: BLE001 - a recovery failure must not stop the worker
        logger.exception("could not re-send interrupted work")
