"""Database access for the workers: one engine per URL, reflected tables, small helpers.

The schema is the server's (``backend/db`` models and Alembic migrations); the workers reflect
the tables by name instead of importing ORM classes, and write only columns that exist, so the
two sides agree on table and column names (those of ``docs/api.md``) and nothing more.
"""
from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

_LOCK = threading.Lock()
_META: dict[str, sa.MetaData] = {}


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    """A pooled engine; SQLite gets a busy timeout so a worker and the API can share the file."""
    if url.startswith("sqlite"):
        return sa.create_engine(url, connect_args={"timeout": 30}, pool_pre_ping=True)
    return sa.create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2)


def table(engine: Engine, name: str) -> sa.Table:
    """The reflected table ``name`` (cached per engine)."""
    key = str(engine.url)
    with _LOCK:
        meta = _META.setdefault(key, sa.MetaData())
        if name not in meta.tables:
            sa.Table(name, meta, autoload_with=engine)
        return meta.tables[name]


def forget_schema() -> None:
    """Drop cached reflections (tests that recreate databases)."""
    with _LOCK:
        _META.clear()


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
