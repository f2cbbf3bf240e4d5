"""E2E: log in, annotate an image in the browser with the in-browser decoder, and check through
the API that what was stored is exactly the mask the page drew; reload keeps everything; a
failed save is queued and sent after a reload and a re-login (401); screenshots of the annotator and admin console."""
from __future__ import annotations

import time

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from tests.e2e import annotator_page as ap
from tests.e2e.canvas_probe import image_to_client, iou, take_baseline, tinted_mask

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

W, H = 320, 240
_annotations, _login_and_open, _wait_ready, _current_mask = ap.annotations, ap.login_and_open, ap.wait_ready, ap.current_mask


def _click(page, x: float, y: float, button: str = "left") -> None:  # noqa: ANN001
    ap.click(page, (W, H), x, y, button)


def _drag_box(page, x0: float, y0: float, x1: float, y1: float) -> None:  # noqa: ANN001
    ap.drag_box(page, (W, H), x0, y0, x1, y1)


@pytest.fixture(scope="module")
def project(running_app):  # noqa: ANN001
    return ap.make_project(running_app, "e2e shapes", [ap.shapes_png(W, H)])


def test_annotate_accept_reload(page, running_app, project, screenshots) -> None:  # noqa: ANN001
    image_id = _login_and_open(page, running_app, project)
    assert image_id is not None
    take_baseline(page, (W, H))  # nothing drawn over the image yet

    # hovering previews the mask under the cursor before any click
    page.mouse.move(*image_to_client(page, (W, H), 110, 110))
    deadline = time.monotonic() + 30
    while not tinted_mask(page, (W, H)).any():
        assert time.monotonic() < deadline, "no hover preview appeared within 30 s"
        page.wait_for_timeout(200)
    assert page.evaluate("window.maskloop.currentRle()") is None, "a hover must not create a mask to accept"

    _click(page, 110, 110)
    first = _current_mask(page)
    assert first.shape == (H, W)
    # the server announces the guided-filter refinement with the model: the page refines every mask
    assert page.evaluate("window.maskloop.refined") is True
    assert page.evaluate("window.maskloop.lastClick.refineMs") > 0
    drawn = tinted_mask(page, (W, H))
    assert first.sum() > 0, "the decoder returned an empty mask for the first click"
    assert iou(drawn, first) > 0.9, "the canvas does not show the mask the decoder returned"

    _click(page, 200, 60, button="right")  # negative click
    second = _current_mask(page)
    assert (second != first).any(), "a negative click did not change the mask"

    _drag_box(page, 60, 55, 170, 170)
    third = _current_mask(page)
    assert (third != second).any(), "a box did not change the mask"
    assert third.sum() > 0
    drawn = tinted_mask(page, (W, H))
    assert iou(drawn, third) > 0.9
    page.keyboard.press("z")  # undo the box, then redo it
    assert np.array_equal(_current_mask(page), second)
    page.keyboard.press("Shift+Z")
    assert np.array_equal(_current_mask(page), third)
    page.screenshot(path=str(screenshots / "annotator.png"))

    page.keyboard.press("2")  # label "block"
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelector('#autosave').textContent.includes('All accepted masks saved')",
                           timeout=30_000)
    stored = _annotations(running_app, image_id)
    assert len(stored) == 1
    ann = stored[0]
    assert ann["label_id"] == project["labels"][1]["id"]
    assert ann["source"] == "assisted" and ann["clicks"] == 3 and ann["seconds"] >= 0
    seg = ann["segmentation"]
    saved = ap.decode_rle(seg)
    assert np.array_equal(saved, third), "the stored RLE is not the mask the page showed"
    assert ann["area"] == int(third.sum())

    # reload: the lease, the image and the accepted object come back
    page.reload()
    assert _wait_ready(page) == image_id
    page.wait_for_selector("#objects li.object")
    assert page.locator("#objects li.object").count() == 1
    take_baseline(page, (W, H))
    assert page.evaluate("window.maskloop.currentRle()") is None
    assert not page.page_errors, page.page_errors


def _posts_answered_by(answer):  # noqa: ANN001, ANN202
    """A Playwright route handler: POSTs get ``answer(route)``, other requests go through."""
    def handler(route):  # noqa: ANN001, ANN202
        if route.request.method == "POST":
            answer(route)
        else:
            route.continue_()
    return handler


