"""Model registry and the round life cycle: `maskloop migrate` registers the shipped default model
once per content (files copied into storage; a changed one becomes a new version), serves it as
decoder.onnx and makes it active for projects; a succeeded round is promoted (active model changes,
the project is re-embedded) or discarded; metrics."""
from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper
from typer.testing import CliRunner

from backend.cli import app
from backend.services.mask_refine import SELECT_WEIGHTS
from backend.storage import LocalStorage, keys
from tests.backend.conftest import rle_of
from tests.backend.test_images import _queued_tasks

runner = CliRunner()


def tiny_onnx() -> bytes:
    """A real (identity) ONNX graph: the server only stores and serves the bytes."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    return helper.make_model(graph).SerializeToString()


def test_migrate_registers_default_model_once(api, tmp_path, monkeypatch):
    from backend.core.config import get_settings

    c = api.client
    early = api.make_project("before the model")
    assert early["active_model_version_id"] is None
    # The fixture's model dir is missing: migrate warns and succeeds.
    r = runner.invoke(app, ["migrate"])
    assert r.exit_code == 0 and "no default model registered" in " ".join(r.output.split()), r.output
    model_dir = tmp_path / "default-model"
    model_dir.mkdir()
    (model_dir / "model.pt").write_bytes(b"checkpoint bytes")
    decoder = tiny_onnx()
    (model_dir / "decoder.onnx").write_bytes(decoder)
    (model_dir / "config.json").write_text('{"arch": "lite"}')
    (model_dir / "eval.json").write_text(json.dumps({"split": "val", "results": {
        "model": {"noc@85": 17.6, "miou@1": 0.25, "per_sample": [{"noc@85": 20}]},
        "grabcut": {"noc@85": 11.1, "miou@1": 0.16}}}))
    monkeypatch.setenv("MASKLOOP_DEFAULT_MODEL_DIR", str(model_dir))
    get_settings.cache_clear()
    for _ in range(2):  # idempotent
        r = runner.invoke(app, ["migrate"])
        assert r.exit_code == 0, r.output
    models = c.get("/api/v1/models", headers=api.admin).json()
    assert [(m["name"], m["arch"]) for m in models] == [("default", "lite")]
    # how clients refine this model's masks: the installation's setting (MASKLOOP_MASK_REFINE)
    assert models[0]["refine"] == {"method": "guided", "work_size": 320, "radius": 12, "eps": 0.01,
                                   "colour": 3.0, "colour_bins": 16, "colour_clip": 3.0,
                                   "grabcut": 200, "grabcut_iters": 2, "grabcut_disc": 5, "grabcut_crop": 0.75,
                                   "select": "head", "select_weights": list(SELECT_WEIGHTS)}
    settings = c.app.state.settings
    settings.mask_refine, settings.mask_refine_colour, settings.mask_refine_select = "none", 0.5, "refined"
    try:
        refine = c.get(f"/api/v1/models/{models[0]['id']}", headers=api.admin).json()["refine"]
        assert (refine["method"], refine["colour"], refine["select"]) == ("none", 0.5, "refined")
    finally:
        settings.mask_refine, settings.mask_refine_colour, settings.mask_refine_select = "guided", 3.0, "head"
    # its evaluation's headline numbers, the model's and the baseline's apart, without per-sample lists
    assert models[0]["metrics"] == {"split": "val", "heldout": {"noc@85": 17.6, "miou@1": 0.25},
                                    "baseline_grabcut": {"noc@85": 11.1, "miou@1": 0.16}}
    mv_id = models[0]["id"]
    assert c.get(f"/api/v1/projects/{early['id']}", headers=api.admin).json()["active_model_version_id"] == mv_id
    assert api.make_project("after")["active_model_version_id"] == mv_id
    storage = LocalStorage(api.settings.resolved_storage_root)
    assert storage.get_bytes(keys.checkpoint_key(mv_id)) == b"checkpoint bytes"
    r = c.get(f"/api/v1/models/{mv_id}/decoder.onnx")  # public weights: no token needed
    assert r.status_code == 200 and r.content == decoder
    onnx.checker.check_model(onnx.load_from_string(r.content))
    r = c.get(f"/api/v1/models/{mv_id}/decoder_multimask.onnx")
    assert r.status_code == 404 and "no multimask decoder" in r.json()["detail"]
    assert c.get("/api/v1/models/999/decoder.onnx").status_code == 404

    # an upgrade ships a better default: a new "default" version after the old one; new projects get
    # it, existing ones keep theirs (their embeddings belong to it); idempotent again
    (model_dir / "model.pt").write_bytes(b"better checkpoint bytes")
    for _ in range(2):
        r = runner.invoke(app, ["migrate"])
        assert r.exit_code == 0, r.output
    models = c.get("/api/v1/models", headers=api.admin).json()
    assert [(m["name"], m["parent_id"]) for m in models] == [("default", None), ("default", mv_id)], models
    new_id = models[1]["id"]
    assert storage.get_bytes(keys.checkpoint_key(new_id)) == b"better checkpoint bytes"
    assert c.get(f"/api/v1/projects/{early['id']}", headers=api.admin).json()["active_model_version_id"] == mv_id
    assert api.make_project("after the upgrade")["active_model_version_id"] == new_id
    (model_dir / "model.pt").write_bytes(b"checkpoint bytes")  # a downgrade finds the old one again
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    assert len(c.get("/api/v1/models", headers=api.admin).json()) == 2


def test_round_promote_and_discard(api):
    from backend.db.models import ModelVersion, Round
    from backend.db.session import session_scope

    c = api.client
    p = api.make_project()
    with session_scope(api.settings.resolved_database_url) as s:
        base, trained = ModelVersion(name="base", arch="lite"), ModelVersion(name="r1", arch="lite")
        s.add_all([base, trained])
        s.flush()
        base_id, trained_id = base.id, trained.id
    c.post(f"/api/v1/projects/{p['id']}/active-model", json={"model_version_id": base_id}, headers=api.admin)
    img = api.add_image(p["id"])
    mask = np.zeros((24, 32), bool)
    mask[2:9, 3:11] = True
    r = c.post(f"/api/v1/images/{img}/annotations", headers=api.admin,
               json={"segmentation": rle_of(mask), "source": "manual", "seconds": 12.0, "clicks": 3})
    assert r.status_code == 201, r.text
    rnd = c.post(f"/api/v1/projects/{p['id']}/rounds", json={}, headers=api.admin).json()
    assert {"task": "maskloop.train_round", "kwargs": {"round_id": rnd["id"]}} in _queued_tasks(api.settings)
    _, annotator = api.make_user("ann")
    assert c.post(f"/api/v1/rounds/{rnd['id']}/promote", headers=annotator).status_code == 403
    with session_scope(api.settings.resolved_database_url) as s:  # what the worker records
        row = s.get(Round, rnd["id"])
        row.status, row.model_version_id = "succeeded", trained_id
        row.metrics_before, row.metrics_after = {"miou": 0.5}, {"miou": 0.6}
    r = c.post(f"/api/v1/rounds/{rnd['id']}/promote", headers=api.admin)
    assert r.status_code == 200 and r.json()["status"] == "promoted"
    assert c.get(f"/api/v1/projects/{p['id']}", headers=api.admin).json()["active_model_version_id"] == trained_id
    assert {"task": "maskloop.embed_project", "kwargs": {"project_id": p["id"]}} in _queued_tasks(api.settings)
    assert c.post(f"/api/v1/rounds/{rnd['id']}/discard", headers=api.admin).status_code == 409
    # A failed round can be discarded (and the next one started).
    rnd2 = c.post(f"/api/v1/projects/{p['id']}/rounds", json={}, headers=api.admin).json()
    assert rnd2["base_model_version_id"] == trained_id
    with session_scope(api.settings.resolved_database_url) as s:
        s.get(Round, rnd2["id"]).status = "failed"
    r = c.post(f"/api/v1/rounds/{rnd2['id']}/discard", headers=api.admin)
    assert r.status_code == 200 and r.json()["status"] == "discarded" and r.json()["finished_at"]
    metrics = c.get(f"/api/v1/projects/{p['id']}/metrics", headers=api.admin).json()
    stage = next(iter(metrics["stages"].values()))
    assert stage["masks"] == 1 and stage["seconds_per_mask"] == 12.0 and stage["clicks_per_mask"] == 3
    assert [(r["id"], r["status"]) for r in metrics["rounds"]] == [(rnd["id"], "promoted"), (rnd2["id"], "discarded")]
    assert metrics["rounds"][0]["metrics_after"] == {"miou": 0.6}

    # a queued (or running) round can be cancelled by an admin, once; the next one can start then
    rnd3 = c.post(f"/api/v1/projects/{p['id']}/rounds", json={}, headers=api.admin).json()
    assert c.post(f"/api/v1/projects/{p['id']}/rounds", json={}, headers=api.admin).status_code == 409
    assert c.post(f"/api/v1/rounds/{rnd3['id']}/cancel", headers=annotator).status_code == 403
    r = c.post(f"/api/v1/rounds/{rnd3['id']}/cancel", headers=api.admin)
    assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["finished_at"], r.text
    assert "cancelled by admin" in r.json()["error"]
    r = c.post(f"/api/v1/rounds/{rnd3['id']}/cancel", headers=api.admin)
    assert r.status_code == 409 and "already ended (cancelled)" in r.json()["detail"]
    assert c.post(f"/api/v1/rounds/{rnd3['id']}/promote", headers=api.admin).status_code == 409
    assert c.post(f"/api/v1/rounds/{rnd['id']}/cancel", headers=api.admin).status_code == 409  # promoted
    assert c.post("/api/v1/rounds/9999/cancel", headers=api.admin).status_code == 404
    assert c.post(f"/api/v1/projects/{p['id']}/rounds", json={}, headers=api.admin).status_code == 201
