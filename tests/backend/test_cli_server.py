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
