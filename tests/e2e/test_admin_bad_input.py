"""E2E, bad input on the admin console, the login page and the project list: every refusal is said
in plain words that name the problem, the form keeps what was typed, nothing is half done (checked
through the API), and an expired login on the admin page leads to the login page and back."""
from __future__ import annotations

import time

import pytest

from tests.e2e import annotator_page as ap

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

STATUS = "document.querySelector('#status') && document.querySelector('#status').textContent"


def _say(page, click: str) -> str:  # noqa: ANN001
    """Click ``click`` and return the status line once it says something new (error or ok)."""
    page.evaluate("document.querySelector('#status').textContent = ''")
    page.click(click)
    page.wait_for_function(f"({STATUS}) && ({STATUS}) !== 'Logging in…'", timeout=15_000)
    return page.locator("#status").inner_text()


def _answer(status: int, body: str):  # noqa: ANN202
    """A route handler that answers every request with ``status`` and ``body``."""
    return lambda route: route.fulfill(status=status, body=body)


def _tone(page) -> str:  # noqa: ANN001
    return page.get_attribute("#status", "data-tone") or ""


def _logged_in(page, running_app) -> None:  # noqa: ANN001
    ap.log_in(page, running_app)
    page.wait_for_url("**/projects")


def _project_names(running_app) -> set[str]:  # noqa: ANN001
    with running_app.client() as api:
        return {p["name"] for p in api.get("/projects").json()}


def test_new_project_and_user_forms_refuse_bad_input_in_words(page, running_app) -> None:  # noqa: ANN001
    _logged_in(page, running_app)
    page.goto(running_app.base_url + "/admin")
    page.wait_for_selector("#admin-projects li")
    before = _project_names(running_app)
    refused = [
        # (name, labels, words the message must hold)
        ("  ", "a", "type a project name first"),  # the server's "name: String should have at least 1 character"
        ("adm-colour", "dog, cat:#zzz", 'label cat: the colour "#zzz" is not of the form #rrggbb'),
        ("adm-dup-labels", "a,b,a", "the label a is listed twice"),
        ("adm-no-name", "a, :#ff0000", 'the label ":#ff0000" has no name'),
        ("x" * 500, "a", "at most 200 characters"),  # the server's own words
    ]
    for name, labels, words in refused:
        page.fill("#project-name", name)
        page.fill("#project-labels", labels)
        text = _say(page, "#create-project")
        assert words in text and _tone(page) == "error", (name[:20], labels, text)
        assert "labels.0" not in text and "[object" not in text, text
        assert page.url.endswith("/admin"), "a refused project must not open a project page"
        # the form keeps what was typed
        assert page.input_value("#project-name") == name and page.input_value("#project-labels") == labels
    assert _project_names(running_app) == before, "nothing may be created from a refused form"
    # an existing project's name: the server's 409 in words, the form kept
    with running_app.client() as api:
        assert api.post("/projects", json={"name": "adm-taken", "labels": []}).status_code == 201
    page.fill("#project-name", "adm-taken")
    page.fill("#project-labels", "a")
    text = _say(page, "#create-project")
    assert "a project named 'adm-taken' already exists" in text, text
    assert page.input_value("#project-labels") == "a"

    # users: an existing name and a short password are refused in words, the form kept, nobody created
    with running_app.client() as api:
        users_before = {u["username"] for u in api.get("/users").json()}
    for username, password, words in [("admin", "long-enough-1", "user 'admin' already exists"),
                                      ("adm-short", "short", "password: String should have at least 8 characters")]:
        page.fill("#new-username", username)
        page.fill("#new-password", password)
        text = _say(page, "#create-user")
        assert words in text and _tone(page) == "error", text
        assert page.input_value("#new-username") == username and page.input_value("#new-password") == password
    with running_app.client() as api:
        assert {u["username"] for u in api.get("/users").json()} == users_before

    # an empty entry between commas is no label: "a,,b" makes a project with exactly a and b
    page.fill("#project-name", "adm-a-b")
    page.fill("#project-labels", "a,,b:#00aa44")
    page.click("#create-project")
    page.wait_for_function("/^\\/admin\\/\\d+$/.test(location.pathname)", timeout=15_000)
    with running_app.client() as api:
        made = next(p for p in api.get("/projects").json() if p["name"] == "adm-a-b")
    assert [(lab["name"], lab["color"].lower()) for lab in made["labels"]][1:] == [("b", "#00aa44")]
    assert [lab["name"] for lab in made["labels"]] == ["a", "b"]
    assert page.page_errors == []


