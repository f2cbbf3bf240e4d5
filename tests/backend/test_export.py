"""Exports: COCO round trip through pycocotools' COCO API (pixel-equal masks), filters, SA-1B zip,
export jobs run by the real export task, and the download route."""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from pycocotools.coco import COCO

from tests.backend.conftest import rle_of


def disk(h: int, w: int, cy: int, cx: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def setup_project(api):
    project = api.make_project("exp proj", labels=("cat", "dog"))
    cat, dog = (lb["id"] for lb in project["labels"])
    i1 = api.add_image(project["id"], 24, 32, seed=1)
    i2 = api.add_image(project["id"], 30, 20, seed=2)
    masks = {}
    specs = [(i1, cat, disk(24, 32, 10, 12, 6), "manual", {}),
             (i1, dog, np.pad(np.ones((5, 7), bool), ((3, 16), (20, 5))), "automatic",
              {"predicted_iou": 0.91, "stability_score": 0.97}),
             (i2, cat, disk(30, 20, 15, 10, 8), "manual", {})]
    for image_id, label_id, mask, source, extra in specs:
        r = api.client.post(f"/api/v1/images/{image_id}/annotations", headers=api.admin,
                            json={"label_id": label_id, "segmentation": rle_of(mask), "source": source, **extra})
        assert r.status_code == 201, r.text
        masks[r.json()["id"]] = (image_id, label_id, mask, source)
    return project, masks


def load_coco(data: bytes) -> COCO:
    coco = COCO()
    coco.dataset = json.loads(data)
    coco.createIndex()
    return coco


def test_coco_round_trip_pixel_equal(any_api):
    api = any_api
    project, masks = setup_project(api)
    r = api.client.get(f"/api/v1/projects/{project['id']}/export?format=coco", headers=api.admin)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert "attachment" in r.headers["content-disposition"]
    coco = load_coco(r.content)
    assert sorted(c["name"] for c in coco.loadCats(coco.getCatIds())) == ["cat", "dog"]
    assert sorted(coco.getAnnIds()) == sorted(masks)
    for ann_id, (image_id, label_id, mask, _) in masks.items():
        ann = coco.loadAnns([ann_id])[0]
        img = coco.loadImgs([image_id])[0]
        assert (img["height"], img["width"]) == mask.shape
        assert ann["category_id"] == label_id and ann["iscrowd"] == 0
        decoded = coco.annToMask(ann).astype(bool)
        assert np.array_equal(decoded, mask)
        assert ann["area"] == mask.sum()
        ys, xs = np.nonzero(mask)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]


def test_filters(api):
    project, masks = setup_project(api)
    url = f"/api/v1/projects/{project['id']}/export"
    auto = json.loads(api.client.get(url, params={"source": "automatic"}, headers=api.admin).content)
    assert [a["id"] for a in auto["annotations"]] == [k for k, v in masks.items() if v[3] == "automatic"]
    assert len(auto["images"]) == 2  # images are listed even when the filter leaves them empty
    first = min(masks)
    assert api.client.post(f"/api/v1/annotations/{first}/review", json={"decision": "accept"},
                           headers=api.admin).status_code == 200
    acc = json.loads(api.client.get(url, params={"review_state": "accepted"}, headers=api.admin).content)
    assert [a["id"] for a in acc["annotations"]] == [first]
    stage = json.loads(api.client.get(url, params={"stage": "fully_automatic"}, headers=api.admin).content)
    assert stage["annotations"] == []
    for bad in ({"format": "voc"}, {"source": "robot"}, {"stage": "x"}, {"review_state": "maybe"}):
        r = api.client.get(url, params=bad, headers=api.admin)
        assert r.status_code == 400 and list(bad.values())[0] in r.json()["detail"]


def test_sa1b_zip(api):
    project, masks = setup_project(api)
    r = api.client.get(f"/api/v1/projects/{project['id']}/export?format=sa1b", headers=api.admin)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    records = {n: json.loads(zf.read(n)) for n in zf.namelist()}
    assert len(records) == 2
    seen = set()
    for rec in records.values():
        assert set(rec["image"]) == {"image_id", "width", "height", "file_name"}
        for ann in rec["annotations"]:
            assert set(ann) == {"id", "segmentation", "bbox", "area", "predicted_iou", "stability_score",
                                "crop_box", "point_coords"}
            image_id, _, mask, source = masks[ann["id"]]
            assert image_id == rec["image"]["image_id"]
            assert ann["segmentation"] == rle_of(mask)
            assert ann["area"] == mask.sum()
            assert ann["crop_box"] == [0, 0, rec["image"]["width"], rec["image"]["height"]]
            if source == "automatic":
                assert ann["predicted_iou"] == pytest.approx(0.91)
                assert ann["stability_score"] == pytest.approx(0.97)
            seen.add(ann["id"])
    assert seen == set(masks)


