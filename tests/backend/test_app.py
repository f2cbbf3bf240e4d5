"""The app shell: the built frontend at / with cross-origin isolation headers and SPA fallback,
no escape from the dist folder, JSON 404s for unknown API paths, CORS off by default."""
from __future__ import annotations

from fastapi.testclient import TestClient

from backend.main import create_app


def make_client(api, dist) -> TestClient:
    return TestClient(create_app(api.settings.model_copy(update={"frontend_dist": dist})))


def test_frontend_served_with_isolation_headers_and_spa_fallback(api, tmp_path):
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("maskloop app")
    (dist / "assets" / "app.js").write_text("console.log(1)")
    (tmp_path / "secret.txt").write_text("not for the web")
    client = make_client(api, dist)
    for path, body in (("/", "maskloop app"), ("/projects/3/annotate", "maskloop app"),
                       ("/assets/app.js", "console.log(1)"), ("/../secret.txt", "maskloop app"),
                       ("/assets/..%2F..%2Fsecret.txt", "maskloop app")):
        r = client.get(path)
        assert r.status_code == 200, path
        assert r.text == body, path
        assert r.headers["cross-origin-opener-policy"] == "same-origin"
        assert r.headers["cross-origin-embedder-policy"] == "require-corp"
    head = client.head("/")
    assert head.status_code == 200 and head.headers["cross-origin-embedder-policy"] == "require-corp"
    assert "access-control-allow-origin" not in client.get("/", headers={"Origin": "http://evil.example"}).headers


def test_unknown_api_paths_and_missing_frontend_are_json_404(api, tmp_path):
    client = make_client(api, tmp_path / "not-built")
    r = client.get("/api/v1/no-such-thing")
    assert r.status_code == 404 and "no-such-thing" in r.json()["detail"]
    r = client.get("/")
    assert r.status_code == 404 and "frontend is not built" in r.json()["detail"]
    r = client.get("/api/v1/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = client.get("/api/v1/openapi.json")
    assert r.status_code == 200 and "/api/v1/projects" in r.json()["paths"]
