"""E2E: the annotator's candidate cycling (Tab / buttons) for an ambiguous first click, Space+drag
and middle-drag pan beside box drags, the next image's prefetch ("Next image" opens it without
downloading again), and the stage-3 review of automatic masks (A / R / Shift+R). Screenshots of the
candidate view and of the stage-3 review go to artifacts/screenshots/."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from tests.e2e import annotator_page as ap
from tests.e2e.canvas_probe import canvas_rgb, image_to_client, iou, take_baseline, tinted_mask

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

W, H = 320, 240
SIZE = (W, H)


@pytest.fixture(scope="module")
def project(running_app):  # noqa: ANN001
    return ap.make_project(running_app, "e2e tools", [ap.shapes_png(W, H, shift) for shift in (0, 7, 13)])


def _candidates(page) -> dict | None:  # noqa: ANN001
    return page.evaluate("window.maskloop.candidates()")


def _canvas_top(page) -> float:  # noqa: ANN001
    return page.evaluate("document.querySelector('#stage').getBoundingClientRect().top")


def test_first_click_candidates_cycle(page, running_app, project, screenshots) -> None:  # noqa: ANN001
    image_id = ap.login_and_open(page, running_app, project)
    # a toolbar narrow enough to wrap: the image must still stay where the annotator's pointer is while
    # the candidate switch and status messages of other lengths come and go
    page.set_viewport_size({"width": 1000, "height": 950})
    # the canvas follows the window (on the next frame): narrower, still the whole image, fitted
    page.wait_for_function("document.querySelector('#stage').width === 1000 - 24 - 12 - 360", timeout=10_000)
    view = page.evaluate("window.maskloop.view()")
    assert view["scale"] == pytest.approx(min((1000 - 396) / W, page.evaluate("document.querySelector('#stage').height") / H))
    take_baseline(page, SIZE)
    top = _canvas_top(page)
    assert not page.locator("#candidates").is_visible(), "no candidates before a click"
    ap.click(page, SIZE, 110, 110)
    assert _canvas_top(page) == top, "the candidate switch moved the image"
    c = _candidates(page)
    assert c is not None and len(c["ious"]) == 3, c
    ious, rles = c["ious"], c["rles"]
    assert ious == sorted(ious, reverse=True), f"the best predicted IoU must come first: {ious}"
    assert c["index"] == 0
    masks = [ap.decode_rle(r) for r in rles]
    assert not (np.array_equal(masks[0], masks[1]) and np.array_equal(masks[1], masks[2])), "three identical candidates"
    assert np.array_equal(ap.current_mask(page), masks[0])
    assert page.locator("#candidates").is_visible()
    assert "1/3" in page.locator("#cand-info").inner_text() and f"{ious[0]:.2f}" in page.locator("#cand-info").inner_text()

    assert c["refined"][0], "the candidate shown first comes refined"
    page.keyboard.press("Tab")
    assert _candidates(page)["index"] == 1
    # the others are refined (edge-aware) when first shown: wait for it, then take their masks again
    page.wait_for_function("window.maskloop.candidates().refined[1]", timeout=30_000)
    unrefined, masks[1] = masks[1], ap.decode_rle(_candidates(page)["rles"][1])
    # refined from the logits the worker held: an object the decoder found does not vanish
    assert masks[1].any() or not unrefined.any(), "the refined candidate lost the decoder's mask"
    assert np.array_equal(ap.current_mask(page), masks[1])
    info = page.locator("#cand-info").inner_text()
    assert "2/3" in info and f"{ious[1]:.2f}" in info
    if masks[1].any():
        assert iou(tinted_mask(page, SIZE), masks[1]) > 0.9, "the canvas does not show candidate 2"
    page.screenshot(path=str(screenshots / "annotator_candidates.png"))
    page.keyboard.press("Shift+Tab")
    assert _candidates(page)["index"] == 0
    page.keyboard.press("Shift+Tab")  # wraps around to the last one
    assert _candidates(page)["index"] == 2
    page.click("#cand-next")
    assert _candidates(page)["index"] == 0
    page.click("#cand-prev")
    assert _candidates(page)["index"] == 2
    page.wait_for_function("window.maskloop.candidates().refined[2]", timeout=30_000)
    masks[2] = ap.decode_rle(_candidates(page)["rles"][2])
    assert np.array_equal(ap.current_mask(page), masks[2])

    page.keyboard.press("1")
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelector('#autosave').textContent.includes('All accepted masks saved')",
                           timeout=30_000)
    stored = ap.annotations(running_app, image_id)
    assert len(stored) == 1
    assert np.array_equal(ap.decode_rle(stored[0]["segmentation"]), masks[2]), "the stored mask is not the chosen candidate"
    assert stored[0]["predicted_iou"] == pytest.approx(ious[2], abs=1e-4)
    assert not page.locator("#candidates").is_visible(), "candidates belong to the accepted object only"
    assert _canvas_top(page) == top, "accepting moved the image"

    # a second click refines the chosen candidate: one mask, no candidates
    ap.click(page, SIZE, 240, 180)
    assert _candidates(page) is not None
    ap.click(page, SIZE, 200, 160)
    assert _candidates(page) is None
    assert not page.page_errors, page.page_errors


def test_follow_up_click_after_a_rest_is_decoded_ahead(page, running_app, project) -> None:  # noqa: ANN001
    """While the pointer rests, both labels of the next click are decoded; the click then reuses one."""
    ap.login_and_open(page, running_app, project)
    ap.click(page, SIZE, 110, 110)
    first = ap.current_mask(page)
    x, y = next((x, y) for x, y in ((250, 200), (40, 200), (250, 40), (40, 40)) if not first[y, x])
    before = page.evaluate("window.maskloop.ahead")
    page.mouse.move(*image_to_client(page, SIZE, x, y), steps=4)
    page.wait_for_function(f"window.maskloop.ahead >= {before + 2}", timeout=60_000)  # positive, then negative
    decodes = page.evaluate("window.maskloop.decodes")
    page.mouse.down(button="right")
    page.mouse.up(button="right")
    page.wait_for_function(f"window.maskloop.decodes > {decodes}", timeout=30_000)
    last = page.evaluate("window.maskloop.lastClick")
    assert last["reused"], f"the click was decoded again: {last}"
    prompt = page.evaluate("window.maskloop.prompt()")
    assert [p["label"] for p in prompt["points"]] == [1, 0]
    assert abs(prompt["points"][1]["x"] - x) < 1.5 and abs(prompt["points"][1]["y"] - y) < 1.5
    assert page.evaluate("window.maskloop.currentRle()") is not None
    assert not page.page_errors, page.page_errors


def test_box_drag_previews_where_it_pauses_and_the_release_reuses_it(page, running_app, project) -> None:  # noqa: ANN001
    ap.login_and_open(page, running_app, project)
    before = page.evaluate("window.maskloop.boxPreviews")
    a, b = image_to_client(page, SIZE, 60, 55), image_to_client(page, SIZE, 170, 170)
    page.mouse.move(*a)
    page.mouse.down()
    page.mouse.move(b[0], b[1], steps=8)
    page.wait_for_function(f"window.maskloop.boxPreviews > {before}", timeout=60_000)  # shown during the drag
    assert page.evaluate("window.maskloop.currentRle()") is None, "a preview is not a mask to accept"
    decodes = page.evaluate("window.maskloop.decodes")
    page.mouse.up()
    page.wait_for_function(f"window.maskloop.decodes > {decodes}", timeout=30_000)
    last = page.evaluate("window.maskloop.lastClick")
    assert last["reused"], f"the released box was decoded again: {last}"
    box = page.evaluate("window.maskloop.prompt()")["box"]
    assert [round(box[k]) for k in ("x0", "y0", "x1", "y1")] == [60, 55, 170, 170], box
    assert page.evaluate("window.maskloop.currentRle()") is not None
    assert not page.page_errors, page.page_errors


def _previews_of(page, kind: str) -> list[dict]:  # noqa: ANN001
    return [e for e in page.evaluate("window.maskloop.previews") if e["kind"] == kind]


def _wait_refined_preview(page, kind: str) -> dict:  # noqa: ANN001
    page.wait_for_function(f"window.maskloop.previews.some((e) => e.kind === '{kind}' && e.refined)", timeout=60_000)
    return next(e for e in _previews_of(page, kind) if e["refined"])


def test_hover_and_box_previews_draw_the_decoders_mask_then_the_refined_one(page, running_app, project) -> None:  # noqa: ANN001
    """A hover or box preview draws the decoder's own mask first and its refinement in its place after:
    the page's log of what it drew, and the canvas pixels at the end."""
    ap.login_and_open(page, running_app, project)
    take_baseline(page, SIZE)
    page.evaluate("window.maskloop.recordPreviews = true")
    page.mouse.move(*image_to_client(page, SIZE, 110, 110), steps=3)
    refined = _wait_refined_preview(page, "hover")
    same = [e for e in _previews_of(page, "hover") if e["decodeId"] == refined["decodeId"]]
    assert [e["refined"] for e in same] == [False, True], same  # raw first, refined once, in that order
    assert same[0]["area"] != same[1]["area"], "the refinement did not change this mask, so the test cannot tell them apart"
    page.wait_for_timeout(300)  # nothing else is drawn while the pointer rests
    assert _previews_of(page, "hover")[-1] == refined
    drawn = tinted_mask(page, SIZE)
    assert abs(int(drawn.sum()) - refined["area"]) <= 0.1 * refined["area"], (int(drawn.sum()), refined)
    # a click there reuses the hover's decode and its refinement: the mask it gives is the one drawn
    decodes = page.evaluate("window.maskloop.decodes")
    page.mouse.down()
    page.mouse.up()
    page.wait_for_function(f"window.maskloop.decodes > {decodes}", timeout=30_000)
    assert page.evaluate("window.maskloop.lastClick.reused")
    clicked = ap.current_mask(page)
    assert int(clicked.sum()) == refined["area"] and iou(drawn, clicked) > 0.9

    page.keyboard.press("Escape")
    a, b = image_to_client(page, SIZE, 60, 55), image_to_client(page, SIZE, 170, 170)
    page.mouse.move(*a)
    page.mouse.down()
    page.mouse.move(b[0], b[1], steps=8)
    boxed = _wait_refined_preview(page, "box")
    same = [e for e in _previews_of(page, "box") if e["decodeId"] == boxed["decodeId"]]
    assert [e["refined"] for e in same] == [False, True], same
    page.mouse.up()
    assert not page.page_errors, page.page_errors


