"""Bad input to the `maskloop` commands: a message naming the problem (and the file), a non-zero exit code,
no traceback, and no output file or checkpoint written from it."""
from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from backend.cli import app
from tests.cli.cli_support import tiny_dataset as _dataset

runner = CliRunner()
FAST = ["--arch", "lite", "--steps", "1", "--batch-size", "1", "--iters", "1", "--threads", "1"]


def _invoke(*args) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    out = " ".join(result.output.split())
    # an unhandled exception: CliRunner catches it, the console script would print a traceback
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, out


@pytest.mark.parametrize("option, value, message", [
    ("--lr", "inf", "lr must be > 0 and finite, got inf"),
    ("--lr", "nan", "lr must be > 0 and finite, got nan"),
    ("--weight-decay", "nan", "weight_decay must be >= 0 and finite"),
    ("--focal-weight", "-1", "focal_weight must be >= 0 and finite"),
    ("--time-budget-min", "0", "time_budget_s must be > 0 and finite"),
    ("--threads", "0", "--threads must be >= 1"),
    ("--device", "tpu", "unknown --device 'tpu'"),
])
def test_train_rejects_bad_numbers_before_training(tmp_path, option, value, message):
    root = _dataset(tmp_path / "d")
    code, out = _invoke("train", "--dataset", root, "--out", tmp_path / "run", *FAST, option, value)
    assert code == 2 and message in out, out
    assert not (tmp_path / "run" / "model.pt").exists()


def test_threads_below_one_are_refused_by_eval_and_fit(tmp_path):
    root = _dataset(tmp_path / "d")
    code, out = _invoke("eval", "--model", "none", "--dataset", root, "--out", tmp_path / "e", "--threads", "-1")
    assert code == 2 and "--threads must be >= 1, got -1" in out, out
    code, out = _invoke("fit-iou-head", "--model", tmp_path / "m.pt", "--dataset", root, "--out", tmp_path / "o.pt",
                        "--threads", "0")
    assert code == 2 and "--threads must be >= 1" in out, out


def test_out_that_is_a_file_or_below_a_file_is_refused(tmp_path):
    root = _dataset(tmp_path / "d")
    taken = tmp_path / "taken"
    taken.write_text("keep me")
    code, out = _invoke("train", "--dataset", root, "--out", taken, *FAST)
    assert code == 2 and f"--out {taken} exists and is not a folder" in out, out
    code, out = _invoke("eval", "--model", "none", "--dataset", root, "--out", taken / "sub", "--max-clicks", "1")
    assert code == 2 and "cannot create the --out folder" in out, out
    assert taken.read_text() == "keep me"


def test_resume_from_a_damaged_checkpoint_names_it(tmp_path):
    root = _dataset(tmp_path / "d")
    run = tmp_path / "run"
    run.mkdir()
    (run / "ckpt_0000002.pt").write_bytes(b"PK\x03\x04 not a whole checkpoint")
    code, out = _invoke("train", "--dataset", root, "--out", run, *FAST)
    assert code == 2 and "cannot resume from" in out and "ckpt_0000002.pt" in out, out
    assert not (run / "model.pt").exists()


def _rgb(mask):
    return cv2.cvtColor(mask, cv2.COLOR_GRAY2BGR)


@pytest.mark.parametrize("convert, problem", [
    (_rgb, "has 3 channels"),
    (lambda m: m.astype(np.uint16) * 257, "is 16-bit"),
    (lambda m: (m > 0).astype(np.uint8), "has values other than 0, 128 and 255 (e.g. 1)"),
])
def test_masks_in_another_format_are_named(tmp_path, convert, problem):
    root = _dataset(tmp_path / "d")
    path = root / "masks" / "obj01_1.png"
    cv2.imwrite(str(path), convert(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)))
    code, out = _invoke("train", "--dataset", root, "--out", tmp_path / "run", *FAST)
    assert code == 2 and f"bad mask {path}: it {problem}" in out, out
    code, out = _invoke("eval", "--model", "none", "--dataset", root, "--out", tmp_path / "e", "--max-clicks", "1",
                        "--skip-bad")
    assert code == 0, out
    assert json.loads((tmp_path / "e" / "eval.json").read_text())["results"]["grabcut"]["num_samples"] == 1


def test_a_folder_named_like_an_image_is_named_as_such(tmp_path):
    root = _dataset(tmp_path / "d")
    (root / "images" / "box00_7.png").mkdir()
    code, out = _invoke("train", "--dataset", root, "--out", tmp_path / "run", *FAST)
    assert code == 2 and "box00_7.png (not a file)" in out and "missing mask" not in out, out


def test_split_and_images_that_select_nothing_say_why(tmp_path):
    root = _dataset(tmp_path / "d", names=("alpha", "beta"))
    code, out = _invoke("train", "--dataset", root, "--split", "val", "--out", tmp_path / "run", *FAST)
    assert code == 2 and f"the val split of {root} is empty" in out and "--split all" in out, out
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    (empty / "masks").mkdir()
    code, out = _invoke("eval", "--model", "none", "--dataset", empty, "--out", tmp_path / "e")
    assert code == 2 and f"no images (.jpg, .jpeg, .png) in {empty / 'images'}" in out, out
    # two images of one name (a.jpg, a.png) would share masks/a.png: refused, naming both (one was ignored)
    shutil.copy(root / "images" / "alpha.png", root / "images" / "alpha.jpg")
    for extra in ([], ["--skip-bad"]):
        code, out = _invoke("eval", "--model", "none", "--dataset", root, "--out", tmp_path / "e2", *extra)
        assert code == 2 and "two images named 'alpha': alpha.jpg and alpha.png" in out, out


