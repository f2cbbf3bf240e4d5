"""Stage 2 prefill (``maskloop.prefill_semi_auto``) and stage 3 batch (``maskloop.automatic_batch``).

Both walk the project's images in id order as a resumable batch: each image's annotations and
the job's progress are written in one transaction, and the ids of finished (and failed) images
are kept in the job row, so a redelivered task skips them and never duplicates annotations. One
image's failure is recorded in the job and the batch goes on.
"""
from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from celery.exceptions import SoftTimeLimitExceeded

from backend.queue import AUTOMATIC_BATCH, PREFILL_SEMI_AUTO
from workers.celery_app import app
from workers.engine import db
from workers.engine.automatic import (DEFAULT_MAX_OVERLAP, FULL_PARAMS, STRICT_PARAMS, generate_masks, job_refine,
                                      keep_new_masks, merged_params, params_for_model)
from workers.engine.errors import BadInputError, transient_errors
from workers.tasks.common import (MaskloopTask, engine, fail_unless_cancelled, load_image_array, model_for_version,
                                  pause_between_items, project_model_version, rle_of, stopped, t)

logger = logging.getLogger(__name__)
STATE_COLUMNS = ("state", "result", "details")
FINISHED = ("succeeded", "failed", "cancelled")


def _state_column(jobs: sa.Table) -> str | None:
    return next((c for c in STATE_COLUMNS if c in jobs.c), None)


def _job_state(jobs: sa.Table, job: Any) -> dict[str, Any]:
    col = _state_column(jobs)
    state = (db.load_json(job._mapping.get(col)) if col else None) or {}
    return {"done": list(state.get("done", [])), "failed": dict(state.get("failed", {})),
            "masks": int(state.get("masks", 0))}


def _save(conn: sa.Connection, jobs: sa.Table, job_id: int, state: dict[str, Any], total: int, **extra: Any) -> None:
    finished = len(state["done"]) + len(state["failed"])
    values: dict[str, Any] = {"done": finished, "total": total,
                              "progress": (finished / total) if total else 1.0, **extra}
    col = _state_column(jobs)
    if col:
        values[col] = state
    db.update_row(conn, jobs, job_id, **values)


def _fail(job_id: int, reason: str) -> str:
    return fail_unless_cancelled("jobs", job_id, reason)


def _check_label(conn: sa.Connection, label_id: int | None) -> None:
    if label_id is not None and db.get_row(conn, t("labels"), label_id) is None:
        raise BadInputError(f"label {label_id} no longer exists (deleted after the job was started); "
                            "start the job again with another label")


def _label_for(conn: sa.Connection, project_id: int, params: dict[str, Any]) -> int | None:
    if params.get("label_id") is not None:
        return int(params["label_id"])
    ann = t("annotations")
    if "label_id" in ann.c and ann.c.label_id.nullable:
        return None
    labels = t("labels")
    row = conn.execute(sa.select(labels.c.id).where(labels.c.project_id == project_id).order_by(labels.c.id)).first()
    return row.id if row else None


def _annotation_values(rec: dict[str, Any], *, image_id: int, job_id: int, model_version_id: int,
                       label_id: int | None, source: str, stage: str) -> dict[str, Any]:
    return {"image_id": image_id, "label_id": label_id, "segmentation": rec["segmentation"],
            "bbox": [float(v) for v in rec["bbox"]], "area": float(rec["area"]), "source": source, "stage": stage,
            "model_version_id": model_version_id, "predicted_iou": float(rec["predicted_iou"]),
            "stability_score": float(rec["stability_score"]), "point_coords": rec.get("point_coords"),
            "object_score": None if rec.get("object_score") is None else float(rec["object_score"]),
            "crop_box": rec.get("crop_box"), "review_state": "pending" if source == "semi_auto" else "accepted",
            "job_id": job_id}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _nothing_passed(params: dict[str, Any]) -> str:
    """Why a job that ran made no mask, in the admin's words: the bars its masks had to pass."""
    bars = [f"predicted IoU ≥ {params['pred_iou_thresh']:g}", f"stability ≥ {params['stability_score_thresh']:g}"]
    if params.get("min_object_score"):
        bars.append(f"object score ≥ {params['min_object_score']:g}")
    return (f"no mask passed the filters ({', '.join(bars)}); lower them in the job's settings "
            "(min predicted IoU, min object score) for more, less certain proposals")


def run_batch(job_id: int, **kwargs: Any) -> str:
    """Run (or resume) one automatic job; returns its final status. A failure that is not one image's
    (a label deleted meanwhile, a row the database refuses) fails the job with its reason: it never
    stays ``running``. Transient errors are raised (retried)."""
    try:
        return _run_batch(job_id, **kwargs)
    except transient_errors():
        raise
    except Exception as exc:  # noqa: BLE001 - record it on the job, keep the worker up
        if not isinstance(exc, BadInputError):
            logger.exception("job %s crashed", job_id)
        return _fail(job_id, _reason(exc))


def _reason(exc: Exception) -> str:
    """A failure in the admin's words: a database error without its statement and parameters (masks)."""
    if isinstance(exc, BadInputError):
        return str(exc)
    if isinstance(exc, SoftTimeLimitExceeded):
        return ("the job ran past the worker's time limit (MASKLOOP_TASK_SOFT_TIME_LIMIT); the images done so far "
                "keep their masks")
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        return f"{type(exc).__name__}: {exc.orig}"
    return f"{type(exc).__name__}: {exc}"


