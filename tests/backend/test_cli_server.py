"""Server CLI: create-user (password from the environment, bad role/short password/duplicate are
clear errors) and the worker command line."""
from __future__ import annotations

from typer.testing import CliRunner

from backend.cli import app
from backend.cli.server import worker_command

runner = CliRunner()


def run(*args: str, env: dict | None = None):
    r = runner.invoke(app, list(args), env=env)
    return r.exit_code, " ".join(r.output.split())


def test_create_user_then_login(api):
    code, out = run("create-user", "carol", "--role", "annotator", env={"MASKLOOP_NEW_USER_PASSWORD": "carolpass1"})
    assert code == 0 and "created annotator 'carol'" in out, out
    api.login("carol", "carolpass1")
    code, out = run("create-user", "carol", env={"MASKLOOP_NEW_USER_PASSWORD": "carolpass1"})
    assert code == 1 and "carol" in out and "exists" in out, out
    code, out = run("create-user", "dave", "--role", "root", env={"MASKLOOP_NEW_USER_PASSWORD": "davepass12"})
    assert code == 2 and "role must be admin or annotator" in out
    code, out = run("create-user", "dave", env={"MASKLOOP_NEW_USER_PASSWORD": "short"})
    assert code == 2 and "at least 8 characters" in out


def test_worker_command_line():
    argv = worker_command("cpu", 2, "solo", "DEBUG")
    assert argv[1:5] == ["-m", "celery", "-A", "workers.celery_app:app"]
    assert argv[argv.index("-Q") + 1] == "cpu" and argv[argv.index("--concurrency") + 1] == "2"
    assert argv[argv.index("--pool") + 1] == "solo" and argv[argv.index("--loglevel") + 1] == "DEBUG"


def test_run_and_api_stop_at_once_when_the_port_is_taken(tmp_path):
    """Nothing starts (no admin account made, its password not spent) when the API could not listen."""
    import socket

    from sqlalchemy import create_engine, inspect

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"MASKLOOP_DATA_DIR": str(tmp_path), "MASKLOOP_DATABASE_URL": f"sqlite:///{tmp_path}/m.db",
               "MASKLOOP_PORT": str(port), "MASKLOOP_HOST": "127.0.0.1"}
        from backend.core.config import get_settings

        get_settings.cache_clear()
        try:
            code, out = run("run", env=env)
            assert code == 2, out
            assert f"cannot listen on 127.0.0.1:{port}" in out and "MASKLOOP_PORT" in out, out
            assert "admin" not in out and "worker" not in out, out
            engine = create_engine(f"sqlite:///{tmp_path}/m.db")
            assert "users" not in inspect(engine).get_table_names()  # not even migrated
            engine.dispose()
            code, out = run("api", "--port", str(port), env=env)
            assert code == 2 and f"cannot listen on 127.0.0.1:{port}" in out, out
        finally:
            get_settings.cache_clear()
