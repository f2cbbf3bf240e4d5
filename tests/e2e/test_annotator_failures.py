"""E2E, bad input (issue 6): a lost lease and a failed embedding. The page says so in plain words and
offers the way forward, an accepted mask is never dropped, and the way forward works (checked
through the API)."""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import numpy as np
import pytest

from tests.e2e import annotator_page as ap
from tests.e2e.canvas_probe import canvas_rgb, image_to_client, iou, take_baseline, tinted_mask

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

W, H = 320, 240
STATUS = "document.querySelector('#status').textContent"


def _status(page) -> str:  # noqa: ANN001
    return page.locator("#status").inner_text()


def _own_lease(running_app, project) -> dict:  # noqa: ANN001
    """The admin's active lease on the project (the queue gives the caller's own lease back first)."""
    with running_app.client() as api:
        r = api.post(f"/projects/{project['id']}/next")
        assert r.status_code == 200, r.text
        return r.json()


def _wait_embedded(running_app, project, seconds: float = 120.0) -> None:  # noqa: ANN001
    """Until the worker has embedded every image of the project (so the queue leases them by id)."""
    deadline = time.monotonic() + seconds
    with running_app.client() as api:
        while {i["status"] for i in api.get(f"/projects/{project['id']}/images").json()["items"]} != {"embedded"}:
            assert time.monotonic() < deadline, "the worker did not embed the images"
            time.sleep(0.5)


@contextmanager
def _other_annotator(running_app, project, name: str) -> Iterator[httpx.Client]:  # noqa: ANN001
    """A logged-in API client of a second annotator, member of ``project``."""
    with running_app.client() as api:
        uid = api.post("/users", json={"username": name, "password": "other-pass-1"}).json()["id"]
        api.post(f"/projects/{project['id']}/members", json={"user_id": uid}).raise_for_status()
    with httpx.Client(base_url=running_app.base_url + "/api/v1", timeout=30) as other:
        token = other.post("/auth/login", json={"username": name, "password": "other-pass-1"}).json()["access_token"]
        other.headers["Authorization"] = f"Bearer {token}"
        yield other


def test_lost_lease_keeps_the_accepted_mask_says_so_and_n_goes_on(page, running_app) -> None:  # noqa: ANN001
    project = ap.make_project(running_app, "e2e lost lease", [ap.shapes_png(W, H, s) for s in (0, 12)])
    _wait_embedded(running_app, project)
    image_id = ap.login_and_open(page, running_app, project)
    assert image_id == project["image_ids"][0]
    lease = _own_lease(running_app, project)
    assert lease["image"]["id"] == image_id
    # the lease is lost behind the page's back: given back through the API, then another annotator takes the image
    with running_app.client() as api:
        assert api.post(f"/leases/{lease['lease_id']}/release").status_code == 204
    with _other_annotator(running_app, project, "e2e-lease-taker") as other:
        taken = other.post(f"/images/{image_id}/lease")
        assert taken.status_code == 200, taken.text

        # the annotator goes on: the accepted mask is stored all the same (annotations need no lease)
        ap.click(page, (W, H), 110, 110)
        expected = ap.current_mask(page)
        page.keyboard.press("2")
        page.keyboard.press("Enter")
        saved = "document.querySelector('#autosave').textContent.includes('All accepted masks saved')"
        page.wait_for_function(f"{STATUS}.includes('Accepted') && {saved}", timeout=30_000)
        stored = [a for a in ap.annotations(running_app, image_id) if a["source"] == "assisted"]
        assert len(stored) == 1
        assert np.array_equal(ap.decode_rle(stored[0]["segmentation"]), expected)
        assert stored[0]["label_id"] == project["labels"][1]["id"]

        # N: the submit is refused (409); the page says the lease was lost, in words, and opens another image
        page.keyboard.press("n")
        page.wait_for_function(f"window.maskloop.ready && window.maskloop.imageId === {project['image_ids'][1]}",
                               timeout=120_000)
        text = _status(page)
        assert "lease on" in text and "was lost" in text and "not submitted" in text, text
        assert "saved masks on it are kept" in text and "Ready: shapes1.png" in text, text
        assert page.locator("#status").get_attribute("data-tone") == "error"
        # the image was not marked done; the other annotator still holds it, and sees the mask
        with running_app.client() as api:
            assert api.get(f"/images/{image_id}").json()["status"] == "in_progress"
        again = other.post(f"/images/{image_id}/lease")
        assert again.status_code == 200 and again.json()["lease_id"] == taken.json()["lease_id"], again.text
        assert len([a for a in other.get(f"/images/{image_id}/annotations").json() if a["source"] == "assisted"]) == 1
    # the next image works
    ap.click(page, (W, H), 122, 110)
    assert ap.current_mask(page).sum() > 0
    assert _own_lease(running_app, project)["image"]["id"] == page.evaluate("window.maskloop.imageId")
    assert not page.page_errors, page.page_errors