def test_failed_save_survives_reload_and_expired_login(page, running_app, project, screenshots) -> None:  # noqa: ANN001
    image_id = _login_and_open(page, running_app, project)
    before = len(_annotations(running_app, image_id))

    refuse = _posts_answered_by(lambda route: route.abort("connectionrefused"))

    page.route("**/api/v1/images/*/annotations", refuse)
    _click(page, 240, 180)
    expected = _current_mask(page)
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelector('#autosave').textContent.includes('waiting')", timeout=15_000)
    assert len(_annotations(running_app, image_id)) == before, "the refused POST reached the server"

    page.unroute("**/api/v1/images/*/annotations")
    # the login expires (the server refuses the token): back to the login page, the queue is kept
    page.evaluate("localStorage.setItem('maskloop.token', 'expired-or-forged-token')")
    page.reload()
    page.wait_for_selector("#password")
    assert "log in again" in page.content()
    assert len(_annotations(running_app, image_id)) == before
    page.fill("#username", "admin")
    page.fill("#password", running_app.admin_password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"**/annotate/{project['id']}")
    _wait_ready(page)
    page.wait_for_function("document.querySelector('#autosave').textContent.includes('All accepted masks saved')",
                           timeout=30_000)
    stored = _annotations(running_app, image_id)
    assert len(stored) == before + 1
    seg = stored[-1]["segmentation"]
    saved = ap.decode_rle(seg)
    assert np.array_equal(saved, expected)
    assert stored[-1]["label_id"] == project["labels"][0]["id"]


def test_snap_to_image_switches_off_and_is_remembered(page, running_app, project) -> None:  # noqa: ANN001
    _login_and_open(page, running_app, project)
    toggle = page.locator("#snap")
    assert page.locator("#snap-toggle").is_visible() and toggle.is_checked()
    _click(page, 110, 110)
    assert page.evaluate("window.maskloop.refined") is True
    assert page.evaluate("window.maskloop.lastClick.refineMs") > 0
    snapped = _current_mask(page)

    # G switches snapping off: the same first click now gives the decoder's own mask
    page.keyboard.press("Escape")
    page.keyboard.press("g")
    page.wait_for_function("window.maskloop.refined === false", timeout=10_000)
    assert not toggle.is_checked()
    assert "Snapping is off" in page.locator("#status").inner_text()
    _click(page, 110, 110)
    assert page.evaluate("window.maskloop.lastClick.refineMs") == 0
    plain = _current_mask(page)
    assert plain.sum() > 0 and (plain != snapped).any(), "switching snapping off did not change the mask"

    # the choice survives a reload; the checkbox switches it back on
    page.reload()
    _wait_ready(page)
    assert page.evaluate("window.maskloop.refined") is False and not toggle.is_checked()
    toggle.click()
    page.wait_for_function("window.maskloop.refined === true", timeout=10_000)
    _click(page, 110, 110)
    assert page.evaluate("window.maskloop.lastClick.refineMs") > 0
    assert (_current_mask(page) == snapped).all()
    assert not page.page_errors, page.page_errors


_ENTER_WHILE_REFINING = """() => new Promise((resolve, reject) => {
  const started = performance.now();
  const tick = () => {
    const d = window.maskloop;
    if (d.refining > 0) {
      const raw = d.currentRle();
      window.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter" }));
      resolve(raw);
    } else if (performance.now() - started > 20000) reject(new Error("no mask was drawn before its refinement"));
    else setTimeout(tick, 1);
  };
  tick();
})"""


def test_mask_drawn_before_refinement_and_accepted_refined(page, running_app, project) -> None:  # noqa: ANN001
    image_id = _login_and_open(page, running_app, project)
    before = len(_annotations(running_app, image_id))
    _click(page, 110, 110)
    # a follow-up click decoded afresh: the decoder's mask is drawn first, the refined one after it
    _click(page, 60, 180)
    last = page.evaluate("window.maskloop.lastClick")
    assert not last["reused"] and last["refineMs"] > 0
    assert last["refinedMs"] is not None and last["refinedMs"] > last["ms"], last
    assert page.evaluate("window.maskloop.refining") == 0
    refined = _current_mask(page)
    assert "snapped to the image at" in page.locator("#timing").inner_text()

    # Enter pressed while the first, unrefined mask is on screen: the accept waits for the refinement
    page.keyboard.press("Escape")
    _click(page, 110, 110)
    page.mouse.click(*image_to_client(page, (W, H), 60, 180))
    raw = ap.decode_rle(page.evaluate(_ENTER_WHILE_REFINING))
    assert (raw != refined).any(), "the refinement did not change this mask, so the test cannot tell them apart"
    # the accept happens once the refinement is in (the editor then clears); then the mask is saved
    page.wait_for_function("window.maskloop.currentRle() === null", timeout=30_000)
    deadline = time.monotonic() + 30
    while len(stored := _annotations(running_app, image_id)) < before + 1:
        assert time.monotonic() < deadline, "the accepted mask was never saved"
        time.sleep(0.2)
    assert len(stored) == before + 1
    assert np.array_equal(ap.decode_rle(stored[-1]["segmentation"]), refined), "the unrefined mask was stored"
    assert page.evaluate("window.maskloop.currentRle()") is None
    assert not page.page_errors, page.page_errors