def _polygon(page, vertices: list[tuple[float, float]], close_at: tuple[float, float], hole: bool = False) -> None:  # noqa: ANN001
    for x, y in vertices:
        page.mouse.click(*image_to_client(page, SIZE, x, y))
    if hole:
        page.keyboard.down("Alt")
    page.mouse.click(*image_to_client(page, SIZE, *close_at))  # on the first vertex: closes it
    if hole:
        page.keyboard.up("Alt")


def test_polygon_tool_adds_cuts_holes_and_stores_a_manual_mask(page, running_app, project, screenshots) -> None:  # noqa: ANN001
    """D: a polygon clicked vertex by vertex is filled into the mask, Alt closes one as a hole, Backspace
    removes the last vertex; Enter stores the mask as a manual annotation with its clicks."""
    image_id = ap.login_and_open(page, running_app, project)
    before = {a["id"] for a in ap.annotations(running_app, image_id)}
    take_baseline(page, SIZE)
    page.keyboard.press("d")
    assert "tool: polygon" in page.locator("#labels").inner_text()
    # a stray vertex removed again, then a rectangle through pixel corners, closed on its first vertex
    page.mouse.click(*image_to_client(page, SIZE, 300, 200))
    page.keyboard.press("Backspace")
    assert page.evaluate("window.maskloop.polygon()") == []
    _polygon(page, [(40, 40), (140, 40), (140, 120), (40, 120)], (41, 41))
    assert page.evaluate("window.maskloop.polygon()") == []
    expected = np.zeros((H, W), bool)
    expected[40:120, 40:140] = True
    shown = ap.current_mask(page)
    assert iou(shown, expected) > 0.97, iou(shown, expected)
    assert iou(tinted_mask(page, SIZE), shown) > 0.9, "the canvas does not show the polygon's mask"
    # a hole: Alt on the closing click removes the inside from the mask (a screenshot while it is drawn)
    for x, y in [(70, 60), (110, 60), (110, 100)]:
        page.mouse.click(*image_to_client(page, SIZE, x, y))
    page.mouse.move(*image_to_client(page, SIZE, 70, 100))
    page.screenshot(path=str(screenshots / "annotator_polygon.png"))
    _polygon(page, [(70, 100)], (71, 61), hole=True)
    expected[60:100, 70:110] = False
    shown = ap.current_mask(page)
    assert iou(shown, expected) > 0.95, iou(shown, expected)
    assert not shown[80, 90] and shown[50, 50]
    # Z undoes the hole (one edit), Shift+Z brings it back
    page.keyboard.press("z")
    assert ap.current_mask(page)[80, 90]
    page.keyboard.press("Shift+Z")
    assert not ap.current_mask(page)[80, 90]

    page.keyboard.press("Enter")
    page.wait_for_function("window.maskloop.currentRle() === null", timeout=30_000)
    deadline = time.monotonic() + 30
    while not (new := [a for a in ap.annotations(running_app, image_id) if a["id"] not in before]):
        assert time.monotonic() < deadline, "the polygon's mask was never saved"
        time.sleep(0.2)
    (ann,) = new
    assert ann["source"] == "manual", ann["source"]  # no prompt for the model: drawn by hand
    assert ann["clicks"] == 9, ann["clicks"]  # 8 vertices kept and the one removed
    assert np.array_equal(ap.decode_rle(ann["segmentation"]), shown)
    page.keyboard.press("d")  # back to clicking
    assert "tool: prompt" in page.locator("#labels").inner_text()
    assert not page.page_errors, page.page_errors


