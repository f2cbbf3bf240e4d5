"""API core: auth, roles and membership, projects, annotations, the work queue, rounds, jobs.

Key tests run on both SQLite and the real PostgreSQL server (`any_api`).
"""
from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tests.backend.conftest import rle_of


def test_login_and_bad_tokens(api):
    c = api.client
    assert c.post("/api/v1/auth/login", json={"username": "admin", "password": "nope"}).status_code == 401
    assert c.get("/api/v1/users/me").status_code == 401
    r = c.get("/api/v1/users/me", headers={"Authorization": "Bearer forged.token"})
    assert r.status_code == 401 and "log in" in r.json()["detail"]
    me = c.get("/api/v1/users/me", headers=api.admin).json()
    assert me["username"] == "admin" and me["role"] == "admin"


def test_password_change_revokes_tokens(api):
    uid, headers = api.make_user("ann")
    assert api.client.get("/api/v1/users/me", headers=headers).status_code == 200
    r = api.client.patch(f"/api/v1/users/{uid}", json={"password": "another-pass"}, headers=api.admin)
    assert r.status_code == 200
    assert api.client.get("/api/v1/users/me", headers=headers).status_code == 401


def test_deactivation_ends_logins_and_a_repeat_changes_nothing(api):
    uid, headers = api.make_user("ann")
    me = lambda h: api.client.get("/api/v1/users/me", headers=h).status_code  # noqa: E731
    # "active" sent for an active user (an admin's form sends every field) keeps their login
    assert api.client.patch(f"/api/v1/users/{uid}", json={"is_active": True}, headers=api.admin).status_code == 200
    assert me(headers) == 200
    assert api.client.patch(f"/api/v1/users/{uid}", json={"is_active": False}, headers=api.admin).status_code == 200
    assert me(headers) == 401
    r = api.client.post("/api/v1/auth/login", json={"username": "ann", "password": "password123"})
    assert r.status_code == 401
    assert api.client.patch(f"/api/v1/users/{uid}", json={"is_active": True}, headers=api.admin).status_code == 200
    assert me(headers) == 401  # the old login stays ended
    assert me(api.login("ann", "password123")) == 200


def test_annotators_never_reach_admin_endpoints_or_other_projects(any_api):
    api = any_api
    c = api.client
    p1, p2 = api.make_project("one"), api.make_project("two")
    uid, ann = api.make_user("ann")
    assert c.post(f"/api/v1/projects/{p1['id']}/members", json={"user_id": uid}, headers=api.admin).status_code == 200
    assert [p["id"] for p in c.get("/api/v1/projects", headers=ann).json()] == [p1["id"]]
    assert c.get(f"/api/v1/projects/{p2['id']}", headers=ann).status_code == 404
    assert c.post("/api/v1/projects", json={"name": "x"}, headers=ann).status_code == 403
    assert c.get("/api/v1/users", headers=ann).status_code == 403
    assert c.patch(f"/api/v1/projects/{p1['id']}", json={"stage": "fully_automatic"}, headers=ann).status_code == 403
    img = api.add_image(p2["id"])
    assert c.get(f"/api/v1/images/{img}/annotations", headers=ann).status_code == 404
    assert c.post(f"/api/v1/projects/{p2['id']}/next", headers=ann).status_code == 404


def test_project_validation(api):
    c = api.client
    api.make_project("dup")
    assert c.post("/api/v1/projects", json={"name": "dup"}, headers=api.admin).status_code == 409
    r = c.post("/api/v1/projects", json={"name": "x", "labels": [{"name": "a"}, {"name": "a"}]}, headers=api.admin)
    assert r.status_code == 400 and "unique" in r.json()["detail"]
    r = c.post("/api/v1/projects", json={"name": "y", "stage": "bogus"}, headers=api.admin)
    assert r.status_code == 422 and "stage" in r.json()["detail"]
    r = c.post("/api/v1/projects", json={"name": "z", "labels": [{"name": "a", "color": "red"}]}, headers=api.admin)
    assert r.status_code == 422


