"""`maskloop simulate` rejects bad options with a message before it contacts any server."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from backend.cli import app

runner = CliRunner()


@pytest.mark.parametrize("args, message", [
    (("--rounds", "0"), "--rounds must be at least 1"),
    (("--round-lr", "2"), "--round-lr must be between 0 and 1"),
    (("--pred-iou-thresh", "2"), "--pred-iou-thresh must be at most 1.5"),
    (("--stability-thresh", "1.5"), "--stability-thresh at most 1"),
])
def test_simulate_rejects_bad_options(tmp_path, args, message):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    # an unreachable URL: a check that passed by mistake would fail on the connection instead
    r = runner.invoke(app, ["simulate", "--dataset", str(tmp_path), "--password", "x", "--url",
                            "http://127.0.0.1:9", *args])
    out = " ".join(r.output.split())
    assert r.exit_code == 2 and message in out, out


def test_simulate_names_a_dataset_without_images(tmp_path):
    r = runner.invoke(app, ["simulate", "--dataset", str(tmp_path), "--password", "x", "--url", "http://127.0.0.1:9"])
    assert r.exit_code == 2 and "must contain images/ and masks/" in " ".join(r.output.split())