def test_large_photo_masks_are_decoded_at_the_work_size_and_stored_at_full_size(page, running_app) -> None:  # noqa: ANN001
    """A 2400×1800 image: the page decodes and refines its masks at 1024×768 (the decoder's frame, where
    a click costs what it costs on a small image) and scales them to the image; the stored mask is the
    full-size mask shown."""
    big_w, big_h = 2400, 1800
    project = ap.make_project(running_app, "e2e large photo", [ap.shapes_png(big_w, big_h)])
    image_id = ap.login_and_open(page, running_app, project)
    assert page.evaluate("window.maskloop.maskWorkSize") == [768, 1024]
    ap.click(page, (big_w, big_h), 1200, 900)
    shown = ap.current_mask(page)
    assert shown.shape == (big_h, big_w) and shown.any()
    # every full-size pixel takes the value of the work-size pixel under its centre: the mask is constant
    # over the pixels that map to one work pixel (a full-size decode would have finer edges)
    rows = np.minimum(((np.arange(big_h) + 0.5) * 768 / big_h).astype(int), 767)
    cols = np.minimum(((np.arange(big_w) + 0.5) * 1024 / big_w).astype(int), 1023)
    key = rows[:, None] * 1024 + cols[None, :]
    work = np.zeros(768 * 1024, bool)
    work[key.ravel()] = shown.ravel()
    assert np.array_equal(work[key], shown), "the mask was not decoded at the work size"
    page.keyboard.press("Enter")
    page.wait_for_function("window.maskloop.currentRle() === null", timeout=30_000)
    deadline = time.monotonic() + 30
    while not (stored := ap.annotations(running_app, image_id)):
        assert time.monotonic() < deadline, "the mask was never saved"
        time.sleep(0.2)
    assert stored[0]["segmentation"]["size"] == [big_h, big_w]
    assert np.array_equal(ap.decode_rle(stored[0]["segmentation"]), shown)
    assert not page.page_errors, page.page_errors


def _canvas_ratio(page) -> float:  # noqa: ANN001
    return page.evaluate("(() => { const c = document.getElementById('stage'); return c.width / c.getBoundingClientRect().width; })()")


def test_space_drag_and_middle_drag_pan_while_drag_still_boxes(page, running_app, project) -> None:  # noqa: ANN001
    ap.login_and_open(page, running_app, project)
    page.keyboard.press("Escape")
    box = page.locator("#stage").bounding_box()
    ratio = _canvas_ratio(page)
    view0 = page.evaluate("window.maskloop.view()")
    decodes = page.evaluate("window.maskloop.decodes")
    a = (box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.4)

    page.mouse.move(*a)
    page.keyboard.down("Space")
    page.mouse.down()
    page.mouse.move(a[0] + 60, a[1] + 30, steps=6)
    page.mouse.up()
    page.keyboard.up("Space")
    view1 = page.evaluate("window.maskloop.view()")
    assert view1["offsetX"] - view0["offsetX"] == pytest.approx(60 * ratio, abs=1.5)
    assert view1["offsetY"] - view0["offsetY"] == pytest.approx(30 * ratio, abs=1.5)
    assert view1["scale"] == view0["scale"]
    page.wait_for_timeout(300)
    assert page.evaluate("window.maskloop.decodes") == decodes, "a pan must not decode"
    assert page.evaluate("window.maskloop.currentRle()") is None, "a pan must not make a box"

    page.mouse.move(*a)
    page.mouse.down(button="middle")
    page.mouse.move(a[0] - 40, a[1] + 10, steps=6)
    page.mouse.up(button="middle")
    view2 = page.evaluate("window.maskloop.view()")
    assert view2["offsetX"] - view1["offsetX"] == pytest.approx(-40 * ratio, abs=1.5)
    assert view2["offsetY"] - view1["offsetY"] == pytest.approx(10 * ratio, abs=1.5)

    # Space released: the same drag draws a box and decodes it; the view stays
    page.mouse.move(*a)
    page.mouse.down()
    page.mouse.move(a[0] + 60, a[1] + 40, steps=8)
    page.mouse.up()
    page.wait_for_function(f"window.maskloop.decodes > {decodes}", timeout=30_000)
    assert page.evaluate("window.maskloop.view()") == view2
    assert page.evaluate("window.maskloop.currentRle()") is not None
    page.keyboard.press("Escape")
    assert not page.page_errors, page.page_errors


def test_next_image_is_prefetched(page, running_app, project) -> None:  # noqa: ANN001
    first = ap.login_and_open(page, running_app, project)
    page.keyboard.press("Escape")
    page.wait_for_function("window.maskloop.prefetch && window.maskloop.prefetch.ready", timeout=180_000)
    guessed = page.evaluate("window.maskloop.prefetch.imageId")
    assert guessed in project["image_ids"] and guessed != first
    fetched: list[str] = []
    page.on("request", lambda req: fetched.append(req.url))
    page.keyboard.press("n")
    page.wait_for_function(f"window.maskloop.ready && window.maskloop.imageId === {guessed}", timeout=60_000)
    load = page.evaluate("window.maskloop.loads[window.maskloop.loads.length - 1]")
    assert load["imageId"] == guessed and load["prefetched"], load
    again = [u for u in fetched if f"/images/{guessed}/embedding" in u or f"/images/{guessed}/file" in u]
    assert not again, f"the prefetched image was downloaded again: {again}"
    assert "(prefetched)" in page.locator("#status").inner_text()
    # and the one after is being prefetched in turn
    page.wait_for_function(f"window.maskloop.prefetch.imageId !== null && window.maskloop.prefetch.imageId !== {guessed}",
                           timeout=30_000)
    assert not page.page_errors, page.page_errors


