"""Server commands: migrate, create-user, api, worker, run (the embedded one-command start)."""
from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
from pathlib import Path

import typer
from rich.console import Console

from backend.queue import ALL_QUEUES

console = Console()
REPO_ROOT = Path(__file__).resolve().parents[2]


def _settings():
    from backend.core.config import get_settings

    return get_settings()


def database_problem(exc: Exception, database_url: str) -> str:
    """One line for a database that cannot be opened or lacks the tables (never migrated); no password."""
    from sqlalchemy.engine import make_url

    cause = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    where = make_url(database_url).render_as_string(hide_password=True)
    return f"cannot use the database at {where}: {cause} (run `maskloop migrate` first if it is new)"


def run_migrations(database_url: str) -> None:
    """Upgrade the database to the newest Alembic revision."""
    from alembic import command
    from alembic.config import Config

    cfg = Config(str(REPO_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    command.upgrade(cfg, "head")


def migrate() -> None:
    """Apply database migrations and register the shipped default model."""
    from backend.db.session import session_scope
    from backend.services.model_registry import register_default_model
    from backend.storage import get_storage

    settings = _settings()
    settings.resolved_data_dir.mkdir(parents=True, exist_ok=True)
    run_migrations(settings.resolved_database_url)
    with session_scope(settings.resolved_database_url) as session:
        mv = register_default_model(session, get_storage(settings), settings)
    console.print(f"database at [bold]{settings.resolved_database_url}[/bold] is up to date")
    if mv is None:
        console.print(f"[yellow]no default model registered ({settings.default_model_dir} lacks model.pt/decoder.onnx)")
    else:
        console.print(f"default model: version {mv.id} ({mv.arch})")


def create_user(
    username: str = typer.Argument(..., help="User name."),
    role: str = typer.Option("annotator", help="admin or annotator."),
    password: str = typer.Option(None, envvar="MASKLOOP_NEW_USER_PASSWORD",
                                 help="Password (prompted when not given)."),
) -> None:
    """Create a user account."""
    from pydantic import ValidationError
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from backend.api.routes.auth import create_user_record
    from backend.core.errors import DomainError
    from backend.db.session import session_scope
    from backend.schemas.users import UserCreate

    if role not in ("admin", "annotator"):
        console.print(f"[red]error:[/red] role must be admin or annotator, not {role!r}")
        raise typer.Exit(2)
    try:  # the same rules as POST /users
        UserCreate.model_validate({"username": username, "password": "x" * 8, "role": role})
    except ValidationError:
        console.print(f"[red]error:[/red] user name {username!r} must be 1-80 letters, digits or _ . @ -")
        raise typer.Exit(2) from None
    if password is None:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        console.print("[red]error:[/red] the password needs at least 8 characters")
        raise typer.Exit(2)
    settings = _settings()
    try:
        with session_scope(settings.resolved_database_url) as session:
            user = create_user_record(session, username, password, role)
            console.print(f"created {role} {user.username!r} (id {user.id})")
    except DomainError as exc:
        console.print(f"[red]error:[/red] {exc.detail}")
        raise typer.Exit(1) from exc
    except (OperationalError, ProgrammingError) as exc:
        console.print(f"[red]error:[/red] {database_problem(exc, settings.resolved_database_url)}")
        raise typer.Exit(1) from None


def _refuse_if_port_taken(host: str, port: int) -> None:
    """Stop with a message naming the address when the API could not listen there, before anything starts
    (uvicorn would say so only after `run` had made the admin account, shown its password once and
    started a worker)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        console.print(f"[red]error:[/red] cannot listen on {host}:{port}: the address does not resolve "
                      f"({exc.strerror}); set MASKLOOP_HOST")
        raise typer.Exit(2) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
        try:
            probe.bind(address)
        except OSError as exc:
            console.print(f"[red]error:[/red] cannot listen on {host}:{port}: {exc.strerror}. Is Maskloop (or another "
                          "server) already running there? Stop it, or set MASKLOOP_PORT to another port.")
            raise typer.Exit(2) from None


def api(host: str = typer.Option(None, help="Bind address (default MASKLOOP_HOST)."),
        port: int = typer.Option(None, min=1, max=65535, help="Port (default MASKLOOP_PORT)."),
        workers: int = typer.Option(1, help="Uvicorn worker processes.")) -> None:
    """Start the HTTP API."""
    import uvicorn

    settings = _settings()
    _refuse_if_port_taken(host or settings.host, port or settings.port)
    uvicorn.run("backend.main:app_factory", factory=True, host=host or settings.host, port=port or settings.port,
                workers=workers, log_level="info")


def worker_command(queues: str = ALL_QUEUES, concurrency: int = 1, pool: str = "prefork",
                   loglevel: str = "INFO") -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "workers.celery_app:app", "worker", "-Q", queues,
            "--concurrency", str(concurrency), "--pool", pool, "--loglevel", loglevel,
            "--without-gossip", "--without-mingle"]


def worker(queues: str = typer.Option(ALL_QUEUES, help="Queues to consume: gpu (embed, prefill, automatic), "
                                                         "train (retraining rounds), cpu (exports)."),
           concurrency: int = typer.Option(1, help="Processes (keep 1 per GPU for the gpu queue)."),
           pool: str = typer.Option("prefork", help="Celery pool: prefork, solo or threads."),
           loglevel: str = typer.Option("INFO")) -> None:
    """Start a Celery worker (the embedded broker by default, Redis when REDIS_URL is set)."""
    os.execv(sys.executable, worker_command(queues, concurrency, pool, loglevel))


def run() -> None:
    """Embedded one-command start: migrate, ensure an admin, start a worker and the API."""
    from sqlalchemy import select

    from backend.api.routes.auth import create_user_record
    from backend.db.models import User
    from backend.db.session import session_scope

    settings = _settings()
    _refuse_if_port_taken(settings.host, settings.port)
    migrate()
    username = os.environ.get("MASKLOOP_ADMIN_USERNAME", "admin")
    password = os.environ.get("MASKLOOP_ADMIN_PASSWORD")
    with session_scope(settings.resolved_database_url) as session:
        has_admin = session.scalar(select(User.id).where(User.role == "admin")) is not None
        if not has_admin:
            generated = password is None
            password = password or secrets.token_urlsafe(12)
            create_user_record(session, username, password, "admin")
            shown = password if generated else "(from MASKLOOP_ADMIN_PASSWORD)"
            console.print(f"created admin account: user [bold]{username}[/bold] password [bold]{shown}[/bold]"
                          + ("  (shown once: write it down)" if generated else ""))
        else:
            console.print("log in with your existing admin account")
    worker_proc = subprocess.Popen(worker_command(), cwd=REPO_ROOT, start_new_session=True)
    # uvicorn re-raises SIGTERM after its own shutdown; turning it into SystemExit lets the
    # finally below stop the worker too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    url = f"http://{settings.host}:{settings.port}"
    console.print(f"Maskloop is starting at [bold]{url}[/bold] (API docs: {url}/docs); worker pid {worker_proc.pid}")
    try:
        api(host=settings.host, port=settings.port, workers=1)
    finally:
        if worker_proc.poll() is None:
            os.killpg(worker_proc.pid, signal.SIGTERM)
            try:
                worker_proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(worker_proc.pid, signal.SIGKILL)


def register(app: typer.Typer) -> None:
    app.command("migrate")(migrate)
    app.command("create-user")(create_user)
    app.command("api")(api)
    app.command("worker")(worker)
    app.command("run")(run)
