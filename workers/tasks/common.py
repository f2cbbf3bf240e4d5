"""Shared plumbing of the tasks: the task base class (retry policy), settings, DB and storage
access, image loading from an ``images`` row, the project's model, and the test slow-down hook."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from celery import Task

from backend.core.config import get_settings
from backend.storage import BlobNotFound, get_storage, keys
from workers.engine import db
from workers.engine.errors import BadInputError, transient_errors
from workers.engine.images import decode_image

logger = logging.getLogger(__name__)


class MaskloopTask(Task):
    """Retries transient errors (lost DB/broker connections) with exponential backoff; bad input
    is never retried (each task records it on its row and returns normally)."""

    autoretry_for = transient_errors()
    retry_backoff = 2
    retry_backoff_max = 300
    retry_jitter = True
    max_retries = 8
    acks_late = True
    reject_on_worker_lost = True

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        """The task raised for good (its retries spent on a lost connection, or an error it does not
        record itself): the job or round it ran for ends ``failed`` with the reason, instead of staying
        ``running`` for ever. Best effort: the database may be what failed."""
        record_final_failure(kwargs or {}, f"{type(exc).__name__}: {exc}")


def record_final_failure(kwargs: dict[str, Any], reason: str) -> None:
    """Mark the task's job (``job_id``) or round (``round_id``) failed with ``reason`` while it is still
    queued or running (a cancelled or finished row is left as it is)."""
    for arg, table in (("job_id", "jobs"), ("round_id", "rounds")):
        if arg not in kwargs:
            continue
        try:
            update_if(t(table), int(kwargs[arg]), ("queued", "running"), status="failed", error=reason,
                      message=reason, finished_at=db.now())
        except Exception:  # noqa: BLE001 - the database may be the reason the task failed
            logger.exception("could not record the failure of %s %s", table, kwargs[arg])


def update_if(tbl: sa.Table, row_id: int, statuses: tuple[str, ...], **values: Any) -> bool:
    """Update a job or round only while its status is one of ``statuses`` (an admin may cancel it, or
    delete it with its project, at any moment); whether it was updated."""
    with db.transaction(engine()) as conn:
        return bool(conn.execute(sa.update(tbl).where(tbl.c.id == row_id, tbl.c.status.in_(statuses))
                                 .values(**db.only_columns(tbl, values))).rowcount)


def stopped(conn: sa.Connection, tbl: sa.Table, row_id: int) -> bool:
    """Whether the job or round was cancelled, or deleted (with its project) after a cancel: its task
    stops either way."""
    row = db.get_row(conn, tbl, row_id)
    return row is None or row._mapping.get("status") == "cancelled"


def fail_unless_cancelled(table: str, row_id: int, reason: str) -> str:
    """Record the failure of a job or round (``table`` "jobs" or "rounds") with ``reason``; a cancelled
    one stays cancelled. Returns its final status."""
    tbl = t(table)
    with db.transaction(engine()) as conn:
        if stopped(conn, tbl, row_id):
            return "cancelled"
        db.update_row(conn, tbl, row_id, status="failed", error=reason, message=reason, finished_at=db.now())
    logger.error("%s %s failed: %s", table.removesuffix("s"), row_id, reason)
    return "failed"


def engine() -> sa.engine.Engine:
    return db.get_engine(get_settings().resolved_database_url)


def storage() -> Any:
    return get_storage(get_settings())


def t(name: str) -> sa.Table:
    """Reflected table ``name`` of the configured database."""
    return db.table(engine(), name)


def test_delay(name: str = "MASKLOOP_TEST_ITEM_DELAY") -> float:
    """Seconds to sleep between items (a test hook to kill a worker mid-task); 0 by default."""
    raw = os.environ.get(name, "")
    return float(raw) if raw else 0.0


def pause_between_items() -> None:
    """Test hook: sleep ``MASKLOOP_TEST_ITEM_DELAY`` seconds, first appending a line to the file
    ``MASKLOOP_TEST_PAUSE_MARKER`` (when set) so a test knows the worker is mid-task."""
    delay = test_delay()
    if delay > 0:
        marker = os.environ.get("MASKLOOP_TEST_PAUSE_MARKER")
        if marker:
            with open(marker, "a") as fh:
                fh.write(f"{os.getpid()}\n")
        time.sleep(delay)


def image_blob_key(image: Any) -> str:
    """The storage key of an image row's original file."""
    mapping = image._mapping
    for col in ("storage_key", "file_key", "blob_key", "key"):
        if mapping.get(col):
            return str(mapping[col])
    ext = Path(mapping.get("file_name") or "").suffix.lstrip(".") or "png"
    return keys.image_key(mapping["sha256"], ext)


def load_image_array(image: Any) -> Any:
    """Read and decode an image row's file; ``BadInputError`` when missing, corrupt or too large."""
    settings = get_settings()
    key = image_blob_key(image)
    name = image._mapping.get("file_name") or f"image {image.id}"
    try:
        data = storage().get_bytes(key)
    except (BlobNotFound, FileNotFoundError) as exc:
        raise BadInputError(f"{name}: image file {key} is missing from storage") from exc
    return decode_image(data, max_pixels=settings.max_image_pixels, name=name)


def model_for_version(model_version_id: int) -> Any:
    """The loaded (cached) model of a model version."""
    from workers.engine.models import load_model, resolve_device, resolve_spec

    settings = get_settings()
    with db.transaction(engine()) as conn:
        row = db.get_row(conn, t("model_versions"), model_version_id)
    if row is None:
        raise BadInputError(f"model version {model_version_id} does not exist")
    spec = resolve_spec(model_version_id, storage=storage(), default_model_dir=settings.default_model_dir,
                        arch=row._mapping.get("arch"), checkpoint_key=row._mapping.get("checkpoint_key"))
    return load_model(spec, resolve_device(settings.device))


def project_model_version(project_id: int) -> int:
    """The project's active model version id; ``BadInputError`` when the project has none."""
    with db.transaction(engine()) as conn:
        project = db.get_row(conn, t("projects"), project_id)
    if project is None:
        raise BadInputError(f"project {project_id} does not exist")
    mv = project._mapping.get("active_model_version_id")
    if mv is None:
        raise BadInputError(f"project {project_id} has no active model version")
    return int(mv)


def rle_of(annotation: Any) -> dict[str, Any]:
    """An annotation row's segmentation as ``{size: [H, W], counts: str}``."""
    seg = db.load_json(annotation._mapping.get("segmentation"))
    if seg is None:
        m = annotation._mapping
        seg = {"size": db.load_json(m.get("rle_size")) or [m.get("height"), m.get("width")],
               "counts": m.get("rle_counts")}
    return seg