def _rect_rle(x0: int, y0: int, x1: int, y1: int) -> dict:
    m = np.zeros((H, W), np.uint8, order="F")
    m[y0:y1, x0:x1] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    return {"size": [H, W], "counts": rle["counts"].decode()}


def test_stage3_review_of_automatic_masks(page, running_app, screenshots) -> None:  # noqa: ANN001
    png = ap.shapes_png(W, H, 21)
    proj = ap.make_project(running_app, "e2e stage 3", [png], stage="fully_automatic")
    image_id = proj["image_ids"][0]
    rects = [(55, 55, 165, 165), (190, 140, 300, 220), (10, 10, 40, 40)]
    with running_app.client() as api:
        ids = []
        for rect, label in zip(rects, (None, proj["labels"][1]["id"], None)):
            r = api.post(f"/images/{image_id}/annotations", json={
                "segmentation": _rect_rle(*rect), "source": "automatic", "label_id": label, "predicted_iou": 0.9})
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])

    ap.login_and_open(page, running_app, proj)
    hint = page.locator("#stage-hint")
    assert hint.is_visible() and "Stage 3" in hint.inner_text() and "3 left" in hint.inner_text()
    rows = page.locator("#objects li.object[data-source='automatic']")
    assert rows.count() == 3
    assert "selected" in (page.locator(f"#objects li[data-key='a{ids[0]}']").get_attribute("class") or "")
    page.screenshot(path=str(screenshots / "annotator_stage3_review.png"))
    # the automatic masks are drawn over the image, the highlighted one (under review) strongest
    shown = canvas_rgb(page, SIZE).astype(int)
    image = cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(int)
    diff = np.abs(shown - image).sum(axis=2)
    inside = np.zeros((H, W), bool)
    for x0, y0, x1, y1 in rects:
        inside[y0:y1, x0:x1] = True
    assert np.median(diff[~inside]) < 12, "the image itself is not shown unchanged outside the masks"
    (ax0, ay0, ax1, ay1), (cx0, cy0, cx1, cy1) = rects[0], rects[2]
    tint_selected, tint_other = np.median(diff[ay0:ay1, ax0:ax1]), np.median(diff[cy0:cy1, cx0:cx1])
    assert tint_other > 30, f"an automatic mask is not drawn (tint {tint_other})"
    assert tint_selected > tint_other + 20, f"the mask under review is not emphasised ({tint_selected} vs {tint_other})"

    page.keyboard.press("a")  # accept the highlighted one; it takes the current label (it had none)
    page.wait_for_selector(f"#objects li[data-key='a{ids[0]}'][data-source='semi_auto_accepted']")
    page.keyboard.press("z")  # undo the accept: a proposal again (on the server too), then redo it
    page.wait_for_selector(f"#objects li[data-key='a{ids[0]}'][data-source='automatic']")
    assert {a["id"]: a["source"] for a in ap.annotations(running_app, image_id)}[ids[0]] == "automatic"
    page.keyboard.press("Shift+Z")
    page.wait_for_selector(f"#objects li[data-key='a{ids[0]}'][data-source='semi_auto_accepted']")
    page.wait_for_selector(f"#objects li.selected[data-key='a{ids[1]}']")
    page.keyboard.press("r")  # reject the next one
    page.wait_for_function(f"!document.querySelector(\"#objects li[data-key='a{ids[1]}']\")")
    assert "1 left" in hint.inner_text()
    # Z brings the rejected proposal back from the server (same id, still a proposal); Shift+Z rejects it again
    page.keyboard.press("z")
    page.wait_for_selector(f"#objects li.selected[data-key='a{ids[1]}'][data-source='automatic']")
    assert {a["id"]: a["source"] for a in ap.annotations(running_app, image_id)}[ids[1]] == "automatic"
    page.keyboard.press("Shift+Z")
    page.wait_for_function(f"!document.querySelector(\"#objects li[data-key='a{ids[1]}']\")")
    assert ids[1] not in {a["id"] for a in ap.annotations(running_app, image_id)}
    # F fixes the last one: its mask goes into the editor, the eraser cuts a strip, Enter replaces it
    page.wait_for_selector(f"#objects li.selected[data-key='a{ids[2]}']")
    page.keyboard.press("f")
    page.wait_for_function("window.maskloop.currentRle() !== null", timeout=10_000)
    page.keyboard.press("e")
    page.mouse.move(*image_to_client(page, SIZE, 2, 25))
    page.mouse.down()
    page.mouse.move(*image_to_client(page, SIZE, 48, 25), steps=2)
    page.mouse.up()
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelector('#stage-hint').textContent.includes('0 left')", timeout=30_000)
    page.wait_for_function("document.querySelector('#autosave').textContent.includes('All accepted masks saved')",
                           timeout=30_000)
    assert "0 left" in hint.inner_text()
    fixed_rle = page.evaluate("window.maskloop.lastAccepted")
    # Z undoes the fix: the edited mask leaves the server and is back in the editor, the proposal returns
    page.keyboard.press("z")
    page.wait_for_selector(f"#objects li[data-key='a{ids[2]}'][data-source='automatic']")
    _wait_api(lambda: sorted(a["source"] for a in ap.annotations(running_app, image_id))
              == ["automatic", "semi_auto_accepted"])
    assert page.evaluate("window.maskloop.currentRle()") == fixed_rle
    page.keyboard.press("Enter")  # and Enter replaces the proposal with it again
    page.wait_for_function("document.querySelector('#stage-hint').textContent.includes('0 left')", timeout=30_000)
    page.wait_for_function("document.querySelector('#autosave').textContent.includes('All accepted masks saved')",
                           timeout=30_000)
    with running_app.client() as api:
        rejected = api.get(f"/images/{image_id}/rejections").json()
    assert sorted(r["annotation_id"] for r in rejected) == sorted(ids[1:]), rejected

    stored = {a["id"]: a for a in ap.annotations(running_app, image_id)}
    # (ids are compared with sources: SQLite may hand a deleted id to the fixed mask)
    assert sorted(a["source"] for a in stored.values()) == ["assisted", "semi_auto_accepted"], \
        "the rejected proposal must be deleted and the fixed one replaced"
    assert stored[ids[0]]["source"] == "semi_auto_accepted" and stored[ids[0]]["label_id"] == proj["labels"][0]["id"]
    fixed = [a for a in stored.values() if a["source"] == "assisted"]
    m = ap.decode_rle(fixed[0]["segmentation"])
    assert m[12, 10:40].all() and not m[25, :].any() and m.sum() < 30 * 30
    assert stored[ids[0]]["seconds"] is not None and stored[ids[0]]["clicks"] == 0, "a review records its time"
    assert not page.page_errors, page.page_errors


