"""Shared fixtures: service URLs for integration tests.

PostgreSQL and Redis tests skip when the server is unreachable on a developer machine, and fail
instead when MASKLOOP_REQUIRE_SERVICES=1 (CI sets it in .ci/run).
"""
from __future__ import annotations

import os
import socket
import uuid

import pytest

POSTGRES_URL = os.environ.get("MASKLOOP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("MASKLOOP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _require(name: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    msg = f"{name} is not reachable at {host}:{port}"
    if os.environ.get("MASKLOOP_REQUIRE_SERVICES") == "1":
        pytest.fail(msg + " (MASKLOOP_REQUIRE_SERVICES=1 makes this a failure)")
    pytest.skip(msg)


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """URL of the real PostgreSQL server's `test` database."""
    _require("PostgreSQL", "127.0.0.1", 5432)
    return POSTGRES_URL


@pytest.fixture
def postgres_url(postgres_server_url: str):
    """A fresh, empty schema-isolated database URL on the real PostgreSQL server.

    Each test gets its own database, created and dropped around it.
    """
    import sqlalchemy as sa

    name = f"mltest_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = postgres_server_url.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def redis_server_url() -> str:
    _require("Redis", "127.0.0.1", 6379)
    return REDIS_URL
