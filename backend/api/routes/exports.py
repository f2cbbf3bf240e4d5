"""Export routes: a direct (streamed) COCO/SA-1B download, and export jobs run by the CPU workers."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, Field

from backend import queue
from backend.api.deps import CurrentUser, SessionDep, StorageDep, project_for_user
from backend.core.errors import BadRequest, Conflict, NotFound
from backend.db.models import Job
from backend.schemas.engine import JobPublic
from backend.services import export as export_service
from backend.services.embedding_jobs import try_enqueue
from backend.storage import BlobNotFound, keys

log = logging.getLogger(__name__)
router = APIRouter(tags=["export"])
CHUNK = 1 << 20


class ExportCreate(BaseModel):
    format: str = "coco"
    filters: dict[str, Any] = Field(default_factory=dict)


def _check(format: str, filters: dict[str, Any]) -> dict[str, list[str]]:
    if format not in export_service.FORMATS:
        raise BadRequest(f"unknown export format {format!r}; expected one of {', '.join(export_service.FORMATS)}")
    try:
        return export_service.normalize_filters(filters)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def _chunks(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), CHUNK):
        yield data[start:start + CHUNK]


@router.get("/projects/{project_id}/export")
def export_now(project_id: int, session: SessionDep, user: CurrentUser,
               format: Annotated[str, Query()] = "coco", stage: str | None = None, source: str | None = None,
               review_state: str | None = None) -> StreamingResponse:
    """Build the export in the request (fine for small projects; big ones use an export job)."""
    project = project_for_user(session, project_id, user)
    filters = _check(format, {"stage": stage, "source": source, "review_state": review_state})
    try:
        data = export_service.build_export(session.connection(), project.id, format, filters)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    name = export_service.export_file_name(project.name, format)
    media = export_service.FORMATS[format][1]
    return StreamingResponse(_chunks(data), media_type=media,
                             headers={"Content-Disposition": f'attachment; filename="{name}"',
                                      "Content-Length": str(len(data))})


@router.post("/projects/{project_id}/exports", response_model=JobPublic, status_code=202)
def start_export(project_id: int, body: ExportCreate, session: SessionDep, user: CurrentUser) -> Job:
    """Queue an export job; poll ``GET /jobs/{id}``, then download from ``/exports/{id}/download``."""
    project = project_for_user(session, project_id, user)
    filters = _check(body.format, body.filters)
    job = Job(kind="export", project_id=project.id, status="queued", total=1, created_by=user.id,
              params={"format": body.format, "filters": filters}, message="queued")
    session.add(job)
    session.commit()
    task_id = try_enqueue(queue.EXPORT_DATASET, job_id=job.id)
    if task_id is None:
        job.status, job.error = "failed", "the task queue is unreachable; start the export again later"
    log.info("export job %s (%s, filters %s) of project %s: %s", job.id, body.format, filters, project.id,
             job.status)
    job.celery_task_id = task_id
    session.commit()
    return job


@router.get("/exports/{job_id}/download")
def download_export(job_id: int, session: SessionDep, storage: StorageDep, user: CurrentUser) -> FileResponse:
    job = session.get(Job, job_id)
    if job is None or job.kind != "export" or job.project_id is None:
        raise NotFound(f"export {job_id} not found")
    try:
        project = project_for_user(session, job.project_id, user)
    except NotFound:
        raise NotFound(f"export {job_id} not found") from None
    if job.status != "succeeded":
        raise Conflict(f"export {job_id} is {job.status}" + (f": {job.error}" if job.error else ""))
    format = (job.params or {}).get("format", "coco")
    ext, media = export_service.FORMATS.get(format, ("json", "application/json"))
    key = (job.result or {}).get("storage_key") or keys.export_key(job.id, ext)
    try:
        path = storage.local_path(key)
    except BlobNotFound:
        raise NotFound(f"the file of export {job_id} is missing from storage") from None
    return FileResponse(path, media_type=media, filename=export_service.export_file_name(project.name, format))