def _fail_500(route) -> None:  # noqa: ANN001
    route.fulfill(status=500, content_type="application/json", body='{"detail": "embedding store unavailable"}')


def _truncate(route) -> None:  # noqa: ANN001
    """The real embedding, cut in half, as a 200 (202 while it is computed goes through)."""
    real = route.fetch()
    if real.status != 200:
        route.fulfill(response=real)
        return
    body = real.body()
    route.fulfill(status=200, content_type="application/octet-stream", body=body[: len(body) // 2])


@pytest.mark.parametrize(("answer", "shift", "said", "key"), [
    (_fail_500, 24, "embedding store unavailable", "s"),
    (_truncate, 36, "embedding data has", "n"),  # N on an image that never opened skips it too
], ids=["http500-S", "truncated-N"])
def test_failed_embedding_says_so_and_skip_opens_a_working_image(page, running_app, answer, shift, said, key) -> None:  # noqa: ANN001
    project = ap.make_project(running_app, f"e2e failed embedding {shift}",
                              [ap.shapes_png(W, H, s) for s in (shift, shift + 4)])
    page.route("**/api/v1/images/*/embedding*", answer)
    ap.log_in(page, running_app)
    page.locator(f"button.annotate[data-project-id='{project['id']}']").click()
    page.wait_for_function(f"{STATUS}.includes('could not be opened')", timeout=120_000)
    text = _status(page)
    assert said in text and "Press S to skip it" in text and "reload the page" in text, text
    assert page.locator("#status").get_attribute("data-tone") == "error"
    failed = page.evaluate("window.maskloop.imageId")
    assert failed in project["image_ids"] and page.evaluate("window.maskloop.ready") is False
    # a click on the broken image draws nothing, and the way forward stays on screen
    page.locator("#stage").click()
    assert page.evaluate("window.maskloop.currentRle()") is None
    assert "Press S to skip it" in _status(page), _status(page)

    # S gives the image back (skipped: not offered to this annotator again) and opens the other one
    page.unroute("**/api/v1/images/*/embedding*")
    page.keyboard.press(key)
    nxt = ap.wait_ready(page)
    assert nxt != failed and nxt in project["image_ids"]
    assert "Ready" in _status(page)
    assert _own_lease(running_app, project)["image"]["id"] == nxt
    with running_app.client() as api:
        assert api.get(f"/images/{failed}").json()["status"] != "done", "the image that never opened was submitted"
    take_baseline(page, (W, H))
    ap.click(page, (W, H), 110 + shift + 4, 110)
    mask = ap.current_mask(page)
    assert mask.sum() > 0
    assert iou(tinted_mask(page, (W, H)), mask) > 0.9, "the canvas does not show the mask"
    assert not page.page_errors, page.page_errors


def test_next_image_whose_embedding_fails_is_named_and_its_way_forward_stays(page, running_app) -> None:  # noqa: ANN001
    project = ap.make_project(running_app, "e2e failed next embedding", [ap.shapes_png(W, H, s) for s in (48, 52, 56)])
    first, broken, third = project["image_ids"]
    _wait_embedded(running_app, project)
    page.route(f"**/api/v1/images/{broken}/embedding*", _fail_500)
    assert ap.login_and_open(page, running_app, project) == first
    page.keyboard.press("n")  # submits the first image; the next one's embedding fails (prefetch and load)
    page.wait_for_function(f"{STATUS}.includes('could not be opened')", timeout=60_000)
    assert page.evaluate("window.maskloop.imageId") == broken
    text = _status(page)
    assert "shapes1.png could not be opened: embedding store unavailable" in text and "Press S to skip it" in text, text
    # the first image is not left on screen under that message: the canvas shows no image
    rgb = canvas_rgb(page, (W, H)).reshape(-1, 3)
    assert (rgb == rgb[0]).all() and rgb[0].max() < 40, "the canvas still shows an image"
    # a click there draws nothing, and the way forward stays said
    page.mouse.click(*image_to_client(page, (W, H), 110 + 48, 110))
    page.wait_for_timeout(300)
    assert page.evaluate("window.maskloop.currentRle()") is None
    assert "shapes1.png could not be opened" in _status(page), _status(page)
    page.keyboard.press("s")
    assert ap.wait_ready(page) == third
    take_baseline(page, (W, H))
    ap.click(page, (W, H), 110 + 56, 110)
    mask = ap.current_mask(page)
    assert mask.sum() > 0 and iou(tinted_mask(page, (W, H)), mask) > 0.9
    with running_app.client() as api:
        assert api.get(f"/images/{first}").json()["status"] == "done"
        assert api.get(f"/images/{broken}").json()["status"] == "embedded"  # back in the queue for the others
    assert not page.page_errors, page.page_errors
