"""Enqueueing work for the workers without letting a broker outage fail a request."""
from __future__ import annotations

import logging

from backend import queue
from backend.core.config import get_settings

log = logging.getLogger(__name__)


def try_enqueue(task_name: str, **kwargs) -> str | None:
    """Send a task; on broker failure log it and return None (the work can be re-requested)."""
    try:
        return queue.enqueue(task_name, get_settings(), **kwargs)
    except Exception as exc:  # kombu raises many connection error types
        log.error("could not enqueue %s %s: %s", task_name, kwargs, exc)
        return None


def enqueue_image_embedding(image_id: int, model_version_id: int) -> str | None:
    return try_enqueue(queue.EMBED_IMAGE, image_id=image_id, model_version_id=model_version_id)


def enqueue_project_embeddings(project_id: int) -> str | None:
    return try_enqueue(queue.EMBED_PROJECT, project_id=project_id)