def test_project_page_refuses_unreadable_numbers_and_keeps_picks(page, running_app) -> None:  # noqa: ANN001
    with running_app.client() as api:
        r = api.post("/projects", json={"name": "adm-numbers", "labels": [{"name": "a", "color": "#ff0000"}]})
        assert r.status_code == 201, r.text
        project = r.json()
        r = api.post("/users", json={"username": "adm-annotator", "password": "annotator-pass", "role": "annotator"})
        assert r.status_code == 201, r.text
        annotator = r.json()
    pid = project["id"]
    empty_folder = running_app.data_dir / "import" / "adm-empty"
    empty_folder.mkdir(parents=True, exist_ok=True)
    (empty_folder / "notes.txt").write_text("not an image")
    _logged_in(page, running_app)
    page.goto(f"{running_app.base_url}/admin/{pid}")
    page.wait_for_selector("#progress-images", state="attached", timeout=30_000)
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)

    # text a number field cannot read ("1e", "-") used to be taken for an empty field: the round or job
    # then started with the server's defaults
    unread = ": what is typed is not a number"
    for field, text, button, words in [("#round-lr", "1e", "#start-round", "learning rate" + unread),
                                       ("#round-minutes", "-", "#start-round", "time budget" + unread),
                                       ("#job-grid", "1e", "#start-prefill", "points per side" + unread),
                                       ("#job-object", "-", "#start-automatic", "min object score" + unread)]:
        page.fill("#round-steps", "10")
        page.click(field)
        page.keyboard.type(text)
        said = _say(page, button)
        assert words in said and _tone(page) == "error", said
        page.fill(field, "")
    assert not [u for u in posts if u.endswith(("/rounds", "/prefill", "/automatic"))], posts
    with running_app.client() as api:
        assert api.get(f"/projects/{pid}/jobs").json() == []
        assert api.get(f"/projects/{pid}/rounds").json() == []
    # numbers the server refuses: its words (steps 1e9, points per side 0)
    page.fill("#round-steps", "1e9")
    assert "steps: Input should be less than or equal to 1000000" in _say(page, "#start-round")
    page.fill("#round-steps", "200")
    page.fill("#job-grid", "0")
    assert "points_per_side: Input should be greater than or equal to 1" in _say(page, "#start-prefill")
    page.fill("#job-grid", "")

    # a folder below the import root without image files: said, not "0 imported, 0 duplicates, 0 errors"
    page.fill("#import-folder", str(empty_folder))
    said = _say(page, "#import-folder-go")
    assert f"there are no image files in {empty_folder}" in said and _tone(page) == "error", said
    assert page.input_value("#import-folder") == str(empty_folder)
    page.fill("#import-folder", "/etc")
    assert "outside the allowed import roots" in _say(page, "#import-folder-go")

    # an upload with a file that is no image: its reason once, the image stored
    notes = running_app.data_dir / "adm-notes.txt"
    notes.write_text("hello")
    png = running_app.data_dir / "adm-ok.png"
    png.write_bytes(ap.shapes_png(64, 48))
    page.set_input_files("#upload-files", [str(png), str(notes)])
    said = _say(page, "#upload")
    assert "1 uploaded" in said and "; adm-notes.txt: not a readable image" in said, said
    assert _tone(page) == "error", "a refused file is said in the ok tone"
    # the refresh after the upload is over once the image is listed (it lists the images last)
    page.wait_for_selector("#images-list tr[data-image-id]", timeout=10_000)

    # the member picked stays picked across the page's refresh after another action, and Add adds them
    page.select_option("#member-id", str(annotator["id"]))
    page.evaluate("document.querySelector('#progress-images').dataset.before = '1'")
    page.click("#stage-save")
    page.wait_for_function("document.querySelector('#progress-images') && !document.querySelector('#progress-images')"
                           ".dataset.before", timeout=10_000)
    assert page.input_value("#member-id") == str(annotator["id"])
    said = _say(page, "#member-id + button")
    assert said == "Member added.", said
    with running_app.client() as api:
        assert api.get(f"/projects/{pid}").json()["member_ids"] == [annotator["id"]]
    assert page.page_errors == []