def test_export_job_runs_task_and_downloads(any_api):
    api = any_api
    project, masks = setup_project(api)
    pid = project["id"]
    assert api.client.post(f"/api/v1/projects/{pid}/exports", json={"format": "tar"},
                           headers=api.admin).status_code == 400
    for value in (5, True, 1.5, {"a": 1}, [1]):  # a filter that is neither a string nor strings: a 400 naming it
        r = api.client.post(f"/api/v1/projects/{pid}/exports", json={"filters": {"stage": value}}, headers=api.admin)
        assert r.status_code == 400 and "export filter 'stage' must be a string" in r.json()["detail"], (value, r.text)
    r = api.client.post(f"/api/v1/projects/{pid}/exports", json={"format": "coco", "filters": {"source": "manual"}},
                        headers=api.admin)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] == "queued" and job["kind"] == "export"
    assert api.client.get(f"/api/v1/exports/{job['id']}/download", headers=api.admin).status_code == 409
    # Run the real export task in this process (as a CPU worker would).
    from workers.tasks.export import export_dataset

    assert export_dataset.run(job_id=job["id"]) == "succeeded"
    r = api.client.get(f"/api/v1/exports/{job['id']}/download", headers=api.admin)
    assert r.status_code == 200, r.text
    coco = load_coco(r.content)
    assert sorted(coco.getAnnIds()) == sorted(k for k, v in masks.items() if v[3] == "manual")
    _, outsider = api.make_user("eve")
    assert api.client.get(f"/api/v1/exports/{job['id']}/download", headers=outsider).status_code == 404
    assert api.client.get("/api/v1/exports/99999/download", headers=api.admin).status_code == 404


def test_export_access(api):
    project, masks = setup_project(api)
    pid = project["id"]
    member_id, member = api.make_user("ann")
    _, outsider = api.make_user("eve")
    assert api.client.post(f"/api/v1/projects/{pid}/members", json={"user_id": member_id},
                           headers=api.admin).status_code == 200
    r = api.client.get(f"/api/v1/projects/{pid}/export?format=coco", headers=member)
    assert r.status_code == 200 and len(json.loads(r.content)["annotations"]) == len(masks)
    assert api.client.get(f"/api/v1/projects/{pid}/export", headers=outsider).status_code == 404
    assert api.client.post(f"/api/v1/projects/{pid}/exports", json={}, headers=outsider).status_code == 404
    assert api.client.get(f"/api/v1/projects/{pid}/export").status_code == 401
    assert api.client.get("/api/v1/projects/9999/export", headers=api.admin).status_code == 404


def test_build_export_errors_are_value_errors(api):
    from backend.db.session import get_engine
    from backend.services.export import build_export

    project, _ = setup_project(api)
    with get_engine(api.settings.resolved_database_url).connect() as conn:
        with pytest.raises(ValueError, match="voc"):
            build_export(conn, project["id"], "voc")
        with pytest.raises(ValueError, match="project 9999 not found"):
            build_export(conn, 9999, "coco")
        with pytest.raises(ValueError, match="unknown export filter 'color'"):
            build_export(conn, project["id"], "coco", {"color": "red"})
        both = json.loads(build_export(conn, project["id"], "coco", {"source": "manual,automatic"}))
        assert len(both["annotations"]) == 3


def test_unlabeled_masks_get_category_zero(api):
    project = api.make_project("unl", labels=("cat",))
    image_id = api.add_image(project["id"], 16, 16, seed=4)
    mask = disk(16, 16, 8, 8, 4)
    r = api.client.post(f"/api/v1/images/{image_id}/annotations", headers=api.admin,
                        json={"label_id": None, "segmentation": rle_of(mask), "source": "automatic"})
    assert r.status_code == 201, r.text
    coco = load_coco(api.client.get(f"/api/v1/projects/{project['id']}/export", headers=api.admin).content)
    assert {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}[0] == "unlabeled"
    ann = coco.loadAnns(coco.getAnnIds())[0]
    assert ann["category_id"] == 0 and np.array_equal(coco.annToMask(ann).astype(bool), mask)


def _strict_json(data: bytes | str):
    def refuse(name: str):
        raise AssertionError(f"{name} in the export: not JSON")
    return json.loads(data, parse_constant=refuse)


def test_non_finite_scores_stored_earlier_export_as_null(api):
    """Rows written before the API and the COCO import refused NaN / infinities still export as JSON."""
    from sqlalchemy import update

    from backend.db.models import Annotation
    from backend.db.session import session_scope

    project, masks = setup_project(api)
    auto = next(i for i, m in masks.items() if m[3] == "automatic")
    with session_scope(api.settings.resolved_database_url) as s:
        s.execute(update(Annotation).where(Annotation.id == auto).values(predicted_iou=float("inf"),
                                                                        stability_score=float("nan")))
    r = api.client.get(f"/api/v1/projects/{project['id']}/export?format=coco", headers=api.admin)
    assert r.status_code == 200, r.text
    ann = next(a for a in _strict_json(r.content)["annotations"] if a["id"] == auto)
    assert ann["predicted_iou"] is None and ann["stability_score"] is None
    r = api.client.get(f"/api/v1/projects/{project['id']}/export?format=sa1b", headers=api.admin)
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    anns = [a for n in zf.namelist() for a in _strict_json(zf.read(n))["annotations"]]
    assert next(a for a in anns if a["id"] == auto)["predicted_iou"] is None
