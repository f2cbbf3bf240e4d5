"""Review and the work queue together: lease, renew, submit, release; a rejected mask sends the
image back to the queue, accepting every mask of a done image marks it reviewed (SQLite and PostgreSQL)."""
from __future__ import annotations

from datetime import datetime

import numpy as np

from tests.backend.conftest import rle_of


def test_reject_requeues_and_accept_marks_reviewed(any_api):
    api, c = any_api, any_api.client
    p = api.make_project()
    image_id = api.add_image(p["id"])
    uid, ann = api.make_user("annie")
    assert c.post(f"/api/v1/projects/{p['id']}/next", headers=ann).status_code == 404  # not a member
    c.post(f"/api/v1/projects/{p['id']}/members", json={"user_id": uid}, headers=api.admin)

    lease = c.post(f"/api/v1/projects/{p['id']}/next", headers=ann).json()
    assert lease["image"]["id"] == image_id
    renewed = c.post(f"/api/v1/leases/{lease['lease_id']}/renew", headers=ann).json()
    assert datetime.fromisoformat(renewed["expires_at"]) >= datetime.fromisoformat(lease["expires_at"])
    # Releasing gives the image back: the next call leases it again (a new lease).
    assert c.post(f"/api/v1/leases/{lease['lease_id']}/release", headers=ann).status_code == 204
    assert c.post(f"/api/v1/leases/{lease['lease_id']}/renew", headers=ann).status_code == 409
    lease = c.post(f"/api/v1/projects/{p['id']}/next", headers=ann).json()
    assert lease["image"]["id"] == image_id

    ids = []
    for rows in (slice(1, 6), slice(10, 20)):
        mask = np.zeros((24, 32), bool)
        mask[rows, 4:12] = True
        r = c.post(f"/api/v1/images/{image_id}/annotations", headers=ann,
                   json={"segmentation": rle_of(mask), "source": "manual"})
        assert r.status_code == 201 and r.json()["review_state"] == "pending", r.text
        ids.append(r.json()["id"])
    assert c.post(f"/api/v1/leases/{lease['lease_id']}/submit", headers=ann).json()["status"] == "done"
    assert c.post(f"/api/v1/projects/{p['id']}/next", headers=ann).status_code == 204

    assert c.post(f"/api/v1/annotations/{ids[0]}/review", json={"decision": "reject"},
                  headers=ann).status_code == 403
    r = c.post(f"/api/v1/annotations/{ids[0]}/review", json={"decision": "maybe"}, headers=api.admin)
    assert r.status_code == 422 and "decision" in r.json()["detail"]
    r = c.post(f"/api/v1/annotations/{ids[0]}/review", json={"decision": "reject"}, headers=api.admin)
    assert r.status_code == 200 and r.json()["review_state"] == "rejected"
    assert c.get(f"/api/v1/images/{image_id}", headers=api.admin).json()["status"] == "in_progress"
    lease = c.post(f"/api/v1/projects/{p['id']}/next", headers=ann).json()
    assert lease["image"]["id"] == image_id  # back in the queue
    c.delete(f"/api/v1/annotations/{ids[0]}", headers=ann)
    c.post(f"/api/v1/leases/{lease['lease_id']}/submit", headers=ann)
    r = c.post(f"/api/v1/annotations/{ids[1]}/review", json={"decision": "accept"}, headers=api.admin)
    assert r.json()["review_state"] == "accepted"
    assert c.get(f"/api/v1/images/{image_id}", headers=api.admin).json()["status"] == "reviewed"


