"""Failure paths of the tasks, run in-process against SQLite: a job or round that cannot do its work
ends ``failed`` with a reason that names the problem (or stays ``cancelled``), never ``running``, and
leaves nothing half-written (model version rows and files, export files, annotations)."""
from __future__ import annotations

import errno

import sqlalchemy as sa
from worker_test_support import Env, _rle_box, add_annotations, insert, rows, seed_project

from backend.storage import LocalStorage, keys


def _execute(env: Env, *statements: str, **params) -> None:
    eng = env.engine()
    with eng.begin() as conn:
        for sql in statements:
            conn.execute(sa.text(sql), params)
    eng.dispose()


def _one_box(model, image, params, refine=None):  # noqa: ANN001 - the generator's signature
    return [{"segmentation": _rle_box(48, 64, 2, 10, 3, 20), "bbox": [3, 2, 17, 8], "area": 136.0,
             "predicted_iou": 0.95, "stability_score": 0.97, "point_coords": [[5.0, 5.0]], "crop_box": [0, 0, 64, 48]}]


def test_a_model_version_whose_checkpoint_is_missing_fails_instead_of_using_the_default(env: Env) -> None:
    """The version records its checkpoint, the file is gone: embedding, automatic masks and a round fail
    naming the file (they used to run on the shipped default model, filed under this version)."""
    from workers.tasks.automatic import automatic_batch
    from workers.tasks.embed import embed_image
    from workers.tasks.rounds import train_round

    ids = seed_project(env, n_images=2)
    mv = ids["model_version_id"]
    _execute(env, "UPDATE model_versions SET checkpoint_key = :k WHERE id = :i", k=keys.checkpoint_key(mv), i=mv)
    missing = f"its checkpoint {keys.checkpoint_key(mv)} is missing from storage"
    assert embed_image(image_id=ids["image_ids"][0], model_version_id=mv) == "failed"
    assert missing in rows(env, "SELECT error FROM images WHERE id = :i", i=ids["image_ids"][0])[0][0]
    assert not rows(env, "SELECT id FROM embeddings")
    jid = insert(env, "jobs", project_id=ids["project_id"], kind="automatic", status="queued")
    assert automatic_batch(job_id=jid) == "failed"
    assert missing in rows(env, "SELECT error FROM jobs WHERE id = :j", j=jid)[0][0]
    add_annotations(env, ids, per_image=1)
    rid = insert(env, "rounds", project_id=ids["project_id"], status="queued", base_model_version_id=mv,
                 params={"steps": 1, "image_size": 64, "max_clicks": 1})
    assert train_round(round_id=rid) == "failed"
    status, error = rows(env, "SELECT status, error FROM rounds")[0]
    assert status == "failed" and missing in error
    assert [r[0] for r in rows(env, "SELECT id FROM model_versions")] == [mv]


def test_an_embedding_that_succeeds_after_a_failure_clears_the_images_error(env: Env) -> None:
    """The image's reason is the last attempt's: once its embedding is stored (the checkpoint put back,
    the project embedded again), the image no longer lists the old failure."""
    from workers.tasks.embed import embed_image

    ids = seed_project(env, n_images=1)
    mv, image_id = ids["model_version_id"], ids["image_ids"][0]
    _execute(env, "UPDATE model_versions SET checkpoint_key = :k WHERE id = :i", k=keys.checkpoint_key(mv), i=mv)
    assert embed_image(image_id=image_id, model_version_id=mv) == "failed"
    assert "is missing from storage" in rows(env, "SELECT error FROM images WHERE id = :i", i=image_id)[0][0]
    _execute(env, "UPDATE model_versions SET checkpoint_key = NULL WHERE id = :i", i=mv)  # the shipped weights
    assert embed_image(image_id=image_id, model_version_id=mv) == "done"
    assert rows(env, "SELECT status, error FROM images WHERE id = :i", i=image_id) == [("embedded", None)]