def test_annotation_roundtrip_and_rle_checks(any_api):
    api = any_api
    c = api.client
    p = api.make_project()
    img = api.add_image(p["id"], height=24, width=32)
    mask = np.zeros((24, 32), bool)
    mask[4:10, 5:20] = True
    body = {"label_id": p["labels"][0]["id"], "segmentation": rle_of(mask), "source": "assisted",
            "clicks": 3, "seconds": 7.5, "client_uid": "u-1"}
    r = c.post(f"/api/v1/images/{img}/annotations", json=body, headers=api.admin)
    assert r.status_code == 201, r.text
    ann = r.json()
    assert ann["area"] == mask.sum() and ann["bbox"] == [5.0, 4.0, 15.0, 6.0]
    assert ann["stage"] == "assisted_manual" and ann["annotator_id"] is not None
    # A retry with the same client_uid stores nothing new.
    again = c.post(f"/api/v1/images/{img}/annotations", json=body, headers=api.admin)
    assert again.status_code == 200 and again.json()["id"] == ann["id"]
    assert len(c.get(f"/api/v1/images/{img}/annotations", headers=api.admin).json()) == 1
    # Wrong size, corrupt counts, unknown label, empty mask: 4xx naming the problem.
    wrong = dict(body, client_uid=None, segmentation=rle_of(np.ones((24, 31), bool)))
    r = c.post(f"/api/v1/images/{img}/annotations", json=wrong, headers=api.admin)
    assert r.status_code == 400 and "does not match the image size" in r.json()["detail"]
    bad = dict(body, client_uid=None, segmentation={"size": [24, 32], "counts": "~~~~"})
    assert c.post(f"/api/v1/images/{img}/annotations", json=bad, headers=api.admin).status_code == 400
    long_rle = rle_of(np.ones((24, 33), bool))
    overflow = dict(body, client_uid=None, segmentation={"size": [24, 32], "counts": long_rle["counts"]})
    r = c.post(f"/api/v1/images/{img}/annotations", json=overflow, headers=api.admin)
    assert r.status_code == 400 and "covers" in r.json()["detail"]
    unknown = dict(body, client_uid=None, label_id=99999)
    r = c.post(f"/api/v1/images/{img}/annotations", json=unknown, headers=api.admin)
    assert r.status_code == 400 and "unknown label" in r.json()["detail"]
    empty = dict(body, client_uid=None, segmentation=rle_of(np.zeros((24, 32), bool)))
    assert c.post(f"/api/v1/images/{img}/annotations", json=empty, headers=api.admin).status_code == 400
    # Update, relabel, delete.
    r = c.patch(f"/api/v1/annotations/{ann['id']}", json={"label_id": p["labels"][1]["id"]}, headers=api.admin)
    assert r.status_code == 200 and r.json()["label_id"] == p["labels"][1]["id"]
    assert c.delete(f"/api/v1/annotations/{ann['id']}", headers=api.admin).status_code == 204
    assert c.get(f"/api/v1/images/{img}/annotations", headers=api.admin).json() == []


def _lease_at_once(url: str, project_id: int, user_ids: list[int], pool) -> list[tuple[int, int] | None]:
    """Each user id asks for an image at the same instant, each in its own database session (as
    separate API processes would; a barrier lines the requests up), committing the lease alone as the
    route does. Returns (lease id, image id) per request, None when no image was left."""
    import threading

    from backend.api.routes.work_queue import _lease_next
    from backend.db.models import User
    from backend.db.session import session_scope

    barrier = threading.Barrier(len(user_ids))

    def take(uid: int) -> tuple[int, int] | None:
        with session_scope(url) as s:
            user = s.get(User, uid)
            barrier.wait()
            lease = _lease_next(s, project_id, user, 600)
            s.flush()
            return (lease.id, lease.image_id) if lease else None

    return list(pool.map(take, user_ids))