def test_login_messages_and_expired_login_on_the_admin_page(page, running_app) -> None:  # noqa: ANN001
    with running_app.client() as api:
        r = api.post("/projects", json={"name": "adm-login", "labels": []})
        assert r.status_code == 201, r.text
        pid = r.json()["id"]
    page.goto(running_app.base_url + "/login")
    page.fill("#username", "admin")
    page.fill("#password", "wrong password")
    assert "wrong user name or password" in _say(page, "button[type=submit]")
    # the server answering 429 / 500: its reason, the form kept
    too_many = '{"detail": "too many login attempts: wait a minute"}'
    for status, body, words in [(429, too_many, "too many login attempts"),
                                (500, "Internal Server Error", "Internal Server Error (HTTP 500)")]:
        page.route("**/api/v1/auth/login", _answer(status, body))
        page.fill("#password", running_app.admin_password)
        said = _say(page, "button[type=submit]")
        assert words in said and _tone(page) == "error", said
        assert page.input_value("#username") == "admin" and page.input_value("#password") == running_app.admin_password
        page.unroute("**/api/v1/auth/login")
    page.click("button[type=submit]")
    page.wait_for_url("**/projects")

    # back on the login page with that login kept: a wrong password says so (it said "Your login has
    # expired" and emptied the form, the app taking the refusal for an expired token)
    page.goto(running_app.base_url + "/login")
    page.fill("#username", "admin")
    page.fill("#password", "wrong again")
    said = _say(page, "button[type=submit]")
    assert "wrong user name or password" in said and "expired" not in said, said
    assert page.input_value("#username") == "admin"
    page.fill("#password", running_app.admin_password)
    page.click("button[type=submit]")
    page.wait_for_url("**/projects")

    # an expired token on the admin page: the login page (it stayed on the admin page's error, with no
    # form), then back to that project's page
    page.evaluate("localStorage.setItem('maskloop.token', 'expired-token')")
    page.goto(f"{running_app.base_url}/admin/{pid}")
    page.wait_for_selector("#username", timeout=15_000)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:  # nothing arriving later may replace the login form
        assert page.locator("#username").count() == 1 and page.url.endswith("/login")
        page.wait_for_timeout(250)
    assert "Your login has expired" in page.locator("#status").inner_text()
    page.fill("#username", "admin")
    page.fill("#password", running_app.admin_password)
    page.click("button[type=submit]")
    page.wait_for_url(f"**/admin/{pid}")
    page.wait_for_selector("text=Project: adm-login")

    # a page opened with no login at all (a bookmark): the login goes back to it, not to /projects
    page.evaluate("localStorage.clear(); sessionStorage.clear()")
    page.goto(f"{running_app.base_url}/admin/{pid}")
    page.wait_for_selector("#username", timeout=15_000)
    page.fill("#username", "admin")
    page.fill("#password", running_app.admin_password)
    page.click("button[type=submit]")
    page.wait_for_url(f"**/admin/{pid}")
    page.wait_for_selector("text=Project: adm-login")
    assert page.page_errors == []


def test_a_running_round_is_cancelled_from_the_console(page, running_app) -> None:  # noqa: ANN001
    """A round started by mistake (or too long) no longer holds the project until it ends: its row has
    Cancel, the worker stops it at its next step, no model version is made, and another can start."""
    import numpy as np
    from pycocotools import mask as mask_utils

    project = ap.make_project(running_app, "adm-round-cancel", [ap.shapes_png(160, 120, 0)])
    mask = np.zeros((120, 160), np.uint8, order="F")
    mask[30:90, 40:120] = 1
    rle = mask_utils.encode(mask)
    rle["counts"] = rle["counts"].decode("ascii")
    with running_app.client() as api:
        r = api.post(f"/images/{project['image_ids'][0]}/annotations",
                     json={"segmentation": rle, "source": "manual", "seconds": 5, "clicks": 0})
        assert r.status_code == 201, r.text
        models_before = len(api.get("/models").json())
    _logged_in(page, running_app)
    page.goto(f"{running_app.base_url}/admin/{project['id']}")
    page.wait_for_selector("#progress-images", state="attached", timeout=30_000)
    page.fill("#round-steps", "100000")
    assert "Round started" in _say(page, "#start-round")
    page.click("#rounds button.cancel-round")
    # the status line says so at once, the table once the page has refreshed it
    page.wait_for_function("document.querySelector('#status').textContent.includes('cancelled')", timeout=15_000)
    page.wait_for_function("(document.querySelector('#rounds tr[data-round-id]') || {}).textContent"
                           "?.includes('cancelled: cancelled by admin')", timeout=15_000)
    assert page.locator("#rounds button.cancel-round").count() == 0
    with running_app.client() as api:
        rounds = api.get(f"/projects/{project['id']}/rounds").json()
        assert [r["status"] for r in rounds] == ["cancelled"]
        # whether the worker had started it or not, it stays cancelled and never turns into a model
        time.sleep(3)
        after = api.get(f"/rounds/{rounds[0]['id']}").json()
        assert (after["status"], after["model_version_id"]) == ("cancelled", None), after
        assert len(api.get("/models").json()) == models_before
        nxt = api.post(f"/projects/{project['id']}/rounds", json={"steps": 1})
        assert nxt.status_code == 201, nxt.text
        assert api.post(f"/rounds/{nxt.json()['id']}/cancel").json()["status"] == "cancelled"
    assert page.page_errors == []
