"""Driving the annotator page from a test: log in, open a project, wait for the image, click, drag
a box, read the mask the page holds, and read what the API stored."""
from __future__ import annotations

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from tests.e2e.canvas_probe import image_to_client

LABELS = [{"name": "disc", "color": "#ff3b30"}, {"name": "block", "color": "#34c759"}]


def shapes_png(w: int, h: int, shift: int = 0) -> bytes:
    """A gradient with a yellow disc and a blue block (moved right by ``shift`` pixels), as PNG."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = 60 + xx * 100 // w
    img[..., 1] = 80 + yy * 80 // h
    img[..., 2] = 90
    img[((xx - 110 - shift) ** 2 + (yy - 110) ** 2) < 55 ** 2] = (40, 200, 240)  # BGR yellow disc
    img[140:220, 190 + shift:300 + shift] = (200, 70, 30)  # blue block
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def make_project(running_app, name: str, pngs: list[bytes], stage: str | None = None) -> dict:  # noqa: ANN001
    """A project with the two labels and the given images; the project dict has ``image_ids``."""
    with running_app.client() as api:
        body = {"name": name, "labels": LABELS, **({"stage": stage} if stage else {})}
        r = api.post("/projects", json=body)
        assert r.status_code == 201, r.text
        p = r.json()
        files = [("files", (f"shapes{i}.png", png, "image/png")) for i, png in enumerate(pngs)]
        r = api.post(f"/projects/{p['id']}/images", files=files)
        assert r.status_code in (200, 201), r.text
        assert len(r.json()["created"]) == len(pngs), r.text
        p["image_ids"] = [i["id"] for i in r.json()["created"]]
        return p


def decode_rle(rle: dict) -> np.ndarray:
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


def annotations(running_app, image_id: int) -> list[dict]:  # noqa: ANN001
    with running_app.client() as api:
        r = api.get(f"/images/{image_id}/annotations")
        r.raise_for_status()
        return r.json()


def log_in(page, running_app) -> None:  # noqa: ANN001
    page.goto(running_app.base_url + "/")
    page.fill("#username", "admin")
    page.fill("#password", running_app.admin_password)
    page.get_by_role("button", name="Log in").click()


def login_and_open(page, running_app, project) -> int:  # noqa: ANN001
    log_in(page, running_app)
    page.locator(f"button.annotate[data-project-id='{project['id']}']").click()
    return wait_ready(page)


def wait_ready(page) -> int:  # noqa: ANN001
    # the first load waits for the Celery worker to compute the embedding ("computing embedding…")
    page.wait_for_function("window.maskloop && window.maskloop.ready", timeout=180_000)
    return page.evaluate("window.maskloop.imageId")


def current_mask(page) -> np.ndarray:  # noqa: ANN001
    rle = page.evaluate("window.maskloop.currentRle()")
    assert rle is not None, "the page shows no mask"
    return decode_rle(rle)


def click(page, size: tuple[int, int], x: float, y: float, button: str = "left") -> None:  # noqa: ANN001
    before = page.evaluate("window.maskloop.decodes")
    cx, cy = image_to_client(page, size, x, y)
    page.mouse.click(cx, cy, button=button)
    page.wait_for_function(f"window.maskloop.decodes > {before}", timeout=30_000)


def drag_box(page, size: tuple[int, int], x0: float, y0: float, x1: float, y1: float) -> None:  # noqa: ANN001
    before = page.evaluate("window.maskloop.decodes")
    a, b = image_to_client(page, size, x0, y0), image_to_client(page, size, x1, y1)
    page.mouse.move(*a)
    page.mouse.down()
    page.mouse.move(b[0], b[1], steps=8)
    page.mouse.up()
    page.wait_for_function(f"window.maskloop.decodes > {before}", timeout=30_000)
