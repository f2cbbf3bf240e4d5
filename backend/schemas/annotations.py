from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from backend.schemas.common import ORMModel

Source = Literal["manual", "assisted", "semi_auto", "semi_auto_accepted", "automatic"]


class RLE(BaseModel):
    size: list[int] = Field(min_length=2, max_length=2)
    counts: str = Field(max_length=50_000_000)


class AnnotationCreate(BaseModel):
    label_id: int | None = None
    segmentation: RLE
    source: Source = "assisted"
    clicks: int | None = Field(default=None, ge=0, le=100_000)
    seconds: float | None = Field(default=None, ge=0, le=86_400)
    predicted_iou: float | None = Field(default=None, ge=-10, le=10)
    stability_score: float | None = Field(default=None, ge=-10, le=10)
    # an automatic mask's object score (workers/engine/objectness.py); for tools that import or simulate them
    object_score: float | None = Field(default=None, ge=0, le=1)
    model_version_id: int | None = None
    client_uid: str | None = Field(default=None, min_length=1, max_length=120)


class AnnotationUpdate(BaseModel):
    label_id: int | None = None
    segmentation: RLE | None = None
    source: Source | None = None
    review_state: Literal["pending", "accepted", "rejected"] | None = None
    seconds: float | None = Field(default=None, ge=0, le=86_400)
    clicks: int | None = Field(default=None, ge=0, le=100_000)


class Review(BaseModel):
    decision: Literal["accept", "reject"]


class ImageReview(BaseModel):
    """A reviewer's verdict on a submitted image: approve it as it is, or send it back to the
    annotators with a note saying what to fix."""
    decision: Literal["approve", "reject"]
    note: str | None = Field(default=None, max_length=2000)
    # with reject: the annotations that are wrong (the others keep their state)
    rejected: list[int] = Field(default_factory=list, max_length=10_000)


class RejectProposals(BaseModel):
    """Which model proposals of an image to reject at once: the listed ones, else all of them; with
    ``below_object_score``, only those whose object score is known and lower."""

    annotation_ids: list[int] | None = Field(default=None, max_length=100_000)
    below_object_score: float | None = Field(default=None, ge=0, le=1)


class AnnotationPublic(ORMModel):
    id: int
    image_id: int
    label_id: int | None
    segmentation: dict[str, Any]
    bbox: list[float]
    area: float
    source: str
    stage: str
    model_version_id: int | None
    annotator_id: int | None
    seconds: float | None
    clicks: int | None
    predicted_iou: float | None
    stability_score: float | None
    object_score: float | None = None
    point_coords: Any | None = None
    crop_box: Any | None = None
    review_state: str
    created_at: datetime
    updated_at: datetime


class RejectionPublic(ORMModel):
    """A rejected model proposal: ``POST /rejections/{id}/restore`` brings the annotation back."""

    id: int
    annotation_id: int
    image_id: int
    rejected_by: int | None
    stage: str
    source: str
    created_at: datetime
