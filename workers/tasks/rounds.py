"""The retraining round task (``maskloop.train_round``): snapshot → fine-tune → evaluate → export
→ register a new model version linked to the round. Progress and failures go to the round row;
a redelivered round resumes from the newest checkpoint in ``storage/rounds/<id>/run``."""
from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

from backend.core.config import get_settings
from backend.queue import TRAIN_ROUND
from backend.storage import keys
from workers.celery_app import app
from workers.engine import db
from workers.engine.errors import BadInputError, transient_errors
from workers.engine.models import resolve_device, resolve_spec
from workers.engine.rounds import HEAD_MIN_IMAGES, Sample, run_round
from workers.tasks.common import (MaskloopTask, engine, fail_unless_cancelled, load_image_array, rle_of, stopped,
                                  storage, t, test_delay)

logger = logging.getLogger(__name__)
TRAINABLE_SOURCES = ("manual", "assisted", "semi_auto_accepted", "automatic")
FINISHED = ("succeeded", "failed", "promoted", "discarded", "cancelled")


class RoundCancelled(Exception):
    """The admin cancelled the round while it ran (``POST /rounds/{id}/cancel``)."""


def snapshot_samples(conn: sa.Connection, rnd: Any) -> list[Sample]:
    """The round's snapshot: the project's non-rejected human-verified annotations created up to the
    round's creation (or the ids listed in its ``snapshot``/``annotation_ids`` column), per image."""
    ann, images = t("annotations"), t("images")
    m = rnd._mapping
    listed = db.load_json(m.get("snapshot")) or db.load_json(m.get("annotation_ids"))
    q = sa.select(ann).join(images, images.c.id == ann.c.image_id).where(images.c.project_id == m["project_id"])
    if isinstance(listed, dict):
        listed = listed.get("annotation_ids")
    if listed:
        q = q.where(ann.c.id.in_([int(i) for i in listed]))
    else:
        if "source" in ann.c:
            q = q.where(ann.c.source.in_(TRAINABLE_SOURCES))
        if "review_state" in ann.c:
            q = q.where(ann.c.review_state != "rejected")
            if "source" in ann.c:
                q = q.where(sa.or_(ann.c.source != "automatic", ann.c.review_state == "accepted"))
        if "created_at" in ann.c and m.get("created_at") is not None:
            q = q.where(ann.c.created_at <= m["created_at"])
    by_image: dict[int, list[dict[str, Any]]] = {}
    for a in conn.execute(q.order_by(ann.c.image_id, ann.c.id)):
        by_image.setdefault(a.image_id, []).append(rle_of(a))
    samples = []
    for image_id, masks in by_image.items():
        image = db.get_row(conn, images, image_id)
        samples.append(Sample(f"img{image_id}", image._mapping["sha256"], load_image_array(image), masks))
    return samples


def _fail(round_id: int, reason: str) -> str:
    return fail_unless_cancelled("rounds", round_id, reason)


def _is_cancelled(conn: sa.Connection, round_id: int) -> bool:
    return stopped(conn, t("rounds"), round_id)


