"""Annotations of an image: create (idempotent by client_uid), list, update, delete, review; model
proposals rejected by an annotator (kept for undo and metrics) and restored; a reviewer's verdict on
a whole submitted image (approve, or send it back with a note)."""
from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from backend.api.deps import AdminUser, CurrentUser, SessionDep, image_for_user
from backend.core.errors import BadRequest, Conflict, NotFound
from backend.db.models import Annotation, Image, Label, ModelVersion, Project, ProposalRejection, User
from backend.schemas.annotations import (
    AnnotationCreate,
    AnnotationPublic,
    AnnotationUpdate,
    ImageReview,
    RejectionPublic,
    RejectProposals,
    Review,
)
from backend.schemas.engine import ImagePublic
from backend.services.rle import validate_rle

router = APIRouter(tags=["annotations"])


def _check_label(session, label_id: int | None, project_id: int) -> None:
    if label_id is None:
        return
    label = session.get(Label, label_id)
    if label is None or label.project_id != project_id:
        raise BadRequest(f"unknown label {label_id} for project {project_id}")


@router.get("/images/{image_id}/annotations", response_model=list[AnnotationPublic])
def list_annotations(image_id: int, session: SessionDep, user: CurrentUser) -> list[Annotation]:
    image, _ = image_for_user(session, image_id, user)
    return list(session.scalars(select(Annotation).where(Annotation.image_id == image.id).order_by(Annotation.id)))


@router.post("/images/{image_id}/annotations", response_model=AnnotationPublic, status_code=201)
def create_annotation(image_id: int, body: AnnotationCreate, session: SessionDep, user: CurrentUser,
                      response: Response) -> Annotation:
    image, project = image_for_user(session, image_id, user)
    if body.client_uid:
        existing = session.scalar(select(Annotation).where(Annotation.client_uid == body.client_uid))
        if existing is not None:
            if existing.image_id != image.id:
                raise Conflict(f"client_uid {body.client_uid!r} was already used for another image")
            response.status_code = 200  # a retry of a stored annotation: nothing new written
            return existing
    _check_label(session, body.label_id, project.id)
    if body.model_version_id is not None and session.get(ModelVersion, body.model_version_id) is None:
        raise BadRequest(f"unknown model version {body.model_version_id}")
    if body.source in ("automatic", "semi_auto") and user.role != "admin":
        raise BadRequest(f"annotators cannot create annotations with source {body.source!r}")
    rle, bbox, area = validate_rle(body.segmentation.model_dump(), image.height, image.width)
    ann = Annotation(
        image_id=image.id, label_id=body.label_id, segmentation=rle, bbox=bbox, area=area,
        stage=project.stage, source=body.source, model_version_id=body.model_version_id, annotator_id=user.id,
        seconds=body.seconds, clicks=body.clicks, predicted_iou=body.predicted_iou,
        stability_score=body.stability_score, object_score=body.object_score, review_state="pending",
        client_uid=body.client_uid,
    )
    session.add(ann)
    if image.status in ("new", "embedded"):
        image.status = "in_progress"
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        existing = session.scalar(select(Annotation).where(Annotation.client_uid == body.client_uid))
        if existing is None:
            raise
        response.status_code = 200
        return existing
    return ann


def _annotation(session, annotation_id: int, user: User) -> tuple[Annotation, Image]:
    ann = session.get(Annotation, annotation_id)
    if ann is None:
        raise NotFound(f"annotation {annotation_id} not found")
    try:
        image, _ = image_for_user(session, ann.image_id, user)
    except NotFound:
        raise NotFound(f"annotation {annotation_id} not found") from None
    return ann, image