def test_skip_gives_the_image_to_the_others_and_keeps_its_annotations(any_api):
    api, c = any_api, any_api.client
    p = api.make_project()
    first, second = api.add_image(p["id"], seed=1), api.add_image(p["id"], seed=2)
    users = []
    for name in ("sam", "kim"):
        uid, headers = api.make_user(name)
        c.post(f"/api/v1/projects/{p['id']}/members", json={"user_id": uid}, headers=api.admin)
        users.append(headers)
    sam, kim = users
    lease = c.post(f"/api/v1/projects/{p['id']}/next", headers=sam).json()
    assert lease["image"]["id"] == first
    mask = np.zeros((24, 32), bool)
    mask[2:8, 3:9] = True
    assert c.post(f"/api/v1/images/{first}/annotations", headers=sam,
                  json={"segmentation": rle_of(mask), "source": "manual"}).status_code == 201
    assert c.post(f"/api/v1/leases/{lease['lease_id']}/release?skip=maybe", headers=sam).status_code == 422
    assert c.post(f"/api/v1/leases/{lease['lease_id']}/release?skip=true", headers=sam).status_code == 204
    assert c.post(f"/api/v1/leases/{lease['lease_id']}/submit", headers=sam).status_code == 409
    image = c.get(f"/api/v1/images/{first}", headers=api.admin).json()
    assert image["status"] != "done"
    assert len(c.get(f"/api/v1/images/{first}/annotations", headers=api.admin).json()) == 1
    # sam is offered the other image, then nothing; kim still gets the skipped one
    lease = c.post(f"/api/v1/projects/{p['id']}/next", headers=sam).json()
    assert lease["image"]["id"] == second
    c.post(f"/api/v1/leases/{lease['lease_id']}/submit", headers=sam)
    assert c.post(f"/api/v1/projects/{p['id']}/next", headers=sam).status_code == 204
    assert c.post(f"/api/v1/projects/{p['id']}/next", headers=kim).json()["image"]["id"] == first


def _submitted_with_masks(api, c, headers: dict, count: int = 2) -> tuple[dict, int, list[int]]:  # noqa: ANN001
    """A project with one image an annotator annotated (``count`` masks) and submitted."""
    p = api.make_project()
    image_id = api.add_image(p["id"])
    lease = c.post(f"/api/v1/projects/{p['id']}/next", headers=headers).json()
    ids = []
    for k in range(count):
        mask = np.zeros((24, 32), bool)
        mask[2 + 8 * k:8 + 8 * k, 3:9] = True
        r = c.post(f"/api/v1/images/{image_id}/annotations", headers=headers,
                   json={"segmentation": rle_of(mask), "source": "manual"})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    assert c.post(f"/api/v1/leases/{lease['lease_id']}/submit", headers=headers).json()["status"] == "done"
    return p, image_id, ids


def test_image_review_sends_back_with_a_note_then_approves(any_api):
    api, c = any_api, any_api.client
    p, image_id, ids = _submitted_with_masks(api, c, api.admin)
    uid, ann = api.make_user("rita")
    c.post(f"/api/v1/projects/{p['id']}/members", json={"user_id": uid}, headers=api.admin)
    url = f"/api/v1/images/{image_id}/review"

    # only admins review; bad bodies name the problem
    assert c.post(url, json={"decision": "approve"}, headers=ann).status_code == 403
    for body, what in (({"decision": "maybe"}, "decision"), ({"decision": "reject", "note": "x" * 2001}, "note"),
                       ({"decision": "reject", "rejected": ["a"]}, "rejected")):
        r = c.post(url, json=body, headers=api.admin)
        assert r.status_code == 422 and what in r.json()["detail"], r.text
    r = c.post(url, json={"decision": "reject", "note": "   "}, headers=api.admin)
    assert r.status_code == 400 and "say what to fix" in r.json()["detail"]
    r = c.post(url, json={"decision": "reject", "rejected": [ids[0], 999_999]}, headers=api.admin)
    assert r.status_code == 400 and "999999" in r.json()["detail"]
    r = c.post(url, json={"decision": "approve", "rejected": [ids[0]]}, headers=api.admin)
    assert r.status_code == 400 and "send it back" in r.json()["detail"]
    # nothing changed by the refused calls
    states = {a["id"]: a["review_state"] for a in c.get(f"/api/v1/images/{image_id}/annotations", headers=ann).json()}
    assert states == {ids[0]: "pending", ids[1]: "pending"}

    # send back: the wrong mask is rejected, the image is in the queue again with the note
    r = c.post(url, json={"decision": "reject", "rejected": [ids[0]], "note": "  the top mask misses the handle "},
               headers=api.admin)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "in_progress" and r.json()["review_note"] == "the top mask misses the handle"
    r = c.post(url, json={"decision": "approve"}, headers=api.admin)
    assert r.status_code == 409 and "only submitted images" in r.json()["detail"]
    lease = c.post(f"/api/v1/projects/{p['id']}/next", headers=ann).json()
    assert lease["image"]["id"] == image_id and lease["image"]["review_note"] == "the top mask misses the handle"
    states = {a["id"]: a["review_state"] for a in c.get(f"/api/v1/images/{image_id}/annotations", headers=ann).json()}
    assert states == {ids[0]: "rejected", ids[1]: "pending"}
    # the annotator fixes the rejected mask: it is to be reviewed again
    mask = np.zeros((24, 32), bool)
    mask[2:9, 3:12] = True
    r = c.patch(f"/api/v1/annotations/{ids[0]}", json={"segmentation": rle_of(mask)}, headers=ann)
    assert r.status_code == 200 and r.json()["review_state"] == "pending"
    assert c.post(f"/api/v1/leases/{lease['lease_id']}/submit", headers=ann).json()["status"] == "done"

    # approve: every mask accepted, the image reviewed and its note gone
    r = c.post(url, json={"decision": "approve", "note": "fine now"}, headers=api.admin)
    assert r.status_code == 200 and r.json()["status"] == "reviewed" and r.json()["review_note"] is None
    states = {a["id"]: a["review_state"] for a in c.get(f"/api/v1/images/{image_id}/annotations", headers=ann).json()}
    assert states == {ids[0]: "accepted", ids[1]: "accepted"}
    # a reviewed image can be sent back again (a second look); one rejected earlier and not listed is pending again
    r = c.post(url, json={"decision": "reject", "rejected": [ids[1]]}, headers=api.admin)
    assert r.status_code == 200 and r.json()["review_note"] is None
    states = {a["id"]: a["review_state"] for a in c.get(f"/api/v1/images/{image_id}/annotations", headers=ann).json()}
    assert states == {ids[0]: "accepted", ids[1]: "rejected"}
    assert c.post("/api/v1/images/999999/review", json={"decision": "approve"}, headers=api.admin).status_code == 404
    # sent back with a note, resubmitted, then accepted mask by mask: reviewed, and the note is settled
    for _ in range(2):  # resubmitted; sent back with a note; resubmitted again
        lease = c.post(f"/api/v1/projects/{p['id']}/next", headers=ann).json()
        assert c.post(f"/api/v1/leases/{lease['lease_id']}/submit", headers=ann).json()["status"] == "done"
        if _ == 0:
            r = c.post(url, json={"decision": "reject", "note": "check the second mask"}, headers=api.admin)
            assert r.status_code == 200 and r.json()["review_note"] == "check the second mask"
    for a in ids:
        c.post(f"/api/v1/annotations/{a}/review", json={"decision": "accept"}, headers=api.admin)
    image = c.get(f"/api/v1/images/{image_id}", headers=api.admin).json()
    assert image["status"] == "reviewed" and image["review_note"] is None