def test_concurrent_leasing_on_postgres_never_doubles_an_image(pg_api):
    """Many API workers asking at the same instant, round after round: each image is leased once."""
    import sqlalchemy as sa

    from backend.db.models import Image, Lease
    from backend.db.session import session_scope

    api = pg_api
    url = api.settings.resolved_database_url
    p = api.make_project()
    threads, rounds = 8, 12
    # Many open images make each leasing statement scan and sort for a while: the window in which
    # another worker commits between our snapshot and our row lock.
    with session_scope(url) as s:
        s.add_all([Image(project_id=p["id"], file_name=f"{i}.png", storage_key=f"k{i}", sha256=f"{i:064x}",
                         width=8, height=8, status="new") for i in range(3000)])
    user_ids = [api.make_user(f"w{i}")[0] for i in range(threads)]

    def submit_all():  # as each annotator's submit would, so the next round leases new images
        with session_scope(url) as s:
            for lease in s.scalars(sa.select(Lease).where(Lease.state == "active")):
                lease.state = "submitted"
                s.get(Image, lease.image_id).status = "done"

    taken: list[int] = []
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(rounds):
            taken += [lease[1] for lease in _lease_at_once(url, p["id"], user_ids, pool) if lease is not None]
            submit_all()
    with session_scope(url) as s:
        per_image = s.execute(
            sa.select(Lease.image_id, sa.func.count())
            .group_by(Lease.image_id)).all()
    doubled = [image for image, n in per_image if n > 1]
    assert not doubled, f"images leased twice: {doubled}"
    assert len(taken) == len(set(taken)) == threads * rounds
    with session_scope(url) as s:
        stored = s.scalars(sa.select(Lease.image_id).where(Lease.state == "submitted")).all()
    assert sorted(stored) == sorted(taken)


def test_one_user_asking_twice_at_once_gets_one_lease(pg_api):
    """A double press of "next" (two requests of one user at the same instant) gets one image."""
    api = pg_api
    url = api.settings.resolved_database_url
    p = api.make_project()
    for i in range(4):
        api.add_image(p["id"], seed=i)
    uid, _ = api.make_user("double")
    for _ in range(5):
        with ThreadPoolExecutor(4) as pool:
            assert len({lease[0] for lease in _lease_at_once(url, p["id"], [uid] * 4, pool)}) == 1


def test_source_transitions_accept_and_undo_accept_only(api):
    c = api.client
    p = api.make_project()
    img = api.add_image(p["id"], height=24, width=32)
    uid, annotator = api.make_user("ana")
    c.post(f"/api/v1/projects/{p['id']}/members", json={"user_id": uid}, headers=api.admin)
    mask = np.zeros((24, 32), bool)
    mask[4:10, 5:20] = True
    proposal = {"segmentation": rle_of(mask), "source": "automatic", "predicted_iou": 0.9}
    r = c.post(f"/api/v1/images/{img}/annotations", json=proposal, headers=annotator)
    assert r.status_code == 400 and "cannot create" in r.json()["detail"]
    ann = c.post(f"/api/v1/images/{img}/annotations", json=proposal, headers=api.admin).json()

    def patch(source):
        return c.patch(f"/api/v1/annotations/{ann['id']}", json={"source": source}, headers=annotator)

    assert patch("assisted").status_code == 400  # a proposal is accepted, not turned into a human mask
    assert patch("semi_auto_accepted").json()["source"] == "semi_auto_accepted"
    assert patch("automatic").json()["source"] == "automatic"  # the annotator's undo of the accept
    r = patch("manual")
    assert r.status_code == 400 and "cannot change source from 'automatic' to 'manual'" in r.json()["detail"]


