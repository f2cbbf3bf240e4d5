"""Losses checked against hand computations."""
from __future__ import annotations

import math

import pytest
import torch

from workers.training.losses import dice_loss, focal_loss, mask_iou, sam_loss


def test_focal_loss_matches_hand_computation():
    logits = torch.tensor([[[0.0, 2.0]]])  # 1×1×2
    targets = torch.tensor([[[1.0, 0.0]]])
    # pixel 1: p=0.5, target 1: alpha 0.25 * (1-0.5)^2 * ln 2
    a = 0.25 * 0.25 * math.log(2)
    # pixel 2: p=sigmoid(2), target 0: (1-alpha) * p^2 * -ln(1-p)
    p = 1 / (1 + math.exp(-2))
    b = 0.75 * p ** 2 * -math.log(1 - p)
    assert focal_loss(logits, targets).item() == pytest.approx((a + b) / 2, rel=1e-5)


def test_dice_loss_matches_hand_computation():
    logits = torch.zeros(1, 2, 2)  # p = 0.5 everywhere
    targets = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    # inter = 1, sum p = 2, sum t = 2 -> 1 - (2 + 1) / (4 + 1)
    assert dice_loss(logits, targets).item() == pytest.approx(1 - 3 / 5)


def test_mask_iou():
    logits = torch.tensor([[[1.0, 1.0], [-1.0, 1.0]]])
    targets = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    assert mask_iou(logits, targets).item() == pytest.approx(2 / 3)


def test_sam_loss_keeps_best_candidate_and_trains_iou_on_all():
    target = torch.zeros(1, 4, 4)
    target[0, :2] = 1
    good = (target * 20 - 10)[0]
    bad = -good
    logits = torch.stack([bad, good, torch.ones(4, 4)])[None]  # 1×3×4×4
    iou_pred = torch.tensor([[0.5, 0.5, 0.5]])
    out = sam_loss(logits, iou_pred, target)
    assert out.best.tolist() == [1]
    assert out.iou.tolist() == pytest.approx([1.0])
    # true IoUs are 0 (bad), 1 (good) and 0.5 (all foreground: 8/16)
    assert out.iou_mse.item() == pytest.approx(((0.5 - 0) ** 2 + (0.5 - 1) ** 2 + 0) / 3)
    single = sam_loss(logits[:, 1:2], iou_pred[:, 1:2], target)
    assert out.loss.item() == pytest.approx(single.loss.item() - single.iou_mse.item() + out.iou_mse.item(), rel=1e-5)


def test_sam_loss_rejects_bad_shapes():
    with pytest.raises(ValueError, match="M×K×H×W"):
        sam_loss(torch.zeros(3, 4, 4), torch.zeros(1, 3), torch.zeros(1, 4, 4))
