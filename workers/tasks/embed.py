"""Embedding tasks: one image (``maskloop.embed_image``) and a project's missing ones
(``maskloop.embed_project``). Idempotent: an (image, model version) already stored is a no-op."""
from __future__ import annotations

import logging

import sqlalchemy as sa

from backend.queue import EMBED_IMAGE, EMBED_PROJECT
from workers.celery_app import app
from workers.engine import db
from workers.engine.embedding import all_stored, compute_embedding, embedding_keys, store_embedding
from workers.engine.errors import BadInputError
from workers.tasks.common import (MaskloopTask, engine, load_image_array, model_for_version, pause_between_items,
                                  project_model_version, storage, t)

logger = logging.getLogger(__name__)
BATCH = 16


def _has_embedding_row(conn: sa.Connection, image_id: int, model_version_id: int) -> bool:
    emb = t("embeddings")
    q = sa.select(emb.c.id).where(emb.c.image_id == image_id, emb.c.model_version_id == model_version_id)
    return conn.execute(q.limit(1)).first() is not None


def embed_one(image_id: int, model_version_id: int) -> str:
    """Embed one image with one model version; returns ``"done"``, ``"skipped"`` or ``"failed"``.

    Bad input (missing/corrupt/too large image, model that does not load) is recorded on the
    image row's ``error`` column when it has one and logged; it is not raised.
    """
    images = t("images")
    with db.transaction(engine()) as conn:
        image = db.get_row(conn, images, image_id)
        if image is None:
            logger.warning("embed: image %s does not exist", image_id)
            return "failed"
        done_before = _has_embedding_row(conn, image_id, model_version_id)
    sha = image._mapping["sha256"]
    store = storage()
    if done_before and all_stored(store, sha, model_version_id):
        return "skipped"
    try:
        if not all_stored(store, sha, model_version_id):
            array = load_image_array(image)
            model = model_for_version(model_version_id)
            emb, orig_size, input_size = compute_embedding(model, array)
            pause_between_items()
            store_embedding(store, emb, sha256=sha, model_version_id=model_version_id,
                            orig_size=orig_size, input_size=input_size)
    except BadInputError as exc:
        logger.error("embed image %s failed: %s", image_id, exc)
        with db.transaction(engine()) as conn:
            db.update_row(conn, images, image_id, error=str(exc))
        return "failed"
    _record(image_id, model_version_id, sha)
    return "done"


def _record(image_id: int, model_version_id: int, sha: str) -> None:
    emb_keys = embedding_keys(sha, model_version_id)
    images = t("images")
    with db.transaction(engine()) as conn:
        if not _has_embedding_row(conn, image_id, model_version_id):
            db.insert_row(conn, t("embeddings"), image_id=image_id, model_version_id=model_version_id,
                          key=emb_keys["float16"], storage_key=emb_keys["float16"], float16_key=emb_keys["float16"],
                          int8_key=emb_keys["int8"], dtype="float16", dtypes=list(emb_keys),
                          keys=emb_keys, sha256=sha, status="ready")
        conn.execute(sa.update(images).where(images.c.id == image_id, images.c.status == "new")
                     .values(status="embedded"))


@app.task(name=EMBED_IMAGE, base=MaskloopTask, bind=True)
def embed_image(self: MaskloopTask, *, image_id: int, model_version_id: int) -> str:
    """Compute and store the embedding of ``image_id`` for ``model_version_id``."""
    return embed_one(int(image_id), int(model_version_id))


@app.task(name=EMBED_PROJECT, base=MaskloopTask, bind=True)
def embed_project(self: MaskloopTask, *, project_id: int) -> dict[str, int]:
    """Embed every image of the project that lacks an embedding of its active model version,
    in batches of ``BATCH`` ids, keeping the model warm; one image's failure does not stop it."""
    try:
        mv = project_model_version(int(project_id))
    except BadInputError as exc:
        logger.error("embed_project %s: %s", project_id, exc)
        return {"done": 0, "skipped": 0, "failed": 0}
    images, emb = t("images"), t("embeddings")
    counts = {"done": 0, "skipped": 0, "failed": 0}
    last_id = 0
    while True:
        have = sa.select(emb.c.image_id).where(emb.c.model_version_id == mv)
        q = (sa.select(images.c.id).where(images.c.project_id == project_id, images.c.id > last_id,
                                          images.c.id.not_in(have)).order_by(images.c.id).limit(BATCH))
        with db.transaction(engine()) as conn:
            ids = [r.id for r in conn.execute(q)]
        if not ids:
            return counts
        for image_id in ids:
            counts[embed_one(image_id, mv)] += 1
        last_id = ids[-1]
