"""Log-in and user management."""
from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from backend.api.deps import AdminUser, CurrentUser, SessionDep, SettingsDep
from backend.core.errors import Conflict, NotFound, Unauthorized
from backend.core.security import create_token, hash_password, verify_password
from backend.db.models import User
from backend.schemas.users import LoginRequest, LoginResponse, UserCreate, UserPublic, UserUpdate

router = APIRouter()


@router.post("/auth/login", response_model=LoginResponse, tags=["auth"])
def login(body: LoginRequest, session: SessionDep, settings: SettingsDep) -> LoginResponse:
    user = session.scalar(select(User).where(User.username == body.username))
    if user is None or not user.is_active or not verify_password(user.password_hash, body.password):
        raise Unauthorized("wrong user name or password")
    token = create_token(user.id, user.token_version, settings.secret_key, settings.token_ttl_seconds)
    return LoginResponse(access_token=token, user=UserPublic.model_validate(user))


@router.get("/users/me", response_model=UserPublic, tags=["users"])
def me(user: CurrentUser) -> User:
    return user


@router.get("/users", response_model=list[UserPublic], tags=["users"])
def list_users(session: SessionDep, _: AdminUser) -> list[User]:
    return list(session.scalars(select(User).order_by(User.id)))


def create_user_record(session, username: str, password: str, role: str) -> User:
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"user {username!r} already exists")
    user = User(username=username, password_hash=hash_password(password), role=role)
    session.add(user)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"user {username!r} already exists") from None
    return user


@router.post("/users", response_model=UserPublic, status_code=201, tags=["users"])
def create_user(body: UserCreate, session: SessionDep, _: AdminUser) -> User:
    return create_user_record(session, body.username, body.password, body.role)


@router.patch("/users/{user_id}", response_model=UserPublic, tags=["users"])
def update_user(user_id: int, body: UserUpdate, session: SessionDep, _: AdminUser) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    if body.password is not None:
        user.password_hash = hash_password(body.password)
        user.token_version += 1  # log out everywhere
    if body.role is not None:
        user.role = body.role
    if body.is_active is not None and body.is_active != user.is_active:
        user.is_active = body.is_active
        user.token_version += 1  # a deactivated user's logins end; setting the same state again changes nothing
    session.commit()
    return user
