"""COCO import: polygons, compressed and uncompressed RLE, new labels, images from a folder or already
uploaded; malformed files give 400 naming the problem and change nothing (one transaction)."""
from __future__ import annotations

import copy
import io
import json

import numpy as np
import pytest
from PIL import Image as PILImage
from pycocotools import mask as mask_utils

from tests.backend.conftest import rle_of


def write_png(path, h, w, seed):
    arr = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    PILImage.fromarray(arr).save(path)


def rect(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def dataset():
    square = rect(20, 30, 2, 12, 4, 14)
    strip = rect(16, 24, 5, 9, 0, 24)
    # Uncompressed RLE (column-major run lengths) of ``strip``.
    flat = strip.flatten(order="F").astype(np.uint8)
    runs, prev, count = [], 0, 0
    for v in flat:
        if v != prev:
            runs.append(count)
            prev, count = v, 0
        count += 1
    runs.append(count)
    return {
        "images": [{"id": 7, "file_name": "photos/a.png", "width": 30, "height": 20},
                   {"id": 8, "file_name": "b.png", "width": 24, "height": 16}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 5, "name": "tree"}],
        "annotations": [
            {"id": 100, "image_id": 7, "category_id": 1, "iscrowd": 0,
             "segmentation": [[4, 2, 14, 2, 14, 12, 4, 12]]},
            {"id": 101, "image_id": 7, "category_id": 5, "segmentation": rle_of(square), "predicted_iou": 0.8,
             "object_score": 0.04},
            {"id": 102, "image_id": 8, "category_id": 5, "iscrowd": 1,
             "segmentation": {"size": [16, 24], "counts": runs}},
        ],
    }, square, strip


def post_coco(api, pid, coco, images_path=None, headers=None):
    data = {"images_path": images_path} if images_path else {}
    return api.client.post(f"/api/v1/projects/{pid}/import-coco", headers=headers or api.admin, data=data,
                           files={"file": ("coco.json", json.dumps(coco).encode(), "application/json")})


def counts(api, pid):
    images = api.client.get(f"/api/v1/projects/{pid}/images", headers=api.admin).json()
    labels = api.client.get(f"/api/v1/projects/{pid}", headers=api.admin).json()["labels"]
    n_ann = sum(len(api.client.get(f"/api/v1/images/{im['id']}/annotations", headers=api.admin).json())
                for im in images["items"])
    return images["total"], len(labels), n_ann


@pytest.fixture
def folder(api):
    root = api.settings.import_root_paths[0] / "coco"
    (root / "photos").mkdir(parents=True)
    write_png(root / "photos" / "a.png", 20, 30, 1)
    write_png(root / "b.png", 16, 24, 2)
    return root


def test_import_from_folder(any_api):
    api = any_api
    root = api.settings.import_root_paths[0] / "coco"
    (root / "photos").mkdir(parents=True)
    write_png(root / "photos" / "a.png", 20, 30, 1)
    write_png(root / "b.png", 16, 24, 2)
    pid = api.make_project(labels=("cat",))["id"]
    coco, square, strip = dataset()
    r = post_coco(api, pid, coco, images_path=str(root))
    assert r.status_code == 201, r.text
    assert r.json() == {"images": 2, "images_created": 2, "annotations_created": 3, "labels_created": 1}
    project = api.client.get(f"/api/v1/projects/{pid}", headers=api.admin).json()
    assert sorted(lb["name"] for lb in project["labels"]) == ["cat", "tree"]
    images = {im["file_name"]: im for im in
              api.client.get(f"/api/v1/projects/{pid}/images", headers=api.admin).json()["items"]}
    assert images["a.png"]["status"] == "done"
    anns = api.client.get(f"/api/v1/images/{images['a.png']['id']}/annotations", headers=api.admin).json()
    polygon_mask = mask_utils.decode({"size": [20, 30], "counts": anns[0]["segmentation"]["counts"].encode()})
    # The polygon covers the same square up to pycocotools' boundary rasterisation.
    assert abs(int(polygon_mask.sum()) - int(square.sum())) <= 25 and polygon_mask[5:10, 6:12].all()
    assert anns[1]["segmentation"] == rle_of(square) and anns[1]["predicted_iou"] == pytest.approx(0.8)
    assert anns[1]["object_score"] == pytest.approx(0.04) and anns[0]["object_score"] is None
    assert anns[1]["source"] == "manual"
    b = api.client.get(f"/api/v1/images/{images['b.png']['id']}/annotations", headers=api.admin).json()
    assert b[0]["segmentation"] == rle_of(strip) and b[0]["area"] == strip.sum()


