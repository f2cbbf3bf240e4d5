"""Data commands: `maskloop import` (a folder of images into a project) and `maskloop export`.

Both work directly on the database and storage named by the settings (no API server needed).
The CLI runs with the operator's own file access, so `import` accepts any folder, unlike the
HTTP folder import, which is confined to ``Settings.import_root_paths``.
"""
from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from backend.core.files import atomic_write

console = Console()


def _fail(message: str, code: int = 1) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def _find_project(session, project: str, create: bool = False):
    """A project by id or name; created (with the default model active) when ``create`` is set."""
    from sqlalchemy import select

    from backend.db.models import Project
    from backend.services.model_registry import default_model_version_id

    found = None
    if project.isdigit():
        found = session.get(Project, int(project))
    if found is None:
        found = session.scalar(select(Project).where(Project.name == project))
    if found is None and create:
        found = Project(name=project, active_model_version_id=default_model_version_id(session))
        session.add(found)
        session.flush()
        console.print(f"created project {project!r} (id {found.id})")
    if found is None:
        _fail(f"no project with id or name {project!r} (use --create to make one)")
    return found


def import_images(
    folder: Path = typer.Argument(..., help="Folder with images (searched recursively)."),
    project: str = typer.Option(..., "--project", "-p", help="Project id or name."),
    create: bool = typer.Option(False, help="Create the project when it does not exist."),
) -> None:
    """Import every image below FOLDER into a project (duplicates are skipped by content hash)."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from backend.cli.server import database_problem
    from backend.core.config import get_settings
    from backend.core.errors import DomainError
    from backend.db.session import session_scope
    from backend.services.embedding_jobs import enqueue_image_embedding
    from backend.services.images import import_folder
    from backend.storage import get_storage

    settings = get_settings()
    if not folder.is_dir():
        _fail(f"{folder} is not a directory", 2)
    # The operator may import from anywhere they can read: make the folder its own import root.
    local = settings.model_copy(update={"import_roots": str(folder.resolve())})
    storage = get_storage(settings)
    try:
        with session_scope(settings.resolved_database_url) as session, Progress(
                TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                console=console) as bar:
            proj = _find_project(session, project, create)
            task = bar.add_task("import", total=None)
            summary = import_folder(session, storage, local, proj,
                                    folder, on_progress=lambda done, total: bar.update(task, completed=done,
                                                                                       total=total))
            session.commit()
            created_ids = [img.id for img in summary.created]
            model_version = proj.active_model_version_id
    except DomainError as exc:
        _fail(exc.detail)
    except (OperationalError, ProgrammingError) as exc:
        _fail(database_problem(exc, settings.resolved_database_url))
    if model_version is not None:
        for image_id in created_ids:
            enqueue_image_embedding(image_id, model_version)
    console.print(f"imported {len(summary.created)} new, {len(summary.duplicates)} duplicates, "
                  f"{len(summary.errors)} refused")
    for err in summary.errors:
        console.print(f"  [yellow]{err['filename']}[/yellow]: {err['detail']}")
    if summary.errors and not summary.created and not summary.duplicates:
        raise typer.Exit(1)


def export_dataset(
    project: str = typer.Option(..., "--project", "-p", help="Project id or name."),
    output: Path = typer.Option(..., "--out", "--output", "-o",
                                help="File to write (.json for coco, .zip for sa1b and yolo)."),
    format: str = typer.Option("coco", help="coco (instances JSON with RLE), sa1b (zip of per-image JSON) or "
                               "yolo (zip of YOLO segmentation polygon labels and data.yaml)."),
    stage: list[str] = typer.Option(None, help="Only these annotation stages (repeatable)."),
    source: list[str] = typer.Option(None, help="Only these sources (repeatable)."),
    review_state: list[str] = typer.Option(None, help="Only these review states (repeatable)."),
) -> None:
    """Export a project's annotations to a file (written atomically: no half-written file on error)."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from backend.cli.server import database_problem
    from backend.core.config import get_settings
    from backend.db.session import get_engine, session_scope
    from backend.services.export import build_export

    settings = get_settings()
    filters = {k: v for k, v in (("stage", stage), ("source", source), ("review_state", review_state)) if v}
    if not output.parent.resolve().is_dir():
        _fail(f"the folder {output.parent} does not exist", 2)
    if output.is_dir():
        _fail(f"{output} is a folder; expected a file name", 2)
    try:
        with session_scope(settings.resolved_database_url) as session:
            project_id = _find_project(session, project).id
        with console.status("building export"), get_engine(settings.resolved_database_url).connect() as conn:
            data = build_export(conn, project_id, format, filters)
    except ValueError as exc:
        _fail(str(exc), 2)
    except (OperationalError, ProgrammingError) as exc:
        _fail(database_problem(exc, settings.resolved_database_url))
    try:
        atomic_write(output, lambda tmp: tmp.write_bytes(data))
    except OSError as exc:
        _fail(f"cannot write {output}: {exc}")
    console.print(f"wrote {output} ({len(data)} bytes, format {format})")


def register(app: typer.Typer) -> None:
    app.command("import")(import_images)
    app.command("export")(export_dataset)
