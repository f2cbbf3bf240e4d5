"""Schemas of the engine side: images, leases, model versions, rounds, jobs."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from backend.schemas.common import ORMModel


class ImagePublic(ORMModel):
    id: int
    project_id: int
    file_name: str
    width: int
    height: int
    sha256: str
    status: str
    error: str | None = None
    review_note: str | None = None
    created_at: datetime
    # the number of annotations on the image (filled by the image list only)
    annotations: int | None = None


class LeasePublic(BaseModel):
    lease_id: int
    image: ImagePublic
    expires_at: datetime


class ModelVersionPublic(ORMModel):
    id: int
    name: str
    arch: str
    parent_id: int | None
    round_id: int | None
    metrics: dict[str, Any] | None
    has_multimask_decoder: bool = False
    # how clients refine decoded masks (backend/services/mask_refine.py: method, work_size, radius, eps,
    # colour, colour_bins, colour_clip, grabcut, grabcut_iters, grabcut_disc, grabcut_crop)
    refine: dict[str, Any] | None = None
    created_at: datetime


class RoundCreate(BaseModel):
    steps: int | None = Field(default=None, ge=1, le=1_000_000)
    freeze_image_encoder: bool | None = None
    learning_rate: float | None = Field(default=None, gt=0, le=1.0)
    time_budget_seconds: float | None = Field(default=None, gt=0, le=7 * 24 * 3600)
    # refit the IoU head on the round's training split after fine-tuning (default: yes) ...
    refit_iou_head: bool | None = None
    # ... when the split has at least this many images (default: workers.engine.rounds.HEAD_MIN_IMAGES, 100)
    iou_head_min_images: int | None = Field(default=None, ge=2, le=1_000_000)


class RoundPublic(ORMModel):
    id: int
    project_id: int
    status: str
    progress: float
    message: str | None
    error: str | None
    n_annotations: int
    n_images: int
    base_model_version_id: int | None
    model_version_id: int | None
    metrics_before: dict[str, Any] | None
    metrics_after: dict[str, Any] | None
    params: dict[str, Any] | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobCreate(BaseModel):
    label_id: int | None = None
    pred_iou_thresh: float | None = Field(default=None, ge=0, le=1.5)
    stability_score_thresh: float | None = Field(default=None, ge=0, le=1)
    points_per_side: int | None = Field(default=None, ge=1, le=128)
    image_ids: list[int] | None = Field(default=None, max_length=100_000)
    # refine each mask with the image as annotators' masks are (the installation's MASKLOOP_MASK_REFINE);
    # default yes, false keeps the decoder's masks
    refine: bool | None = None
    # drop masks whose object score (edges, colour contrast and size, workers/engine/objectness.py) is
    # below this; default: the model's own bar (0.005 for the compact models' refined stage-3 masks)
    min_object_score: float | None = Field(default=None, ge=0, le=1)


class JobPublic(ORMModel):
    id: int
    kind: str
    project_id: int | None
    status: str
    progress: float
    done: int
    total: int
    message: str | None
    error: str | None
    result: dict[str, Any] | None
    created_at: datetime
    finished_at: datetime | None