def test_a_round_whose_model_cannot_be_stored_fails_and_leaves_no_model_version(env: Env, monkeypatch,
                                                                                tmp_path) -> None:
    """The last step (copy the new model into storage) fails: the round is failed with the reason, not
    left running, and neither the model version row nor a copied file stays."""
    from workers.engine.rounds import RoundOutput
    from workers.tasks import rounds

    ids = seed_project(env, n_images=1)
    add_annotations(env, ids, per_image=1)
    (tmp_path / "model.pt").write_bytes(b"weights")
    (tmp_path / "decoder.onnx").write_bytes(b"decoder")
    monkeypatch.setattr(rounds, "run_round", lambda *a, **k: RoundOutput(
        tmp_path / "model.pt", tmp_path / "decoder.onnx", {}, {}, 0, 1, 1))
    real_put_file = LocalStorage.put_file

    def disk_full_for_decoders(self, key, src):  # noqa: ANN001
        if key.endswith(".onnx"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_put_file(self, key, src)

    monkeypatch.setattr(LocalStorage, "put_file", disk_full_for_decoders)
    rid = insert(env, "rounds", project_id=ids["project_id"], status="queued")
    assert rounds.train_round(round_id=rid) == "failed"
    status, error, mv_id = rows(env, "SELECT status, error, model_version_id FROM rounds")[0]
    assert (status, mv_id) == ("failed", None) and "No space left on device" in error
    assert [r[0] for r in rows(env, "SELECT id FROM model_versions")] == [ids["model_version_id"]]
    assert not list((env.data_dir / "storage").glob("models/*/*")), "a copied model file was left behind"


def test_a_label_deleted_under_a_job_fails_it_with_the_reason(env: Env, monkeypatch) -> None:
    """The admin deletes the job's label (unused yet) while it is queued or running: the job fails
    naming the label, instead of crashing on the database's refusal and staying running for ever."""
    from workers.tasks import automatic

    ids = seed_project(env, n_images=2)
    label = rows(env, "SELECT id FROM labels")[0][0]
    jid = insert(env, "jobs", project_id=ids["project_id"], kind="automatic", status="queued",
                 params={"label_id": label})

    def delete_label_then_segment(*args, **kwargs):
        _execute(env, "DELETE FROM labels WHERE id = :l", l=label)
        return _one_box(*args, **kwargs)

    monkeypatch.setattr(automatic, "generate_masks", delete_label_then_segment)
    assert automatic.automatic_batch(job_id=jid) == "failed"
    status, error = rows(env, "SELECT status, error FROM jobs WHERE id = :j", j=jid)[0]
    assert status == "failed" and f"label {label} no longer exists" in error
    assert not rows(env, "SELECT id FROM annotations")
    # a job queued with a label deleted before it started fails the same way, before any image
    again = insert(env, "jobs", project_id=ids["project_id"], kind="prefill", status="queued",
                   params={"label_id": label})
    assert automatic.prefill_semi_auto(job_id=again) == "failed"
    assert f"label {label} no longer exists" in rows(env, "SELECT error FROM jobs WHERE id = :j", j=again)[0][0]


def test_the_workers_time_limit_ends_a_job_as_failed_not_as_one_failed_image(env: Env, monkeypatch) -> None:
    """Celery raises its soft time limit inside the image being segmented: the job stops there and says
    why, keeping the masks of the images done before (it used to count it as that image's failure and go
    on until the hard limit killed the worker, leaving the job running)."""
    from celery.exceptions import SoftTimeLimitExceeded

    from workers.tasks import automatic

    ids = seed_project(env, n_images=3)
    calls = []

    def limit_on_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise SoftTimeLimitExceeded()
        return _one_box(*args, **kwargs)

    monkeypatch.setattr(automatic, "generate_masks", limit_on_the_second)
    jid = insert(env, "jobs", project_id=ids["project_id"], kind="automatic", status="queued")
    assert automatic.automatic_batch(job_id=jid) == "failed"
    assert len(calls) == 2, "the batch went on after the time limit"
    status, error = rows(env, "SELECT status, error FROM jobs WHERE id = :j", j=jid)[0]
    assert status == "failed" and "time limit" in error
    assert [r[0] for r in rows(env, "SELECT DISTINCT image_id FROM annotations")] == [ids["image_ids"][0]]


def test_a_job_on_a_project_without_images_fails_with_the_reason(env: Env) -> None:
    from workers.tasks.automatic import automatic_batch, prefill_semi_auto

    ids = seed_project(env, n_images=0)
    for task, kind in ((automatic_batch, "automatic"), (prefill_semi_auto, "prefill")):
        jid = insert(env, "jobs", project_id=ids["project_id"], kind=kind, status="queued")
        assert task(job_id=jid) == "failed"
        status, error = rows(env, "SELECT status, error FROM jobs WHERE id = :j", j=jid)[0]
        assert status == "failed" and "has no images to segment" in error


def test_a_cancelled_job_whose_project_is_deleted_meanwhile_stops_quietly(env: Env, monkeypatch) -> None:
    """Cancel, then delete the project (allowed once the job is cancelled) while the worker segments an
    image: the worker stores nothing and ends without an error."""
    from workers.tasks import automatic

    ids = seed_project(env, n_images=2)
    jid = insert(env, "jobs", project_id=ids["project_id"], kind="automatic", status="queued")

    def cancel_and_delete_project(*args, **kwargs):
        _execute(env, "DELETE FROM jobs", "DELETE FROM images", "DELETE FROM labels", "DELETE FROM projects")
        return _one_box(*args, **kwargs)

    monkeypatch.setattr(automatic, "generate_masks", cancel_and_delete_project)
    assert automatic.automatic_batch(job_id=jid) == "cancelled"
    assert not rows(env, "SELECT id FROM annotations")


def test_an_export_cancelled_while_it_is_built_stays_cancelled_and_keeps_no_file(env: Env, monkeypatch) -> None:
    from backend.services import export as export_service
    from workers.tasks.export import export_dataset

    ids = seed_project(env, n_images=1)
    jid = insert(env, "jobs", project_id=ids["project_id"], kind="export", status="queued", params={"format": "coco"})
    real_build = export_service.build_export

    def build_then_cancel(*args, **kwargs):
        data = real_build(*args, **kwargs)
        _execute(env, "UPDATE jobs SET status = 'cancelled', error = 'cancelled by admin' WHERE id = :j", j=jid)
        return data

    monkeypatch.setattr(export_service, "build_export", build_then_cancel)
    assert export_dataset(job_id=jid) == "cancelled"
    assert rows(env, "SELECT status, error, result FROM jobs")[0] == ("cancelled", "cancelled by admin", None)
    assert not LocalStorage(env.data_dir / "storage").exists(keys.export_key(jid, "json"))


def test_an_export_that_cannot_be_written_fails_with_the_reason(env: Env, monkeypatch) -> None:
    from workers.tasks.export import export_dataset

    ids = seed_project(env, n_images=1)
    jid = insert(env, "jobs", project_id=ids["project_id"], kind="export", status="queued", params={"format": "coco"})

    def disk_full(self, key, data):  # noqa: ANN001
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(LocalStorage, "put_bytes", disk_full)
    assert export_dataset(job_id=jid) == "failed"
    status, error = rows(env, "SELECT status, error FROM jobs")[0]
    assert status == "failed" and "could not write the export file" in error and "No space left" in error


def test_an_export_that_crashes_is_failed_not_left_running(env: Env, monkeypatch) -> None:
    from backend.services import export as export_service
    from workers.tasks.export import export_dataset

    ids = seed_project(env, n_images=1)
    jid = insert(env, "jobs", project_id=ids["project_id"], kind="export", status="queued", params={"format": "coco"})

    def crash(*args, **kwargs):
        raise KeyError("segmentation")

    monkeypatch.setattr(export_service, "build_export", crash)
    assert export_dataset(job_id=jid) == "failed"
    assert rows(env, "SELECT status, error FROM jobs")[0] == ("failed", "KeyError: 'segmentation'")


def test_a_task_whose_retries_are_spent_fails_its_job_and_round(env: Env, monkeypatch) -> None:
    """A lost connection that outlasts every retry: Celery gives the task up, and its job (or round) is
    failed with the reason instead of staying running for ever; a cancelled job stays cancelled."""
    from workers.tasks import automatic, rounds

    ids = seed_project(env, n_images=1)
    calls = []

    def connection_lost(*args, **kwargs):
        calls.append(1)
        raise sa.exc.OperationalError("SELECT 1", {}, ConnectionError("server closed the connection"))

    monkeypatch.setattr(automatic, "_run_batch", connection_lost)
    monkeypatch.setattr(rounds, "train_round_impl", connection_lost)
    jid = insert(env, "jobs", project_id=ids["project_id"], kind="automatic", status="running")
    result = automatic.automatic_batch.apply(kwargs={"job_id": jid})  # as a worker runs it, retries included
    assert result.failed() and len(calls) == automatic.automatic_batch.max_retries + 1
    status, error = rows(env, "SELECT status, error FROM jobs WHERE id = :j", j=jid)[0]
    assert status == "failed" and "OperationalError" in error and "server closed the connection" in error
    rid = insert(env, "rounds", project_id=ids["project_id"], status="running",
                 base_model_version_id=ids["model_version_id"], params={})
    assert rounds.train_round.apply(kwargs={"round_id": rid}).failed()
    assert rows(env, "SELECT status FROM rounds WHERE id = :r", r=rid) == [("failed",)]
    cancelled = insert(env, "jobs", project_id=ids["project_id"], kind="automatic", status="cancelled")
    assert automatic.automatic_batch.apply(kwargs={"job_id": cancelled}).failed()
    assert rows(env, "SELECT status, error FROM jobs WHERE id = :j", j=cancelled) == [("cancelled", None)]


def test_a_round_cancelled_while_it_trains_stops_and_registers_no_model(env: Env, monkeypatch) -> None:
    """``POST /rounds/{id}/cancel`` while the worker trains: the round stops at its next step, stays
    ``cancelled`` and makes no model version; a cancelled round that was still queued is skipped."""
    from workers.tasks import rounds

    ids = seed_project(env, n_images=1)
    add_annotations(env, ids, per_image=1)
    rid = insert(env, "rounds", project_id=ids["project_id"], status="queued",
                 base_model_version_id=ids["model_version_id"], params={"steps": 4, "image_size": 64, "max_clicks": 1})
    real, steps = rounds.run_round, []

    def cancel_after_the_first_step(*args, on_progress, **kwargs):
        def hook(fraction, message):
            on_progress(fraction, message)
            if message.startswith("training step"):  # the admin cancels once training is under way
                steps.append(message)
                _execute(env, "UPDATE rounds SET status = 'cancelled', error = 'cancelled by admin' WHERE id = :r",
                         r=rid)
        return real(*args, on_progress=hook, **kwargs)

    monkeypatch.setattr(rounds, "run_round", cancel_after_the_first_step)
    assert rounds.train_round(round_id=rid) == "cancelled"
    assert steps == ["training step 1/4"], f"the round went on training after it was cancelled: {steps}"
    assert rows(env, "SELECT status, error, model_version_id FROM rounds WHERE id = :r", r=rid) == [
        ("cancelled", "cancelled by admin", None)]
    assert [r[0] for r in rows(env, "SELECT id FROM model_versions")] == [ids["model_version_id"]]
    queued = insert(env, "rounds", project_id=ids["project_id"], status="cancelled",
                    base_model_version_id=ids["model_version_id"], params={"steps": 1})
    assert rounds.train_round(round_id=queued) == "cancelled" and len(steps) == 1
