"""The annotators' work queue: leases on images so two annotators never get the same image."""
from __future__ import annotations

import threading
from datetime import timedelta

from fastapi import APIRouter, Response
from sqlalchemy import and_, case, exists, or_, select

from backend.api.deps import CurrentUser, SessionDep, SettingsDep, image_for_user, project_for_user
from backend.core.errors import Conflict, NotFound
from backend.db.models import Annotation, Image, Lease, User, utcnow
from backend.schemas.engine import ImagePublic, LeasePublic

router = APIRouter(tags=["work queue"])
# SQLite has no SELECT ... FOR UPDATE SKIP LOCKED; the embedded server is one process, so a lock
# serialises leasing there. PostgreSQL uses row locks and works across API processes.
_sqlite_lock = threading.Lock()
OPEN_STATUSES = ("new", "embedded", "in_progress")


def sent_back():
    """SQL condition: review sent the image back (with a note, or with masks it rejected)."""
    rejected = exists().where(and_(Annotation.image_id == Image.id, Annotation.review_state == "rejected"))
    return or_(Image.review_note.is_not(None), rejected)


def _lease_next(session, project_id: int, user: User, seconds: int) -> Lease | None:
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        # One user's requests take turns (a double press of "next" gets one lease, not two); other
        # users are not held up by this lock.
        session.execute(select(User.id).where(User.id == user.id).with_for_update())
    now = utcnow()
    active = exists().where(and_(Lease.image_id == Image.id, Lease.state == "active", Lease.expires_at > now))
    # The user's own unexpired lease on this project comes back first (a reload resumes it).
    own = session.scalar(
        select(Lease).join(Image, Image.id == Lease.image_id)
        .where(Image.project_id == project_id, Lease.user_id == user.id, Lease.state == "active",
               Lease.expires_at > now).order_by(Lease.id))
    if own is not None:
        return own
    # images this user skipped go to the other annotators
    skipped = exists().where(and_(Lease.image_id == Image.id, Lease.user_id == user.id, Lease.state == "skipped"))
    query = (
        select(Image).where(Image.project_id == project_id, Image.status.in_(OPEN_STATUSES), ~active, ~skipped)
        # images review sent back first (rework before new work), then embedded ones (their
        # embedding is ready), then in order of upload; images whose embedding failed (a broken file:
        # the annotator can only skip them) last, so that every annotator meets them only when nothing
        # else is left (not excluded: when the model fails to load, every image has an error)
        .order_by(case((sent_back(), 0), (Image.error.is_not(None), 4), (Image.status == "embedded", 1),
                       (Image.status == "in_progress", 2), else_=3),
                  Image.id)
        .limit(1)
    )
    # SQLite: the caller holds the process-wide lock
    image = _lock_unleased_image(session, query, now) if postgres else session.scalar(query)
    if image is None:
        return None
    lease = Lease(image_id=image.id, user_id=user.id, state="active", expires_at=now + timedelta(seconds=seconds))
    session.add(lease)
    return lease


def _lock_unleased_image(session, query, now) -> Image | None:
    """PostgreSQL: lock the first free image with FOR UPDATE SKIP LOCKED, then make sure it is
    still free. Under READ COMMITTED the SELECT's snapshot can predate another transaction that
    leased the same image and committed just before we got its row lock (the lock is free again,
    but the inserted lease is invisible to our snapshot). A new statement, run while we hold the
    lock, sees every committed lease on that image; a taken image is skipped and we look again."""
    taken: list[int] = []
    while True:  # each pass rules out one more image, so this ends
        candidates = query.where(Image.id.not_in(taken)) if taken else query
        image = session.scalar(candidates.with_for_update(skip_locked=True, of=Image))
        if image is None:
            return None
        leased = session.scalar(
            select(Lease.id).where(Lease.image_id == image.id, Lease.state == "active", Lease.expires_at > now)
            .limit(1))
        if leased is None:
            return image
        taken.append(image.id)


@router.post("/projects/{project_id}/next", response_model=LeasePublic,
             responses={204: {"description": "no image left to annotate"}})
def next_image(project_id: int, session: SessionDep, user: CurrentUser, settings: SettingsDep):
    project = project_for_user(session, project_id, user)
    if session.get_bind().dialect.name == "sqlite":
        with _sqlite_lock:
            lease = _lease_next(session, project.id, user, settings.lease_seconds)
            session.commit()
    else:
        lease = _lease_next(session, project.id, user, settings.lease_seconds)
        session.commit()
    if lease is None:
        return Response(status_code=204)
    image = session.get(Image, lease.image_id)
    return LeasePublic(lease_id=lease.id, image=ImagePublic.model_validate(image), expires_at=lease.expires_at)


