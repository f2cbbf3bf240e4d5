"""A NUL character (``\\u0000``) in any JSON text value is refused with a 400 that says so, on SQLite and
PostgreSQL (whose text columns cannot hold it), and nothing is stored; the literal text ``\\u0000``
(an escaped backslash) is ordinary text."""
from __future__ import annotations

import json


def _post(api, url: str, raw: str, method: str = "POST"):  # noqa: ANN001
    headers = {**api.admin, "content-type": "application/json"}
    return api.client.request(method, url, content=raw.encode(), headers=headers)


def test_nul_in_json_text_is_refused_and_nothing_is_stored(any_api):
    api = any_api
    project = api.make_project("first")
    pid = project["id"]
    cases = [
        ("/api/v1/projects", '{"name": "a\\u0000b"}', "POST"),
        (f"/api/v1/projects/{pid}", '{"instructions": "draw \\u0000 tight masks"}', "PATCH"),
        (f"/api/v1/projects/{pid}/labels", '{"name": "tr\\u0000ee", "color": "#00aa44"}', "POST"),
        ("/api/v1/users", '{"username": "x\\\\\\u0000", "password": "password123", "role": "annotator"}', "POST"),
    ]
    for url, raw, method in cases:
        json.loads(raw)  # the bodies are valid JSON: only the NUL is wrong
        r = _post(api, url, raw, method)
        assert r.status_code == 400, (url, r.status_code, r.text)
        assert "NUL character" in r.json()["detail"]
    names = [p["name"] for p in api.client.get("/api/v1/projects", headers=api.admin).json()]
    assert names == ["first"]
    detail = api.client.get(f"/api/v1/projects/{pid}", headers=api.admin).json()
    assert not detail.get("instructions") and sorted(lb["name"] for lb in detail["labels"]) == ["cat", "dog"]
    assert all(u["username"] != "x\\\x00" for u in api.client.get("/api/v1/users", headers=api.admin).json())

    # a backslash followed by the text u0000 is not a NUL: stored as written
    r = _post(api, f"/api/v1/projects/{pid}", '{"instructions": "escape it as \\\\u0000 in C"}', "PATCH")
    assert r.status_code == 200, r.text
    stored = api.client.get(f"/api/v1/projects/{pid}", headers=api.admin).json()["instructions"]
    assert stored == "escape it as \\u0000 in C"
