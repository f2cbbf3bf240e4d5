"""Retraining rounds and worker jobs (prefill, automatic batches)."""
from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import and_, or_, select

from backend import queue
from backend.api.deps import AdminUser, CurrentUser, SessionDep, project_for_user
from backend.core.errors import BadRequest, Conflict, NotFound
from backend.db.models import Annotation, Image, Job, Round, utcnow
from backend.schemas.engine import JobCreate, JobPublic, RoundCreate, RoundPublic
from backend.services.embedding_jobs import enqueue_project_embeddings, try_enqueue

router = APIRouter(tags=["rounds and jobs"])
HUMAN_SOURCES = ("manual", "assisted", "semi_auto_accepted")


def eligible_annotation_ids(session, project_id: int) -> list[int]:
    """Human-made or human-verified masks that are not rejected: the training data of a round."""
    query = (
        select(Annotation.id).join(Image, Image.id == Annotation.image_id)
        .where(Image.project_id == project_id, Annotation.review_state != "rejected",
               or_(Annotation.source.in_(HUMAN_SOURCES),
                   and_(Annotation.source.in_(("automatic", "semi_auto")), Annotation.review_state == "accepted")))
        .order_by(Annotation.id)
    )
    return list(session.scalars(query))


@router.post("/projects/{project_id}/rounds", response_model=RoundPublic, status_code=201)
def start_round(project_id: int, body: RoundCreate, session: SessionDep, admin: AdminUser) -> Round:
    project = project_for_user(session, project_id, admin)
    running = session.scalar(select(Round.id).where(Round.project_id == project.id,
                                                    Round.status.in_(("queued", "running"))))
    if running is not None:
        raise Conflict(f"round {running} of this project is still running")
    if project.active_model_version_id is None:
        raise BadRequest("the project has no active model version to fine-tune")
    ids = eligible_annotation_ids(session, project.id)
    if not ids:
        raise BadRequest("no accepted annotations to train on: annotate some images first")
    n_images = len(set(session.scalars(select(Annotation.image_id).where(Annotation.id.in_(ids)))))
    rnd = Round(project_id=project.id, status="queued", snapshot=ids, n_annotations=len(ids), n_images=n_images,
                base_model_version_id=project.active_model_version_id,
                params=body.model_dump(exclude_none=True), message="queued")
    session.add(rnd)
    session.commit()
    task_id = try_enqueue(queue.TRAIN_ROUND, round_id=rnd.id)
    if task_id is None:
        rnd.status, rnd.error = "failed", "the task queue is unreachable; start the round again later"
    rnd.celery_task_id = task_id
    session.commit()
    return rnd


@router.get("/projects/{project_id}/rounds", response_model=list[RoundPublic])
def list_rounds(project_id: int, session: SessionDep, user: CurrentUser) -> list[Round]:
    project = project_for_user(session, project_id, user)
    return list(session.scalars(select(Round).where(Round.project_id == project.id).order_by(Round.id)))


def _round(session, round_id: int, user) -> Round:
    rnd = session.get(Round, round_id)
    if rnd is None:
        raise NotFound(f"round {round_id} not found")
    try:
        project_for_user(session, rnd.project_id, user)
    except NotFound:
        raise NotFound(f"round {round_id} not found") from None
    return rnd


@router.get("/rounds/{round_id}", response_model=RoundPublic)
def get_round(round_id: int, session: SessionDep, user: CurrentUser) -> Round:
    return _round(session, round_id, user)


@router.post("/rounds/{round_id}/promote", response_model=RoundPublic)
def promote_round(round_id: int, session: SessionDep, admin: AdminUser) -> Round:
    rnd = _round(session, round_id, admin)
    if rnd.status != "succeeded" or rnd.model_version_id is None:
        raise Conflict(f"round {round_id} is {rnd.status}; only a succeeded round can be promoted")
    project = project_for_user(session, rnd.project_id, admin)
    project.active_model_version_id = rnd.model_version_id
    rnd.status = "promoted"
    session.commit()
    enqueue_project_embeddings(project.id)
    return rnd


