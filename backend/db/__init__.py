"""Persistence: the declarative base (``base``), models (``models``) and sessions (``session``)."""
from backend.db.models import Base

__all__ = ["Base"]
