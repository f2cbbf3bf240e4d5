"""Embeddings, model versions and their decoders."""
from __future__ import annotations

import gzip

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from sqlalchemy import select

from backend.api.deps import CurrentUser, SessionDep, SettingsDep, StorageDep, image_for_user
from backend.core.config import Settings
from backend.core.errors import NotFound, Unprocessable
from backend.db.models import ModelVersion
from backend.schemas.engine import ModelVersionPublic
from backend.services.embedding_jobs import enqueue_image_embedding
from backend.services.mask_refine import settings_refine
from backend.storage import BlobNotFound, keys

router = APIRouter(tags=["models"])
RETRY_AFTER_SECONDS = 2


@router.get("/images/{image_id}/embedding",
            responses={200: {"content": {"application/octet-stream": {}}},
                       202: {"description": "being computed; retry after Retry-After seconds"}})
def get_embedding(image_id: int, request: Request, session: SessionDep, storage: StorageDep, user: CurrentUser,
                  dtype: str = Query("float16", pattern="^(float16|int8)$")) -> Response:
    image, project = image_for_user(session, image_id, user)
    mv = project.active_model_version_id
    if mv is None:
        raise Unprocessable(f"project {project.id} has no active model version, so no embedding can be computed")
    key = keys.embedding_key(image.sha256, mv, dtype)
    if not storage.exists(key):
        if image.error:
            raise Unprocessable(f"the embedding of image {image.id} failed: {image.error}")
        enqueue_image_embedding(image.id, mv)
        return JSONResponse({"status": "pending", "retry_after": RETRY_AFTER_SECONDS}, status_code=202,
                            headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    etag = f'"{image.sha256[:16]}-{mv}-{dtype}"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=31536000, immutable",
               "X-Model-Version": str(mv), "Vary": "Accept-Encoding"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    data = storage.get_bytes(key)
    # float16 embeddings shrink a little with gzip; int8 ones hardly. Compress only when it pays.
    if "gzip" in request.headers.get("accept-encoding", "") and dtype == "float16":
        packed = gzip.compress(data, compresslevel=1)
        if len(packed) < 0.9 * len(data):
            headers["Content-Encoding"] = "gzip"
            data = packed
    return Response(data, media_type="application/octet-stream", headers=headers)


def _public(mv: ModelVersion, settings: Settings) -> ModelVersionPublic:
    out = ModelVersionPublic.model_validate(mv)
    out.has_multimask_decoder = bool(mv.decoder_multimask_key)
    out.refine = settings_refine(settings).to_dict()
    return out


@router.get("/models", response_model=list[ModelVersionPublic])
def list_models(session: SessionDep, settings: SettingsDep, _: CurrentUser) -> list[ModelVersionPublic]:
    return [_public(mv, settings) for mv in session.scalars(select(ModelVersion).order_by(ModelVersion.id))]


@router.get("/models/{model_version_id}", response_model=ModelVersionPublic)
def get_model(model_version_id: int, session: SessionDep, settings: SettingsDep, _: CurrentUser) -> ModelVersionPublic:
    mv = session.get(ModelVersion, model_version_id)
    if mv is None:
        raise NotFound(f"model version {model_version_id} not found")
    return _public(mv, settings)


def _decoder(session, storage, model_version_id: int, multimask: bool) -> FileResponse:
    mv = session.get(ModelVersion, model_version_id)
    if mv is None:
        raise NotFound(f"model version {model_version_id} not found")
    key = mv.decoder_multimask_key if multimask else mv.decoder_key
    if not key:
        raise NotFound(f"model version {model_version_id} has no {'multimask ' if multimask else ''}decoder")
    try:
        path = storage.local_path(key)
    except BlobNotFound:
        raise NotFound(f"the decoder file of model version {model_version_id} is missing") from None
    return FileResponse(path, media_type="application/octet-stream",
                        headers={"Cache-Control": "public, max-age=31536000, immutable"})


# Decoders are public weights of a model version, fetched by the page's Web Worker; they carry no
# project data, so they need no token (a browser fetch from a worker cannot always add one).
@router.get("/models/{model_version_id}/decoder.onnx", response_class=FileResponse)
def get_decoder(model_version_id: int, session: SessionDep, storage: StorageDep) -> FileResponse:
    return _decoder(session, storage, model_version_id, multimask=False)


@router.get("/models/{model_version_id}/decoder_multimask.onnx", response_class=FileResponse)
def get_multimask_decoder(model_version_id: int, session: SessionDep, storage: StorageDep) -> FileResponse:
    return _decoder(session, storage, model_version_id, multimask=True)