def test_work_queue_never_gives_one_image_to_two_annotators(any_api):
    api = any_api
    c = api.client
    p = api.make_project()
    images = [api.add_image(p["id"], seed=i) for i in range(6)]
    users = []
    for i in range(3):
        uid, h = api.make_user(f"a{i}")
        c.post(f"/api/v1/projects/{p['id']}/members", json={"user_id": uid}, headers=api.admin)
        users.append(h)

    def take(h):
        r = c.post(f"/api/v1/projects/{p['id']}/next", headers=h)
        return r.json() if r.status_code == 200 else None

    with ThreadPoolExecutor(3) as pool:
        leases = list(pool.map(take, users))
    got = [lease["image"]["id"] for lease in leases]
    assert len(set(got)) == 3 and set(got) <= set(images)
    # Asking again returns the same (own, unexpired) lease.
    assert take(users[0])["lease_id"] == leases[0]["lease_id"]
    # Submit marks the image done; the lease can't be used twice.
    r = c.post(f"/api/v1/leases/{leases[0]['lease_id']}/submit", headers=users[0])
    assert r.status_code == 200 and r.json()["status"] == "done"
    assert c.post(f"/api/v1/leases/{leases[0]['lease_id']}/submit", headers=users[0]).status_code == 409
    # Someone else's lease is not yours.
    assert c.post(f"/api/v1/leases/{leases[1]['lease_id']}/renew", headers=users[0]).status_code == 404
    # Drain: 6 images, 1 done, 2 held by others -> user 0 gets the remaining 3 then 204.
    seen = set()
    for _ in range(3):
        lease = take(users[0])
        seen.add(lease["image"]["id"])
        c.post(f"/api/v1/leases/{lease['lease_id']}/submit", headers=users[0])
    assert len(seen) == 3 and not seen & set(got)
    assert c.post(f"/api/v1/projects/{p['id']}/next", headers=users[0]).status_code == 204


def test_images_whose_embedding_failed_come_last_in_the_queue(any_api):
    """A broken image (its embedding failed) is leased only once nothing else is left, so annotators
    do not each meet it (and skip it) before the work that can be done."""
    from backend.db.models import Image
    from backend.db.session import session_scope

    api = any_api
    c = api.client
    p = api.make_project()
    images = [api.add_image(p["id"], seed=i) for i in range(3)]
    with session_scope(api.settings.resolved_database_url) as s:
        s.get(Image, images[0]).error = "cannot decode the image file images/ab/cd.png"
    order = []
    for _ in range(3):
        lease = c.post(f"/api/v1/projects/{p['id']}/next", headers=api.admin).json()
        order.append(lease["image"]["id"])
        assert c.post(f"/api/v1/leases/{lease['lease_id']}/submit", headers=api.admin).status_code == 200
    assert order == [images[1], images[2], images[0]], order


def test_a_picked_image_is_leased_reopened_and_never_shared(any_api):
    api = any_api
    c = api.client
    p = api.make_project()
    images = [api.add_image(p["id"], seed=i) for i in range(3)]
    uid, ann = api.make_user("picker")
    c.post(f"/api/v1/projects/{p['id']}/members", json={"user_id": uid}, headers=api.admin)
    _, outsider = api.make_user("outsider")

    queued = c.post(f"/api/v1/projects/{p['id']}/next", headers=ann).json()
    picked = c.post(f"/api/v1/images/{images[2]}/lease", headers=ann)
    assert picked.status_code == 200 and picked.json()["image"]["id"] == images[2]
    # one image at a time: the queue's lease was released, and "next" resumes the picked image
    assert c.post(f"/api/v1/leases/{queued['lease_id']}/renew", headers=ann).status_code == 409
    assert c.post(f"/api/v1/projects/{p['id']}/next", headers=ann).json()["lease_id"] == picked.json()["lease_id"]
    assert c.post(f"/api/v1/images/{images[2]}/lease", headers=ann).json()["lease_id"] == picked.json()["lease_id"]
    # someone else's image: a 409 that names who holds it
    r = c.post(f"/api/v1/images/{images[2]}/lease", headers=api.admin)
    assert r.status_code == 409 and "being annotated by picker" in r.json()["detail"]
    # a done image can be picked again to correct it
    assert c.post(f"/api/v1/leases/{picked.json()['lease_id']}/submit", headers=ann).json()["status"] == "done"
    again = c.post(f"/api/v1/images/{images[2]}/lease", headers=api.admin)
    assert again.status_code == 200 and again.json()["image"]["status"] == "done"
    # the project's image list counts each image's annotations
    mask = np.zeros((24, 32), bool)
    mask[4:10, 4:12] = True
    assert c.post(f"/api/v1/images/{images[1]}/annotations", headers=api.admin, json={
        "label_id": p["labels"][0]["id"], "segmentation": rle_of(mask), "source": "assisted"}).status_code == 201
    listed = c.get(f"/api/v1/projects/{p['id']}/images", headers=ann).json()["items"]
    assert {i["id"]: i["annotations"] for i in listed} == {images[0]: 0, images[1]: 1, images[2]: 0}
    # images of projects one cannot see, and missing images, are 404s
    assert c.post(f"/api/v1/images/{images[0]}/lease", headers=outsider).status_code == 404
    assert c.post("/api/v1/images/999999/lease", headers=ann).status_code == 404


