"""Task functions run in-process (no broker) against SQLite with the tiny random-init model."""
from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from backend.services.embedding_format import decode_embedding
from backend.storage import LocalStorage, keys
from worker_test_support import Env, add_annotations, insert, rows, seed_project


def test_embed_image_stores_both_dtypes_and_is_idempotent(env: Env) -> None:
    from workers.tasks.embed import embed_image

    ids = seed_project(env, n_images=1)
    image_id, mv = ids["image_ids"][0], ids["model_version_id"]
    assert embed_image(image_id=image_id, model_version_id=mv) == "done"
    sha = rows(env, "SELECT sha256 FROM images")[0][0]
    store = LocalStorage(env.data_dir / "storage")
    arr16, h16 = decode_embedding(store.get_bytes(keys.embedding_key(sha, mv, "float16")))
    arr8, h8 = decode_embedding(store.get_bytes(keys.embedding_key(sha, mv, "int8")))
    assert arr16.shape == (1, 256, 64, 64) and list(h16.orig_size) == [48, 64] and list(h16.input_size) == [768, 1024]
    assert np.abs(arr16.astype(np.float32) - arr8.astype(np.float32)).max() < 0.05 * np.abs(arr16).max() + 1e-3
    assert rows(env, "SELECT status FROM images")[0][0] == "embedded"
    mtime = store.local_path(keys.embedding_key(sha, mv, "float16")).stat().st_mtime_ns
    assert embed_image(image_id=image_id, model_version_id=mv) == "skipped"
    assert store.local_path(keys.embedding_key(sha, mv, "float16")).stat().st_mtime_ns == mtime
    assert sorted(r[0] for r in rows(env, "SELECT dtype FROM embeddings")) == ["float16", "int8"]


def test_embed_project_records_bad_images_and_goes_on(env: Env, monkeypatch) -> None:
    from workers.tasks.embed import embed_project

    monkeypatch.setenv("MASKLOOP_MAX_IMAGE_PIXELS", "5000")
    from backend.core.config import get_settings

    get_settings.cache_clear()
    ids = seed_project(env, n_images=3, corrupt={1})
    # image 2 is missing from storage
    sha2 = rows(env, "SELECT sha256 FROM images WHERE id = :i", i=ids["image_ids"][2])[0][0]
    LocalStorage(env.data_dir / "storage").delete(keys.image_key(sha2, "png"))
    counts = embed_project(project_id=ids["project_id"])
    assert counts == {"done": 1, "skipped": 0, "failed": 2}
    errors = dict(rows(env, "SELECT id, error FROM images"))
    assert errors[ids["image_ids"][0]] is None
    assert "cannot decode" in errors[ids["image_ids"][1]]
    assert "missing from storage" in errors[ids["image_ids"][2]]


def test_embed_too_large_and_bad_model(env: Env, monkeypatch, tmp_path) -> None:
    from backend.core.config import get_settings
    from workers.engine.models import clear_cache
    from workers.tasks.embed import embed_image

    ids = seed_project(env, n_images=2)
    monkeypatch.setenv("MASKLOOP_MAX_IMAGE_PIXELS", "1000")
    get_settings.cache_clear()
    assert embed_image(image_id=ids["image_ids"][0], model_version_id=ids["model_version_id"]) == "failed"
    assert "more than the limit of 1000" in rows(env, "SELECT error FROM images WHERE id = :i", i=ids["image_ids"][0])[0][0]
    bad = tmp_path / "badmodel"
    bad.mkdir()
    (bad / "model.pt").write_bytes(b"this is not a checkpoint")
    monkeypatch.setenv("MASKLOOP_MAX_IMAGE_PIXELS", "64000000")
    monkeypatch.setenv("MASKLOOP_DEFAULT_MODEL_DIR", str(bad))
    get_settings.cache_clear()
    clear_cache()
    assert embed_image(image_id=ids["image_ids"][1], model_version_id=ids["model_version_id"]) == "failed"
    assert "does not load" in rows(env, "SELECT error FROM images WHERE id = :i", i=ids["image_ids"][1])[0][0]
    assert not rows(env, "SELECT id FROM embeddings")


