"""YOLO segmentation export: mask outlines as normalised polygons that draw back to the masks
(cv2.fillPoly, as YOLO trainers rasterise them), a mask in pieces kept as one object, data.yaml
class names, label files for every image, and the route, CLI-facing format list and filters."""
from __future__ import annotations

import io
import zipfile

import cv2
import numpy as np
import yaml

from backend.services.yolo_export import mask_polygon
from tests.backend.conftest import rle_of
from tests.backend.test_export import disk


def _draw(polygon: list[tuple[float, float]], h: int, w: int) -> np.ndarray:
    out = np.zeros((h, w), np.uint8)
    cv2.fillPoly(out, [np.round(np.asarray(polygon)).astype(np.int32)], 1)
    return out.astype(bool)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_outlines_draw_back_to_the_masks():
    h, w = 60, 80
    rect = np.zeros((h, w), bool)
    rect[10:30, 20:50] = True
    assert np.array_equal(_draw(mask_polygon(rect), h, w), rect)  # a rectangle exactly
    circle = disk(h, w, 30, 40, 20)
    assert _iou(_draw(mask_polygon(circle), h, w), circle) > 0.97
    # a ring: the outline is the outer one (a polygon has no hole)
    ring = circle & ~disk(h, w, 30, 40, 8)
    assert np.array_equal(_draw(mask_polygon(ring), h, w), _draw(mask_polygon(circle), h, w))
    # two pieces stay one polygon that covers both (joined by a zero-width cut)
    two = np.zeros((h, w), bool)
    two[5:20, 5:25] = True
    two[40:55, 50:75] = True
    drawn = _draw(mask_polygon(two), h, w)
    assert _iou(drawn, two) > 0.95 and drawn[10, 10] and drawn[45, 60]
    # a lone pixel is dropped, an empty mask has no outline
    speck = two.copy()
    speck[58, 2] = True
    assert _draw(mask_polygon(speck), h, w)[58, 2] == 0
    assert mask_polygon(np.zeros((h, w), bool)) == []


def test_yolo_export_route(any_api):
    api = any_api
    project = api.make_project("yolo: proj", labels=("cat", "dog"))
    cat, dog = (lb["id"] for lb in project["labels"])
    i1 = api.add_image(project["id"], 24, 32, seed=1)
    i2 = api.add_image(project["id"], 30, 20, seed=2)
    masks = {(i1, cat): disk(24, 32, 10, 12, 6), (i1, None): disk(24, 32, 15, 24, 4),
             (i2, dog): disk(30, 20, 15, 10, 8)}
    for (image_id, label_id), mask in masks.items():
        body = {"segmentation": rle_of(mask), "source": "manual", **({"label_id": label_id} if label_id else {})}
        r = api.client.post(f"/api/v1/images/{image_id}/annotations", headers=api.admin, json=body)
        assert r.status_code == 201, r.text
    i3 = api.add_image(project["id"], 16, 16, seed=3)  # no annotations: an empty label file

    r = api.client.get(f"/api/v1/projects/{project['id']}/export?format=yolo", headers=api.admin)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip" and "-yolo.zip" in r.headers["content-disposition"]
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    names = set(zf.namelist())
    images = {i["id"]: i for i in api.client.get(f"/api/v1/projects/{project['id']}/images",
                                                 headers=api.admin).json()["items"]}
    stems = {i: images[i]["file_name"].rsplit(".", 1)[0] for i in (i1, i2, i3)}
    assert len(set(stems.values())) == 3
    assert names == {"data.yaml", "images.txt", *(f"labels/{s}.txt" for s in stems.values())}
    assert zf.read("images.txt").decode().splitlines() == [images[i]["file_name"] for i in (i1, i2, i3)]
    data = yaml.safe_load(zf.read("data.yaml"))
    assert data["names"] == {0: "cat", 1: "dog", 2: "unlabeled"} and data["nc"] == 3
    assert data["train"] == "images"
    label_files = {i: f"labels/{stems[i]}.txt" for i in (i1, i2, i3)}
    assert zf.read(label_files[i3]) == b""
    for image_id, (h, w) in ((i1, (24, 32)), (i2, (30, 20))):
        lines = zf.read(label_files[image_id]).decode().splitlines()
        expected = {k: m for k, m in masks.items() if k[0] == image_id}
        assert len(lines) == len(expected)
        for line in lines:
            cls, *coords = line.split()
            xy = np.asarray(coords, float).reshape(-1, 2)
            assert (xy >= 0).all() and (xy <= 1).all()
            label = {0: cat, 1: dog, 2: None}[int(cls)]
            drawn = _draw(list(xy * [w, h]), h, w)
            assert _iou(drawn, expected[(image_id, label)]) > 0.9, (image_id, cls)

    # filters apply as to the other formats; a bad format names the ones there are
    r = api.client.get(f"/api/v1/projects/{project['id']}/export", params={"format": "yolo", "source": "automatic"},
                       headers=api.admin)
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    assert all(zf.read(f"labels/{s}.txt") == b"" for s in stems.values())
    assert yaml.safe_load(zf.read("data.yaml"))["names"] == {0: "cat", 1: "dog"}
    r = api.client.get(f"/api/v1/projects/{project['id']}/export?format=voc", headers=api.admin)
    assert r.status_code == 400 and "yolo" in r.json()["detail"]


def test_label_file_names_stay_apart():
    from backend.services.yolo_export import _label_names

    images = [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "sub/a.jpg"}, {"id": 3, "file_name": "b.jpeg"},
              {"id": 4, "file_name": ".png"}]
    # the stem as YOLO trainers take it (a name that is all extension keeps it, as os.path.splitext does)
    assert _label_names(images) == {1: "a_1.txt", 2: "a_2.txt", 3: "b.txt", 4: ".png.txt"}
