"""`maskloop simulate` rejects bad options with a message (the API's own bounds) before it contacts any server."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from backend.cli import app

runner = CliRunner()


@pytest.mark.parametrize("args, message", [
    (("--rounds", "0"), "--rounds must be at least 1"),
    (("--round-lr", "2"), "--round-lr: Input should be less than or equal to 1"),
    (("--round-lr", "0"), "--round-lr: Input should be greater than 0"),
    (("--pred-iou-thresh", "2"), "--pred-iou-thresh: Input should be less than or equal to 1.5"),
    (("--pred-iou-thresh", "-0.5"), "--pred-iou-thresh: Input should be greater than or equal to 0"),
    (("--stability-thresh", "1.5"), "--stability-thresh: Input should be less than or equal to 1"),
    (("--annotate-split", "test"), "--annotate-split must be train or val, got 'test'"),
    (("--stage1", "0"), "--stage1 and --heldout must be at least 1"),
    (("--heldout", "0"), "--stage1 and --heldout must be at least 1"),
    (("--stage3", "-1"), "--stage2 and --stage3 at least 0"),
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
