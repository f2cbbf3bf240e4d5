"""Training losses of Segment Anything: focal + dice (20:1) on masks, MSE on predicted IoU.

For ambiguous prompts the decoder predicts several masks and only the one with the lowest mask
loss is back-propagated; the IoU head is trained on every candidate against the real IoU of that
candidate, so it learns to rank them (which the first click of evaluation relies on).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

FOCAL_WEIGHT = 20.0
DICE_WEIGHT = 1.0
IOU_WEIGHT = 1.0


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Sigmoid focal loss averaged over pixels: ``...×H×W`` → ``...``.

    Per pixel: ``-a_t (1 - p_t)^gamma log(p_t)`` with ``p_t`` the probability of the true class,
    ``a_t = alpha`` on foreground and ``1 - alpha`` on background (alpha < 0 disables weighting).
    """
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss.flatten(-2).mean(-1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft dice loss ``1 - (2 Σpt + s) / (Σp + Σt + s)`` over pixels: ``...×H×W`` → ``...``."""
    prob = logits.sigmoid().flatten(-2)
    targets = targets.flatten(-2)
    inter = (prob * targets).sum(-1)
    return 1 - (2 * inter + smooth) / (prob.sum(-1) + targets.sum(-1) + smooth)


def mask_iou(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """IoU of ``logits > 0`` with binary targets: ``...×H×W`` → ``...`` (1 when both are empty)."""
    pred = (logits > 0).flatten(-2)
    gt = (targets > 0.5).flatten(-2)
    inter = (pred & gt).sum(-1).float()
    union = (pred | gt).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


@dataclass
class LossOutput:
    """Total loss (scalar, for backward) and its parts (detached scalars) plus the chosen masks."""

    loss: torch.Tensor
    focal: torch.Tensor
    dice: torch.Tensor
    iou_mse: torch.Tensor
    iou: torch.Tensor
    best: torch.Tensor


def sam_loss(logits: torch.Tensor, iou_pred: torch.Tensor, targets: torch.Tensor, *,
             focal_weight: float = FOCAL_WEIGHT, dice_weight: float = DICE_WEIGHT) -> LossOutput:
    """The SAM loss for M prompts with K candidate masks each.

    ``logits`` M×K×H×W, ``iou_pred`` M×K, ``targets`` M×H×W in {0, 1}. Per candidate the mask
    loss is ``20·focal + dice`` (the paper's weights, overridable: on a small CPU budget a heavier
    dice term keeps the model from collapsing to all-background on small objects); the lowest per
    prompt is kept (K = 1 for unambiguous prompts).
    The IoU head gets the MSE between every prediction and its candidate's true IoU.
    Returns the mean over prompts; ``best`` (M) indexes the chosen candidates and ``iou`` (M) is
    their true IoU.
    """
    if logits.dim() != 4 or targets.dim() != 3 or logits.shape[0] != targets.shape[0]:
        raise ValueError(f"expected logits M×K×H×W and targets M×H×W, got {tuple(logits.shape)} and "
                         f"{tuple(targets.shape)}")
    if logits.shape[-2:] != targets.shape[-2:]:
        targets = F.interpolate(targets[:, None].float(), logits.shape[-2:], mode="bilinear",
                                align_corners=False)[:, 0]
        targets = (targets > 0.5).float()
    logits = logits.float()
    expanded = targets[:, None].expand_as(logits).float()
    focal = focal_loss(logits, expanded)
    dice = dice_loss(logits, expanded)
    per_candidate = focal_weight * focal + dice_weight * dice
    best = per_candidate.argmin(dim=1)
    rows = torch.arange(logits.shape[0])
    with torch.no_grad():
        true_iou = mask_iou(logits, expanded)
    iou_mse = F.mse_loss(iou_pred.float(), true_iou, reduction="none").mean(dim=1)
    loss = per_candidate[rows, best] + IOU_WEIGHT * iou_mse
    return LossOutput(loss=loss.mean(), focal=focal[rows, best].mean().detach(),
                      dice=dice[rows, best].mean().detach(), iou_mse=iou_mse.mean().detach(),
                      iou=true_iou[rows, best].detach(), best=best.detach())
