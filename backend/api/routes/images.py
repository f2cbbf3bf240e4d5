"""Image routes: upload (many files), folder and COCO import, listing, metadata, file and thumbnail."""
from __future__ import annotations

import io
import json
import logging
import mimetypes
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import FileResponse, Response
from PIL import Image as PILImage
from pydantic import BaseModel
from sqlalchemy import delete as sa_delete
from sqlalchemy import func, select

from backend.api.deps import (AdminUser, CurrentUser, SessionDep, SettingsDep, StorageDep, image_for_user,
                              project_for_user)
from backend.api.routes.work_queue import active_lease, holder_name
from backend.api.routes.work_queue import sent_back as sent_back_condition
from backend.core.errors import BadRequest, Conflict, NotFound, PayloadTooLarge
from backend.db.models import IMAGE_STATUSES, Annotation, Image, Project, utcnow
from backend.schemas.engine import ImagePublic
from backend.services import images as image_service
from backend.services.embedding_jobs import enqueue_image_embedding
from backend.storage import BlobNotFound

log = logging.getLogger(__name__)
router = APIRouter(tags=["images"])
MAX_COCO_JSON_BYTES = 512 * 1024 * 1024


class ImportResult(BaseModel):
    created: list[ImagePublic]
    duplicates: list[ImagePublic]
    errors: list[dict[str, str]]


class ImageList(BaseModel):
    items: list[ImagePublic]
    total: int


class FolderImport(BaseModel):
    path: str


def _enqueue_embeddings(project: Project, created: list[Image]) -> None:
    """Ask the workers for the new images' embeddings; a broker outage only logs (see try_enqueue)."""
    if project.active_model_version_id is None:
        return
    for image in created:
        enqueue_image_embedding(image.id, project.active_model_version_id)


def _result(project: Project, summary: image_service.ImportSummary) -> ImportResult:
    log.info("project %s: %d images stored, %d duplicates, %d refused", project.id, len(summary.created),
             len(summary.duplicates), len(summary.errors))
    _enqueue_embeddings(project, summary.created)
    return ImportResult(created=[ImagePublic.model_validate(i) for i in summary.created],
                        duplicates=[ImagePublic.model_validate(i) for i in summary.duplicates],
                        errors=summary.errors)


def _read_limited(upload: UploadFile, limit: int) -> bytes:
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"{upload.filename}: file is over the upload limit of {limit} bytes")
    return data


def _no_constant(name: str) -> None:
    """NaN and Infinity are not JSON (Python's parser accepts them): refuse them by name."""
    raise ValueError(f"{name} is not a JSON number")


def _refuse_if_nothing_stored(summary: image_service.ImportSummary) -> None:
    """When every file was refused, the request fails with the first file's status (400 or 413)."""
    if summary.errors and not summary.created and not summary.duplicates:
        detail = "; ".join(e["detail"] for e in summary.errors)
        raise (PayloadTooLarge if summary.error_codes[0] == 413 else BadRequest)(detail)


@router.post("/projects/{project_id}/images", response_model=ImportResult, status_code=201)
def upload_images(project_id: int, session: SessionDep, settings: SettingsDep, storage: StorageDep,
                  user: CurrentUser, files: Annotated[list[UploadFile], File()]) -> ImportResult:
    """Upload many images; each file is stored, reported as a duplicate, or listed in ``errors``."""
    project = project_for_user(session, project_id, user)
    if not files:
        raise BadRequest("no files uploaded: send them as multipart field 'files'")
    entries = [(f.filename, (lambda f=f: _read_limited(f, settings.max_upload_bytes))) for f in files]
    summary = image_service.ingest_many(session, storage, settings, project, entries)
    session.commit()
    _refuse_if_nothing_stored(summary)
    return _result(project, summary)


@router.post("/projects/{project_id}/images/import-folder", response_model=ImportResult, status_code=201)
def import_folder(project_id: int, body: FolderImport, session: SessionDep, settings: SettingsDep,
                  storage: StorageDep, admin: AdminUser) -> ImportResult:
    project = project_for_user(session, project_id, admin)
    summary = image_service.import_folder(session, storage, settings, project, body.path)
    session.commit()
    _refuse_if_nothing_stored(summary)
    return _result(project, summary)


