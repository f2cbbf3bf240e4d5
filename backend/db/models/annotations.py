"""Masks with provenance and review state, and the work-queue leases."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from backend.db.base import Base, utcnow


class Annotation(Base):
    __tablename__ = "annotations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    label_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id", ondelete="SET NULL"), nullable=True)
    segmentation: Mapped[dict] = mapped_column(JSON)
    bbox: Mapped[list] = mapped_column(JSON)
    area: Mapped[float] = mapped_column(Float)
    stage: Mapped[str] = mapped_column(String(30))
    source: Mapped[str] = mapped_column(String(30), index=True)
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"), nullable=True)
    annotator_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    clicks: Mapped[int | None] = mapped_column(Integer, nullable=True)
    predicted_iou: Mapped[float | None] = mapped_column(Float, nullable=True)
    stability_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    # automatic masks: how much the mask looks like a whole object (workers/engine/objectness.py)
    object_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    point_coords: Mapped[Any | None] = mapped_column(JSON, nullable=True)
    crop_box: Mapped[Any | None] = mapped_column(JSON, nullable=True)
    review_state: Mapped[str] = mapped_column(String(20), default="pending")
    client_uid: Mapped[str | None] = mapped_column(String(120), unique=True, nullable=True)
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Lease(Base):
    __tablename__ = "leases"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(20), default="active")  # active|submitted|released|skipped|expired
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


Index("ix_leases_active_image", Lease.image_id, Lease.state)


class ProposalRejection(Base):
    """A model proposal (``semi_auto``/``automatic``) an annotator rejected or replaced by a fix.

    The annotation row is deleted (exports, training and the work queue never see it), and its
    columns are kept here so the one who rejected it (or an admin) can restore it, same id and all,
    and so metrics can count how many proposals were turned down.
    """

    __tablename__ = "proposal_rejections"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    annotation_id: Mapped[int] = mapped_column(Integer)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    rejected_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    stage: Mapped[str] = mapped_column(String(30))
    source: Mapped[str] = mapped_column(String(30))
    snapshot: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