def test_round_with_empty_snapshot_fails_with_reason(env: Env) -> None:
    from workers.tasks.rounds import train_round

    ids = seed_project(env, n_images=1)
    rid = insert(env, "rounds", project_id=ids["project_id"], status="queued")
    assert train_round(round_id=rid) == "failed"
    status, error = rows(env, "SELECT status, error FROM rounds")[0]
    assert status == "failed" and "no annotations" in error


def test_prefill_keeps_only_masks_not_overlapping_existing(env: Env) -> None:
    pytest.importorskip("workers.sam.automatic")
    import json

    from workers.tasks.automatic import prefill_semi_auto

    ids = seed_project(env, n_images=2)
    add_annotations(env, ids, per_image=1)
    params = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "min_mask_region_area": 0,
              "max_overlap": 0.3}
    jid = insert(env, "jobs", project_id=ids["project_id"], kind="prefill", status="queued", params=params)
    assert prefill_semi_auto(job_id=jid) == "succeeded"
    from workers.engine.automatic import overlap_with

    for image_id in ids["image_ids"]:
        anns = rows(env, "SELECT source, review_state, segmentation FROM annotations WHERE image_id = :i", i=image_id)
        manual = [json.loads(a[2]) for a in anns if a[0] == "manual"]
        prefilled = [json.loads(a[2]) for a in anns if a[0] == "semi_auto"]
        assert all(a[1] == "pending" for a in anns if a[0] == "semi_auto")
        assert (overlap_with(prefilled, manual) <= 0.3).all()
    assert rows(env, "SELECT done, total FROM jobs")[0] == (2, 2)
    scores = [a[0] for a in rows(env, "SELECT object_score FROM annotations WHERE source = 'semi_auto'")]
    n_prefilled = len(scores)
    assert n_prefilled > 0
    assert all(s is not None and 0 < s < 1 for s in scores)  # each prefilled mask keeps its object score
    # finished job: a redelivery is a no-op
    before = len(rows(env, "SELECT id FROM annotations"))
    assert prefill_semi_auto(job_id=jid) == "succeeded"
    assert len(rows(env, "SELECT id FROM annotations")) == before


def test_a_job_that_makes_no_mask_says_which_filters_stopped_them(env: Env) -> None:
    pytest.importorskip("workers.sam.automatic")
    from workers.tasks.automatic import prefill_semi_auto

    ids = seed_project(env, n_images=1)
    params = {"points_per_side": 2, "pred_iou_thresh": 1.0, "stability_score_thresh": 0.5}
    jid = insert(env, "jobs", project_id=ids["project_id"], kind="prefill", status="queued", params=params)
    assert prefill_semi_auto(job_id=jid) == "succeeded"
    message = rows(env, "SELECT message FROM jobs WHERE id = :j", j=jid)[0][0]
    assert message.startswith("1 image, 0 masks; no mask passed the filters (predicted IoU ≥ 1, stability ≥ 0.5")
    assert "min predicted IoU" in message