def test_expired_lease_is_refused_and_image_returns(api, monkeypatch):
    c = api.client
    p = api.make_project()
    api.add_image(p["id"])
    api.settings.lease_seconds = -1  # every lease is born expired
    lease = c.post(f"/api/v1/projects/{p['id']}/next", headers=api.admin).json()
    r = c.post(f"/api/v1/leases/{lease['lease_id']}/submit", headers=api.admin)
    assert r.status_code == 409 and "expired" in r.json()["detail"]
    api.settings.lease_seconds = 600
    again = c.post(f"/api/v1/projects/{p['id']}/next", headers=api.admin).json()
    assert again["image"]["id"] == lease["image"]["id"] and again["lease_id"] != lease["lease_id"]


def test_rounds_refuse_empty_snapshot_and_record_one(any_api):
    api = any_api
    c = api.client
    p = api.make_project()
    from backend.db.models import ModelVersion
    from backend.db.session import session_scope

    with session_scope(api.settings.resolved_database_url) as s:
        mv = ModelVersion(name="m", arch="lite")
        s.add(mv)
        s.flush()
        mv_id = mv.id
    assert c.post(f"/api/v1/projects/{p['id']}/active-model", json={"model_version_id": mv_id},
                  headers=api.admin).status_code == 200
    r = c.post(f"/api/v1/projects/{p['id']}/rounds", json={}, headers=api.admin)
    assert r.status_code == 400 and "no accepted annotations" in r.json()["detail"]
    img = api.add_image(p["id"])
    mask = np.zeros((24, 32), bool)
    mask[2:9, 3:11] = True
    c.post(f"/api/v1/images/{img}/annotations", json={"segmentation": rle_of(mask), "source": "assisted"},
           headers=api.admin)
    r = c.post(f"/api/v1/projects/{p['id']}/rounds", json={"steps": 5}, headers=api.admin)
    assert r.status_code == 201, r.text
    rnd = r.json()
    assert rnd["n_annotations"] == 1 and rnd["n_images"] == 1 and rnd["base_model_version_id"] == mv_id
    assert rnd["status"] == "queued" and rnd["params"] == {"steps": 5}
    # Still queued: no second round, no promotion.
    assert c.post(f"/api/v1/projects/{p['id']}/rounds", json={}, headers=api.admin).status_code == 409
    assert c.post(f"/api/v1/rounds/{rnd['id']}/promote", headers=api.admin).status_code == 409
    job = c.post(f"/api/v1/projects/{p['id']}/automatic", json={}, headers=api.admin)
    assert job.status_code == 201 and job.json()["kind"] == "automatic"
    assert c.get(f"/api/v1/jobs/{job.json()['id']}", headers=api.admin).json()["status"] == "queued"
    # the body is optional: no body means the server's defaults (the admin console sends none)
    job = c.post(f"/api/v1/projects/{p['id']}/prefill", headers=api.admin)
    assert job.status_code == 201 and job.json()["kind"] == "prefill", job.text
    assert c.post(f"/api/v1/projects/{p['id']}/prefill", json={"points_per_side": 0},
                  headers=api.admin).status_code == 422
    bad = c.post(f"/api/v1/projects/{p['id']}/automatic", json={"refine": "sometimes"}, headers=api.admin)
    assert bad.status_code == 422 and "refine" in bad.text
    for score in (-0.5, 2, "high"):
        bad = c.post(f"/api/v1/projects/{p['id']}/automatic", json={"min_object_score": score}, headers=api.admin)
        assert bad.status_code == 422 and "min_object_score" in bad.text, bad.text
    from backend.db.models import Job

    job = c.post(f"/api/v1/projects/{p['id']}/automatic", json={"refine": False, "min_object_score": 0.02},
                 headers=api.admin)
    assert job.status_code == 201, job.text
    with session_scope(api.settings.resolved_database_url) as session:  # what the worker reads
        assert session.get(Job, job.json()["id"]).params == {"refine": False, "min_object_score": 0.02}
    # an admin cancels a job that has not ended (the worker stops before its next image); an ended one is a 409
    _, annotator = api.make_user("canceller")
    assert c.post(f"/api/v1/jobs/{job.json()['id']}/cancel", headers=annotator).status_code == 403
    cancelled = c.post(f"/api/v1/jobs/{job.json()['id']}/cancel", headers=api.admin)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["error"] == "cancelled by admin"
    again = c.post(f"/api/v1/jobs/{job.json()['id']}/cancel", headers=api.admin)
    assert again.status_code == 409 and "already ended (cancelled)" in again.json()["detail"]
    assert c.post("/api/v1/jobs/999999/cancel", headers=api.admin).status_code == 404