def test_stage3_rest_rejected_at_once_and_restored_by_one_undo(page, running_app) -> None:  # noqa: ANN001
    """Shift+R rejects every automatic mask left on the image in one step; Z brings them all back
    (on the server too), Shift+Z rejects them again. Rows show each mask's object score."""
    proj = ap.make_project(running_app, "e2e stage 3 rest", [ap.shapes_png(W, H, 29)], stage="fully_automatic")
    image_id = proj["image_ids"][0]
    rects = [(55, 55, 165, 165), (190, 140, 300, 220), (10, 10, 40, 40), (250, 20, 300, 60)]
    with running_app.client() as api:
        ids = []
        for rect, score in zip(rects, (0.31, 0.02, 0.004, 0.001)):
            r = api.post(f"/images/{image_id}/annotations", json={
                "segmentation": _rect_rle(*rect), "source": "automatic", "predicted_iou": 0.2, "object_score": score})
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])

    ap.login_and_open(page, running_app, proj)
    hint = page.locator("#stage-hint")
    page.wait_for_selector(f"#objects li.selected[data-key='a{ids[0]}']")
    assert "4 left" in hint.inner_text() and "Shift+R" in hint.inner_text()
    assert "score 0.310" in page.locator(f"#objects li[data-key='a{ids[0]}']").inner_text()
    page.keyboard.press("a")  # the best one is accepted
    page.wait_for_selector(f"#objects li[data-key='a{ids[0]}'][data-source='semi_auto_accepted']")
    page.wait_for_selector(f"#objects li.selected[data-key='a{ids[1]}']")
    page.keyboard.press("Shift+R")  # the three left go at once
    page.wait_for_function("document.querySelector('#stage-hint').textContent.includes('0 left')"
                           " || document.querySelector('#stage-hint').hidden", timeout=20_000)
    assert page.locator("#objects li[data-source='automatic']").count() == 0
    assert {a["id"] for a in ap.annotations(running_app, image_id)} == {ids[0]}
    with running_app.client() as api:
        assert sorted(r["annotation_id"] for r in api.get(f"/images/{image_id}/rejections").json()) == ids[1:]
    page.keyboard.press("z")  # one undo restores all three, in their places
    page.wait_for_function("document.querySelectorAll(\"#objects li[data-source='automatic']\").length === 3",
                           timeout=20_000)
    keys = page.eval_on_selector_all("#objects li.object", "rows => rows.map((r) => r.dataset.key)")
    assert keys == [f"a{i}" for i in ids], keys
    _wait_api(lambda: sorted(a["source"] for a in ap.annotations(running_app, image_id))
              == ["automatic"] * 3 + ["semi_auto_accepted"])
    page.keyboard.press("Shift+Z")  # and redo rejects them again
    page.wait_for_function("document.querySelectorAll(\"#objects li[data-source='automatic']\").length === 0",
                           timeout=20_000)
    _wait_api(lambda: [a["id"] for a in ap.annotations(running_app, image_id)] == [ids[0]])
    assert not page.page_errors, page.page_errors


