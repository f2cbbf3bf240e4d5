"""Database access for the workers: the server's engine and tables, and small Core helpers.

The schema is the server's (``backend/db/models.py``, Alembic migrations); the workers use its
``Table`` objects with SQLAlchemy Core (column defaults apply) in short transactions, and write
only columns that exist.
"""
from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

_LOCK = threading.Lock()
_META: dict[str, sa.MetaData] = {}


def get_engine(url: str) -> Engine:
    """The server's engine for ``url`` (``backend.db.session``: SQLite in WAL mode, pooled PostgreSQL)."""
    from backend.db.session import get_engine as server_engine

    return server_engine(url)


def table(engine: Engine, name: str) -> sa.Table:
    """The table ``name`` of the server's schema (``backend.db.models``), reflected when the
    models do not define it."""
    from backend.db.models import Base

    if name in Base.metadata.tables:
        return Base.metadata.tables[name]
    key = str(engine.url)
    with _LOCK:
        meta = _META.setdefault(key, sa.MetaData())
        if name not in meta.tables:
            sa.Table(name, meta, autoload_with=engine)
        return meta.tables[name]


def forget_schema() -> None:
    """Drop cached reflections and engines (tests that recreate databases)."""
    from backend.db.session import get_engine as server_engine

    with _LOCK:
        _META.clear()
    server_engine.cache_clear()


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    with engine.begin() as conn:
        yield conn


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def only_columns(tbl: sa.Table, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` restricted to the columns ``tbl`` has; JSON columns get Python objects, text
    columns receiving dicts/lists get JSON strings."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name not in tbl.c:
            continue
        col_type = tbl.c[name].type
        if isinstance(value, (dict, list)) and not isinstance(col_type, sa.JSON):
            value = json.dumps(value)
        out[name] = value
    return out


def load_json(value: Any) -> Any:
    """A JSON column's value, whether the backend stored it as JSON or as text."""
    if value is None or isinstance(value, (dict, list)):
        return value
    if isinstance(value, (bytes, str)) and value:
        return json.loads(value)
    return None


def get_row(conn: Connection, tbl: sa.Table, row_id: int) -> sa.Row | None:
    return conn.execute(sa.select(tbl).where(tbl.c.id == row_id)).first()


def update_row(conn: Connection, tbl: sa.Table, row_id: int, **values: Any) -> None:
    vals = only_columns(tbl, values)
    if "updated_at" in tbl.c and "updated_at" not in vals:
        vals["updated_at"] = now()
    if vals:
        conn.execute(sa.update(tbl).where(tbl.c.id == row_id).values(**vals))


def insert_row(conn: Connection, tbl: sa.Table, **values: Any) -> int:
    vals = only_columns(tbl, values)
    for stamp in ("created_at", "updated_at"):
        if stamp in tbl.c and stamp not in vals:
            vals[stamp] = now()
    result = conn.execute(sa.insert(tbl).values(**vals))
    return int(result.inserted_primary_key[0])
