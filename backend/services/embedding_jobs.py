"""Enqueueing work for the workers without letting a broker outage fail a request.

After a failed send to a broker, further per-image sends to that same broker are skipped for
``COOLDOWN_SECONDS`` (logged), so an upload of many images costs one connection timeout, not
one per image. Skipped work is not lost: embeddings are requested again on demand
(``GET /images/{id}/embedding`` answers 202 and enqueues), and job/round rows record the failure.
"""
from __future__ import annotations

import logging
import threading
import time

from backend import queue
from backend.core.config import get_settings

log = logging.getLogger(__name__)
COOLDOWN_SECONDS = 15.0
_down_until: dict[str, float] = {}
_lock = threading.Lock()


def try_enqueue(task_name: str, *, bulk: bool = False, **kwargs) -> str | None:
    """Send a task; on broker failure log it and return None (the work can be re-requested).

    ``bulk`` sends (one per uploaded image) are skipped during the cooldown after a failure;
    explicit actions (rounds, jobs, exports) always try the broker.
    """
    settings = get_settings()
    url = settings.resolved_broker_url
    with _lock:
        skip = bulk and _down_until.get(url, 0.0) > time.monotonic()
    if skip:
        log.warning("broker unreachable a moment ago: not sending %s %s", task_name, kwargs)
        return None
    try:
        task_id = queue.enqueue(task_name, settings, **kwargs)
    except Exception as exc:  # kombu raises many connection error types
        log.error("could not enqueue %s %s: %s", task_name, kwargs, exc)
        with _lock:
            _down_until[url] = time.monotonic() + COOLDOWN_SECONDS
        return None
    with _lock:
        _down_until.pop(url, None)
    return task_id


def enqueue_image_embedding(image_id: int, model_version_id: int) -> str | None:
    return try_enqueue(queue.EMBED_IMAGE, bulk=True, image_id=image_id, model_version_id=model_version_id)


def enqueue_project_embeddings(project_id: int) -> str | None:
    return try_enqueue(queue.EMBED_PROJECT, project_id=project_id)