def test_eval_refuses_a_baseline_report_that_is_not_one(tmp_path):
    root = _dataset(tmp_path / "d")
    base = ["eval", "--model", "none", "--dataset", root, "--max-clicks", "2"]
    for i, content in enumerate([b"[1, 2]", b'{"results": 5}', b"\xb3\x00binary",
                                 b'{"results": {"grabcut": {"miou_curve": [0.1], "per_sample": []}}}']):
        report = tmp_path / f"r{i}.json"
        report.write_bytes(content)
        out_dir = tmp_path / f"e{i}"
        code, out = _invoke(*base, "--out", out_dir, "--baseline-report", report)
        assert code == 2 and f"baseline report {report}" in out, out
        assert not (out_dir / "eval.json").exists()


def test_eval_reusing_a_baseline_still_checks_the_dataset_and_clicks(tmp_path):
    root = _dataset(tmp_path / "d")
    code, out = _invoke("eval", "--model", "none", "--dataset", root, "--out", tmp_path / "e", "--max-clicks", "2")
    assert code == 0, out
    report = tmp_path / "e" / "eval.json"
    code, out = _invoke("eval", "--model", "none", "--dataset", tmp_path / "nope", "--out", tmp_path / "f",
                        "--max-clicks", "2", "--baseline-report", report)
    assert code == 2 and "dataset directory not found" in out, out
    code, out = _invoke("eval", "--model", "none", "--dataset", root, "--out", tmp_path / "g", "--max-clicks", "5",
                        "--baseline-report", report)
    assert code == 2 and "used 2 clicks, this evaluation 5" in out, out
    assert not (tmp_path / "f" / "eval.json").exists() and not (tmp_path / "g" / "eval.json").exists()


def test_fit_iou_head_and_export_check_options_and_out_first(tmp_path):
    root = _dataset(tmp_path / "d")
    model = tmp_path / "m.pt"
    model.write_bytes(b"never read: the options fail first")
    code, out = _invoke("fit-iou-head", "--model", model, "--dataset", root, "--out", tmp_path / "o.pt", "--lr", "nan")
    assert code == 2 and "--lr a finite number > 0" in out, out
    (tmp_path / "taken.pt").mkdir()
    code, out = _invoke("fit-iou-head", "--model", model, "--dataset", root, "--out", tmp_path / "taken.pt")
    assert code == 2 and "is a folder; expected a file name" in out, out
    (tmp_path / "taken.onnx").mkdir()
    code, out = _invoke("export-decoder", "--model", model, "--out", tmp_path / "taken.onnx")
    assert code == 2 and "is a folder; expected a file name" in out, out
    code, out = _invoke("export-decoder", "--model", model, "--out", tmp_path / "d.onnx", "--opset", "9")
    assert code == 2 and "--opset" in out, out


def test_simulate_without_a_server_says_so(tmp_path):
    root = _dataset(tmp_path / "d")
    for url in ("http://127.0.0.1:9", "127.0.0.1:9", "http://[::1"):
        code, out = _invoke("simulate", "--dataset", root, "--password", "x", "--url", url, "--out", tmp_path / "s")
        assert code == 1 and f"cannot reach Maskloop at {url}" in out, out
    code, out = _invoke("simulate", "--dataset", root, "--password", "x", "--url", "http://127.0.0.1:9",
                        "--annotators", "0")
    assert code == 2 and "--annotators" in out, out
    code, out = _invoke("simulate", "--dataset", root, "--password", "x", "--url", "http://127.0.0.1:9",
                        "--points-per-side", "0")
    assert code == 2 and "--points-per-side" in out, out


@pytest.fixture
def fresh_data_dir(tmp_path, monkeypatch):
    """Settings pointing at an empty data folder: no database has been migrated there."""
    from backend.core.config import get_settings

    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("MASKLOOP_DATA_DIR", str(data))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield data
    get_settings.cache_clear()


def test_admin_commands_on_a_database_never_migrated(tmp_path, fresh_data_dir):
    code, out = _invoke("create-user", "erin", "--password", "erinpass12")
    assert code == 1 and "cannot use the database" in out and "maskloop migrate" in out, out
    code, out = _invoke("import", tmp_path, "--project", "p")
    assert code == 1 and "cannot use the database" in out, out
    code, out = _invoke("export", "--project", "p", "--out", tmp_path / "x.json")
    assert code == 1 and "cannot use the database" in out, out
    assert not (tmp_path / "x.json").exists()


def test_admin_commands_refuse_bad_names_ports_and_out(tmp_path, fresh_data_dir, monkeypatch):
    for name in ("", "a b", "../x"):
        code, out = _invoke("create-user", name, "--password", "longenough1")
        assert code == 2 and "must be 1-80 letters, digits" in out, out
    code, out = _invoke("export", "--project", "p", "--out", tmp_path)
    assert code == 2 and "is a folder; expected a file name" in out, out
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail(f"the API started with {k}"))
    code, out = _invoke("api", "--port", "99999")
    assert code == 2 and "--port" in out, out
