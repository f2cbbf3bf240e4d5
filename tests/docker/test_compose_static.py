"""Static checks of docker-compose.yml and the Dockerfiles (no Docker daemon needed): every service
builds from a Dockerfile that exists, commands name real modules and CLI commands, the environment
uses names that Settings reads, Redis persists with AOF, and every service has a health check."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from backend.core.config import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
MASKLOOP_SERVICES = ("api", "worker", "trainer", "worker-cpu")


def settings_env_names() -> set[str]:
    """Environment variable names that Settings reads (prefixed field names and aliases)."""
    prefix = Settings.model_config.get("env_prefix", "")
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if alias is not None and hasattr(alias, "choices"):
            names.update(str(c).upper() for c in alias.choices)
        else:
            names.add(f"{prefix}{name}".upper())
    return names


def command_text(service: dict) -> str:
    cmd = service.get("command", "")
    return " ".join(cmd) if isinstance(cmd, list) else str(cmd)


def test_expected_services():
    assert set(SERVICES) == {"api", "worker", "trainer", "worker-cpu", "redis", "postgres", "frontend"}


@pytest.mark.parametrize("name", [n for n in SERVICES if "build" in SERVICES[n]])
def test_dockerfiles_exist_and_copy_real_paths(name):
    build = SERVICES[name]["build"]
    dockerfile = ROOT / build["context"] / build["dockerfile"]
    assert dockerfile.is_file(), dockerfile
    text = dockerfile.read_text()
    assert re.search(r"^FROM ", text, re.M)
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M):
        for src in line.split()[:-1]:
            assert (ROOT / build["context"] / src).exists(), f"{dockerfile.name} copies missing {src}"


def test_api_image_has_no_torch_and_runs_migrate_then_api():
    text = (ROOT / "docker/api.Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    assert "torch" not in re.sub(r"#.*", "", text) and "[worker]" not in text
    cmd = command_text(SERVICES["api"])
    assert re.search(r"maskloop migrate && .*maskloop api --host 0\.0\.0\.0", cmd)
    from backend.cli import app

    commands = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert {"migrate", "api"} <= commands


def test_workers_use_cuda_image_pinned_torch_and_real_celery_app():
    text = (ROOT / "docker/worker.Dockerfile").read_text()
    assert re.search(r"^FROM nvidia/cuda:\S+runtime", text, re.M)
    assert "python3.11" in text and "pip install torch==2.13.0" in text and '.[worker]' in text
    for name, queue in (("worker", "gpu"), ("trainer", "train"), ("worker-cpu", "cpu")):
        cmd = command_text(SERVICES[name])
        match = re.search(r"celery -A ([\w.]+):(\w+) worker -Q (\w+)", cmd)
        assert match, cmd
        module, attr, q = match.groups()
        assert q == queue
        assert importlib.util.find_spec(module) is not None
        assert re.search(rf"^{attr}\s*=", (ROOT / (module.replace(".", "/") + ".py")).read_text(), re.M)
    from backend.queue import TASK_QUEUES

    assert set(TASK_QUEUES.values()) == {"gpu", "train", "cpu"}
    for name in ("worker", "trainer"):
        gpu = SERVICES[name]["deploy"]["resources"]["reservations"]["devices"][0]
        assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]


def test_maskloop_env_names_are_read_by_settings():
    known = settings_env_names()
    for name in MASKLOOP_SERVICES:
        env = SERVICES[name]["environment"]
        assert {"DATABASE_URL", "REDIS_URL", "MASKLOOP_SECRET_KEY", "MASKLOOP_DATA_DIR"} <= set(env)
        unknown = set(env) - known
        assert not unknown, f"{name}: {unknown} are not read by Settings"
        assert env["MASKLOOP_DATA_DIR"] == "/data"
        assert any(v.startswith("data:/data") for v in SERVICES[name]["volumes"]), "shared storage volume"
        assert env["DATABASE_URL"].startswith("postgresql://") and "@postgres:" in env["DATABASE_URL"]
        assert env["REDIS_URL"].startswith("redis://redis:")


def test_settings_parse_the_compose_environment(monkeypatch):
    env = dict(SERVICES["api"]["environment"])
    env["MASKLOOP_SECRET_KEY"] = "x" * 32
    env["DATABASE_URL"] = env["DATABASE_URL"].replace("${POSTGRES_PASSWORD:-maskloop}", "pw")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s = Settings()
    assert s.resolved_database_url == "postgresql+psycopg://maskloop:pw@postgres:5432/maskloop"
    assert s.resolved_broker_url == "redis://redis:6379/0"
    assert s.secret_key == "x" * 32 and str(s.data_dir) == "/data"


def test_redis_aof_and_volumes():
    cmd = command_text(SERVICES["redis"])
    assert "--appendonly yes" in cmd and "--appendfsync everysec" in cmd
    assert any(v.endswith(":/data") for v in SERVICES["redis"]["volumes"])
    assert any("/var/lib/postgresql/data" in v for v in SERVICES["postgres"]["volumes"])
    assert {"data", "redis-data", "postgres-data"} <= set(COMPOSE["volumes"])


def test_health_checks_and_startup_order():
    for name, service in SERVICES.items():
        assert "healthcheck" in service and service["healthcheck"]["test"], f"{name} has no health check"
    assert "pg_isready" in " ".join(SERVICES["postgres"]["healthcheck"]["test"])
    deps = SERVICES["api"]["depends_on"]
    assert deps["postgres"]["condition"] == deps["redis"]["condition"] == "service_healthy"


def test_nginx_proxies_api_with_isolation_headers():
    conf = (ROOT / "docker/nginx.conf").read_text()
    assert re.search(r"location /api/ \{[^}]*proxy_pass http://api:8000;", conf)
    assert 'Cross-Origin-Opener-Policy "same-origin"' in conf
    assert 'Cross-Origin-Embedder-Policy "require-corp"' in conf
    front = (ROOT / "docker/frontend.Dockerfile").read_text()
    assert "npm run build" in front and "docker/nginx.conf" in front and "FROM nginx" in front
    assert '"build"' in (ROOT / "frontend/package.json").read_text()
