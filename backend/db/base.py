"""The declarative base, naming convention, shared value lists and the UTC clock of all models."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

STAGES = ("assisted_manual", "semi_automatic", "fully_automatic")
ROLES = ("admin", "annotator")
IMAGE_STATUSES = ("new", "embedded", "in_progress", "done", "reviewed")
SOURCES = ("manual", "assisted", "semi_auto", "semi_auto_accepted", "automatic")
REVIEW_STATES = ("pending", "accepted", "rejected")
ROUND_STATUSES = ("queued", "running", "succeeded", "failed", "promoted", "discarded")
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
