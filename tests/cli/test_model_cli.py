"""`maskloop train` / `eval` / `export-decoder`: bad input gives exit code 2 and a message naming it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from backend.cli import app
from tests.cli.cli_support import tiny_dataset as _dataset

runner = CliRunner()


def test_train_rejects_missing_mask_with_exit_2(tmp_path):
    root = _dataset(tmp_path / "d")
    (root / "masks" / "obj01_1.png").unlink()
    result = runner.invoke(app, ["train", "--dataset", str(root), "--out", str(tmp_path / "run"), "--steps", "1"])
    assert result.exit_code == 2
    assert "missing mask for image" in result.output and "obj01_1" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run" / "model.pt").exists()


def test_train_rejects_bad_options(tmp_path):
    root = _dataset(tmp_path / "d")
    result = runner.invoke(app, ["train", "--dataset", str(root), "--out", str(tmp_path / "r"), "--steps", "0"])
    assert result.exit_code == 2 and "steps must be >= 1" in result.output
    result = runner.invoke(app, ["train", "--dataset", str(root), "--out", str(tmp_path / "r"),
                                 "--init", str(tmp_path / "missing.pt")])
    assert result.exit_code == 2 and "--init checkpoint not found" in result.output
    result = runner.invoke(app, ["train", "--dataset", str(root), "--out", str(tmp_path / "r"), "--num-workers", "-1"])
    assert result.exit_code == 2 and "--num-workers" in result.output


def test_train_with_background_loading_records_it(tmp_path):
    root = _dataset(tmp_path / "d")
    result = runner.invoke(app, ["train", "--dataset", str(root), "--out", str(tmp_path / "r"), "--arch", "lite",
                                 "--steps", "1", "--batch-size", "1", "--iters", "1", "--num-workers", "1",
                                 "--threads", "1"])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["num_workers"] == 1 and (tmp_path / "r" / "model.pt").is_file()


def test_eval_rejects_unreadable_image_and_missing_model(tmp_path):
    root = _dataset(tmp_path / "d")
    (root / "images" / "obj00_0.png").write_bytes(b"garbage")
    result = runner.invoke(app, ["eval", "--model", "none", "--dataset", str(root), "--out", str(tmp_path / "e")])
    assert result.exit_code == 2 and "unreadable image" in result.output and "obj00_0" in result.output
    result = runner.invoke(app, ["eval", "--model", str(tmp_path / "nope.pt"), "--dataset", str(root),
                                 "--out", str(tmp_path / "e")])
    assert result.exit_code == 2 and "model checkpoint not found" in result.output
    result = runner.invoke(app, ["eval", "--model", "none", "--baseline", "magic", "--dataset", str(root),
                                 "--out", str(tmp_path / "e")])
    assert result.exit_code == 2 and "unknown baseline 'magic'" in result.output


def test_eval_grabcut_baseline_writes_report_and_plot(tmp_path):
    root = _dataset(tmp_path / "d")
    (root / "masks" / "obj01_1.png").write_bytes(b"")
    out = tmp_path / "e"
    result = runner.invoke(app, ["eval", "--model", "none", "--dataset", str(root), "--out", str(out),
                                 "--max-clicks", "3", "--skip-bad"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "eval.json").read_text())
    grabcut = report["results"]["grabcut"]
    assert grabcut["num_samples"] == 1 and len(grabcut["miou_curve"]) == 3
    assert (out / "eval.png").read_bytes()[:4] == b"\x89PNG"
    # the baseline of this report can be reused for the same samples
    again = runner.invoke(app, ["eval", "--model", "none", "--dataset", str(root), "--out", str(tmp_path / "f"),
                                "--max-clicks", "3", "--skip-bad", "--baseline-report", str(out / "eval.json")])
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "f" / "eval.json").read_text())["results"]["grabcut"] == grabcut


def test_eval_reports_the_model_with_and_without_refinement(tmp_path):
    import torch

    from workers.sam.build import build_sam, save_checkpoint

    root = _dataset(tmp_path / "d")
    torch.manual_seed(0)
    ckpt = tmp_path / "lite.pt"
    save_checkpoint(build_sam("lite", device="cpu"), ckpt, "lite")
    base = ["eval", "--model", str(ckpt), "--dataset", str(root), "--baseline", "none", "--max-clicks", "2",
            "--decoder", "torch"]
    bad = runner.invoke(app, base + ["--out", str(tmp_path / "x"), "--refine", "crf"])
    assert bad.exit_code == 2 and "unknown refinement 'crf'" in bad.output
    out = tmp_path / "e"
    result = runner.invoke(app, base + ["--out", str(out), "--refine", "both"])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "eval.json").read_text())["results"]
    assert set(results) == {"model", "model_unrefined"}
    assert results["model"]["refine"]["method"] == "guided"
    assert results["model_unrefined"]["refine"]["method"] == "none"
    assert all(len(r["miou_curve"]) == 2 for r in results.values())


def test_cli_import_does_not_load_torch():
    code = "import sys, backend.cli; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


def test_fit_iou_head_rejects_missing_and_foreign_checkpoints(tmp_path):
    import torch

    root = _dataset(tmp_path / "d")
    base = ["fit-iou-head", "--dataset", str(root), "--split", "all"]
    result = runner.invoke(app, base + ["--model", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o.pt")])
    assert result.exit_code == 2 and "model checkpoint not found" in result.output
    foreign = tmp_path / "foreign.pt"
    torch.save({"image_encoder.x": torch.zeros(1)}, foreign)  # a bare state_dict, as official weights are
    result = runner.invoke(app, base + ["--model", str(foreign), "--out", str(tmp_path / "o.pt")])
    assert result.exit_code == 2 and "is not a Maskloop checkpoint" in result.output
    (tmp_path / "junk.pt").write_bytes(b"junk")
    result = runner.invoke(app, base + ["--model", str(tmp_path / "junk.pt"), "--out", str(tmp_path / "o.pt")])
    assert result.exit_code == 2 and "cannot read checkpoint" in result.output
    assert not (tmp_path / "o.pt").exists() and "Traceback" not in result.output