def test_train_round_registers_new_model_version(env: Env) -> None:
    pytest.importorskip("workers.sam.onnx", reason="the ONNX decoder export (issue 2) has not landed")
    import json

    from workers.tasks.rounds import train_round

    ids = seed_project(env, n_images=5)
    add_annotations(env, ids)
    rid = insert(env, "rounds", project_id=ids["project_id"], status="queued",
                 params={"steps": 2, "checkpoint_every": 1, "image_size": 256, "max_clicks": 2,
                         "iou_head_min_images": 2})
    assert train_round(round_id=rid) == "succeeded"
    status, progress, mv_id, before, after, n_ann, n_img = rows(
        env, "SELECT status, progress, model_version_id, metrics_before, metrics_after, n_annotations, n_images "
             "FROM rounds")[0]
    assert (status, progress, n_ann, n_img) == ("succeeded", 1.0, 10, 5)
    assert "noc@85" in json.loads(before) and "miou@1" in json.loads(after)
    name, parent, round_id, metrics = rows(env, "SELECT name, parent_id, round_id, metrics FROM model_versions "
                                                 "WHERE id = :i", i=mv_id)[0]
    assert (parent, round_id) == (ids["model_version_id"], rid)
    # the IoU head was refitted on the round's training split, and its held-out report recorded
    metrics = json.loads(metrics)
    assert metrics["n_train_images"] >= 2, metrics
    fit = metrics["iou_head_fit"]
    assert fit["heldout_after"]["mse"] <= fit["heldout_before"]["mse"] and fit["train_prompts"] > 0
    # kept only where it lowers the error without lowering the first candidate's IoU
    assert fit["kept"] == (fit["heldout_after"]["mse"] < fit["heldout_before"]["mse"]
                           and fit["heldout_after"]["chosen_iou"] >= fit["heldout_before"]["chosen_iou"]), fit
    assert (env.data_dir / "storage" / "rounds" / str(rid) / "model_head.pt").is_file()
    store = LocalStorage(env.data_dir / "storage")
    assert store.exists(keys.checkpoint_key(mv_id)) and store.exists(keys.decoder_key(mv_id))
    import onnx

    onnx.checker.check_model(str(store.local_path(keys.decoder_key(mv_id))))
    # the new version loads and embeds
    from workers.tasks.embed import embed_image

    assert embed_image(image_id=ids["image_ids"][0], model_version_id=mv_id) == "done"


def test_batched_encoder_matches_single_image_path(env: Env) -> None:
    import torch

    from workers.engine.embedding import compute_embedding, compute_embeddings
    from workers.engine.images import decode_image
    from workers.tasks.common import model_for_version
    from worker_test_support import png_bytes

    ids = seed_project(env, n_images=0)
    model = model_for_version(ids["model_version_id"])
    images = [decode_image(png_bytes(0), max_pixels=10**6), decode_image(png_bytes(1, h=64, w=40), max_pixels=10**6)]
    batched = compute_embeddings(model, images)
    for image, (emb, orig, inp) in zip(images, batched):
        ref, ref_orig, ref_inp = compute_embedding(model, image)
        assert (orig, inp) == (ref_orig, ref_inp)
        torch.testing.assert_close(torch.from_numpy(emb), torch.from_numpy(ref), atol=1e-4, rtol=1e-4)


def test_autocast_setting_is_checked_and_a_no_op_on_cpu(env: Env, monkeypatch) -> None:
    import contextlib

    import pydantic

    from backend.core.config import Settings
    from workers.engine.embedding import autocast_for
    from workers.tasks.common import model_for_version

    with monkeypatch.context() as env_vars:
        env_vars.setenv("MASKLOOP_AUTOCAST", "fp8")
        with pytest.raises(pydantic.ValidationError, match="autocast"):
            Settings()
    model = model_for_version(seed_project(env, n_images=0)["model_version_id"])
    for mode in ("none", "fp16", "bf16"):  # the model is on the CPU: float32, whatever the setting
        assert isinstance(autocast_for(model, mode), contextlib.nullcontext)


class _Killed(BaseException):
    """Stands in for the process dying (not an Exception: the batch must not catch it)."""


