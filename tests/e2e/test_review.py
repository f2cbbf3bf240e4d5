"""E2E: the review page. An admin approves one submitted image and sends another back with a mask
marked wrong and a note; the project's metrics count that per annotator; the annotator then gets it
from the queue with the note and the rejected mask flagged, and fixing the mask clears the flag
(checked through the API). Screenshot: review.png."""
from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from tests.e2e import annotator_page as ap

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

W, H = 320, 240


def _rect_rle(x0: int, y0: int, x1: int, y1: int) -> dict:
    m = np.zeros((H, W), np.uint8, order="F")
    m[y0:y1, x0:x1] = 1
    return {"size": [H, W], "counts": mask_utils.encode(np.asfortranarray(m))["counts"].decode()}


def _review_state(running_app, image_id: int) -> tuple[dict, dict[int, str]]:  # noqa: ANN001
    with running_app.client() as api:
        image = api.get(f"/images/{image_id}").json()
        states = {a["id"]: a["review_state"] for a in api.get(f"/images/{image_id}/annotations").json()}
    return image, states


def test_review_approves_and_sends_back_with_a_note(page, running_app, screenshots) -> None:  # noqa: ANN001
    proj = ap.make_project(running_app, "e2e review", [ap.shapes_png(W, H, s) for s in (6, 14)])
    labels = [label["id"] for label in proj["labels"]]
    ids: dict[int, list[int]] = {}
    with running_app.client() as api:  # the admin annotates and submits both images through the API
        for _ in proj["image_ids"]:
            lease = api.post(f"/projects/{proj['id']}/next").json()
            image_id = lease["image"]["id"]
            ids[image_id] = []
            for rect, label in (((55, 55, 165, 165), labels[0]), ((190, 140, 300, 220), labels[1])):
                body = {"segmentation": _rect_rle(*rect), "source": "manual", "label_id": label,
                        "clicks": 3, "seconds": 4.5}
                r = api.post(f"/images/{image_id}/annotations", json=body)
                r.raise_for_status()
                ids[image_id].append(r.json()["id"])
            api.post(f"/leases/{lease['lease_id']}/submit").raise_for_status()
    first, second = proj["image_ids"]

    ap.log_in(page, running_app)
    page.wait_for_selector(f"button.annotate[data-project-id='{proj['id']}']")  # logged in
    page.goto(f"{running_app.base_url}/admin/{proj['id']}")
    page.wait_for_function("(document.querySelector('#open-review')?.textContent ?? '').includes('(2)')",
                           timeout=30_000)
    page.click("#open-review")
    shown = "window.maskloopReview && window.maskloopReview.ready && window.maskloopReview.imageId === {}"
    page.wait_for_function(shown.format(first), timeout=30_000)
    rows = page.locator("#objects li.object")
    assert rows.count() == 2 and "disc · manual · admin · 3 clicks · 4.5 s" in rows.first.inner_text()
    page.screenshot(path=str(screenshots / "review.png"))

    page.keyboard.press("Shift+A")  # approve: both masks accepted, the image reviewed, the next one opens
    page.wait_for_function(shown.format(second), timeout=30_000)
    image, states = _review_state(running_app, first)
    assert image["status"] == "reviewed" and set(states.values()) == {"accepted"}
    assert "Approved" in page.locator("#status").inner_text()

    # mark the second mask wrong: approving is refused in words, sending back needs no more
    page.keyboard.press("ArrowDown")
    page.keyboard.press("r")
    assert page.evaluate("window.maskloopReview.marked()") == [ids[second][1]]
    assert page.locator("#objects li.review-wrong").count() == 1
    page.keyboard.press("Shift+A")
    page.wait_for_function("document.querySelector('#status').textContent.includes('marked wrong')", timeout=10_000)
    assert page.evaluate("window.maskloopReview.decisions") == 1
    page.fill("#review-note", "the block mask misses its right edge")
    page.locator("#stage").focus()
    page.keyboard.press("Shift+R")
    page.wait_for_function("window.maskloopReview.decisions === 2", timeout=30_000)
    page.wait_for_function("document.querySelector('#status').textContent.includes('Nothing to review')",
                           timeout=30_000)
    image, states = _review_state(running_app, second)
    assert image["status"] == "in_progress" and image["review_note"] == "the block mask misses its right edge"
    assert states == {ids[second][0]: "pending", ids[second][1]: "rejected"}

    # the project's metrics count the outcome per annotator
    page.goto(f"{running_app.base_url}/admin/{proj['id']}")
    row = page.locator("#metric-annotators tr", has_text="admin")
    row.wait_for(timeout=30_000)
    cells = row.locator("td").all_inner_texts()
    assert cells[1] == "4" and cells[6:9] == ["2", "1", "33 %"], cells
    assert "1 approved, 1 sent back" in page.locator("#metric-review").inner_text()
    # the export can hold only what review accepted: the approved image's two masks
    page.check("#export-approved")
    with page.expect_request(lambda r: "/export?format=coco" in r.url) as sent:
        page.click("#export-coco")
    asked = sent.value.url
    assert asked.endswith("&review_state=accepted"), asked
    with running_app.client() as api:  # what that request answers
        exported = api.get(asked.split("/api/v1", 1)[1]).json()
    assert sorted(a["id"] for a in exported["annotations"]) == sorted(ids[first])

    # the annotator gets the image back from the queue with the note and the rejected mask flagged
    page.goto(f"{running_app.base_url}/projects")
    page.locator(f"button.annotate[data-project-id='{proj['id']}']").click()
    assert ap.wait_ready(page) == second
    hint = page.locator("#review-hint")
    assert hint.is_visible() and "the block mask misses its right edge" in hint.inner_text()
    flagged = page.locator("#objects li.review-rejected")
    assert flagged.count() == 1 and "rejected in review" in flagged.inner_text()
    # relabelling it (a fix) puts it back to pending review, and the flag goes
    flagged.locator("select").select_option(str(labels[0]))
    page.wait_for_function("document.querySelectorAll('#objects li.review-rejected').length === 0", timeout=30_000)
    assert _review_state(running_app, second)[1][ids[second][1]] == "pending"
    assert not page.page_errors, page.page_errors