def train_round_impl(round_id: int) -> str:
    settings = get_settings()
    rounds, mvs = t("rounds"), t("model_versions")
    with db.transaction(engine()) as conn:
        rnd = db.get_row(conn, rounds, round_id)
    if rnd is None:
        logger.warning("round %s does not exist", round_id)
        return "missing"
    m = rnd._mapping
    if m.get("status") in FINISHED or m.get("model_version_id"):
        return str(m.get("status"))
    store = storage()
    try:
        base_id = m.get("base_model_version_id")
        if base_id is None:
            with db.transaction(engine()) as conn:
                base_id = db.get_row(conn, t("projects"), m["project_id"])._mapping.get("active_model_version_id")
        if base_id is None:
            raise BadInputError("the project has no active model version to fine-tune")
        with db.transaction(engine()) as conn:
            base = db.get_row(conn, mvs, int(base_id))
            if base is None:
                raise BadInputError(f"base model version {base_id} does not exist")
            samples = snapshot_samples(conn, rnd)
            n_ann = sum(len(s.masks) for s in samples)
            if _is_cancelled(conn, round_id):
                raise RoundCancelled()
            db.update_row(conn, rounds, round_id, status="running", progress=0.0, message="preparing the snapshot",
                          base_model_version_id=int(base_id), n_annotations=n_ann, n_images=len(samples),
                          started_at=m.get("started_at") or db.now())
        spec = resolve_spec(int(base_id), storage=store, default_model_dir=settings.default_model_dir,
                            checkpoint_key=base._mapping.get("checkpoint_key"))
        params = db.load_json(m.get("params")) or db.load_json(m.get("config")) or {}
        arch = base._mapping.get("arch") or "lite"

        def progress(fraction: float, message: str) -> None:
            with db.transaction(engine()) as conn:
                if _is_cancelled(conn, round_id):  # checked at every step: the round stops there
                    raise RoundCancelled()
                db.update_row(conn, rounds, round_id, progress=round(fraction, 4), message=message)

        out = run_round(
            settings.resolved_storage_root / keys.round_dir(round_id), samples, base_checkpoint=spec.checkpoint,
            arch=arch, steps=int(m.get("steps") or params.get("steps") or 200),
            lr=float(m.get("learning_rate") or params.get("learning_rate") or 1e-4),
            freeze_image_encoder=bool(m.get("freeze_image_encoder", params.get("freeze_image_encoder", True))),
            image_size=int(params.get("image_size", 1024)), checkpoint_every=int(params.get("checkpoint_every", 10)),
            batch_size=int(params.get("batch_size", 1)), max_clicks=int(params.get("max_clicks", 20)), device=resolve_device(settings.device),
            on_progress=progress, step_delay_s=test_delay("MASKLOOP_TEST_STEP_DELAY"),
            time_budget_s=params.get("time_budget_seconds"),
            train_overrides=params.get("train_overrides"), refit_head=bool(params.get("refit_iou_head", True)),
            head_min_images=int(params.get("iou_head_min_images", HEAD_MIN_IMAGES)))
        _register(round_id, int(base_id), arch, out)
    except RoundCancelled:
        logger.info("round %s cancelled", round_id)
        return "cancelled"
    except BadInputError as exc:
        return _fail(round_id, str(exc))
    except FileNotFoundError as exc:
        return _fail(round_id, f"missing file: {exc}")
    except ValueError as exc:  # bad round parameters (TrainConfig.validate and friends)
        return _fail(round_id, f"invalid round configuration: {exc}")
    except transient_errors():
        raise  # retried with backoff by MaskloopTask
    except Exception as exc:  # noqa: BLE001 - record any other failure on the round, keep the worker up
        logger.exception("round %s crashed", round_id)
        return _fail(round_id, f"{type(exc).__name__}: {exc}")
    return "succeeded"


def _register(round_id: int, base_id: int, arch: str, out: Any) -> None:
    """Insert the new model version, copy its files into storage, link it to the round. All or
    nothing: when a copy fails the row is rolled back and the files copied so far are removed."""
    rounds, mvs = t("rounds"), t("model_versions")
    store = storage()
    metrics = {"heldout_before": out.metrics_before, "heldout_after": out.metrics_after,
               "resumed_from_step": out.resumed_from_step,
               "n_train_images": out.n_train_images, "n_heldout_images": out.n_heldout_images,
               "iou_head_fit": out.iou_head_fit}
    copied: list[str] = []
    try:
        with db.transaction(engine()) as conn:
            if _is_cancelled(conn, round_id):  # cancelled after its last step: no model version
                raise RoundCancelled()
            mv_id = db.insert_row(conn, mvs, name=f"round-{round_id}", arch=arch, parent_id=base_id,
                                  round_id=round_id, metrics=metrics)
            files = {keys.checkpoint_key(mv_id): out.model_path, keys.decoder_key(mv_id): out.decoder_path}
            for key, path in files.items():
                copied.append(key)
                store.put_file(key, path)
            db.update_row(conn, mvs, mv_id, checkpoint_key=keys.checkpoint_key(mv_id),
                          decoder_key=keys.decoder_key(mv_id))
            db.update_row(conn, rounds, round_id, status="succeeded", progress=1.0, model_version_id=mv_id,
                          metrics_before=out.metrics_before, metrics_after=out.metrics_after,
                          message=f"new model version {mv_id}", error=None, finished_at=db.now())
    except BaseException:
        for key in copied:
            store.delete(key)
        raise


@app.task(name=TRAIN_ROUND, base=MaskloopTask, bind=True)
def train_round(self: MaskloopTask, *, round_id: int) -> str:
    """Run (or resume) one retraining round."""
    return train_round_impl(int(round_id))