def test_automatic_batch_bookkeeping_resumes_without_duplicates(env: Env, monkeypatch) -> None:
    """Batch bookkeeping only: the generator is replaced by a deterministic box per image so the
    test isolates resume/failure handling (the real generator runs in the fault test)."""
    import json

    import workers.tasks.automatic as automatic
    from worker_test_support import _rle_box

    ids = seed_project(env, n_images=4, corrupt={2})
    calls: list[int] = []

    def fake_generate(model, image, params, refine=None):
        calls.append(len(calls))
        if len(calls) == 2 and not getattr(fake_generate, "restarted", False):
            raise _Killed()
        return [{"segmentation": _rle_box(48, 64, 2, 10, 3, 20), "bbox": [3, 2, 17, 8], "area": 136.0,
                 "predicted_iou": 0.95, "stability_score": 0.97, "point_coords": [[5.0, 5.0]],
                 "crop_box": [0, 0, 64, 48]}]

    monkeypatch.setattr(automatic, "generate_masks", fake_generate)
    jid = insert(env, "jobs", project_id=ids["project_id"], kind="automatic", status="queued")
    with pytest.raises(_Killed):
        automatic.automatic_batch(job_id=jid)
    assert rows(env, "SELECT status, done, total FROM jobs")[0] == ("running", 1, 4)
    fake_generate.restarted = True
    assert automatic.automatic_batch(job_id=jid) == "succeeded"
    anns = rows(env, "SELECT image_id, source, predicted_iou, point_coords, crop_box FROM annotations")
    assert sorted(a[0] for a in anns) == [ids["image_ids"][i] for i in (0, 1, 3)]
    assert all(a[1] == "automatic" and a[2] == 0.95 and json.loads(a[3]) == [[5.0, 5.0]] for a in anns)
    status, done, total, message, state = rows(env, "SELECT status, done, total, message, state FROM jobs")[0]
    assert (status, done, total) == ("succeeded", 4, 4) and "1 image failed" in message
    assert "cannot decode" in json.loads(state)["failed"][str(ids["image_ids"][2])]
    assert automatic.automatic_batch(job_id=jid) == "succeeded"  # redelivered after success: no-op
    assert len(rows(env, "SELECT id FROM annotations")) == 3


def test_export_job_writes_coco_file_and_bad_format_fails(env: Env) -> None:
    import json

    from workers.tasks.export import export_dataset

    ids = seed_project(env, n_images=2)
    add_annotations(env, ids)
    jid = insert(env, "jobs", project_id=ids["project_id"], kind="export", status="queued",
                 params={"format": "coco", "filters": {"source": ["manual"]}})
    assert export_dataset(job_id=jid) == "succeeded"
    result = json.loads(rows(env, "SELECT result FROM jobs WHERE id = :i", i=jid)[0][0])
    coco = json.loads(LocalStorage(env.data_dir / "storage").get_bytes(result["storage_key"]))
    assert result["storage_key"] == keys.export_key(jid, "json")
    assert len(coco["images"]) == 2 and len(coco["annotations"]) == 4
    bad = insert(env, "jobs", project_id=ids["project_id"], kind="export", status="queued",
                 params={"format": "pascal"})
    assert export_dataset(job_id=bad) == "failed"
    assert "unknown export format 'pascal'" in rows(env, "SELECT error FROM jobs WHERE id = :i", i=bad)[0][0]
    # an export cancelled before a worker took it is not run
    cancelled = insert(env, "jobs", project_id=ids["project_id"], kind="export", status="cancelled",
                       params={"format": "coco"})
    assert export_dataset(job_id=cancelled) == "cancelled"
    assert rows(env, "SELECT status, result FROM jobs WHERE id = :i", i=cancelled)[0] == ("cancelled", None)


def test_a_cancelled_job_stops_before_its_next_image(env: Env, monkeypatch) -> None:
    """An admin's cancel (the job row says ``cancelled``) is honoured between images: the image being
    segmented when it came is not stored, the rest are not started, and the status stays."""
    from workers.tasks import automatic

    ids = seed_project(env, n_images=3)
    jid = insert(env, "jobs", project_id=ids["project_id"], kind="automatic", status="queued",
                 params={"points_per_side": 2})
    seen: list[int] = []

    def generate_then_cancel(model, image, params, refine):  # noqa: ANN001 - the generator's signature
        seen.append(1)
        eng = env.engine()
        with eng.begin() as conn:
            conn.execute(sa.text("UPDATE jobs SET status = 'cancelled' WHERE id = :j"), {"j": jid})
        eng.dispose()
        return []

    monkeypatch.setattr(automatic, "generate_masks", generate_then_cancel)
    assert automatic.automatic_batch(job_id=jid) == "cancelled"
    assert len(seen) == 1, "images after the cancel were still segmented"
    status, done = rows(env, "SELECT status, done FROM jobs WHERE id = :j", j=jid)[0]
    assert (status, done) == ("cancelled", 0)
    # a redelivered task does nothing
    assert automatic.automatic_batch(job_id=jid) == "cancelled"
    assert len(seen) == 1