def _ensure_an_annotation(running_app, project) -> set[int]:  # noqa: ANN001
    """The ids of the labels in use on the project's images; when no earlier test accepted a labelled mask
    (this test run alone), one is stored through the API, so the console has metrics and a label in use."""
    with running_app.client() as api:
        used = {a["label_id"] for i in project["image_ids"] for a in api.get(f"/images/{i}/annotations").json()}
        if not used:
            m = np.zeros((H, W), np.uint8, order="F")
            m[5:20, 5:20] = 1
            rle = mask_utils.encode(np.asfortranarray(m))
            api.post(f"/images/{project['image_ids'][0]}/annotations", json={
                "segmentation": {"size": [H, W], "counts": rle["counts"].decode()},
                "label_id": project["labels"][0]["id"], "source": "manual"}).raise_for_status()
            used = {project["labels"][0]["id"]}
    return used


def test_admin_console_screenshot(page, running_app, project, screenshots) -> None:  # noqa: ANN001
    used = _ensure_an_annotation(running_app, project)
    ap.log_in(page, running_app)
    page.wait_for_selector("button.annotate")
    page.goto(f"{running_app.base_url}/admin/{project['id']}")
    page.wait_for_function("document.querySelector('#progress-images') !== null"
                           " && document.querySelector('#metrics svg') !== null", timeout=30_000)
    # a label added from the console; a prefill job started with no options shows in the job list
    page.fill("#label-name", "tree")
    page.click("#add-label")
    page.wait_for_function("document.querySelector('#label-chips').textContent.includes('tree')", timeout=30_000)
    # labels are edited in place: rename and recolour "tree", then delete it; a label in use is refused
    page.on("dialog", lambda dialog: dialog.accept())
    tree = page.locator(".label-row", has_text="tree")
    tree.locator(".label-name").fill("shrub")
    tree.locator(".label-color").fill("#00aa44")
    tree.locator(".label-save").click()
    page.wait_for_function("document.querySelector('#status').textContent.includes('Label shrub saved')", timeout=10_000)
    with running_app.client() as api:
        saved = [lab for lab in api.get(f"/projects/{project['id']}").json()["labels"] if lab["name"] == "shrub"]
    assert len(saved) == 1 and saved[0]["color"].lower() == "#00aa44", saved
    page.locator(".label-row", has_text="shrub").locator(".label-delete").click()
    page.wait_for_function("document.querySelector('#status').textContent.includes('Label shrub deleted')", timeout=10_000)
    with running_app.client() as api:
        names = [lab["name"] for lab in api.get(f"/projects/{project['id']}").json()["labels"]]
    assert "shrub" not in names
    in_use = next(lab for lab in project["labels"] if lab["id"] in used)
    page.locator(f".label-row[data-label-id='{in_use['id']}'] .label-delete").click()
    page.wait_for_function("document.querySelector('#status').dataset.tone === 'error'"
                           " && document.querySelector('#status').textContent.includes('relabel them first')",
                           timeout=10_000)
    page.fill("#label-name", "tree")
    page.click("#add-label")
    page.wait_for_function("document.querySelector('#label-chips').textContent.includes('tree')", timeout=30_000)
    # a name being typed survives the page's refresh after another action (and the 3 s poll while jobs run)
    tree_name = page.locator(".label-row", has_text="tree").locator(".label-name")
    tree_name.fill("tree (typing")
    page.evaluate("document.querySelector('#progress-images').dataset.before = '1'")
    page.click("#stage-save")
    # the refresh that follows an action draws the progress tables anew (and, before, the label rows too)
    page.wait_for_function("document.querySelector('#progress-images') && !document.querySelector('#progress-images')"
                           ".dataset.before", timeout=10_000)
    assert tree_name.input_value() == "tree (typing"
    tree_name.fill("tree")
    page.fill("#job-grid", "4")
    assert page.is_checked("#job-refine")  # masks refined with the image unless unticked
    page.uncheck("#job-refine")
    page.fill("#job-object", "0.02")
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith(f"/projects/{project['id']}/prefill")) as sent:
        page.click("#start-prefill")
    assert sent.value.post_data_json == {"points_per_side": 4, "min_object_score": 0.02, "refine": False}
    page.wait_for_selector("#jobs tr[data-job-id]", timeout=30_000)
    assert "prefill" in page.locator("#jobs").inner_text()
    assert "Prefill job started" in page.locator("#status").inner_text()
    # a job that has not ended can be cancelled from its row (the worker may have finished it meanwhile)
    job_row = page.locator("#jobs tr[data-job-id]").last
    job_id = int(job_row.get_attribute("data-job-id"))
    cancel = job_row.locator("button.cancel-job")
    if cancel.count():
        cancel.click()
        page.wait_for_function(f"document.querySelector('#status').textContent.includes('Job {job_id} cancelled')"
                               " || document.querySelector('#status').textContent.includes('already ended')",
                               timeout=20_000)
        with running_app.client() as api:
            assert api.get(f"/jobs/{job_id}").json()["status"] in ("cancelled", "succeeded", "failed")
    # a round's settings: a bad learning rate is refused in the page; the server's own 422 (a time budget
    # over its week) is shown in plain words, and the request carried every setting
    page.fill("#round-steps", "3")
    page.fill("#round-lr", "2")
    page.click("#start-round")
    page.wait_for_function("document.querySelector('#status').textContent.includes('learning rate must be')",
                           timeout=10_000)
    page.fill("#round-lr", "0.0001")
    page.fill("#round-minutes", "20000")
    page.select_option("#round-encoder", "frozen")
    with page.expect_response(lambda r: r.request.method == "POST"
                              and r.url.endswith(f"/projects/{project['id']}/rounds")) as answered:
        page.click("#start-round")
    assert answered.value.status == 422
    assert answered.value.request.post_data_json == {"steps": 3, "learning_rate": 0.0001,
                                                     "time_budget_seconds": 1_200_000, "freeze_image_encoder": True}
    page.wait_for_function("document.querySelector('#status').dataset.tone === 'error'"
                           " && document.querySelector('#status').textContent.includes('time_budget_seconds')",
                           timeout=10_000)
    page.fill("#round-minutes", "")
    page.screenshot(path=str(screenshots / "admin.png"), full_page=True)
    assert "e2e shapes" in page.content()
    with running_app.client() as api:
        assert "tree" in [label["name"] for label in api.get(f"/projects/{project['id']}").json()["labels"]]
    assert not page.page_errors, page.page_errors