@router.patch("/annotations/{annotation_id}", response_model=AnnotationPublic)
def update_annotation(annotation_id: int, body: AnnotationUpdate, session: SessionDep, user: CurrentUser) -> Annotation:
    ann, image = _annotation(session, annotation_id, user)
    if body.label_id is not None:
        _check_label(session, body.label_id, image.project_id)
        ann.label_id = body.label_id
    if body.segmentation is not None:
        ann.segmentation, ann.bbox, ann.area = validate_rle(body.segmentation.model_dump(), image.height, image.width)
    if body.source is not None and body.source != ann.source:
        # accepting a proposal, undoing that accept (the annotator's Z), and manual <-> assisted
        allowed = {("semi_auto", "semi_auto_accepted"), ("automatic", "semi_auto_accepted"),
                   ("semi_auto_accepted", "semi_auto"), ("semi_auto_accepted", "automatic"),
                   ("assisted", "manual"), ("manual", "assisted")}
        if (ann.source, body.source) not in allowed:
            raise BadRequest(f"cannot change source from {ann.source!r} to {body.source!r}")
        ann.source = body.source
        ann.annotator_id = user.id
    if body.review_state is not None:
        if user.role != "admin":
            raise BadRequest("only admins set review_state; annotators accept prefilled masks via source")
        ann.review_state = body.review_state
    elif body.label_id is not None or body.segmentation is not None:
        ann.review_state = "pending"  # changed (e.g. fixed after review rejected it): to be reviewed again
    if body.seconds is not None:
        ann.seconds = (ann.seconds or 0.0) + body.seconds if ann.source == "semi_auto_accepted" else body.seconds
    if body.clicks is not None:
        ann.clicks = body.clicks
    session.commit()
    return ann


@router.delete("/annotations/{annotation_id}", status_code=204)
def delete_annotation(annotation_id: int, session: SessionDep, user: CurrentUser) -> Response:
    ann, _ = _annotation(session, annotation_id, user)
    session.delete(ann)
    session.commit()
    return Response(status_code=204)


@router.post("/annotations/{annotation_id}/review", response_model=AnnotationPublic)
def review_annotation(annotation_id: int, body: Review, session: SessionDep, admin: AdminUser) -> Annotation:
    ann, image = _annotation(session, annotation_id, admin)
    ann.review_state = "accepted" if body.decision == "accept" else "rejected"
    if body.decision == "reject":
        image.status = "in_progress"  # back into the work queue
    else:
        pending = session.scalar(select(Annotation.id).where(
            Annotation.image_id == image.id, Annotation.review_state != "accepted", Annotation.id != ann.id))
        if pending is None and image.status == "done":
            image.status = "reviewed"
            image.review_note = None  # the send-back it may have had is settled
    session.commit()
    return ann


REVIEWABLE = ("done", "reviewed")


@router.post("/images/{image_id}/review", response_model=ImagePublic)
def review_image(image_id: int, body: ImageReview, session: SessionDep, admin: AdminUser) -> Image:
    """A reviewer's verdict on a submitted image. ``approve``: every annotation on it is accepted and
    the image becomes ``reviewed``. ``reject``: the annotations listed in ``rejected`` are marked
    rejected (the others keep their state; one rejected earlier and not listed is pending again) and
    the image goes back to the work queue (``in_progress``) with ``note`` for the annotators, who see
    both; a send-back says what to fix, by a note or rejected annotations or both."""
    image, _ = image_for_user(session, image_id, admin)
    if image.status not in REVIEWABLE:
        raise Conflict(f"image {image.id} is {image.status!r}: only submitted images (done or reviewed) are reviewed")
    note = (body.note or "").strip() or None
    ids = set(session.scalars(select(Annotation.id).where(Annotation.image_id == image.id)))
    if body.decision == "approve":
        if body.rejected:
            raise BadRequest("an approved image has no rejected annotations: send it back (decision reject) instead")
        session.execute(update(Annotation).where(Annotation.image_id == image.id).values(review_state="accepted"))
        image.status = "reviewed"
        image.review_note = None
    else:
        strangers = sorted(set(body.rejected) - ids)
        if strangers:
            raise BadRequest(f"annotation(s) {', '.join(map(str, strangers))} are not on image {image.id}")
        if note is None and not body.rejected:
            raise BadRequest("say what to fix: a note, rejected annotations, or both")
        rejected = set(body.rejected)
        for ann in session.scalars(select(Annotation).where(Annotation.image_id == image.id)):
            if ann.id in rejected:
                ann.review_state = "rejected"
            elif ann.review_state == "rejected":
                ann.review_state = "pending"
        image.status = "in_progress"
        image.review_note = note
    session.commit()
    return image


PROPOSAL_SOURCES = ("semi_auto", "automatic")
# the columns a rejection keeps and a restore writes back (all but the primary key)
_SNAPSHOT_COLUMNS = tuple(c.name for c in Annotation.__table__.columns if c.name != "id")