def test_embedding_is_202_until_computed(api):
    from backend.db.models import ModelVersion
    from backend.db.session import session_scope
    from backend.services.embedding_format import encode_embedding
    from backend.storage import LocalStorage, keys

    c = api.client
    p = api.make_project()
    img = api.add_image(p["id"])
    assert c.get(f"/api/v1/images/{img}/embedding", headers=api.admin).status_code == 422  # no model yet
    with session_scope(api.settings.resolved_database_url) as s:
        mv = ModelVersion(name="m", arch="lite")
        s.add(mv)
        s.flush()
        mv_id = mv.id
    c.post(f"/api/v1/projects/{p['id']}/active-model", json={"model_version_id": mv_id}, headers=api.admin)
    r = c.get(f"/api/v1/images/{img}/embedding", headers=api.admin)
    assert r.status_code == 202 and r.headers["Retry-After"]
    sha = c.get(f"/api/v1/projects/{p['id']}", headers=api.admin)  # project still readable
    assert sha.status_code == 200
    from backend.db.models import Image

    with session_scope(api.settings.resolved_database_url) as s:
        digest = s.get(Image, img).sha256
    blob = encode_embedding(np.ones((1, 256, 64, 64), np.float32), model_version=str(mv_id),
                            orig_size=(24, 32), input_size=(768, 1024))
    LocalStorage(api.settings.resolved_storage_root).put_bytes(keys.embedding_key(digest, mv_id, "float16"), blob)
    r = c.get(f"/api/v1/images/{img}/embedding", headers=api.admin)
    assert r.status_code == 200 and r.content == blob and r.headers["ETag"]
    assert c.get(f"/api/v1/images/{img}/embedding", headers={**api.admin, "If-None-Match": r.headers["ETag"]}
                 ).status_code == 304


def test_models_and_migrations_agree_sqlite(tmp_path):
    _assert_no_schema_diff(f"sqlite:///{tmp_path / 'm.db'}")


def test_models_and_migrations_agree_postgres(postgres_url):
    _assert_no_schema_diff(postgres_url)


def _assert_no_schema_diff(url: str) -> None:
    import sqlalchemy as sa
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from backend.cli.server import run_migrations
    from backend.db.models import Base

    run_migrations(url)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == [], f"models and migrations differ: {diff}"


