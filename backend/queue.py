"""The contract between the API and the workers: queue names, task names, payloads, enqueue().

The API never imports ``workers``: it sends tasks by name with Celery's ``send_task``.
Every task takes keyword arguments only, and long-running state (status, progress, error)
lives in the database rows named by those arguments, never in the result backend.
"""
from __future__ import annotations

from functools import lru_cache

from celery import Celery

from backend.core.config import Settings, get_settings

GPU_QUEUE = "gpu"  # embed, automatic, prefill: short GPU jobs that annotators wait for
TRAIN_QUEUE = "train"  # retraining rounds: hours of GPU, on their own worker so embeddings never wait
CPU_QUEUE = "cpu"  # export, housekeeping
ALL_QUEUES = f"{GPU_QUEUE},{TRAIN_QUEUE},{CPU_QUEUE}"  # what a single all-in-one worker consumes

# task name -> queue
EMBED_IMAGE = "maskloop.embed_image"  # kwargs: image_id:int, model_version_id:int
EMBED_PROJECT = "maskloop.embed_project"  # kwargs: project_id:int (enqueues missing embeddings)
PREFILL_SEMI_AUTO = "maskloop.prefill_semi_auto"  # kwargs: job_id:int
AUTOMATIC_BATCH = "maskloop.automatic_batch"  # kwargs: job_id:int
TRAIN_ROUND = "maskloop.train_round"  # kwargs: round_id:int
EXPORT_DATASET = "maskloop.export_dataset"  # kwargs: job_id:int

TASK_QUEUES: dict[str, str] = {
    EMBED_IMAGE: GPU_QUEUE,
    EMBED_PROJECT: GPU_QUEUE,
    PREFILL_SEMI_AUTO: GPU_QUEUE,
    AUTOMATIC_BATCH: GPU_QUEUE,
    TRAIN_ROUND: TRAIN_QUEUE,
    EXPORT_DATASET: CPU_QUEUE,
}


@lru_cache
def _producer(broker_url: str) -> Celery:
    app = Celery("maskloop-api", broker=broker_url)
    app.conf.task_routes = {name: {"queue": q} for name, q in TASK_QUEUES.items()}
    app.conf.broker_connection_retry_on_startup = True
    return app


def enqueue(task_name: str, settings: Settings | None = None, **kwargs) -> str:
    """Send a task by name; returns the Celery task id."""
    if task_name not in TASK_QUEUES:
        raise ValueError(f"unknown task {task_name!r}")
    settings = settings or get_settings()
    app = _producer(settings.resolved_broker_url)
    result = app.send_task(task_name, kwargs=kwargs, queue=TASK_QUEUES[task_name])
    return result.id
