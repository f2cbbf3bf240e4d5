"""`maskloop import` / `maskloop export` in-process: a folder into a project, dedupe, bad files
reported, export written atomically and readable by pycocotools; errors exit non-zero with a message."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image as PILImage
from pycocotools import mask as mask_utils
from typer.testing import CliRunner

from backend.cli import app
from tests.backend.test_export import setup_project

runner = CliRunner()


def invoke(*args: str):
    """Run the CLI; the output with rich's line wrapping undone."""
    r = runner.invoke(app, list(args))
    r.text = " ".join(r.output.split())
    return r


def test_import_folder_dedupes_and_reports_bad_files(api, tmp_path):
    folder = tmp_path / "pics"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i in range(3):
        PILImage.fromarray(rng.integers(0, 255, (16, 20, 3), dtype=np.uint8)).save(folder / f"a{i}.png")
    (folder / "sub" / "copy.png").write_bytes((folder / "a0.png").read_bytes())
    (folder / "broken.jpg").write_bytes(b"not an image at all")
    r = invoke("import", str(folder), "--project", "cli proj", "--create")
    assert r.exit_code == 0, r.output
    assert "imported 3 new, 1 duplicates, 1 refused" in r.text
    assert "broken.jpg" in r.text
    projects = api.client.get("/api/v1/projects", headers=api.admin).json()
    pid = next(p["id"] for p in projects if p["name"] == "cli proj")
    images = api.client.get(f"/api/v1/projects/{pid}/images", headers=api.admin).json()
    assert sorted(i["file_name"] for i in images["items"]) == ["a0.png", "a1.png", "a2.png"]
    # Again by id: all duplicates now.
    r = invoke("import", str(folder), "--project", str(pid))
    assert r.exit_code == 0 and "imported 0 new, 4 duplicates" in r.text, r.output


def test_import_errors(api, tmp_path):
    r = invoke("import", str(tmp_path / "missing"), "--project", "x", "--create")
    assert r.exit_code == 2 and "not a directory" in r.text
    r = invoke("import", str(tmp_path), "--project", "nope")
    assert r.exit_code == 1 and "no project with id or name 'nope'" in r.text


def test_export_round_trip_and_errors(api, tmp_path):
    project, masks = setup_project(api)
    out = tmp_path / "out.json"
    r = invoke("export", "--project", str(project["id"]), "--out", str(out), "--source", "manual")
    assert r.exit_code == 0, r.output
    coco = json.loads(out.read_text())
    manual = {k: v for k, v in masks.items() if v[3] == "manual"}
    assert sorted(a["id"] for a in coco["annotations"]) == sorted(manual)
    for ann in coco["annotations"]:
        assert np.array_equal(mask_utils.decode(ann["segmentation"]).astype(bool), manual[ann["id"]][2])
    zip_out = tmp_path / "out.zip"
    r = invoke("export", "-p", project["name"], "-o", str(zip_out), "--format", "sa1b")
    assert r.exit_code == 0 and zip_out.read_bytes()[:2] == b"PK", r.output
    bad = tmp_path / "bad.json"
    r = invoke("export", "--project", str(project["id"]), "--out", str(bad), "--format", "tiff")
    assert r.exit_code == 2 and "unknown export format 'tiff'" in r.text
    r = invoke("export", "--project", str(project["id"]), "--out", str(bad), "--source", "psychic")
    assert r.exit_code == 2 and "psychic" in r.text
    assert not bad.exists() and not list(tmp_path.glob(".bad.json.*"))