def test_api_process_never_imports_torch():
    code = "import sys, backend.main, backend.cli; backend.main.create_app(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_proposals_of_an_image_are_rejected_at_once_and_each_restores(any_api):
    """Stage 3 leaves many automatic masks per image: a reviewer rejects the rest (or those below an
    object score) in one request, and undo restores each one."""
    api = any_api
    c = api.client
    p = api.make_project()
    img = api.add_image(p["id"], height=24, width=32)
    other = api.add_image(p["id"], height=24, width=32, seed=7)
    uid, ana = api.make_user("ana")
    _, bob = api.make_user("bob")
    c.post(f"/api/v1/projects/{p['id']}/members", json={"user_id": uid}, headers=api.admin)
    mask = np.zeros((24, 32), bool)
    mask[4:10, 5:20] = True
    ids = []
    for score in (0.001, 0.02, None):
        body = {"segmentation": rle_of(mask), "source": "automatic", "predicted_iou": 0.3,
                **({} if score is None else {"object_score": score})}
        r = c.post(f"/api/v1/images/{img}/annotations", json=body, headers=api.admin)
        assert r.status_code == 201 and r.json()["object_score"] == score, r.text
        ids.append(r.json()["id"])
    elsewhere = c.post(f"/api/v1/images/{other}/annotations", headers=api.admin,
                       json={"segmentation": rle_of(mask), "source": "automatic"}).json()["id"]
    human = c.post(f"/api/v1/images/{img}/annotations", json={"segmentation": rle_of(mask)}, headers=ana).json()["id"]
    url = f"/api/v1/images/{img}/proposals/reject"

    assert c.post(url, json={"below_object_score": 2}, headers=ana).status_code == 422
    assert c.post(url, json={}, headers=bob).status_code == 404  # not a member
    for wrong in ([human], [elsewhere], [ids[0], 999_999]):
        r = c.post(url, json={"annotation_ids": wrong}, headers=ana)
        assert r.status_code == 400 and str(wrong[-1]) in r.json()["detail"], r.text
    assert len(c.get(f"/api/v1/images/{img}/annotations", headers=ana).json()) == 4, "a refused request rejects nothing"

    r = c.post(url, json={"below_object_score": 0.01}, headers=ana)  # the unscored proposal is kept
    assert r.status_code == 201 and [x["annotation_id"] for x in r.json()] == [ids[0]], r.text
    r = c.post(url, headers=ana)  # no body: every proposal left on the image
    assert r.status_code == 201 and sorted(x["annotation_id"] for x in r.json()) == ids[1:], r.text
    assert [a["id"] for a in c.get(f"/api/v1/images/{img}/annotations", headers=ana).json()] == [human]
    assert c.post(url, headers=ana).json() == []  # nothing left to reject
    for rejection in c.get(f"/api/v1/images/{img}/rejections", headers=ana).json():
        assert c.post(f"/api/v1/rejections/{rejection['id']}/restore", headers=ana).status_code == 201
    back = {a["id"]: a for a in c.get(f"/api/v1/images/{img}/annotations", headers=ana).json()}
    assert set(back) == {human, *ids} and back[ids[1]]["object_score"] == 0.02
    assert [a["id"] for a in c.get(f"/api/v1/images/{other}/annotations", headers=ana).json()] == [elsewhere]


