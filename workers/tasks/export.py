"""The export task (``maskloop.export_dataset``): builds a COCO JSON or SA-1B zip with the server's
export service (``backend.services.export.build_export``), writes it to storage under
``keys.export_key`` and records ``result.storage_key`` on the job row (the download route reads it)."""
from __future__ import annotations

import logging

from backend.queue import EXPORT_DATASET
from backend.services import export as export_service
from backend.storage import keys
from workers.celery_app import app
from workers.engine import db
from workers.engine.errors import transient_errors
from workers.tasks.common import MaskloopTask, engine, storage, t, update_if

logger = logging.getLogger(__name__)


def export_job(job_id: int) -> str:
    """Run one export job; returns its final status. Bad format/filters, or any other failure to build or
    store the file, fail the job with the reason; a job cancelled while it was built keeps no file."""
    jobs = t("jobs")
    with db.transaction(engine()) as conn:
        job = db.get_row(conn, jobs, job_id)
    if job is None:
        logger.warning("export job %s does not exist", job_id)
        return "missing"
    if job._mapping.get("status") in ("succeeded", "failed", "cancelled"):  # a cancelled export is not started
        return str(job._mapping["status"])
    params = db.load_json(job._mapping.get("params")) or {}
    fmt = params.get("format", "coco")

    def fail(reason: str) -> str:
        if not update_if(jobs, job_id, ("queued", "running"), status="failed", error=reason, message=reason,
                          finished_at=db.now()):
            return "cancelled"
        logger.error("export job %s failed: %s", job_id, reason)
        return "failed"

    if job._mapping.get("project_id") is None:
        return fail("the export job names no project")
    if not update_if(jobs, job_id, ("queued", "running"), status="running", progress=0.0, started_at=db.now()):
        return "cancelled"
    try:
        with db.transaction(engine()) as conn:
            data = export_service.build_export(conn, int(job._mapping["project_id"]), fmt, params.get("filters") or {})
    except ValueError as exc:
        return fail(str(exc))
    except transient_errors():
        raise
    except Exception as exc:  # noqa: BLE001 - record it on the job, never leave it running
        logger.exception("export job %s crashed", job_id)
        return fail(f"{type(exc).__name__}: {exc}")
    key = keys.export_key(job_id, export_service.FORMATS[fmt][0])
    store = storage()
    try:
        store.put_bytes(key, data)  # atomic: no half-written file
    except OSError as exc:
        return fail(f"could not write the export file {key}: {exc}")
    if not update_if(jobs, job_id, ("running",), status="succeeded", progress=1.0, done=1, total=1,
                      result={"storage_key": key, "bytes": len(data), "format": fmt},
                      message=f"{len(data)} bytes written", error=None, finished_at=db.now()):
        store.delete(key)  # cancelled (or deleted with its project) while it was built
        return "cancelled"
    return "succeeded"


@app.task(name=EXPORT_DATASET, base=MaskloopTask, bind=True)
def export_dataset(self: MaskloopTask, *, job_id: int) -> str:
    """Build the export of the job's project with its ``params`` ({format, filters}) and store it."""
    return export_job(int(job_id))
