"""The export task (``maskloop.export_dataset``): writes a COCO JSON or SA-1B zip into storage with
the server's export service (``backend.services.export``), recording the result on the job row."""
from __future__ import annotations

import logging

from backend.queue import EXPORT_DATASET
from backend.storage import keys
from workers.celery_app import app
from workers.engine import db
from workers.tasks.common import MaskloopTask, engine, storage, t

logger = logging.getLogger(__name__)
FORMATS = {"coco": "json", "sa1b": "zip"}


@app.task(name=EXPORT_DATASET, base=MaskloopTask, bind=True)
def export_dataset(self: MaskloopTask, *, job_id: int) -> str:
    """Build the export of the job's project with its ``params`` ({format, filters}) and store it."""
    jobs = t("jobs")
    with db.transaction(engine()) as conn:
        job = db.get_row(conn, jobs, int(job_id))
    if job is None:
        return "missing"
    if job._mapping.get("status") in ("succeeded", "failed"):
        return str(job._mapping["status"])
    params = db.load_json(job._mapping.get("params")) or {}
    fmt = params.get("format", "coco")

    def fail(reason: str) -> str:
        with db.transaction(engine()) as conn:
            db.update_row(conn, jobs, int(job_id), status="failed", error=reason, message=reason, finished_at=db.now())
        logger.error("export job %s failed: %s", job_id, reason)
        return "failed"

    if fmt not in FORMATS:
        return fail(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    try:
        from backend.services import export as export_service
    except ImportError:
        return fail("the server's export service (backend.services.export) is not available")
    builder = getattr(export_service, "build_export", None)
    if builder is None:
        return fail("backend.services.export has no build_export(conn, project_id, format, filters) function")
    with db.transaction(engine()) as conn:
        db.update_row(conn, jobs, int(job_id), status="running", progress=0.0)
    try:
        with db.transaction(engine()) as conn:
            data = builder(conn, int(job._mapping["project_id"]), fmt, params.get("filters") or {})
    except ValueError as exc:
        return fail(str(exc))
    key = keys.export_key(int(job_id), FORMATS[fmt])
    storage().put_bytes(key, data)
    with db.transaction(engine()) as conn:
        db.update_row(conn, jobs, int(job_id), status="succeeded", progress=1.0, done=1, total=1, result_key=key,
                      storage_key=key, message=f"{len(data)} bytes written", finished_at=db.now())
    return "succeeded"
