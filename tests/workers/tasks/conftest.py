"""Fixtures for the worker tests (helpers live in ``worker_test_support``)."""
from __future__ import annotations

from pathlib import Path

import pytest

from worker_test_support import Env, _reset_caches, make_env, write_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture
def env(tmp_path, tiny_model_dir, monkeypatch) -> Env:
    out = make_env(tmp_path, f"sqlite:///{tmp_path / 'maskloop.db'}", tiny_model_dir, monkeypatch)
    yield out
    _reset_caches()
