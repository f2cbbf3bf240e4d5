"""Embedding tasks: one image (``maskloop.embed_image``) and a project's missing ones
(``maskloop.embed_project``, encoder batches of ``MASKLOOP_EMBED_BATCH`` images, default 4).
Idempotent: an (image, model version) whose blobs and row exist is a no-op."""
from __future__ import annotations

import logging
import os
from typing import Any

import sqlalchemy as sa

from backend.queue import EMBED_IMAGE, EMBED_PROJECT
from workers.celery_app import app
from workers.engine import db
from workers.engine.embedding import (STORED_DTYPES, all_stored, compute_embeddings, embedding_keys,
                                      store_embedding)
from workers.engine.errors import BadInputError
from workers.tasks.common import (MaskloopTask, engine, load_image_array, model_for_version, pause_between_items,
                                  project_model_version, storage, t)

logger = logging.getLogger(__name__)
SCAN = 64


def _has_embedding_row(conn: sa.Connection, image_id: int, model_version_id: int) -> bool:
    """Whether the rows of every stored dtype of (image, model version) exist."""
    emb = t("embeddings")
    q = sa.select(emb.c.dtype).where(emb.c.image_id == image_id, emb.c.model_version_id == model_version_id)
    return set(STORED_DTYPES) <= {r.dtype for r in conn.execute(q)}


def _record_failure(image_id: int, exc: Exception) -> None:
    logger.error("embed image %s failed: %s", image_id, exc)
    with db.transaction(engine()) as conn:
        db.update_row(conn, t("images"), image_id, error=str(exc))


def _record(image_id: int, model_version_id: int, sha: str) -> None:
    """Insert the missing ``embeddings`` rows (one per dtype) and mark the image embedded.

    Another worker recording the same embedding concurrently is fine (unique constraint)."""
    try:
        _insert_rows(image_id, model_version_id, sha)
    except sa.exc.IntegrityError:
        logger.info("embedding of image %s / model %s recorded concurrently", image_id, model_version_id)
        _insert_rows(image_id, model_version_id, sha)


def _insert_rows(image_id: int, model_version_id: int, sha: str) -> None:
    emb, images = t("embeddings"), t("images")
    with db.transaction(engine()) as conn:
        have = {r.dtype for r in conn.execute(sa.select(emb.c.dtype).where(
            emb.c.image_id == image_id, emb.c.model_version_id == model_version_id))}
        for dtype, key in embedding_keys(sha, model_version_id).items():
            if dtype not in have:
                db.insert_row(conn, emb, image_id=image_id, model_version_id=model_version_id, dtype=dtype,
                              storage_key=key)
        conn.execute(sa.update(images).where(images.c.id == image_id, images.c.status == "new")
                     .values(status="embedded"))
        # an earlier attempt's reason is obsolete once the embedding is stored
        conn.execute(sa.update(images).where(images.c.id == image_id, images.c.error.is_not(None)).values(error=None))


def embed_many(image_ids: list[int], model_version_id: int) -> dict[str, int]:
    """Embed ``image_ids`` with one model version in one encoder batch.

    Returns counts of ``done``, ``skipped`` (already embedded) and ``failed`` images. Bad input
    (missing/corrupt/too large image, model that does not load) is recorded on the image row's
    ``error`` column and logged, never raised.
    """
    counts = {"done": 0, "skipped": 0, "failed": 0}
    store = storage()
    todo: list[tuple[Any, Any]] = []
    for image_id in image_ids:
        with db.transaction(engine()) as conn:
            image = db.get_row(conn, t("images"), image_id)
            has_row = image is not None and _has_embedding_row(conn, image_id, model_version_id)
        if image is None:
            logger.warning("embed: image %s does not exist", image_id)
            counts["failed"] += 1
            continue
        if all_stored(store, image._mapping["sha256"], model_version_id):
            if has_row:
                counts["skipped"] += 1
            else:  # blobs written, row not yet: finish the bookkeeping only
                _record(image_id, model_version_id, image._mapping["sha256"])
                counts["done"] += 1
            continue
        try:
            todo.append((image, load_image_array(image)))
        except BadInputError as exc:
            _record_failure(image_id, exc)
            counts["failed"] += 1
    if not todo:
        return counts
    try:
        model = model_for_version(model_version_id)
    except BadInputError as exc:
        for image, _ in todo:
            _record_failure(image.id, exc)
        counts["failed"] += len(todo)
        return counts
    results = compute_embeddings(model, [array for _, array in todo])
    pause_between_items()
    for (image, _), (emb, orig_size, input_size) in zip(todo, results):
        sha = image._mapping["sha256"]
        store_embedding(store, emb, sha256=sha, model_version_id=model_version_id, orig_size=orig_size,
                        input_size=input_size)
        _record(image.id, model_version_id, sha)
        counts["done"] += 1
    return counts


def embed_one(image_id: int, model_version_id: int) -> str:
    """Embed one image; returns ``"done"``, ``"skipped"`` or ``"failed"``."""
    counts = embed_many([image_id], model_version_id)
    return next(k for k, v in counts.items() if v)


@app.task(name=EMBED_IMAGE, base=MaskloopTask, bind=True)
def embed_image(self: MaskloopTask, *, image_id: int, model_version_id: int) -> str:
    """Compute and store the embedding of ``image_id`` for ``model_version_id``."""
    return embed_one(int(image_id), int(model_version_id))


@app.task(name=EMBED_PROJECT, base=MaskloopTask, bind=True)
def embed_project(self: MaskloopTask, *, project_id: int) -> dict[str, int]:
    """Embed every image of the project lacking an embedding of its active model version, in
    encoder batches, keeping the model warm; one image's failure does not stop the others."""
    counts = {"done": 0, "skipped": 0, "failed": 0}
    try:
        mv = project_model_version(int(project_id))
    except BadInputError as exc:
        logger.error("embed_project %s: %s", project_id, exc)
        return counts
    batch = max(1, int(os.environ.get("MASKLOOP_EMBED_BATCH", "4")))
    images, emb = t("images"), t("embeddings")
    last_id = 0
    while True:
        have = sa.select(emb.c.image_id).where(emb.c.model_version_id == mv)
        q = (sa.select(images.c.id).where(images.c.project_id == project_id, images.c.id > last_id,
                                          images.c.id.not_in(have)).order_by(images.c.id).limit(SCAN))
        with db.transaction(engine()) as conn:
            ids = [r.id for r in conn.execute(q)]
        if not ids:
            return counts
        for start in range(0, len(ids), batch):
            for key, value in embed_many(ids[start:start + batch], mv).items():
                counts[key] += value
        last_id = ids[-1]
