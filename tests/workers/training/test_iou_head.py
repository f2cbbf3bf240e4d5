"""Refitting the IoU head: targets are the candidates' true IoUs, only the head changes, the fit learns."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from workers.sam import SamPredictor, build_sam
from workers.training.data import scan_dataset
from workers.training.iou_head import HeadData, collect_head_data, fit_head, head_metrics, refit_iou_head

pytestmark = pytest.mark.slow


def _dataset(root: Path, n: int) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(1)
    for i in range(n):
        image = rng.integers(0, 90, (48, 64, 3), dtype=np.uint8)
        mask = np.zeros((48, 64), np.uint8)
        cv2.rectangle(mask, (8 + 2 * i, 10), (40 + i, 36), 255, -1)
        mask[10:12, 8 + 2 * i:30] = 128  # an ignore band: never counted in the IoU
        image[mask == 255] = (200, 40 + 10 * i, 40)
        cv2.imwrite(str(root / "images" / f"box{i:02d}_{i}.png"), image)
        cv2.imwrite(str(root / "masks" / f"box{i:02d}_{i}.png"), mask)
    return root


def test_targets_are_the_true_ious_of_the_candidates(tmp_path):
    torch.manual_seed(0)
    model = build_sam("lite_clicks").eval()
    samples = scan_dataset(_dataset(tmp_path / "d", 1))
    data = collect_head_data(model, samples, prompts_per_mask=2, seed=0)
    assert data.x.shape == (2, 256) and data.y.shape == (2, 4)
    # the same first prompt through the public predictor: multimask outputs are candidates 1..3
    raw = cv2.imread(str(samples[0].mask_paths[0]), cv2.IMREAD_GRAYSCALE)
    gt, valid = raw == 255, raw != 128
    from workers.evaluation.clicker import next_click

    click = next_click(gt, np.zeros_like(gt), ignore=~valid)
    predictor = SamPredictor(model)
    predictor.set_image(cv2.cvtColor(cv2.imread(str(samples[0].image_path)), cv2.COLOR_BGR2RGB))
    masks, _, _ = predictor.predict(np.array([[click.x, click.y]]), np.array([1]), multimask_output=True)
    expected = [((m & gt & valid).sum() / max(((m | gt) & valid).sum(), 1)) for m in masks]
    np.testing.assert_allclose(data.y[0, 1:].numpy(), expected, atol=1e-6)


def test_refined_targets_are_the_ious_of_the_refined_candidates(tmp_path):
    # what annotators see: each candidate refined with the image and the click, then compared
    from backend.services.mask_refine import GuidedRefiner, RefineParams
    from workers.evaluation.clicker import next_click

    torch.manual_seed(0)
    model = build_sam("lite_clicks").eval()
    samples = scan_dataset(_dataset(tmp_path / "d", 1))
    params = RefineParams(work_size=32, radius=2, grabcut=48)
    raw_data = collect_head_data(model, samples, prompts_per_mask=2, seed=0)
    data = collect_head_data(model, samples, prompts_per_mask=2, seed=0, refine=params)
    assert data.y.shape == (2, 4) and torch.equal(data.x, raw_data.x)  # same prompts, same features
    raw = cv2.imread(str(samples[0].mask_paths[0]), cv2.IMREAD_GRAYSCALE)
    gt, valid = raw == 255, raw != 128
    click = next_click(gt, np.zeros_like(gt), ignore=~valid)
    image = cv2.cvtColor(cv2.imread(str(samples[0].image_path)), cv2.COLOR_BGR2RGB)
    predictor = SamPredictor(model)
    predictor.set_image(image)
    logits, _, _ = predictor.predict(np.array([[click.x, click.y]]), np.array([1]), multimask_output=True,
                                     return_logits=True)
    refiner = GuidedRefiner(image, params)
    refined = [refiner.refine(m, np.array([[click.x, click.y]], dtype=np.float64), np.array([1])) for m in logits]
    expected = [((m & gt & valid).sum() / max(((m | gt) & valid).sum(), 1)) for m in refined]
    np.testing.assert_allclose(data.y[0, 1:].numpy(), expected, atol=1e-6)
    assert not torch.allclose(data.y, raw_data.y)  # the refinement changed what the head is asked to learn


def test_fit_head_learns_a_ranking_it_did_not_have():
    torch.manual_seed(0)
    head = build_sam("lite_clicks").mask_decoder.iou_prediction_head
    x = torch.randn(600, 256)
    w = torch.randn(256, 4) / 16
    y = torch.sigmoid(x @ w)  # a learnable target: which candidate is best depends on x
    train, held = HeadData(x[:500], y[:500]), HeadData(x[500:], y[500:])
    before = head_metrics(head, held)
    fitted, info = fit_head(head, train, held, epochs=60, seed=0)
    after = head_metrics(fitted, held)
    assert after["mse"] < 0.25 * before["mse"]
    assert after["chosen_iou"] > before["chosen_iou"] + 0.03
    assert info["best_epoch"] >= 1
    assert after["chosen_iou"] <= after["oracle_iou"] + 1e-6


def test_refit_changes_only_the_head(tmp_path):
    torch.manual_seed(0)
    model = build_sam("lite_clicks").eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = refit_iou_head(model, scan_dataset(_dataset(tmp_path / "d", 4)), prompts_per_mask=2, heldout_every=2,
                            epochs=5)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("mask_decoder.iou_prediction_head.") for k in changed)
    assert report["heldout_after"]["mse"] <= report["heldout_before"]["mse"]
    assert report["train_prompts"] == 4 and report["heldout_after"]["n"] == 4
    with pytest.raises(ValueError, match="need at least 10 images"):
        refit_iou_head(model, scan_dataset(tmp_path / "d"), heldout_every=10)