def test_stage3_many_proposals_scroll_in_their_panel(page, running_app, screenshots) -> None:  # noqa: ANN001
    """Stage 3 gives dozens of masks per image: their rows scroll inside the object panel, so the page
    (and the image) never scrolls; accepting a row far down keeps the panel there, on the next one."""
    proj = ap.make_project(running_app, "e2e stage 3 many", [ap.shapes_png(W, H, 31)], stage="fully_automatic")
    image_id = proj["image_ids"][0]
    with running_app.client() as api:
        ids = []
        for k in range(60):
            x, y = 8 + (k % 10) * 30, 8 + (k // 10) * 36
            r = api.post(f"/images/{image_id}/annotations", json={
                "segmentation": _rect_rle(x, y, x + 20, y + 24), "source": "automatic", "predicted_iou": 0.2,
                "object_score": round(0.5 - k * 0.005, 3)})
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])

    ap.login_and_open(page, running_app, proj)
    page.wait_for_selector(f"#objects li.selected[data-key='a{ids[0]}']")
    top = _canvas_top(page)
    panel = page.locator("#objects ul")
    assert panel.evaluate("(ul) => ul.scrollHeight > ul.clientHeight + 100"), "the rows do not scroll in a panel"
    assert page.evaluate("document.documentElement.scrollHeight <= window.innerHeight + 1"), \
        "the page grew past the window"
    # pick a row far down (the panel scrolls to it), accept it with A: the next one is highlighted and in view
    row = page.locator(f"#objects li[data-key='a{ids[40]}']")
    row.scroll_into_view_if_needed()
    row.click(position={"x": 2, "y": 2})
    page.wait_for_selector(f"#objects li.selected[data-key='a{ids[40]}']")
    page.keyboard.press("a")
    page.wait_for_selector(f"#objects li[data-key='a{ids[40]}'][data-source='semi_auto_accepted']")
    page.wait_for_selector(f"#objects li.selected[data-key='a{ids[41]}']")
    inside = page.evaluate("""(() => {
        const ul = document.querySelector('#objects ul').getBoundingClientRect();
        const li = document.querySelector('#objects li.selected').getBoundingClientRect();
        return li.top >= ul.top - 1 && li.bottom <= ul.bottom + 1; })()""")
    assert inside, "the highlighted proposal scrolled out of the panel"
    assert panel.evaluate("(ul) => ul.scrollTop") > 200, "the panel jumped back to the top"
    assert page.evaluate("window.scrollY") == 0 and _canvas_top(page) == top, "the image moved"
    page.screenshot(path=str(screenshots / "annotator_stage3_many.png"))
    # the pointer on a row shows which mask it is: emphasised on the canvas until the pointer leaves
    x0, y0 = 8 + 5 * 30, 8  # proposal 5's rectangle
    before = canvas_rgb(page, SIZE).astype(int)
    page.locator(f"#objects li[data-key='a{ids[5]}']").hover()
    page.evaluate("new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
    during = canvas_rgb(page, SIZE).astype(int)
    change = np.abs(during - before).sum(axis=2)
    assert np.median(change[y0:y0 + 24, x0:x0 + 20]) > 15, "the hovered row's mask is not emphasised"
    assert np.median(change[8 + 36:8 + 36 + 24, 8:28]) < 3, "another proposal's mask changed"
    page.locator("#objects h3").hover()  # off the rows (not over the image, where a hover would decode)
    page.evaluate("new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
    after = np.abs(canvas_rgb(page, SIZE).astype(int) - before).sum(axis=2)
    assert np.median(after[y0:y0 + 24, x0:x0 + 20]) < 3, "the emphasis stayed after the pointer left the row"
    # H hides every mask (the image alone), H again shows them as before
    image = cv2.cvtColor(cv2.imdecode(np.frombuffer(ap.shapes_png(W, H, 31), np.uint8), cv2.IMREAD_COLOR),
                         cv2.COLOR_BGR2RGB).astype(int)
    page.keyboard.press("h")
    bare = canvas_rgb(page, SIZE).astype(int)
    assert np.abs(bare - image).sum(axis=2).max() < 12, "H left a mask drawn over the image"
    assert "Masks hidden" in page.locator("#status").inner_text()
    page.keyboard.press("h")
    assert np.median(np.abs(canvas_rgb(page, SIZE).astype(int) - before).sum(axis=2)) < 3, "H did not show them again"
    # O lowers the masks' opacity (60 %, then 30 %), then back to full; the slider says so, the browser keeps it
    region = (slice(y0, y0 + 24), slice(x0, x0 + 20))
    tint = [np.median(np.abs(before - image).sum(axis=2)[region])]
    for expected in ("60", "30"):
        page.keyboard.press("o")
        assert page.locator("#mask-opacity").input_value() == expected
        tint.append(np.median(np.abs(canvas_rgb(page, SIZE).astype(int) - image).sum(axis=2)[region]))
    assert tint[0] > tint[1] > tint[2] > 5, f"opacity does not fade the masks: {tint}"
    assert page.evaluate("localStorage.getItem('maskloop.maskOpacity')") == "0.3"
    page.keyboard.press("o")
    assert page.locator("#mask-opacity").input_value() == "100"
    assert np.median(np.abs(canvas_rgb(page, SIZE).astype(int) - before).sum(axis=2)) < 3, "full opacity differs"
    # N with proposals left warns first; a second N submits the image and leaves them stored
    page.keyboard.press("n")
    page.wait_for_function("document.querySelector('#status').textContent.includes('59 proposals are not reviewed')",
                           timeout=10_000)
    assert page.evaluate("window.maskloop.imageId") == image_id
    page.keyboard.press("n")
    page.wait_for_function(
        "document.querySelector('#status').textContent.includes('All images in this project are done')", timeout=30_000)
    with running_app.client() as api:
        assert api.get(f"/images/{image_id}").json()["status"] == "done"
    kept = sorted(a["source"] for a in ap.annotations(running_app, image_id))
    assert kept == ["automatic"] * 59 + ["semi_auto_accepted"]
    assert not page.page_errors, page.page_errors


def test_admin_image_list_opens_a_picked_image(page, running_app) -> None:  # noqa: ANN001
    """The admin's image list shows each image's status and annotations; "Open" leases that very
    image in the annotator (not the queue's first); an image another annotator holds says who."""
    proj = ap.make_project(running_app, "e2e picked", [ap.shapes_png(W, H, s) for s in (2, 5, 8)])
    first, _, third = proj["image_ids"]
    with running_app.client() as api:
        m = np.zeros((H, W), np.uint8, order="F")
        m[10:30, 10:30] = 1
        api.post(f"/images/{first}/annotations", json={"segmentation": {"size": [H, W], "counts": mask_utils.encode(
            np.asfortranarray(m))["counts"].decode()}, "source": "manual"}).raise_for_status()
        uid = api.post("/users", json={"username": "holder", "password": "holder-pass-1"}).json()["id"]
        api.post(f"/projects/{proj['id']}/members", json={"user_id": uid}).raise_for_status()
    import httpx

    with httpx.Client(base_url=running_app.base_url + "/api/v1", timeout=30) as other:
        login = other.post("/auth/login", json={"username": "holder", "password": "holder-pass-1"})
        token = login.json()["access_token"]
        held = other.post(f"/images/{third - 1}/lease", headers={"Authorization": f"Bearer {token}"})
        assert held.status_code == 200, held.text

    ap.log_in(page, running_app)
    page.wait_for_selector("button.annotate")
    # the project list says how far each project is
    assert "0 of 3 images done" in page.locator(f"#projects li[data-project-id='{proj['id']}']").inner_text()
    page.goto(f"{running_app.base_url}/admin/{proj['id']}")
    page.wait_for_selector(f"#images-list tr[data-image-id='{third}']", timeout=30_000)
    rows = {int(r.get_attribute("data-image-id")): r.inner_text()
            for r in page.locator("#images-list tr[data-image-id]").all()}
    assert set(rows) == set(proj["image_ids"]) and "images 1–3 of 3" in page.locator("#images-count").inner_text()
    assert rows[first].split("\t")[-2].strip() == "1", rows[first]  # its annotation is counted
    page.wait_for_function(f"document.querySelector(\"#images-list tr[data-image-id='{third}'] img\").naturalWidth > 0",
                           timeout=20_000)  # the thumbnail arrived with the login's token
    page.locator(f"#images-list tr[data-image-id='{third}'] button.open-image").click()
    assert ap.wait_ready(page) == third, "the annotator did not open the picked image"
    assert page.evaluate("location.pathname") == f"/annotate/{proj['id']}"
    # the image another annotator holds: the page says who, and N goes on with the queue
    page.goto(f"{running_app.base_url}/annotate/{proj['id']}/image/{third - 1}")
    page.wait_for_function("document.querySelector('#status').textContent.includes('being annotated by holder')",
                           timeout=30_000)
    assert "N to take the next image" in page.locator("#status").inner_text()
    # Delete (after a confirm) removes the first image and its annotation
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{running_app.base_url}/admin/{proj['id']}")
    page.locator(f"#images-list tr[data-image-id='{first}'] button.delete-image").click()
    page.wait_for_function("document.querySelector('#status').textContent.includes('deleted')", timeout=20_000)
    page.wait_for_selector(f"#images-list tr[data-image-id='{first}']", state="detached", timeout=20_000)
    with running_app.client() as api:
        assert api.get(f"/images/{first}").status_code == 404
    # the image the other annotator holds is refused, in words
    page.locator(f"#images-list tr[data-image-id='{third - 1}'] button.delete-image").click()
    page.wait_for_function("document.querySelector('#status').textContent.includes('was not deleted')"
                           " && document.querySelector('#status').textContent.includes('being annotated by holder')",
                           timeout=20_000)
    assert not page.page_errors, page.page_errors


def test_admin_deletes_a_project_after_its_name_is_typed(page, running_app) -> None:  # noqa: ANN001
    proj = ap.make_project(running_app, "e2e doomed", [ap.shapes_png(W, H, 40)])
    ap.log_in(page, running_app)
    page.wait_for_selector("button.annotate")
    page.goto(f"{running_app.base_url}/admin/{proj['id']}")
    page.wait_for_selector(f"#images-list tr[data-image-id='{proj['image_ids'][0]}']", timeout=30_000)
    answers = iter(["e2e doome", "e2e doomed"])  # a wrong name first: nothing is deleted
    page.on("dialog", lambda dialog: dialog.accept(next(answers)))
    page.click("#delete-project")
    page.wait_for_function("document.querySelector('#status').textContent.includes('does not match')", timeout=10_000)
    with running_app.client() as api:
        assert api.get(f"/projects/{proj['id']}").status_code == 200
    page.click("#delete-project")
    page.wait_for_function("location.pathname === '/admin'", timeout=20_000)
    page.wait_for_selector("#admin-projects li", timeout=20_000)
    assert "e2e doomed" not in page.locator("#admin-projects").inner_text()
    with running_app.client() as api:
        assert api.get(f"/projects/{proj['id']}").status_code == 404
        assert api.get(f"/images/{proj['image_ids'][0]}").status_code == 404
    assert not page.page_errors, page.page_errors


def _wait_api(condition, seconds: float = 20.0) -> None:  # noqa: ANN001
    """Poll the API until ``condition()`` holds (the page saves in the background)."""
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the server never reached the expected state"
        time.sleep(0.2)


def test_box_released_outside_brush_strokes_undo_accept_and_skip(page, running_app) -> None:  # noqa: ANN001
    proj = ap.make_project(running_app, "e2e edits", [ap.shapes_png(W, H, 3), ap.shapes_png(W, H, 9)])
    image_id = ap.login_and_open(page, running_app, proj)
    # a box dragged past the canvas edge and released outside it still ends the drag and decodes
    stage = page.locator("#stage").bounding_box()
    decodes = page.evaluate("window.maskloop.decodes")
    page.mouse.move(*image_to_client(page, SIZE, 180, 130))
    page.mouse.down()
    page.mouse.move(stage["x"] + stage["width"] + 30, stage["y"] + stage["height"] + 30, steps=8)
    page.mouse.up()
    page.wait_for_function(f"window.maskloop.decodes > {decodes}", timeout=30_000)
    prompt = page.evaluate("window.maskloop.prompt()")
    assert prompt["points"] == [] and prompt["box"] is not None, prompt
    box = prompt["box"]
    assert [box["x0"], box["y0"], box["x1"], box["y1"]] == pytest.approx([180, 130, W, H], abs=1.5), "box not clamped to the image"
    boxed = ap.current_mask(page)
    # accept, then Z undoes the accept: the object leaves the list and the server, the mask is back
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelector('#autosave').textContent.includes('All accepted masks saved')",
                           timeout=30_000)
    assert len(ap.annotations(running_app, image_id)) == 1
    assert page.evaluate("window.maskloop.currentRle()") is None
    page.keyboard.press("z")
    page.wait_for_function("window.maskloop.currentRle() !== null", timeout=30_000)
    assert np.array_equal(ap.current_mask(page), boxed)
    assert ap.annotations(running_app, image_id) == []
    assert page.locator("#objects li.object").count() == 0
    page.keyboard.press("Escape")
    page.keyboard.press("Escape")

    # the brush paints a mask from nothing, and a fast stroke leaves no gaps
    page.keyboard.press("b")
    y = 40
    page.mouse.move(*image_to_client(page, SIZE, 20, y))
    page.mouse.down()
    page.mouse.move(*image_to_client(page, SIZE, 140, y), steps=2)
    page.mouse.up()
    painted = ap.current_mask(page)
    assert painted[y, 20:141].all(), "the brush stroke has gaps"
    assert not painted[y + 30:, :].any() and painted.sum() < 40 * 140
    page.keyboard.press("b")
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelector('#autosave').textContent.includes('All accepted masks saved')",
                           timeout=30_000)
    stored = ap.annotations(running_app, image_id)
    assert len(stored) == 1 and np.array_equal(ap.decode_rle(stored[0]["segmentation"]), painted)

    # relabel and delete from the object list are undone by Z too (the delete by storing it again)
    labels = [label["id"] for label in proj["labels"]]
    row = page.locator("#objects li.object").first
    row.locator("select").select_option(str(labels[1]))
    _wait_api(lambda: [a["label_id"] for a in ap.annotations(running_app, image_id)] == [labels[1]])
    page.locator("#stage").focus()
    page.keyboard.press("z")
    _wait_api(lambda: [a["label_id"] for a in ap.annotations(running_app, image_id)] == [labels[0]])
    page.locator("#objects li.object button", has_text="delete").click()
    _wait_api(lambda: ap.annotations(running_app, image_id) == [])
    page.locator("#stage").focus()
    page.keyboard.press("z")
    _wait_api(lambda: len(ap.annotations(running_app, image_id)) == 1)
    back = ap.annotations(running_app, image_id)[0]
    assert np.array_equal(ap.decode_rle(back["segmentation"]), painted) and back["label_id"] == labels[0]
    page.keyboard.press("Shift+Z")  # redo the delete
    _wait_api(lambda: ap.annotations(running_app, image_id) == [])
    page.keyboard.press("z")
    _wait_api(lambda: len(ap.annotations(running_app, image_id)) == 1)

    # S skips the image: another one opens, the skipped one is not "done" and keeps its mask
    page.keyboard.press("s")
    page.wait_for_function(f"window.maskloop.ready && window.maskloop.imageId !== {image_id}", timeout=180_000)
    with running_app.client() as api:
        assert api.get(f"/images/{image_id}").json()["status"] != "done"
    assert len(ap.annotations(running_app, image_id)) == 1
    assert not page.page_errors, page.page_errors


