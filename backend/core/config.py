"""Maskloop's one settings object, read from the environment by pydantic-settings.

Embedded defaults (SQLite file, local storage, SQLite-backed Celery broker) need no server;
production sets DATABASE_URL and REDIS_URL (or MASKLOOP_BROKER_URL) to PostgreSQL and Redis.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL_DIR = REPO_ROOT / "models" / "default"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MASKLOOP_", extra="ignore")

    data_dir: Path = Field(default=Path("data"))
    # Standard names first, MASKLOOP_-prefixed names also accepted.
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "MASKLOOP_DATABASE_URL")
    )
    broker_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MASKLOOP_BROKER_URL", "CELERY_BROKER_URL", "REDIS_URL"),
    )
    storage_root: Path | None = None
    secret_key: str = "change-me-in-production"
    token_ttl_seconds: int = 7 * 24 * 3600

    # Model served to new projects: a directory holding model.pt + decoder.onnx.
    default_model_dir: Path = DEFAULT_MODEL_DIR
    device: str = "auto"  # auto | cpu | cuda
    # Mixed precision for the worker's image encoder and automatic-mask decoding, on CUDA only
    # (ignored on a CPU): none keeps float32 (exact, the default), fp16 / bf16 run under autocast.
    autocast: Literal["none", "fp16", "bf16"] = "none"
    # Edge-aware refinement of every decoded mask (backend/services/mask_refine.py), announced to the
    # browser with the model and applied by the evaluation and the simulated annotators: guided | none.
    mask_refine: Literal["guided", "none"] = "guided"
    # Weight of the refinement's colour term (inside/outside colour histograms); 0 keeps the edges only.
    mask_refine_colour: float = Field(3.0, ge=0.0, le=20.0)
    # Long side (pixels) of the GrabCut pass seeded by the refined mask and the clicks; 0 turns it off.
    mask_refine_grabcut: int = Field(200, ge=0, le=1024)
    # The GrabCut pass's window: 0 = the whole image; c > 0 = the box around the mask and the positive
    # clicks widened by c times its longer side on every side.
    mask_refine_grabcut_crop: float = Field(0.75, ge=0.0, le=4.0)
    # Which of a first click's candidate masks is shown first: head = the decoder's IoU head (only it is
    # refined); refined = each is refined and ranked by its predicted IoU after refinement
    # (mask_refine.SELECT_WEIGHTS): a better first mask, three refinements per first click.
    mask_refine_select: Literal["head", "refined"] = "head"

    @field_validator("mask_refine_grabcut")
    @classmethod
    def _grabcut_size(cls, v: int) -> int:
        if 0 < v < 16:
            raise ValueError("MASKLOOP_MASK_REFINE_GRABCUT must be 0 (off) or 16..1024 pixels")
        return v

    # Upload guards.
    max_upload_bytes: int = 50 * 1024 * 1024
    max_image_pixels: int = 64_000_000
    lease_seconds: int = 600

    host: str = "127.0.0.1"
    port: int = 8000
    frontend_dist: Path = REPO_ROOT / "frontend" / "dist"
    # Folder imports are only allowed below these roots (colon separated); empty = data_dir/import.
    import_roots: str = ""

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir.resolve()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            url = self.database_url
            # Accept the plain postgres:// form; SQLAlchemy wants a driver name.
            if url.startswith("postgres://"):
                url = "postgresql+psycopg://" + url[len("postgres://"):]
            elif url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url[len("postgresql://"):]
            return url
        return f"sqlite:///{self.resolved_data_dir / 'maskloop.db'}"

    @property
    def resolved_broker_url(self) -> str:
        if self.broker_url:
            return self.broker_url
        return f"sqla+sqlite:///{self.resolved_data_dir / 'broker.db'}"

    @property
    def resolved_storage_root(self) -> Path:
        return (self.storage_root or self.resolved_data_dir / "storage").resolve()

    @property
    def import_root_paths(self) -> list[Path]:
        if self.import_roots:
            return [Path(p).resolve() for p in self.import_roots.split(":") if p]
        return [(self.resolved_data_dir / "import").resolve()]


@lru_cache
def get_settings() -> Settings:
    return Settings()
