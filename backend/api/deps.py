"""FastAPI dependencies: settings, database session, storage, the current user, project access."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.core.config import Settings
from backend.core.errors import Forbidden, NotFound, Unauthorized
from backend.core.security import read_token
from backend.db.models import Image, Project, ProjectMember, User
from backend.db.session import make_session
from backend.storage import BlobStorage


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


def get_session(settings: SettingsDep) -> Iterator[Session]:
    session = make_session(settings.resolved_database_url)
    try:
        yield session
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]


def get_storage(request: Request) -> BlobStorage:
    return request.app.state.storage


StorageDep = Annotated[BlobStorage, Depends(get_storage)]


def current_user(request: Request, session: SessionDep, settings: SettingsDep) -> User:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing bearer token: log in first", headers={"WWW-Authenticate": "Bearer"})
    payload = read_token(token.strip(), settings.secret_key)
    if payload is None:
        raise Unauthorized("invalid or expired token: log in again", headers={"WWW-Authenticate": "Bearer"})
    user = session.get(User, payload.get("sub"))
    if user is None or not user.is_active or user.token_version != payload.get("ver"):
        raise Unauthorized("token no longer valid: log in again", headers={"WWW-Authenticate": "Bearer"})
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def admin_user(user: CurrentUser) -> User:
    if user.role != "admin":
        raise Forbidden("this action needs the admin role")
    return user


AdminUser = Annotated[User, Depends(admin_user)]


def project_for_user(session: Session, project_id: int, user: User) -> Project:
    """The project, if the user may see it (admins see all, annotators their projects)."""
    project = session.get(Project, project_id)
    if project is None:
        raise NotFound(f"project {project_id} not found")
    if user.role != "admin":
        member = session.scalar(select(ProjectMember.id).where(
            ProjectMember.project_id == project_id, ProjectMember.user_id == user.id))
        if member is None:
            # Same answer as a missing project: annotators learn nothing about other projects.
            raise NotFound(f"project {project_id} not found")
    return project


def image_for_user(session: Session, image_id: int, user: User) -> tuple[Image, Project]:
    image = session.get(Image, image_id)
    if image is None:
        raise NotFound(f"image {image_id} not found")
    try:
        project = project_for_user(session, image.project_id, user)
    except NotFound:
        raise NotFound(f"image {image_id} not found") from None
    return image, project