def test_rejected_proposal_is_kept_and_restored_by_whoever_rejected_it(any_api):
    api = any_api
    c = api.client
    p = api.make_project()
    img = api.add_image(p["id"], height=24, width=32)
    uid, ana = api.make_user("ana")
    _, bob = api.make_user("bob")
    carl_id, carl = api.make_user("carl")
    for user_id in (uid, carl_id):
        c.post(f"/api/v1/projects/{p['id']}/members", json={"user_id": user_id}, headers=api.admin)
    mask = np.zeros((24, 32), bool)
    mask[4:10, 5:20] = True
    proposal = {"segmentation": rle_of(mask), "source": "semi_auto", "predicted_iou": 0.91,
                "stability_score": 0.97, "label_id": p["labels"][0]["id"]}
    ann = c.post(f"/api/v1/images/{img}/annotations", json=proposal, headers=api.admin).json()
    human = c.post(f"/api/v1/images/{img}/annotations", json={"segmentation": rle_of(mask)}, headers=ana).json()

    r = c.post(f"/api/v1/annotations/{human['id']}/reject", headers=ana)
    assert r.status_code == 400 and "not a model proposal" in r.json()["detail"]
    r = c.post(f"/api/v1/annotations/{ann['id']}/reject", headers=ana)
    assert r.status_code == 201, r.text
    rejection = r.json()
    assert rejection["annotation_id"] == ann["id"] and rejection["source"] == "semi_auto"
    listed = c.get(f"/api/v1/images/{img}/annotations", headers=api.admin).json()
    assert [a["id"] for a in listed] == [human["id"]], "a rejected proposal leaves the image"
    assert [x["id"] for x in c.get(f"/api/v1/images/{img}/rejections", headers=ana).json()] == [rejection["id"]]
    stage = c.get(f"/api/v1/projects/{p['id']}/metrics", headers=api.admin).json()["stages"][p["stage"]]
    assert stage["proposals_rejected"] == 1 and stage["proposal_accept_share"] == 0.0

    # bob is no member; another member did not reject it: neither may restore it
    assert c.post(f"/api/v1/rejections/{rejection['id']}/restore", headers=bob).status_code == 404
    r = c.post(f"/api/v1/rejections/{rejection['id']}/restore", headers=carl)
    assert r.status_code == 404 and "rejected by someone else" in r.json()["detail"]
    r = c.post(f"/api/v1/rejections/{rejection['id']}/restore", headers=ana)
    assert r.status_code == 201, r.text
    back = r.json()
    for key in ("id", "segmentation", "source", "predicted_iou", "stability_score", "label_id", "created_at", "stage"):
        assert back[key] == ann[key], key
    assert c.post(f"/api/v1/rejections/{rejection['id']}/restore", headers=ana).status_code == 404
    assert c.get(f"/api/v1/images/{img}/rejections", headers=ana).json() == []

    # rejected again; a mask saved meanwhile may take its id (SQLite reuses the highest deleted id):
    # the restore then gives it a new one. Restored by an admin; accepting it counts in the share
    assert c.delete(f"/api/v1/annotations/{ann['id']}", headers=api.admin).status_code == 204
    last = c.post(f"/api/v1/images/{img}/annotations", json=proposal, headers=api.admin).json()  # the highest id
    rid = c.post(f"/api/v1/annotations/{last['id']}/reject", headers=ana).json()["id"]
    newer = c.post(f"/api/v1/images/{img}/annotations", json={"segmentation": rle_of(mask)}, headers=ana).json()
    r = c.post(f"/api/v1/rejections/{rid}/restore", headers=api.admin)
    assert r.status_code == 201, r.text
    again = r.json()
    assert (again["id"] != last["id"]) == (newer["id"] == last["id"]), (again["id"], newer["id"], last["id"])
    assert again["predicted_iou"] == last["predicted_iou"] and again["source"] == "semi_auto"
    assert {a["id"] for a in c.get(f"/api/v1/images/{img}/annotations", headers=ana).json()} == \
        {human["id"], newer["id"], again["id"]}
    assert c.patch(f"/api/v1/annotations/{again['id']}", json={"source": "semi_auto_accepted"},
                   headers=ana).status_code == 200
    stage = c.get(f"/api/v1/projects/{p['id']}/metrics", headers=api.admin).json()["stages"][p["stage"]]
    assert (stage["proposals_accepted"], stage["proposals_rejected"], stage["proposal_accept_share"]) == (1, 0, 1.0)
    assert c.post("/api/v1/rejections/999999/restore", headers=api.admin).status_code == 404
