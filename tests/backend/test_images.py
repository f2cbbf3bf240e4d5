"""Image upload, folder import and image routes: dedupe, bad files, size guards, traversal, EXIF."""
from __future__ import annotations

import hashlib
import io
import os

import numpy as np
import pytest
from PIL import Image as PILImage
from pycocotools import mask as mask_utils

from backend.core.errors import BadRequest
from backend.services.images import safe_file_name


def png_bytes(h: int = 20, w: int = 30, seed: int = 0) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_with_orientation(h: int, w: int, orientation: int) -> bytes:
    arr = np.zeros((h, w, 3), dtype=np.uint8)
    arr[: h // 2, :, 0] = 255  # top half red
    img = PILImage.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    return buf.getvalue()


def upload(api, pid, files, headers=None):
    return api.client.post(f"/api/v1/projects/{pid}/images", headers=headers or api.admin,
                           files=[("files", (name, data, "application/octet-stream")) for name, data in files])


def test_upload_many_dedupe_and_fetch(any_api):
    api = any_api
    pid = api.make_project()["id"]
    r = upload(api, pid, [("a.png", png_bytes(seed=1)), ("b.png", png_bytes(12, 40, seed=2)),
                          ("notes.txt", b"hello, not an image")])
    assert r.status_code == 201, r.text
    body = r.json()
    assert [im["file_name"] for im in body["created"]] == ["a.png", "b.png"]
    assert body["errors"] == [{"filename": "notes.txt", "detail": "notes.txt: not a readable image"}]
    b = body["created"][1]
    assert (b["width"], b["height"], b["status"]) == (40, 12, "new")
    assert b["sha256"] == hashlib.sha256(png_bytes(12, 40, seed=2)).hexdigest()
    # Same bytes under another name: a duplicate, no new row.
    r = upload(api, pid, [("again.png", png_bytes(seed=1))])
    assert r.status_code == 201
    assert r.json()["created"] == [] and r.json()["duplicates"][0]["id"] == body["created"][0]["id"]
    listing = api.client.get(f"/api/v1/projects/{pid}/images", headers=api.admin).json()
    assert listing["total"] == 2 and len(listing["items"]) == 2
    assert api.client.get(f"/api/v1/projects/{pid}/images?status=done", headers=api.admin).json()["total"] == 0
    assert api.client.get(f"/api/v1/projects/{pid}/images?status=bogus", headers=api.admin).status_code == 400
    page = api.client.get(f"/api/v1/projects/{pid}/images?offset=1&limit=1", headers=api.admin).json()
    assert [im["id"] for im in page["items"]] == [b["id"]]
    f = api.client.get(f"/api/v1/images/{b['id']}/file", headers=api.admin)
    assert f.status_code == 200 and f.content == png_bytes(12, 40, seed=2)
    t = api.client.get(f"/api/v1/images/{b['id']}/thumbnail", headers=api.admin)
    assert t.status_code == 200 and t.headers["content-type"] == "image/jpeg"
    assert PILImage.open(io.BytesIO(t.content)).size == (40, 12)
    # The same bytes in another project are a new image there.
    other = api.make_project("other")["id"]
    assert len(upload(api, other, [("a.png", png_bytes(seed=1))]).json()["created"]) == 1


def test_outsider_cannot_upload_or_read(api):
    pid = api.make_project()["id"]
    image_id = upload(api, pid, [("a.png", png_bytes())]).json()["created"][0]["id"]
    _, outsider = api.make_user("eve")
    assert upload(api, pid, [("b.png", png_bytes(seed=3))], headers=outsider).status_code == 404
    assert api.client.get(f"/api/v1/images/{image_id}/file", headers=outsider).status_code == 404
    assert api.client.get(f"/api/v1/images/{image_id}").status_code == 401


def test_truncated_and_non_image_rejected(api):
    pid = api.make_project()["id"]
    data = png_bytes(64, 64, seed=5)
    r = upload(api, pid, [("cut.png", data[: len(data) // 2])])
    assert r.status_code == 400 and "cut.png" in r.json()["detail"]
    buf = io.BytesIO()
    PILImage.fromarray(np.full((64, 64, 3), 7, np.uint8)).save(buf, format="JPEG")
    r = upload(api, pid, [("cut.jpg", buf.getvalue()[:300])])
    assert r.status_code == 400 and "cut.jpg" in r.json()["detail"]
    assert upload(api, pid, [("empty.png", b"")]).status_code == 400
    assert api.client.get(f"/api/v1/projects/{pid}/images", headers=api.admin).json()["total"] == 0


def test_size_and_pixel_limits(api, monkeypatch):
    pid = api.make_project()["id"]
    api.settings.max_upload_bytes = 2000
    r = upload(api, pid, [("big.png", png_bytes(60, 60))])
    assert r.status_code == 413 and "big.png" in r.json()["detail"]
    api.settings.max_upload_bytes = 50_000_000
    # A decompression bomb: a tiny PNG that claims 20000 x 20000 pixels.
    buf = io.BytesIO()
    PILImage.new("1", (20000, 20000)).save(buf, format="PNG")
    assert len(buf.getvalue()) < 100_000
    api.settings.max_image_pixels = 1_000_000
    r = upload(api, pid, [("bomb.png", buf.getvalue())])
    assert r.status_code == 413 and "bomb.png" in r.json()["detail"] and "pixels" in r.json()["detail"]
    assert api.client.get(f"/api/v1/projects/{pid}/images", headers=api.admin).json()["total"] == 0


@pytest.mark.parametrize("name,expected", [("a.png", "a.png"), ("dir/sub/a.png", "a.png"),
                                           ("C:\\photos\\x.jpg", "x.jpg"), ("/etc/passwd", "passwd")])
def test_safe_file_name(name, expected):
    assert safe_file_name(name) == expected


@pytest.mark.parametrize("name", ["../a.png", "..", "a/../../b.png", "..\\x.png", "", "a\x00.png"])
def test_unsafe_file_name(name):
    with pytest.raises(BadRequest):
        safe_file_name(name)


def test_traversal_name_in_upload(api):
    pid = api.make_project()["id"]
    r = upload(api, pid, [("../../evil.png", png_bytes())])
    assert r.status_code == 400 and ".." in r.json()["detail"]


def test_exif_rotation_stored_upright(api):
    pid = api.make_project()["id"]
    data = jpeg_with_orientation(20, 40, orientation=6)  # 90 degrees: 40x20 pixels shown as 20x40
    r = upload(api, pid, [("rot.jpg", data)])
    im = r.json()["created"][0]
    assert (im["width"], im["height"]) == (20, 40)
    assert im["sha256"] == hashlib.sha256(data).hexdigest()
    f = api.client.get(f"/api/v1/images/{im['id']}/file", headers=api.admin)
    decoded = np.asarray(PILImage.open(io.BytesIO(f.content)).convert("RGB"))
    assert decoded.shape == (40, 20, 3)
    # Orientation 6 turns the red top half into the right half.
    assert decoded[:, 15:, 0].mean() > 200 and decoded[:, :5, 0].mean() < 50
    plain = upload(api, pid, [("plain.jpg", jpeg_with_orientation(20, 40, orientation=1))]).json()["created"][0]
    assert (plain["width"], plain["height"]) == (40, 20)


@pytest.mark.parametrize("orientation,size", [(1, (40, 20)), (3, (40, 20)), (6, (20, 40)), (8, (20, 40))])
def test_workers_decode_stored_file_to_recorded_size(api, orientation, size):
    """What the workers decode from ``storage_key`` is exactly width x height (no double rotation)."""
    from backend.db.models import Image
    from backend.db.session import session_scope
    from backend.storage import LocalStorage
    from workers.engine.images import decode_image

    pid = api.make_project()["id"]
    im = upload(api, pid, [("o.jpg", jpeg_with_orientation(20, 40, orientation))]).json()["created"][0]
    assert (im["width"], im["height"]) == size
    with session_scope(api.settings.resolved_database_url) as s:
        key = s.get(Image, im["id"]).storage_key
    data = LocalStorage(api.settings.resolved_storage_root).get_bytes(key)
    assert decode_image(data, max_pixels=10**6).shape == (size[1], size[0], 3)
    assert key.endswith(".png" if orientation != 1 else ".jpg")


def test_import_folder_roots_and_symlinks(api, tmp_path):
    pid = api.make_project()["id"]
    root = api.settings.import_root_paths[0]
    (root / "set" / "sub").mkdir(parents=True)
    (root / "set" / "a.png").write_bytes(png_bytes(seed=1))
    (root / "set" / "sub" / "b.jpg").write_bytes(png_bytes(seed=2))  # PNG bytes, wrong suffix: still decoded
    (root / "set" / "c.png").write_bytes(b"garbage")
    (root / "set" / "readme.md").write_text("skipped")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(png_bytes(seed=9))
    os.symlink(outside / "secret.png", root / "set" / "link.png")
    url = f"/api/v1/projects/{pid}/images/import-folder"
    r = api.client.post(url, json={"path": str(root / "set")}, headers=api.admin)
    assert r.status_code == 201, r.text
    body = r.json()
    assert sorted(im["file_name"] for im in body["created"]) == ["a.png", "b.jpg"]
    assert [e["filename"] for e in body["errors"]] == ["c.png"]
    assert api.client.post(url, json={"path": str(outside)}, headers=api.admin).status_code == 403
    assert api.client.post(url, json={"path": str(root / "set" / ".." / ".." )}, headers=api.admin).status_code == 403
    os.symlink(outside, root / "escape")
    assert api.client.post(url, json={"path": str(root / "escape")}, headers=api.admin).status_code == 403
    assert api.client.post(url, json={"path": str(root / "missing")}, headers=api.admin).status_code == 400
    r = api.client.post(url, json={"path": str(root / "set") + "\x00x"}, headers=api.admin)
    assert r.status_code == 400 and "NUL" in r.json()["detail"]
    # a folder where nothing can be imported fails as an upload does; a file over the upload limit is
    # refused by its size without being read (a sparse file: huge, no disk used)
    (root / "bad").mkdir()
    (root / "bad" / "c.png").write_bytes(b"garbage")
    r = api.client.post(url, json={"path": str(root / "bad")}, headers=api.admin)
    assert r.status_code == 400 and "c.png" in r.json()["detail"], r.text
    with open(root / "bad" / "huge.png", "wb") as fh:
        fh.truncate(api.settings.max_upload_bytes * 20)
    (root / "bad" / "c.png").unlink()
    r = api.client.post(url, json={"path": str(root / "bad")}, headers=api.admin)
    assert r.status_code == 413 and "huge.png" in r.json()["detail"] and "over the upload limit" in r.json()["detail"]
    _, annotator = api.make_user("ann")
    assert api.client.post(url, json={"path": str(root / "set")}, headers=annotator).status_code == 403


def _queued_tasks(settings) -> list[dict]:
    """Messages waiting in the embedded (SQLite) broker: [{task, kwargs}]."""
    import base64
    import json
    import sqlite3

    db = settings.resolved_data_dir / "broker.db"
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT payload FROM kombu_message").fetchall()
    out = []
    for (payload,) in rows:
        msg = json.loads(payload)
        body = json.loads(base64.b64decode(msg["body"]))
        out.append({"task": msg["headers"]["task"], "kwargs": body[1]})
    return out


def test_upload_enqueues_embeddings_and_survives_broker_outage(api, caplog):
    from backend.db.models import ModelVersion, Project
    from backend.db.session import session_scope

    pid = api.make_project()["id"]
    with session_scope(api.settings.resolved_database_url) as s:
        mv = ModelVersion(name="m", arch="lite")
        s.add(mv)
        s.flush()
        s.get(Project, pid).active_model_version_id = mv_id = mv.id
    created = upload(api, pid, [("a.png", png_bytes(seed=1)), ("b.png", png_bytes(seed=2))]).json()["created"]
    embeds = [t["kwargs"] for t in _queued_tasks(api.settings) if t["task"] == "maskloop.embed_image"]
    assert sorted(e["image_id"] for e in embeds) == sorted(im["id"] for im in created)
    assert all(e["model_version_id"] == mv_id for e in embeds)
    # A broker that refuses connections: the upload still succeeds (the error is logged).
    api.settings.broker_url = "sqla+sqlite:////nonexistent-dir/broker.db"
    r = upload(api, pid, [("c.png", png_bytes(seed=3))])
    assert r.status_code == 201 and len(r.json()["created"]) == 1
    assert "could not enqueue maskloop.embed_image" in caplog.text


def test_concurrent_same_bytes_on_postgres_give_one_row(pg_api):
    """Two sessions store the same bytes at once: the second waits on the unique index, then
    reports the first one's row as a duplicate (savepoint), instead of failing."""
    import threading
    import time

    from backend.db.models import Image, Project
    from backend.db.session import make_session
    from backend.storage import LocalStorage
    from backend.services.images import ingest_bytes

    api = pg_api
    pid = api.make_project()["id"]
    url, storage, data = api.settings.resolved_database_url, LocalStorage(api.settings.resolved_storage_root), png_bytes()
    first, second = make_session(url), make_session(url)
    try:
        a = ingest_bytes(first, storage, api.settings, first.get(Project, pid), "a.png", data)
        out = {}
        thread = threading.Thread(target=lambda: out.update(
            b=ingest_bytes(second, storage, api.settings, second.get(Project, pid), "b.png", data)))
        thread.start()
        time.sleep(0.5)
        first.commit()
        thread.join(20)
        second.commit()
        assert not a.duplicate and out["b"].duplicate and out["b"].image.id == a.image.id
    finally:
        first.close()
        second.close()
    with make_session(url) as s:
        assert len(s.query(Image).filter_by(project_id=pid).all()) == 1


def _small_rle() -> dict:
    """A 24×32 COCO RLE with one small rectangle (the test images' size)."""
    mask = np.zeros((24, 32), np.uint8, order="F")
    mask[2:9, 3:12] = 1
    return {"size": [24, 32], "counts": mask_utils.encode(mask)["counts"].decode()}


def _refused_while_a_job_runs(api, url: str, project_id: int, kind: str, status: str) -> None:
    """DELETE ``url`` is a 409 naming the project's unfinished job; once the job ends it no longer blocks."""
    from backend.db.models import Job
    from backend.db.session import session_scope

    with session_scope(api.settings.resolved_database_url) as s:
        job = Job(project_id=project_id, kind=kind, status=status)
        s.add(job)
        s.flush()
        job_id = job.id
    r = api.client.delete(url, headers=api.admin)
    assert r.status_code == 409 and f"job {job_id} of this project is running" in r.json()["detail"]
    with session_scope(api.settings.resolved_database_url) as s:
        s.get(Job, job_id).status = "succeeded"


def test_an_image_is_deleted_with_what_hangs_on_it_and_refused_while_in_use(any_api):
    from pathlib import Path

    from backend.db.models import Image
    from backend.db.session import session_scope

    api = any_api
    c = api.client
    p, q = api.make_project("one"), api.make_project("two")
    doomed, kept = api.add_image(p["id"], seed=1), api.add_image(p["id"], seed=2)
    twin = api.add_image(q["id"], seed=2)  # the same content as `kept`, in another project
    root = Path(api.settings.resolved_storage_root)
    with session_scope(api.settings.resolved_database_url) as s:
        doomed_key, kept_key = s.get(Image, doomed).storage_key, s.get(Image, kept).storage_key
    seg = _small_rle()
    assert c.post(f"/api/v1/images/{doomed}/annotations", headers=api.admin,
                  json={"segmentation": seg, "source": "manual"}).status_code == 201
    uid, ann = api.make_user("holder")
    c.post(f"/api/v1/projects/{p['id']}/members", json={"user_id": uid}, headers=api.admin)

    # an annotator may not delete; a held image, or a project with a job running, is refused in words
    assert c.delete(f"/api/v1/images/{doomed}", headers=ann).status_code == 403
    lease = c.post(f"/api/v1/images/{doomed}/lease", headers=ann).json()
    r = c.delete(f"/api/v1/images/{doomed}", headers=api.admin)
    assert r.status_code == 409 and "being annotated by holder" in r.json()["detail"]
    c.post(f"/api/v1/leases/{lease['lease_id']}/release", headers=ann)
    _refused_while_a_job_runs(api, f"/api/v1/images/{doomed}", p["id"], "automatic", "running")

    assert c.delete(f"/api/v1/images/{doomed}", headers=api.admin).status_code == 204
    assert c.get(f"/api/v1/images/{doomed}", headers=api.admin).status_code == 404
    assert c.get(f"/api/v1/images/{doomed}/annotations", headers=api.admin).status_code == 404
    assert [i["id"] for i in c.get(f"/api/v1/projects/{p['id']}/images", headers=api.admin).json()["items"]] == [kept]
    assert not (root / doomed_key).exists(), "the file of a deleted image stayed"
    from sqlalchemy import func, select

    from backend.db.models import Annotation, Lease
    with session_scope(api.settings.resolved_database_url) as s:
        for model in (Annotation, Lease):
            assert s.scalar(select(func.count(model.id)).where(model.image_id == doomed)) == 0, model
    assert c.delete(f"/api/v1/images/{doomed}", headers=api.admin).status_code == 404
    # a file another image shares stays with it
    assert c.delete(f"/api/v1/images/{kept}", headers=api.admin).status_code == 204
    assert (root / kept_key).exists()
    assert c.get(f"/api/v1/images/{twin}/file", headers=api.admin).status_code == 200


def test_a_project_is_deleted_with_its_images_but_not_what_others_share(any_api):
    from pathlib import Path

    from sqlalchemy import func, select

    from backend.db.models import Annotation, Image, Job, Label, Round
    from backend.db.session import session_scope

    api = any_api
    c = api.client
    p, q = api.make_project("gone"), api.make_project("stays")
    only, shared = api.add_image(p["id"], seed=3), api.add_image(p["id"], seed=4)
    twin = api.add_image(q["id"], seed=4)
    root = Path(api.settings.resolved_storage_root)
    with session_scope(api.settings.resolved_database_url) as s:
        only_key, shared_key = s.get(Image, only).storage_key, s.get(Image, shared).storage_key
        s.add(Round(project_id=p["id"], status="succeeded"))
    seg = _small_rle()
    assert c.post(f"/api/v1/images/{only}/annotations", headers=api.admin,
                  json={"segmentation": seg, "source": "manual", "label_id": p["labels"][0]["id"]}).status_code == 201
    _, ann = api.make_user("someone")
    assert c.delete(f"/api/v1/projects/{p['id']}", headers=ann).status_code == 403
    _refused_while_a_job_runs(api, f"/api/v1/projects/{p['id']}", p["id"], "prefill", "queued")

    assert c.delete(f"/api/v1/projects/{p['id']}", headers=api.admin).status_code == 204
    assert c.get(f"/api/v1/projects/{p['id']}", headers=api.admin).status_code == 404
    assert [x["id"] for x in c.get("/api/v1/projects", headers=api.admin).json()] == [q["id"]]
    with session_scope(api.settings.resolved_database_url) as s:
        for model in (Image, Label, Round, Job):
            assert s.scalar(select(func.count(model.id)).where(model.project_id == p["id"])) == 0, model
        assert s.scalar(select(func.count(Annotation.id)).where(Annotation.image_id.in_([only, shared]))) == 0
    assert not (root / only_key).exists() and (root / shared_key).exists()
    assert c.get(f"/api/v1/images/{twin}/file", headers=api.admin).status_code == 200
    assert c.delete(f"/api/v1/projects/{p['id']}", headers=api.admin).status_code == 404