def test_refused_mask_is_kept_and_can_be_retried_with_another_label(page, running_app, project) -> None:  # noqa: ANN001
    image_id = _login_and_open(page, running_app, project)
    def assisted() -> list[dict]:  # the admin test's prefill job may add semi_auto proposals meanwhile
        return [a for a in _annotations(running_app, image_id) if a["source"] == "assisted"]

    before = len(assisted())

    # the server says no for good (as when the label was deleted meanwhile)
    refuse = _posts_answered_by(lambda route: route.fulfill(status=404, content_type="application/json",
                                                            body='{"detail": "label 99 not found"}'))

    page.route("**/api/v1/images/*/annotations", refuse)
    _click(page, 240, 180)
    expected = _current_mask(page)
    page.keyboard.press("Enter")
    row = page.locator("#objects li.object", has=page.locator("span.refused"))
    row.wait_for(timeout=15_000)
    assert "label 99 not found" in row.inner_text() and "kept in the object list" in page.locator("#status").inner_text()
    page.unroute("**/api/v1/images/*/annotations")
    # a reload keeps it (refused list in localStorage); N will not submit the image past it
    page.reload()
    _wait_ready(page)
    row = page.locator("#objects li.object", has=page.locator("span.refused"))
    row.wait_for(timeout=15_000)
    page.keyboard.press("n")
    page.wait_for_function("document.querySelector('#status').textContent.includes('refused a mask')", timeout=10_000)
    assert page.evaluate("window.maskloop.imageId") == image_id
    row.locator("select").select_option(str(project["labels"][1]["id"]))
    row.locator("button.retry").click()
    page.wait_for_function("!document.querySelector('#objects span.refused')"
                           " && document.querySelector('#autosave').textContent.includes('All accepted masks saved')",
                           timeout=30_000)
    stored = assisted()
    assert len(stored) == before + 1
    assert np.array_equal(ap.decode_rle(stored[-1]["segmentation"]), expected)
    assert stored[-1]["label_id"] == project["labels"][1]["id"]
    assert not page.page_errors, page.page_errors