def test_metrics_count_review_outcomes_per_annotator(any_api):
    api, c = any_api, any_api.client
    uid, ann = api.make_user("olga")
    p, image_id, ids = _submitted_with_masks(api, c, api.admin)  # a project the admin annotated
    c.post(f"/api/v1/projects/{p['id']}/members", json={"user_id": uid}, headers=api.admin)
    # olga annotates a second image of the project (1 click, 2 s)
    second = api.add_image(p["id"], seed=7)
    lease = c.post(f"/api/v1/projects/{p['id']}/next", headers=ann).json()
    assert lease["image"]["id"] == second
    mask = np.zeros((24, 32), bool)
    mask[3:9, 4:10] = True
    r = c.post(f"/api/v1/images/{second}/annotations", headers=ann,
               json={"segmentation": rle_of(mask), "source": "assisted", "clicks": 1, "seconds": 2.0})
    olgas = r.json()["id"]
    c.post(f"/api/v1/leases/{lease['lease_id']}/submit", headers=ann)

    m = c.get(f"/api/v1/projects/{p['id']}/metrics", headers=api.admin).json()
    assert m["review"] == {"images_to_review": 2, "images_reviewed": 0, "images_sent_back": 0,
                           "masks": {"pending": 3, "accepted": 0, "rejected": 0}}
    c.post(f"/api/v1/images/{image_id}/review", json={"decision": "approve"}, headers=api.admin)
    c.post(f"/api/v1/images/{second}/review", json={"decision": "reject", "rejected": [olgas]}, headers=api.admin)
    m = c.get(f"/api/v1/projects/{p['id']}/metrics", headers=api.admin).json()
    assert m["review"] == {"images_to_review": 0, "images_reviewed": 1, "images_sent_back": 1,
                           "masks": {"pending": 0, "accepted": 2, "rejected": 1}}
    by_name = {a["username"]: a for a in m["annotators"]}
    assert by_name["olga"]["review"] == {"pending": 0, "accepted": 0, "rejected": 1}
    assert by_name["olga"]["review_rejected_share"] == 1.0
    assert by_name["olga"]["clicks_per_mask"] == 1 and by_name["olga"]["seconds_per_mask"] == 2.0
    assert by_name["admin"]["review"]["accepted"] == 2 and by_name["admin"]["review_rejected_share"] == 0.0


