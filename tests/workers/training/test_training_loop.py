"""The training loop on the real `lite` model: checkpoints, resume after interruption, fine-tuning."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from workers.training import TrainConfig, train
from workers.training.loop import list_checkpoints

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        image = rng.integers(0, 80, (48, 64, 3), dtype=np.uint8)
        mask = np.zeros((48, 64), np.uint8)
        cv2.circle(mask, (20 + 8 * i, 24), 12, 255, -1)
        image[mask > 0] = (210, 50, 40)
        cv2.imwrite(str(root / "images" / f"blob{i:02d}_{i}.png"), image)
        cv2.imwrite(str(root / "masks" / f"blob{i:02d}_{i}.png"), mask)
    return root


def _cfg(dataset: Path, out: Path, **kw) -> TrainConfig:
    base = dict(arch="lite", dataset_dir=str(dataset), out_dir=str(out), steps=2, batch_size=1, iters_per_sample=2,
                image_size=256, warmup=1, checkpoint_every=1, keep_checkpoints=5, num_threads=2,
                progress_bar=False, seed=7)
    base.update(kw)
    return TrainConfig(**base)


class Interrupt(Exception):
    pass


def test_resume_after_interruption_matches_uninterrupted_run(dataset, tmp_path):
    torch.manual_seed(0)
    full = train(_cfg(dataset, tmp_path / "full"))
    assert full.resumed_from_step == 0 and [s for s, _ in list_checkpoints(tmp_path / "full")] == [1, 2]

    def crash(fraction, metrics):
        if metrics["step"] == 1:
            raise Interrupt

    torch.manual_seed(0)
    with pytest.raises(Interrupt):
        train(_cfg(dataset, tmp_path / "cut"), on_progress=crash)
    assert [s for s, _ in list_checkpoints(tmp_path / "cut")] == [1]
    assert not (tmp_path / "cut" / "model.pt").exists()
    # what a SIGKILL during a checkpoint write leaves: resuming removes it
    (tmp_path / "cut" / ".ckpt_2.pt.k1ll3d.tmp").write_bytes(b"half a checkpoint")
    seen = []
    resumed = train(_cfg(dataset, tmp_path / "cut"), on_progress=lambda f, m: seen.append((f, m["step"])))
    assert resumed.resumed_from_step == 1 and seen == [(1.0, 2)]
    assert not list((tmp_path / "cut").glob(".*.tmp")), "a killed write's temporary file was kept"
    a = torch.load(full.model_path, weights_only=False)
    b = torch.load(resumed.model_path, weights_only=False)
    assert a["arch"] == "lite" and set(a["model"]) == set(b["model"])
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], msg=key)
    records = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert records and {"epoch", "step", "loss", "focal", "dice", "iou_mse"} <= set(records[-1])


def test_finetune_with_frozen_encoder_changes_only_decoder(dataset, tmp_path):
    base = train(_cfg(dataset, tmp_path / "base", steps=1))
    tuned = train(_cfg(dataset, tmp_path / "tuned", steps=1, init_checkpoint=base.model_path,
                       freeze_image_encoder=True, lr=1e-2, warmup=0))
    a = torch.load(base.model_path, weights_only=False)["model"]
    b = torch.load(tuned.model_path, weights_only=False)["model"]
    encoder_same = all(torch.equal(a[k], b[k]) for k in a if k.startswith("image_encoder."))
    decoder_changed = any(not torch.equal(a[k], b[k]) for k in a if k.startswith("mask_decoder."))
    assert encoder_same and decoder_changed


def test_resume_refuses_other_arch(dataset, tmp_path):
    train(_cfg(dataset, tmp_path / "r", steps=1))
    with pytest.raises(ValueError, match="holds arch 'lite'"):
        train(_cfg(dataset, tmp_path / "r", arch="vit_t", steps=2))


def test_warm_up_clicks_follow_the_error_and_feed_back_the_logits():
    from workers.sam import build_sam
    from workers.training.loop import _warm_up
    from workers.training.prompts import PromptState

    torch.manual_seed(0)
    model = build_sam("lite_clicks").eval()
    gt = torch.zeros(1, 256, 256, dtype=torch.bool)
    gt[0, 100:160, 80:200] = True
    valid = torch.ones(256, 256, dtype=torch.bool)
    embedding = torch.randn(1, 256, 64, 64)
    start = PromptState(torch.tensor([[[520.0, 520.0]]]), torch.ones(1, 1, dtype=torch.long))
    gen = torch.Generator().manual_seed(3)
    state = _warm_up(model, embedding, start, 5, gt, valid, TrainConfig(dataset_dir="d"), gen, torch.device("cpu"),
                     model.prompt_encoder.get_dense_pe())
    # five decode → click rounds: the first click kept, five corrective clicks added, last logits fed back
    assert state.coords.shape == (1, 6, 2) and state.labels.shape == (1, 6)
    assert torch.equal(state.coords[:, :1], start.coords) and state.mask_input.shape == (1, 1, 256, 256)
    assert not state.multimask
    # every corrective click's label says whether it fell inside the object (grid cell of 4 px)
    cells = (state.coords[0, 1:] / 4).long()
    assert torch.equal(state.labels[0, 1:], gt[0, cells[:, 1], cells[:, 0]].long())


def test_training_with_warm_up_clicks_runs_and_logs_them(dataset, tmp_path):
    result = train(_cfg(dataset, tmp_path / "w", steps=2, warm_clicks=3, warm_prob=1.0))
    assert result.steps == 2 and 1 <= result.metrics["warm_clicks"] <= 3