@router.post("/rounds/{round_id}/discard", response_model=RoundPublic)
def discard_round(round_id: int, session: SessionDep, admin: AdminUser) -> Round:
    rnd = _round(session, round_id, admin)
    if rnd.status not in ("succeeded", "failed"):
        raise Conflict(f"round {round_id} is {rnd.status}; only a finished round can be discarded")
    rnd.status = "discarded"
    rnd.finished_at = rnd.finished_at or utcnow()
    session.commit()
    return rnd


@router.post("/rounds/{round_id}/cancel", response_model=RoundPublic)
def cancel_round(round_id: int, session: SessionDep, admin: AdminUser) -> Round:
    """Stop a queued or running round: a worker that has not started it skips it, one that trains it
    stops at its next step and registers no model. 409 for a round that has already ended."""
    rnd = _round(session, round_id, admin)
    _mark_cancelled(rnd, f"round {round_id}", admin)
    session.commit()
    return rnd


def _mark_cancelled(row: Round | Job, what: str, admin) -> None:
    """A queued or running round or job becomes ``cancelled`` by ``admin``; 409 when it has ended."""
    if row.status not in ("queued", "running"):
        raise Conflict(f"{what} has already ended ({row.status})")
    row.status, row.error = "cancelled", f"cancelled by {admin.username}"
    row.message, row.finished_at = f"cancelled by {admin.username}", utcnow()


def _start_job(session, project_id: int, kind: str, task: str, body: JobCreate, admin) -> Job:
    project = project_for_user(session, project_id, admin)
    if project.active_model_version_id is None:
        raise BadRequest("the project has no active model version")
    if body.label_id is not None and not any(lab.id == body.label_id for lab in project.labels):
        raise BadRequest(f"unknown label {body.label_id} for project {project.id}")
    if body.image_ids:
        found = set(session.scalars(select(Image.id).where(Image.project_id == project.id,
                                                           Image.id.in_(body.image_ids))))
        missing = sorted(set(body.image_ids) - found)
        if missing:
            raise BadRequest(f"images not in project {project.id}: {missing[:10]}")
    job = Job(kind=kind, project_id=project.id, status="queued", params=body.model_dump(exclude_none=True),
              created_by=admin.id, message="queued")
    session.add(job)
    session.commit()
    task_id = try_enqueue(task, job_id=job.id)
    if task_id is None:
        job.status, job.error = "failed", "the task queue is unreachable; start the job again later"
    job.celery_task_id = task_id
    session.commit()
    return job


@router.post("/projects/{project_id}/prefill", response_model=JobPublic, status_code=201)
def start_prefill(project_id: int, session: SessionDep, admin: AdminUser, body: JobCreate | None = None) -> Job:
    return _start_job(session, project_id, "prefill", queue.PREFILL_SEMI_AUTO, body or JobCreate(), admin)


@router.post("/projects/{project_id}/automatic", response_model=JobPublic, status_code=201)
def start_automatic(project_id: int, session: SessionDep, admin: AdminUser, body: JobCreate | None = None) -> Job:
    return _start_job(session, project_id, "automatic", queue.AUTOMATIC_BATCH, body or JobCreate(), admin)


@router.get("/jobs/{job_id}", response_model=JobPublic)
def get_job(job_id: int, session: SessionDep, user: CurrentUser) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    if job.project_id is not None:
        try:
            project_for_user(session, job.project_id, user)
        except NotFound:
            raise NotFound(f"job {job_id} not found") from None
    elif user.role != "admin":
        raise NotFound(f"job {job_id} not found")
    return job


@router.post("/jobs/{job_id}/cancel", response_model=JobPublic)
def cancel_job(job_id: int, session: SessionDep, admin: AdminUser) -> Job:
    """Stop a queued or running job: a worker that has not started it skips it, one that runs it stops
    before its next image (what it stored so far stays). 409 for a job that has already ended."""
    job = get_job(job_id, session, admin)
    _mark_cancelled(job, f"job {job_id}", admin)
    session.commit()
    return job


@router.get("/projects/{project_id}/jobs", response_model=list[JobPublic])
def list_jobs(project_id: int, session: SessionDep, user: CurrentUser) -> list[Job]:
    project = project_for_user(session, project_id, user)
    return list(session.scalars(select(Job).where(Job.project_id == project.id).order_by(Job.id)))