def test_project_list_says_how_many_images_are_done(any_api):
    api, c = any_api, any_api.client
    p, image_id, _ = _submitted_with_masks(api, c, api.admin)
    api.add_image(p["id"], seed=5)
    empty = api.make_project("nothing here")
    listed = {x["id"]: x for x in c.get("/api/v1/projects", headers=api.admin).json()}
    assert (listed[p["id"]]["images"], listed[p["id"]]["images_done"]) == (2, 1)
    assert (listed[empty["id"]]["images"], listed[empty["id"]]["images_done"]) == (0, 0)
    # a reviewed image counts as done
    c.post(f"/api/v1/images/{image_id}/review", json={"decision": "approve"}, headers=api.admin)
    listed = {x["id"]: x for x in c.get("/api/v1/projects", headers=api.admin).json()}
    assert listed[p["id"]]["images_done"] == 1
    assert c.get(f"/api/v1/projects/{p['id']}", headers=api.admin).json()["images"] is None  # the list only


def test_project_instructions_set_shown_and_cleared(any_api):
    api, c = any_api, any_api.client
    r = c.post("/api/v1/projects", headers=api.admin, json={
        "name": "guided", "labels": [{"name": "cat", "color": "#123456"}],
        "instructions": "  Outline the whole cat, tail included.\nSkip cats under 10 px.  "})
    assert r.status_code == 201
    assert r.json()["instructions"] == "Outline the whole cat, tail included.\nSkip cats under 10 px."
    pid = r.json()["id"]
    uid, ann = api.make_user("ivan")
    c.post(f"/api/v1/projects/{pid}/members", json={"user_id": uid}, headers=api.admin)
    assert c.get(f"/api/v1/projects/{pid}", headers=ann).json()["instructions"].startswith("Outline the whole cat")
    assert c.patch(f"/api/v1/projects/{pid}", json={"instructions": "x"}, headers=ann).status_code == 403
    r = c.patch(f"/api/v1/projects/{pid}", json={"instructions": "y" * 20_001}, headers=api.admin)
    assert r.status_code == 422 and "instructions" in r.json()["detail"]
    r = c.patch(f"/api/v1/projects/{pid}", json={"stage": "semi_automatic"}, headers=api.admin)  # untouched
    assert r.json()["instructions"].startswith("Outline the whole cat")
    r = c.patch(f"/api/v1/projects/{pid}", json={"instructions": "   "}, headers=api.admin)  # blank clears them
    assert r.status_code == 200 and r.json()["instructions"] is None


def test_images_sent_back_come_first_in_the_queue(any_api):
    from backend.db.models import Image
    from backend.db.session import session_scope

    api, c = any_api, any_api.client
    p, image_id, ids = _submitted_with_masks(api, c, api.admin)
    ready = api.add_image(p["id"], seed=8)
    with session_scope(api.settings.resolved_database_url) as s:  # its embedding is ready: it led the queue so far
        s.get(Image, ready).status = "embedded"
    url = f"/api/v1/projects/{p['id']}/images"
    assert [i["id"] for i in c.get(url, params={"sent_back": "true"}, headers=api.admin).json()["items"]] == []
    # sent back with rejected masks only (no note): rework comes before the embedded image
    c.post(f"/api/v1/images/{image_id}/review", json={"decision": "reject", "rejected": [ids[0]]}, headers=api.admin)
    assert [i["id"] for i in c.get(url, params={"sent_back": "true"}, headers=api.admin).json()["items"]] == [image_id]
    assert [i["id"] for i in c.get(url, params={"sent_back": "false"}, headers=api.admin).json()["items"]] == [ready]
    assert c.get(url, params={"sent_back": "maybe"}, headers=api.admin).status_code == 422
    uid, ann = api.make_user("uma")
    c.post(f"/api/v1/projects/{p['id']}/members", json={"user_id": uid}, headers=api.admin)
    lease = c.post(f"/api/v1/projects/{p['id']}/next", headers=ann).json()
    assert lease["image"]["id"] == image_id
    # fixed and submitted: no longer open, the embedded image is next
    c.delete(f"/api/v1/annotations/{ids[0]}", headers=ann)
    c.post(f"/api/v1/leases/{lease['lease_id']}/submit", headers=ann)
    assert c.post(f"/api/v1/projects/{p['id']}/next", headers=ann).json()["image"]["id"] == ready
