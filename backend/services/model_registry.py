"""Model versions: registering the shipped default model, promotion, decoder files."""
from __future__ import annotations

import hashlib
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


def _sha256(fh) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: fh.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def register_default_model(session: Session, storage: BlobStorage, settings: Settings) -> ModelVersion | None:
    """Register ``Settings.default_model_dir`` as a model version named "default", once per content.

    The directory holds ``model.pt`` and ``decoder.onnx`` (and optionally ``decoder_multimask.onnx``,
    ``config.json``, ``eval.json``); both required files are copied into storage. When the shipped
    checkpoint changes (an upgrade brings a better default), it becomes a new "default" version whose
    parent is the previous one: new projects get it, existing projects keep the model they use (their
    embeddings belong to it) until an admin switches them.
    """
    defaults = list(session.scalars(select(ModelVersion).where(ModelVersion.name == DEFAULT_NAME)
                                    .order_by(ModelVersion.id.desc())))
    src = Path(settings.default_model_dir)
    ckpt, decoder = src / "model.pt", src / "decoder.onnx"
    if not ckpt.is_file() or not decoder.is_file():
        if not defaults:
            log.warning("no default model registered: %s needs model.pt and decoder.onnx", src)
        return defaults[0] if defaults else None
    with ckpt.open("rb") as fh:
        digest = _sha256(fh)
    for mv in defaults:
        if mv.checkpoint_key and storage.exists(mv.checkpoint_key):
            with storage.open(mv.checkpoint_key) as fh:
                if _sha256(fh) == digest:
                    return mv
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
    mv = ModelVersion(name=DEFAULT_NAME, arch=arch, metrics=_headline(metrics),
                      parent_id=defaults[0].id if defaults else None)
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
    if defaults:
        log.warning("the shipped default model changed: registered %s as model version %s (after %s); "
                    "new projects use it, existing ones keep their model until an admin switches them "
                    "(POST /projects/{id}/active-model)", src, mv.id, defaults[0].id)
    else:
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
    """The newest registered shipped default (what new projects start with)."""
    return session.scalar(select(ModelVersion.id).where(ModelVersion.name == DEFAULT_NAME)
                          .order_by(ModelVersion.id.desc()).limit(1))