def test_import_matches_uploaded_images(api):
    pid = api.make_project(labels=())["id"]
    coco, _, _ = dataset()
    for name, (h, w, seed) in {"a.png": (20, 30, 1), "b.png": (16, 24, 2)}.items():
        buf = io.BytesIO()
        PILImage.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
        api.client.post(f"/api/v1/projects/{pid}/images", headers=api.admin,
                        files=[("files", (name, buf.getvalue(), "image/png"))])
    r = post_coco(api, pid, coco)
    assert r.status_code == 201, r.text
    assert r.json()["images_created"] == 0 and r.json()["labels_created"] == 2
    assert counts(api, pid) == (2, 2, 3)


def break_it(coco, how):
    bad = copy.deepcopy(coco)
    if how == "no_images":
        del bad["images"]
    elif how == "unknown_category":
        bad["annotations"][2]["category_id"] = 99
    elif how == "unknown_image":
        bad["annotations"][2]["image_id"] = 42
    elif how == "odd_polygon":
        bad["annotations"][0]["segmentation"] = [[1, 2, 3, 4, 5]]
    elif how == "rle_size":
        bad["annotations"][1]["segmentation"]["size"] = [10, 10]
    elif how == "rle_counts":
        bad["annotations"][2]["segmentation"]["counts"] = [1, 2, 3]
    elif how == "wrong_dims":
        bad["images"][1]["width"] = 25
    elif how == "missing_file":
        bad["images"][1]["file_name"] = "nope.png"
    elif how == "traversal":
        bad["images"][1]["file_name"] = "../../../etc/b.png"
    elif how == "duplicate_id":
        bad["images"][1]["id"] = 7
    elif how == "nan_width":  # json.dumps writes NaN, which Python's json parser accepts
        bad["images"][1]["width"] = float("nan")
    elif how == "nul_name":
        bad["images"][1]["file_name"] = "b\x00.png"
    elif how == "huge_coordinate":  # pycocotools would allocate memory in proportion to it
        bad["annotations"][0]["segmentation"] = [[4, 2, 1e12, 2, 14, 12, 4, 12]]
    elif how == "far_outside":
        bad["annotations"][0]["segmentation"] = [[4, 2, 14, 2, 14, -25, 4, 12]]
    elif how == "long_label":
        bad["categories"][1]["name"] = "t" * 121
    elif how == "object_score":
        bad["annotations"][1]["object_score"] = 5
    elif how == "infinite_iou":  # json.dumps writes Infinity, which Python's json parser accepts
        bad["annotations"][1]["predicted_iou"] = float("inf")
    return bad


@pytest.mark.parametrize("how,needle", [
    ("no_images", "images"), ("unknown_category", "unknown category id 99"),
    ("unknown_image", "unknown image id 42"), ("odd_polygon", "annotations[0]"), ("rle_size", "annotations[1]"),
    ("rle_counts", "annotations[2]"), ("wrong_dims", "25x16"), ("missing_file", "nope.png"),
    ("traversal", "leaves images_path"), ("duplicate_id", "duplicate image id 7"),
    ("nan_width", "NaN is not a JSON number"), ("nul_name", "NUL character"),
    ("huge_coordinate", "polygon coordinates must be finite and lie within the image (30x20)"),
    ("far_outside", "annotations[0]"), ("long_label", "at most 120 characters"),
    ("object_score", "object_score must be a number from 0 to 1"), ("infinite_iou", "Infinity is not a JSON number")])
def test_malformed_coco_rejected_and_nothing_written(api, folder, how, needle):
    pid = api.make_project(labels=())["id"]
    coco, _, _ = dataset()
    r = post_coco(api, pid, break_it(coco, how), images_path=str(folder))
    assert r.status_code == 400, r.text
    assert needle in r.json()["detail"]
    assert counts(api, pid) == (0, 0, 0)


def test_not_json_and_bad_paths(api, folder, tmp_path):
    pid = api.make_project(labels=())["id"]
    r = api.client.post(f"/api/v1/projects/{pid}/import-coco", headers=api.admin,
                        files={"file": ("coco.json", b"{not json", "application/json")})
    assert r.status_code == 400 and "not valid JSON" in r.json()["detail"]
    deep = b"[" * 200_000 + b"]" * 200_000
    r = api.client.post(f"/api/v1/projects/{pid}/import-coco", headers=api.admin,
                        files={"file": ("coco.json", deep, "application/json")})
    assert r.status_code == 400 and "nested too deeply" in r.json()["detail"], r.text
    coco, _, _ = dataset()
    assert post_coco(api, pid, coco).status_code == 400  # no images_path and nothing uploaded
    assert post_coco(api, pid, coco, images_path=str(tmp_path)).status_code == 403
    _, annotator = api.make_user("ann")
    assert post_coco(api, pid, coco, images_path=str(folder), headers=annotator).status_code == 403
    assert counts(api, pid) == (0, 0, 0)