@router.post("/projects/{project_id}/import-coco", status_code=201)
def import_coco(project_id: int, session: SessionDep, settings: SettingsDep, storage: StorageDep,
                admin: AdminUser, file: Annotated[UploadFile, File()],
                images_path: Annotated[str | None, Form()] = None) -> dict:
    """Import a COCO instances JSON (all or nothing); see ``backend.services.coco_import``."""
    from backend.services.coco_import import import_coco as run_import

    project = project_for_user(session, project_id, admin)
    raw = file.file.read(MAX_COCO_JSON_BYTES + 1)
    if len(raw) > MAX_COCO_JSON_BYTES:
        raise PayloadTooLarge(f"COCO file is over {MAX_COCO_JSON_BYTES} bytes")
    try:
        coco = json.loads(raw, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise BadRequest(f"{file.filename}: not valid JSON ({exc})") from None
    except RecursionError:
        raise BadRequest(f"{file.filename}: JSON nested too deeply") from None
    try:
        result = run_import(session, storage, settings, project, coco, images_path or None, annotator_id=admin.id)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    _enqueue_embeddings(project, result.pop("_created_images", []))
    return result


@router.get("/projects/{project_id}/images", response_model=ImageList)
def list_images(project_id: int, session: SessionDep, user: CurrentUser, status: str | None = None,
                offset: Annotated[int, Query(ge=0)] = 0,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100, sent_back: bool | None = None) -> ImageList:
    """The project's images by id, optionally of one status, and (``sent_back``) only those review sent
    back (a note or rejected masks) or only the others."""
    project = project_for_user(session, project_id, user)
    query = select(Image).where(Image.project_id == project.id)
    if status:
        if status not in IMAGE_STATUSES:
            raise BadRequest(f"unknown image status {status!r}; expected one of {', '.join(IMAGE_STATUSES)}")
        query = query.where(Image.status == status)
    if sent_back is not None:
        query = query.where(sent_back_condition() if sent_back else ~sent_back_condition())
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    items = list(session.scalars(query.order_by(Image.id).offset(offset).limit(limit)))
    counts = dict(session.execute(
        select(Annotation.image_id, func.count(Annotation.id))
        .where(Annotation.image_id.in_([i.id for i in items])).group_by(Annotation.image_id)).all()) if items else {}
    return ImageList(items=[ImagePublic.model_validate(i).model_copy(update={"annotations": int(counts.get(i.id, 0))})
                            for i in items], total=int(total or 0))


@router.delete("/images/{image_id}", status_code=204)
def delete_image(image_id: int, session: SessionDep, storage: StorageDep, admin: AdminUser) -> Response:
    """Remove an image from its project with everything on it (annotations, leases, rejected proposals,
    embeddings). Refused (409) while another user holds a lease on it, or while a job or training round
    of the project runs (they read the project's images). Its stored files go too unless another image
    (of any project) has the same content."""
    image, project = image_for_user(session, image_id, admin)
    held = active_lease(session, image.id, utcnow(), other_than=admin.id)
    if held is not None:
        raise Conflict(f"image {image.id} is being annotated by {holder_name(session, held)}; "
                       "delete it once they submit or release it")
    image_service.refuse_while_model_work_runs(session, project.id, "delete images")
    files = image_service.stored_files(session, [image])
    # the database removes what hangs on the image (ON DELETE CASCADE)
    session.execute(sa_delete(Image).where(Image.id == image.id))
    session.commit()
    image_service.remove_unshared_files(session, storage, files)
    return Response(status_code=204)


@router.get("/images/{image_id}", response_model=ImagePublic)
def get_image(image_id: int, session: SessionDep, user: CurrentUser) -> Image:
    image, _ = image_for_user(session, image_id, user)
    return image


@router.get("/images/{image_id}/file")
def image_file(image_id: int, session: SessionDep, storage: StorageDep, user: CurrentUser) -> FileResponse:
    """The stored image (original bytes, or the upright PNG when EXIF rotated it)."""
    image, _ = image_for_user(session, image_id, user)
    try:
        path = storage.local_path(image.storage_key)
    except BlobNotFound:
        raise NotFound(f"the file of image {image_id} is missing from storage") from None
    media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media, headers={"Cache-Control": "private, max-age=86400, immutable"})


@router.get("/images/{image_id}/thumbnail")
def image_thumbnail(image_id: int, session: SessionDep, storage: StorageDep, user: CurrentUser) -> Response:
    """A JPEG of at most 256 px; made from the stored image when missing (e.g. rows made by tools)."""
    image, _ = image_for_user(session, image_id, user)
    key = image.thumbnail_key or image_service.keys.thumbnail_key(image.sha256)
    if not storage.exists(key):
        try:
            data = storage.get_bytes(image.storage_key)
        except BlobNotFound:
            raise NotFound(f"the file of image {image_id} is missing from storage") from None
        with PILImage.open(io.BytesIO(data)) as img:
            storage.put_bytes(key, image_service.make_thumbnail(img))
        if image.thumbnail_key != key:
            image.thumbnail_key = key
            session.commit()
    return Response(storage.get_bytes(key), media_type="image/jpeg",
                    headers={"Cache-Control": "private, max-age=86400"})