@router.post("/annotations/{annotation_id}/reject", response_model=RejectionPublic, status_code=201)
def reject_proposal(annotation_id: int, session: SessionDep, user: CurrentUser) -> ProposalRejection:
    """Reject a model proposal: it leaves the image (as a delete would) and is kept for undo and metrics."""
    ann, image = _annotation(session, annotation_id, user)
    if ann.source not in PROPOSAL_SOURCES:
        raise BadRequest(f"annotation {annotation_id} is {ann.source!r}, not a model proposal "
                         f"({' or '.join(PROPOSAL_SOURCES)}): delete it instead")
    rejection = _reject(session, ann, session.get(Project, image.project_id), user)
    session.commit()
    return rejection


def _reject(session, ann: Annotation, project: Project, user) -> ProposalRejection:
    """Move one proposal into a rejection (snapshot kept for restore); the caller commits."""
    snapshot = {}
    for name in _SNAPSHOT_COLUMNS:
        value = getattr(ann, name)
        snapshot[name] = value.isoformat() if isinstance(value, datetime) else value
    rejection = ProposalRejection(annotation_id=ann.id, image_id=ann.image_id, rejected_by=user.id,
                                  stage=project.stage, source=ann.source, snapshot=snapshot)
    session.add(rejection)
    session.delete(ann)
    return rejection


@router.post("/images/{image_id}/proposals/reject", response_model=list[RejectionPublic], status_code=201)
def reject_proposals(image_id: int, session: SessionDep, user: CurrentUser,
                     body: RejectProposals | None = None) -> list[ProposalRejection]:
    """Reject many proposals of one image at once (all of them, the listed ones, or those below an
    object score), in one transaction; each can be restored as a single rejection can."""
    body = body or RejectProposals()
    image, project = image_for_user(session, image_id, user)
    query = select(Annotation).where(Annotation.image_id == image.id, Annotation.source.in_(PROPOSAL_SOURCES))
    if body.annotation_ids is not None:
        wanted = set(body.annotation_ids)
        found = list(session.scalars(query.where(Annotation.id.in_(wanted)).order_by(Annotation.id)))
        missing = sorted(wanted - {a.id for a in found})
        if missing:
            raise BadRequest(f"not model proposals of image {image.id}: {missing[:20]}")
    else:
        found = list(session.scalars(query.order_by(Annotation.id)))
    if body.below_object_score is not None:
        found = [a for a in found if a.object_score is not None and a.object_score < body.below_object_score]
    rejections = [_reject(session, ann, project, user) for ann in found]
    session.commit()
    return rejections


@router.get("/images/{image_id}/rejections", response_model=list[RejectionPublic])
def list_rejections(image_id: int, session: SessionDep, user: CurrentUser) -> list[ProposalRejection]:
    image, _ = image_for_user(session, image_id, user)
    return list(session.scalars(select(ProposalRejection).where(ProposalRejection.image_id == image.id)
                                .order_by(ProposalRejection.id)))


@router.post("/rejections/{rejection_id}/restore", response_model=AnnotationPublic, status_code=201)
def restore_proposal(rejection_id: int, session: SessionDep, user: CurrentUser) -> Annotation:
    """Undo a rejection: the proposal comes back with its mask, scores and provenance (and its id
    unless another annotation took it meanwhile).

    Only the one who rejected it, or an admin, may restore it.
    """
    rejection = session.get(ProposalRejection, rejection_id)
    if rejection is not None:
        try:
            image_for_user(session, rejection.image_id, user)
        except NotFound:
            rejection = None
    if rejection is None or (user.role != "admin" and rejection.rejected_by != user.id):
        raise NotFound(f"rejection {rejection_id} not found (restored already, or rejected by someone else)")
    values = dict(rejection.snapshot)
    for name in ("created_at", "updated_at"):
        if isinstance(values.get(name), str):
            values[name] = datetime.fromisoformat(values[name])
    for column, table in (("label_id", Label), ("model_version_id", ModelVersion), ("annotator_id", User)):
        if values.get(column) is not None and session.get(table, values[column]) is None:
            values[column] = None  # deleted meanwhile
    ann = Annotation(**{k: v for k, v in values.items() if k in _SNAPSHOT_COLUMNS})
    # its old id when that is free; SQLite hands the highest deleted id to the next insert, so a
    # proposal rejected before anyone saved a new mask may come back under a new id
    if session.get(Annotation, rejection.annotation_id) is None:
        ann.id = rejection.annotation_id
    session.add(ann)
    session.delete(rejection)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"annotation {rejection.annotation_id} could not be restored (its client_uid is "
                       "in use)") from None
    return ann