def test_previous_image_reopens_a_submitted_one_to_correct_it(page, running_app) -> None:  # noqa: ANN001
    proj = ap.make_project(running_app, "e2e previous", [ap.shapes_png(W, H, s) for s in (4, 11)])
    first = ap.login_and_open(page, running_app, proj)
    page.keyboard.press("p")  # nothing opened before this image
    page.wait_for_function("document.querySelector('#status').textContent.includes('no earlier image')", timeout=10_000)
    ap.click(page, SIZE, 110, 110)
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelector('#autosave').textContent.includes('All accepted masks saved')",
                           timeout=30_000)
    page.keyboard.press("n")  # submit: the first image is done, the second opens
    page.wait_for_function(f"window.maskloop.ready && window.maskloop.imageId !== {first}", timeout=180_000)
    second = page.evaluate("window.maskloop.imageId")

    # P: back to the submitted image with its mask listed; the second goes back to the queue
    page.keyboard.press("p")
    page.wait_for_function(f"window.maskloop.ready && window.maskloop.imageId === {first}", timeout=180_000)
    page.wait_for_selector("#objects li.object")
    assert page.locator("#objects li.object").count() == 1
    assert "Back to" in page.locator("#status").inner_text()
    with running_app.client() as api:
        assert api.get(f"/images/{first}").json()["status"] == "done"
    # a mask left in the editor must be accepted or cleared first
    ap.click(page, SIZE, 250, 180)
    page.keyboard.press("p")
    page.wait_for_function("document.querySelector('#status').textContent.includes('or clear (Esc)')", timeout=10_000)
    assert page.evaluate("window.maskloop.imageId") == first
    page.keyboard.press("Enter")  # a second object on the corrected image
    page.wait_for_function("document.querySelector('#autosave').textContent.includes('All accepted masks saved')",
                           timeout=30_000)
    assert len(ap.annotations(running_app, first)) == 2

    # N submits it again and the queue hands back the image that was released; the toolbar button and
    # the list survive a reload
    page.keyboard.press("n")
    page.wait_for_function(f"window.maskloop.ready && window.maskloop.imageId === {second}", timeout=180_000)
    page.reload()
    assert ap.wait_ready(page) == second
    page.locator("#previous").click()
    page.wait_for_function(f"window.maskloop.ready && window.maskloop.imageId === {first}", timeout=180_000)
    assert len(ap.annotations(running_app, first)) == 2
    assert not page.page_errors, page.page_errors


