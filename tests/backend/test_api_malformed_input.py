"""Every route of the API, driven from its own OpenAPI description with malformed input: bad path
ids, bodies that are not JSON, wrong JSON types, out-of-range numbers, NaN/Infinity, NUL bytes and
oversized strings in each field, bad query values. None may answer with a server error (5xx)."""
from __future__ import annotations

import itertools
import json

import numpy as np
from fastapi.testclient import TestClient

from tests.backend.conftest import rle_of

BAD_IDS = ["0", "-1", str(2**63), "x", "1.5"]
BAD_VALUES = ["x", 10**30, -10**30, [], {}, None, True, 1.5, "NaN", "\u0000", "a" * 5000]
BAD_BODIES = [None, "", "not json", "[]", "{}", "null", '{"a": NaN}', "1e999"]


def _bodies(schema: dict | None, components: dict) -> list[str | None]:
    if schema and "$ref" in schema:
        schema = components[schema["$ref"].split("/")[-1]]
    out = list(BAD_BODIES)
    for name in (schema or {}).get("properties", {}):
        out += [json.dumps({name: v}) for v in BAD_VALUES]
        out += ['{"%s": NaN}' % name, '{"%s": -Infinity}' % name]
    return out


def test_no_route_answers_malformed_input_with_a_server_error(any_api):
    api = any_api
    client = TestClient(api.client.app, raise_server_exceptions=False)
    project = api.make_project()
    image = api.add_image(project["id"])
    mask = np.zeros((24, 32), bool)
    mask[2:5, 2:9] = True
    ann = client.post(f"/api/v1/images/{image}/annotations", headers=api.admin,
                      json={"segmentation": rle_of(mask), "source": "automatic"}).json()
    other_user, _ = api.make_user("someone")  # PATCH /users/{id} must not lock the admin out
    real = {"user_id": other_user, "project_id": project["id"], "image_id": image, "annotation_id": ann["id"],
            "label_id": project["labels"][0]["id"]}
    spec = client.get("/api/v1/openapi.json").json()
    components = spec.get("components", {}).get("schemas", {})
    # deletes last, so the other routes still find the real rows
    operations = sorted(((path, method, op) for path, methods in spec["paths"].items()
                         for method, op in methods.items()), key=lambda t: (t[1] == "delete", t[0], t[1]))
    errors, sent = [], 0
    for path, method, op in operations:
        params = [p["name"] for p in op.get("parameters", []) if p["in"] == "path"]
        queries = [p["name"] for p in op.get("parameters", []) if p["in"] == "query"]
        content = op.get("requestBody", {}).get("content", {})
        schema = content.get("application/json", {}).get("schema")
        bodies = _bodies(schema, components) if (schema or method in ("post", "patch")) else [None]
        id_choices = [[str(real.get(n, 1))] + BAD_IDS for n in params]
        for combo in list(itertools.product(*id_choices))[:12]:
            url = path
            for name, value in zip(params, combo):
                url = url.replace("{" + name + "}", value)
            for query in [""] + [f"?{q}=x" for q in queries] + [f"?{q}=-99999999999999999999" for q in queries]:
                for body in bodies:
                    r = client.request(method.upper(), url + query, content=body,
                                       headers={**api.admin, "content-type": "application/json"})
                    sent += 1
                    if r.status_code >= 500:
                        what = f"{method.upper()} {url}{query} {str(body)[:60]!r}"
                        errors.append(f"{what}: {r.status_code} {r.text[:120]}")
    assert sent > 2000, f"only {sent} requests: the route list was not read"
    assert not errors, f"{len(errors)} server errors, e.g.:\n" + "\n".join(errors[:20])