def _run_batch(job_id: int, *, source: str, stage: str, base_params: dict[str, Any], filter_existing: bool) -> str:
    jobs, images, ann = t("jobs"), t("images"), t("annotations")
    with db.transaction(engine()) as conn:
        job = db.get_row(conn, jobs, job_id)
    if job is None:
        logger.warning("job %s does not exist", job_id)
        return "missing"
    if job._mapping.get("status") in FINISHED:
        return str(job._mapping["status"])
    project_id = int(job._mapping["project_id"])
    state = _job_state(jobs, job)
    try:
        overrides = db.load_json(job._mapping.get("params")) or {}
        merged_params(base_params, overrides)  # unknown names (and a bad "refine") fail before the model loads
        refine = job_refine(overrides)
        max_overlap = float(overrides.get("max_overlap", DEFAULT_MAX_OVERLAP))
        mv = project_model_version(project_id)
        model = model_for_version(mv)
        params = merged_params(params_for_model(base_params, model, stage, refine is not None), overrides)
    except (BadInputError, ValueError) as exc:
        return _fail(job_id, str(exc))
    with db.transaction(engine()) as conn:
        q = sa.select(images.c.id).where(images.c.project_id == project_id).order_by(images.c.id)
        if overrides.get("image_ids"):
            q = q.where(images.c.id.in_([int(i) for i in overrides["image_ids"]]))
        ids = [r.id for r in conn.execute(q)]
        if stopped(conn, jobs, job_id):
            return "cancelled"
        if not ids and overrides.get("image_ids"):
            raise BadInputError(f"none of the images {list(overrides['image_ids'])} is in project {project_id} "
                                "(deleted since the job was started?)")
        if not ids:
            raise BadInputError(f"project {project_id} has no images to segment: upload images first")
        label_id = _label_for(conn, project_id, overrides)
        _check_label(conn, label_id)
        _save(conn, jobs, job_id, state, len(ids), status="running", started_at=job._mapping.get("started_at") or db.now())
    skip = set(state["done"]) | {int(k) for k in state["failed"]}
    for image_id in ids:
        if image_id in skip:
            continue
        with db.transaction(engine()) as conn:
            if stopped(conn, jobs, job_id):  # an admin cancelled it: stop before the next image
                logger.info("job %s cancelled after %d images", job_id, len(state["done"]))
                return "cancelled"
            image = db.get_row(conn, images, image_id)
            existing_rows = list(conn.execute(sa.select(ann).where(ann.c.image_id == image_id)))
        if "job_id" in ann.c and any(a._mapping["job_id"] == job_id for a in existing_rows):
            state["done"].append(image_id)  # its annotations of this job are already committed
            continue
        existing = [rle_of(a) for a in existing_rows]
        try:
            records = generate_masks(model, load_image_array(image), params, refine)
            if filter_existing:
                records = keep_new_masks(records, existing, max_overlap=max_overlap,
                                         min_predicted_iou=params["pred_iou_thresh"],
                                         min_stability=params["stability_score_thresh"])
        except (SoftTimeLimitExceeded, *transient_errors()):
            raise  # the worker's time limit ends the job (below), a transient error retries it
        except Exception as exc:  # noqa: BLE001 - one image's failure must not stop the batch
            logger.error("job %s: image %s failed: %s", job_id, image_id, exc)
            state["failed"][str(image_id)] = f"{type(exc).__name__}: {exc}" if not isinstance(exc, BadInputError) else str(exc)
            with db.transaction(engine()) as conn:
                _save(conn, jobs, job_id, state, len(ids), message=f"image {image_id} failed: {exc}")
            continue
        pause_between_items()
        with db.transaction(engine()) as conn:
            if stopped(conn, jobs, job_id):  # cancelled while this image was segmented: not stored
                return "cancelled"
            _check_label(conn, label_id)
            for rec in records:
                db.insert_row(conn, ann, **_annotation_values(rec, image_id=image_id, job_id=job_id, model_version_id=mv,
                                                               label_id=label_id, source=source, stage=stage))
            state["done"].append(image_id)
            state["masks"] += len(records)
            _save(conn, jobs, job_id, state, len(ids), message=f"image {image_id}: {len(records)} masks")
    message = (f"{_count(len(state['done']), 'image')}, {_count(state['masks'], 'mask')}"
               + (f", {_count(len(state['failed']), 'image')} failed" if state["failed"] else ""))
    if state["done"] and not state["masks"]:
        message += "; " + _nothing_passed(params)
    failed_all = bool(ids) and not state["done"]
    with db.transaction(engine()) as conn:
        if stopped(conn, jobs, job_id):
            return "cancelled"
        _save(conn, jobs, job_id, state, len(ids), status="failed" if failed_all else "succeeded", message=message,
              error="every image failed" if failed_all else None, finished_at=db.now())
    return "failed" if failed_all else "succeeded"


@app.task(name=PREFILL_SEMI_AUTO, base=MaskloopTask, bind=True)
def prefill_semi_auto(self: MaskloopTask, *, job_id: int) -> str:
    """Stage 2: confident masks not overlapping existing annotations, source ``semi_auto``, pending."""
    return run_batch(int(job_id), source="semi_auto", stage="semi_automatic", base_params=STRICT_PARAMS,
                     filter_existing=True)


@app.task(name=AUTOMATIC_BATCH, base=MaskloopTask, bind=True)
def automatic_batch(self: MaskloopTask, *, job_id: int) -> str:
    """Stage 3: the full automatic generator over every image, source ``automatic``."""
    return run_batch(int(job_id), source="automatic", stage="fully_automatic", base_params=FULL_PARAMS,
                     filter_existing=False)