def test_project_guidelines_open_once_and_toggle(page, running_app) -> None:  # noqa: ANN001
    proj = ap.make_project(running_app, "e2e guidelines", [ap.shapes_png(W, H, 17)])
    ap.log_in(page, running_app)
    page.wait_for_selector(f"button.annotate[data-project-id='{proj['id']}']")
    # the admin writes the guidelines in the console
    page.goto(f"{running_app.base_url}/admin/{proj['id']}")
    page.fill("#instructions", "Outline every disc.\nLeave the blocks alone.")
    page.click("#instructions-save")
    page.wait_for_function("document.querySelector('#status').textContent.includes('Instructions saved')", timeout=10_000)
    with running_app.client() as api:
        assert api.get(f"/projects/{proj['id']}").json()["instructions"] == "Outline every disc.\nLeave the blocks alone."
    # the annotator sees them the first time, beside the image
    page.goto(f"{running_app.base_url}/annotate/{proj['id']}")
    ap.wait_ready(page)
    panel = page.locator("#guidelines")
    assert panel.is_visible() and "Leave the blocks alone." in panel.inner_text()
    page.keyboard.press("?")  # hides them
    assert not panel.is_visible()
    page.reload()
    ap.wait_ready(page)
    assert not panel.is_visible(), "seen guidelines opened again by themselves"
    page.locator("#guidelines-toggle").click()
    assert panel.is_visible()
    # changed guidelines open by themselves again
    with running_app.client() as api:
        changed = {"instructions": "Outline every disc and every block."}
        api.patch(f"/projects/{proj['id']}", json=changed).raise_for_status()
    page.reload()
    ap.wait_ready(page)
    assert panel.is_visible() and "every block" in panel.inner_text()
    assert not page.page_errors, page.page_errors


def test_labels_past_the_ninth_have_a_key_and_a_filter(page, running_app) -> None:  # noqa: ANN001
    labels = [{"name": f"class{i:02d}", "color": f"#{i * 0x101010:06x}"} for i in range(1, 13)]
    with running_app.client() as api:
        r = api.post("/projects", json={"name": "e2e many labels", "labels": labels})
        assert r.status_code == 201, r.text
        proj = r.json()
        png = ap.shapes_png(W, H, 5)
        r = api.post(f"/projects/{proj['id']}/images", files=[("files", ("m.png", png, "image/png"))])
        assert r.status_code in (200, 201), r.text
    image_id = ap.login_and_open(page, running_app, proj)
    ids = [label["id"] for label in proj["labels"]]

    def active() -> int:
        return int(page.locator("#labels button.label.active").get_attribute("data-label-id"))

    assert page.locator("#labels button.label").nth(9).inner_text().startswith("0 ")
    page.keyboard.press("0")
    assert active() == ids[9]
    page.keyboard.press("l")  # the filter: typing narrows the buttons, Enter takes the first match
    page.keyboard.type("ss12")
    assert page.locator("#labels button.label:visible").count() == 2  # the match, and the active label
    page.keyboard.press("Enter")
    assert active() == ids[11]
    assert page.locator("#labels button.label:visible").count() == 12
    ap.click(page, SIZE, 110, 110)  # the keys work on the image again
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelector('#autosave').textContent.includes('All accepted masks saved')",
                           timeout=30_000)
    assert [a["label_id"] for a in ap.annotations(running_app, image_id)] == [ids[11]]
    assert not page.page_errors, page.page_errors
