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
