"""Dataset export entry point: read a project's images, labels and filtered annotations, then build
a COCO instances JSON (``coco_export``), an SA-1B style zip (``sa1b_export``) or a YOLO segmentation
labels zip (``yolo_export``).

``build_export(conn, project_id, format, filters)`` takes a SQLAlchemy Connection so both the API
(streamed export) and the Celery export task (``workers/tasks/export.py``) call the same code.
Bad arguments raise ValueError with a message naming the problem.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from backend.db.models import REVIEW_STATES, SOURCES, STAGES, Annotation, Image, Label, Project

FORMATS = {"coco": ("json", "application/json"), "sa1b": ("zip", "application/zip"), "yolo": ("zip", "application/zip")}
FILTERS = {"stage": STAGES, "source": SOURCES, "review_state": REVIEW_STATES}


@dataclass
class ExportData:
    """Plain rows (dicts) of one project, ordered by id."""

    project: dict[str, Any]
    images: list[dict[str, Any]]
    labels: list[dict[str, Any]]
    annotations: list[dict[str, Any]]


def normalize_filters(filters: dict[str, Any] | None) -> dict[str, list[str]]:
    """``{stage|source|review_state: value or list or comma string}`` → lists of checked values."""
    out: dict[str, list[str]] = {}
    for name, value in (filters or {}).items():
        if value is None or value == "" or value == []:
            continue
        if name not in FILTERS:
            raise ValueError(f"unknown export filter {name!r}; expected one of {', '.join(FILTERS)}")
        if isinstance(value, str):
            values = value.split(",")
        elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            values = list(value)
        else:
            raise ValueError(f"export filter {name!r} must be a string or a list of strings, not {value!r}")
        values = [str(v).strip() for v in values if str(v).strip()]
        bad = [v for v in values if v not in FILTERS[name]]
        if bad:
            raise ValueError(f"invalid {name} {bad[0]!r}; expected one of {', '.join(FILTERS[name])}")
        if values:
            out[name] = values
    return out


def load_export_data(conn: Connection, project_id: int, filters: dict[str, Any] | None = None) -> ExportData:
    """All images and labels of the project and the annotations matching ``filters``."""
    checked = normalize_filters(filters)
    project = conn.execute(select(Project.__table__).where(Project.id == project_id)).mappings().first()
    if project is None:
        raise ValueError(f"project {project_id} not found")
    images = [dict(r) for r in conn.execute(
        select(Image.__table__).where(Image.project_id == project_id).order_by(Image.id)).mappings()]
    labels = [dict(r) for r in conn.execute(
        select(Label.__table__).where(Label.project_id == project_id).order_by(Label.id)).mappings()]
    ann = Annotation.__table__
    query = (select(ann).join(Image.__table__, Image.id == ann.c.image_id)
             .where(Image.project_id == project_id).order_by(ann.c.id))
    for name, values in checked.items():
        query = query.where(ann.c[name].in_(values))
    annotations = [dict(r) for r in conn.execute(query).mappings()]
    return ExportData(project=dict(project), images=images, labels=labels, annotations=annotations)


def build_export(conn: Connection, project_id: int, format: str, filters: dict[str, Any] | None = None) -> bytes:
    """The export file's bytes: COCO JSON (``format="coco"``), SA-1B zip (``format="sa1b"``) or YOLO
    segmentation labels zip (``format="yolo"``)."""
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; expected one of {', '.join(FORMATS)}")
    data = load_export_data(conn, project_id, filters)
    if format == "coco":
        from backend.services.coco_export import coco_json_bytes

        return coco_json_bytes(data)
    if format == "yolo":
        from backend.services.yolo_export import yolo_zip_bytes

        return yolo_zip_bytes(data)
    from backend.services.sa1b_export import sa1b_zip_bytes

    return sa1b_zip_bytes(data)


def export_file_name(project_name: str, format: str) -> str:
    """A download name such as ``myproject-coco.json``."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in project_name) or "project"
    return f"{safe}-{format}.{FORMATS[format][0]}"
