"""Model versions: registering the shipped default model, promotion, decoder files."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.core.config import Settings
from backend.db.models import ModelVersion, Project
from backend.storage import BlobStorage, keys

log = logging.getLogger(__name__)
DEFAULT_NAME = "default"


def register_default_model(session: Session, storage: BlobStorage, settings: Settings) -> ModelVersion | None:
    """Register ``Settings.default_model_dir`` as model version "default" (once).

    The directory holds ``model.pt`` and ``decoder.onnx`` (and optionally ``decoder_multimask.onnx``,
    ``config.json``, ``eval.json``); both required files are copied into storage.
    """
    existing = session.scalar(select(ModelVersion).where(ModelVersion.name == DEFAULT_NAME))
    if existing is not None:
        return existing
    src = Path(settings.default_model_dir)
    ckpt, decoder = src / "model.pt", src / "decoder.onnx"
    if not ckpt.is_file() or not decoder.is_file():
        log.warning("no default model registered: %s needs model.pt and decoder.onnx", src)
        return None
    arch = "lite_clicks"  # models/default ships this arch; config.json says so too
    metrics = None
    config_file, eval_file = src / "config.json", src / "eval.json"
    if config_file.is_file():
        try:
            arch = json.loads(config_file.read_text()).get("arch", arch)
        except ValueError:
            log.warning("ignoring unreadable %s", config_file)
    if eval_file.is_file():
        try:
            metrics = json.loads(eval_file.read_text())
        except ValueError:
            log.warning("ignoring unreadable %s", eval_file)
    mv = ModelVersion(name=DEFAULT_NAME, arch=arch, metrics=_headline(metrics))
    session.add(mv)
    session.flush()
    storage.put_file(keys.checkpoint_key(mv.id), ckpt)
    mv.checkpoint_key = keys.checkpoint_key(mv.id)
    storage.put_file(keys.decoder_key(mv.id), decoder)
    mv.decoder_key = keys.decoder_key(mv.id)
    multi = src / "decoder_multimask.onnx"
    if multi.is_file():
        storage.put_file(keys.decoder_key(mv.id, "multimask"), multi)
        mv.decoder_multimask_key = keys.decoder_key(mv.id, "multimask")
    # Projects created before the model existed get it too.
    for project in session.scalars(select(Project).where(Project.active_model_version_id.is_(None))):
        project.active_model_version_id = mv.id
    session.commit()
    log.info("registered the default model from %s as model version %s", src, mv.id)
    return mv


def _headline(report: dict | None) -> dict | None:
    """Keep the small numbers of an evaluation report (not per-sample curves)."""
    if not isinstance(report, dict):
        return None
    results = report.get("results")
    if isinstance(results, dict) and isinstance(results.get("model"), dict):
        # a `maskloop eval` report: the model's numbers as "heldout", each baseline's beside them
        report = {k: v for k, v in report.items() if k != "results"}
        report["heldout"] = results["model"]
        for name, value in results.items():
            if name != "model" and isinstance(value, dict):
                report[f"baseline_{name}"] = value
    out = {}
    for key, value in report.items():
        if isinstance(value, (int, float, str)) or value is None:
            out[key] = value
        elif isinstance(value, dict):
            small = {k: v for k, v in value.items() if isinstance(v, (int, float, str))}
            if small:
                out[key] = small
    return out


def default_model_version_id(session: Session) -> int | None:
    return session.scalar(select(ModelVersion.id).where(ModelVersion.name == DEFAULT_NAME))