def active_lease(session, image_id: int, now, other_than: int | None = None) -> Lease | None:
    """The unexpired active lease on an image (held by anyone but user ``other_than``), if any."""
    query = select(Lease).where(Lease.image_id == image_id, Lease.state == "active", Lease.expires_at > now)
    if other_than is not None:
        query = query.where(Lease.user_id != other_than)
    return session.scalar(query.order_by(Lease.id).limit(1))


def holder_name(session, lease: Lease) -> str:
    """Who holds ``lease``, for a message."""
    holder = session.get(User, lease.user_id)
    return holder.username if holder else "another user"


def _lease_image(session, image: Image, user: User, seconds: int) -> Lease:
    """A lease on ``image`` itself (an image picked from the project's list, to annotate or correct it,
    whatever its status): the caller's own active lease on it comes back; another annotator's is a
    409 naming them. The caller's other active leases in the project are released, so one annotator
    works on one image at a time, as with the queue."""
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        # the image row is locked while its leases are looked at: two callers cannot both find it free
        session.execute(select(Image.id).where(Image.id == image.id).with_for_update())
    now = utcnow()
    held = active_lease(session, image.id, now)
    if held is not None:
        if held.user_id == user.id:
            return held
        raise Conflict(f"image {image.id} is being annotated by {holder_name(session, held)} "
                       f"until {held.expires_at:%H:%M} UTC; pick another image or try again later")
    others = session.scalars(
        select(Lease).join(Image, Image.id == Lease.image_id)
        .where(Image.project_id == image.project_id, Lease.user_id == user.id, Lease.state == "active",
               Lease.expires_at > now))
    for other in others:
        other.state = "released"
    lease = Lease(image_id=image.id, user_id=user.id, state="active", expires_at=now + timedelta(seconds=seconds))
    session.add(lease)
    return lease


@router.post("/images/{image_id}/lease", response_model=LeasePublic)
def lease_image(image_id: int, session: SessionDep, user: CurrentUser, settings: SettingsDep) -> LeasePublic:
    image, _ = image_for_user(session, image_id, user)
    if session.get_bind().dialect.name == "sqlite":
        with _sqlite_lock:
            lease = _lease_image(session, image, user, settings.lease_seconds)
            session.commit()
    else:
        lease = _lease_image(session, image, user, settings.lease_seconds)
        session.commit()
    return LeasePublic(lease_id=lease.id, image=ImagePublic.model_validate(image), expires_at=lease.expires_at)


def _own_active_lease(session, lease_id: int, user: User) -> Lease:
    lease = session.get(Lease, lease_id)
    if lease is None or lease.user_id != user.id:
        raise NotFound(f"lease {lease_id} not found")
    if lease.state != "active":
        raise Conflict(f"lease {lease_id} is already {lease.state}")
    if lease.expires_at <= utcnow():
        lease.state = "expired"
        session.commit()
        raise Conflict(f"lease {lease_id} expired; your saved annotations are kept, take the next image")
    return lease


@router.post("/leases/{lease_id}/renew", response_model=LeasePublic)
def renew(lease_id: int, session: SessionDep, user: CurrentUser, settings: SettingsDep) -> LeasePublic:
    lease = _own_active_lease(session, lease_id, user)
    lease.expires_at = utcnow() + timedelta(seconds=settings.lease_seconds)
    session.commit()
    image = session.get(Image, lease.image_id)
    return LeasePublic(lease_id=lease.id, image=ImagePublic.model_validate(image), expires_at=lease.expires_at)


@router.post("/leases/{lease_id}/submit", response_model=ImagePublic)
def submit(lease_id: int, session: SessionDep, user: CurrentUser) -> Image:
    lease = _own_active_lease(session, lease_id, user)
    lease.state = "submitted"
    image = session.get(Image, lease.image_id)
    image.status = "done"
    session.commit()
    return image


@router.post("/leases/{lease_id}/release", status_code=204)
def release(lease_id: int, session: SessionDep, user: CurrentUser, skip: bool = False) -> Response:
    """Give the image back to the queue. With ``skip=true`` this user is not offered it again (an
    image they cannot annotate, or whose embedding failed); the other annotators still get it, and
    the annotations already saved on it are kept."""
    lease = _own_active_lease(session, lease_id, user)
    lease.state = "skipped" if skip else "released"
    session.commit()
    return Response(status_code=204)
