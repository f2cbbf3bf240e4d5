"""Database schema for the worker tests.

Uses the server's schema (``backend.db``: Alembic migrations / model metadata) when it exists;
until it lands, a stand-in with the tables and columns named in ``docs/api.md``.
"""
from __future__ import annotations

import sqlalchemy as sa


def _stand_in() -> sa.MetaData:
    meta = sa.MetaData()
    ts = lambda: sa.Column("created_at", sa.DateTime, server_default=sa.func.now())  # noqa: E731
    sa.Table("model_versions", meta, sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String),
             sa.Column("arch", sa.String), sa.Column("parent_id", sa.Integer), sa.Column("round_id", sa.Integer),
             sa.Column("metrics", sa.JSON), ts())
    sa.Table("projects", meta, sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String),
             sa.Column("stage", sa.String), sa.Column("active_model_version_id", sa.Integer), ts())
    sa.Table("labels", meta, sa.Column("id", sa.Integer, primary_key=True), sa.Column("project_id", sa.Integer),
             sa.Column("name", sa.String), sa.Column("color", sa.String))
    sa.Table("images", meta, sa.Column("id", sa.Integer, primary_key=True), sa.Column("project_id", sa.Integer),
             sa.Column("file_name", sa.String), sa.Column("width", sa.Integer), sa.Column("height", sa.Integer),
             sa.Column("sha256", sa.String), sa.Column("status", sa.String), sa.Column("error", sa.Text), ts())
    sa.Table("embeddings", meta, sa.Column("id", sa.Integer, primary_key=True), sa.Column("image_id", sa.Integer),
             sa.Column("model_version_id", sa.Integer), sa.Column("storage_key", sa.String), ts(),
             sa.UniqueConstraint("image_id", "model_version_id"))
    sa.Table("annotations", meta, sa.Column("id", sa.Integer, primary_key=True), sa.Column("image_id", sa.Integer),
             sa.Column("label_id", sa.Integer, nullable=True), sa.Column("segmentation", sa.JSON),
             sa.Column("bbox", sa.JSON), sa.Column("area", sa.Float), sa.Column("source", sa.String),
             sa.Column("stage", sa.String), sa.Column("model_version_id", sa.Integer),
             sa.Column("predicted_iou", sa.Float), sa.Column("stability_score", sa.Float),
             sa.Column("point_coords", sa.JSON), sa.Column("crop_box", sa.JSON), sa.Column("review_state", sa.String),
             sa.Column("job_id", sa.Integer), ts())
    sa.Table("jobs", meta, sa.Column("id", sa.Integer, primary_key=True), sa.Column("project_id", sa.Integer),
             sa.Column("kind", sa.String), sa.Column("status", sa.String), sa.Column("progress", sa.Float),
             sa.Column("done", sa.Integer), sa.Column("total", sa.Integer), sa.Column("message", sa.Text),
             sa.Column("error", sa.Text), sa.Column("params", sa.JSON), sa.Column("state", sa.JSON), ts(),
             sa.Column("finished_at", sa.DateTime))
    sa.Table("rounds", meta, sa.Column("id", sa.Integer, primary_key=True), sa.Column("project_id", sa.Integer),
             sa.Column("status", sa.String), sa.Column("progress", sa.Float), sa.Column("message", sa.Text),
             sa.Column("error", sa.Text), sa.Column("n_annotations", sa.Integer), sa.Column("n_images", sa.Integer),
             sa.Column("base_model_version_id", sa.Integer), sa.Column("model_version_id", sa.Integer),
             sa.Column("metrics_before", sa.JSON), sa.Column("metrics_after", sa.JSON), sa.Column("params", sa.JSON),
             ts(), sa.Column("finished_at", sa.DateTime))
    return meta


def create_schema(url: str) -> None:
    """Create the tables in the (empty) database at ``url``."""
    try:
        from backend.db import Base  # type: ignore[attr-defined]
        meta = Base.metadata
    except ImportError:
        meta = _stand_in()
    engine = sa.create_engine(url)
    meta.create_all(engine)
    engine.dispose()
