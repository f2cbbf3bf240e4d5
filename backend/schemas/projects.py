from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from backend.schemas.common import ORMModel

Stage = Literal["assisted_manual", "semi_automatic", "fully_automatic"]
COLOR = r"^#[0-9a-fA-F]{6}$"


class LabelCreate(BaseModel):
    name: str = Field(min_length=1, max_length=120)
    color: str = Field(default="#ff0000", pattern=COLOR)


class LabelUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=120)
    color: str | None = Field(default=None, pattern=COLOR)


class LabelPublic(ORMModel):
    id: int
    name: str
    color: str


# the longest annotation guidelines a project keeps (characters)
MAX_INSTRUCTIONS = 20_000


class ProjectCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    labels: list[LabelCreate] = Field(default_factory=list, max_length=1000)
    stage: Stage = "assisted_manual"
    instructions: str | None = Field(default=None, max_length=MAX_INSTRUCTIONS)


class ProjectUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    stage: Stage | None = None
    # "" clears them
    instructions: str | None = Field(default=None, max_length=MAX_INSTRUCTIONS)


class ProjectPublic(BaseModel):
    id: int
    name: str
    stage: str
    active_model_version_id: int | None
    labels: list[LabelPublic]
    member_ids: list[int]
    instructions: str | None = None
    created_at: datetime
    # the project's images and those done (submitted or reviewed): filled by the project list only
    images: int | None = None
    images_done: int | None = None


class MemberAdd(BaseModel):
    user_id: int


class ActiveModel(BaseModel):
    model_version_id: int
