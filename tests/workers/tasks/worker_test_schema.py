"""Database schema for the worker tests: the server's (Alembic migrations when present, else
the models' metadata)."""
from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[3]


def create_schema(url: str) -> None:
    """Create the tables in the (empty) database at ``url``."""
    from backend.db.models import Base

    if (REPO / "alembic.ini").is_file() and any((REPO / "migrations" / "versions").glob("*.py")):
        from alembic import command
        from alembic.config import Config

        cfg = Config(str(REPO / "alembic.ini"))
        cfg.set_main_option("script_location", str(REPO / "migrations"))
        cfg.set_main_option("sqlalchemy.url", url)
        command.upgrade(cfg, "head")
        return
    engine = sa.create_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()
