"""Refit the IoU-prediction head of a trained model on its own frozen decoder features.

The IoU head (an MLP on the decoder's IoU token) decides which of the three candidate masks a
single click shows first, and which automatic masks survive ``pred_iou_thresh``. In a short
training run it learns the least: the shipped model's head gave the three candidates nearly the
same score and always picked the same slot, so the first click got a candidate worth 0.21 mean IoU
on the validation split when the best of the three was worth 0.32.

This module fits the head alone, with everything else frozen: for each mask of a dataset it decodes
single-point prompts (the evaluation's first click, the interior-most pixel of the object, plus
points drawn uniformly inside the object), records the IoU token (the head's input) and the true
IoU of each of the four candidate masks at the original resolution (pixels marked ignore, 128, do
not count), then regresses the head onto those IoUs (MSE, as in training) for a number of epochs,
keeping the epoch with the lowest error on a held-out tenth of the images. The decoder is run once
per prompt, so the fit costs a few minutes on a CPU, not a training run.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workers.evaluation.clicker import iou, next_click
from workers.training.data import Sample, read_image, read_mask

logger = logging.getLogger(__name__)


@dataclass
class HeadData:
    """IoU-token features ``x`` N×C and true IoUs ``y`` N×K of the K candidate masks per prompt."""

    x: torch.Tensor
    y: torch.Tensor


def _prompt_points(gt: np.ndarray, valid: np.ndarray, count: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """The evaluation's first click (x, y) on ``gt`` plus ``count - 1`` uniform points inside it."""
    first = next_click(gt, np.zeros_like(gt), ignore=~valid)
    points = [(first.x, first.y)] if first is not None and first.positive else []
    ys, xs = np.nonzero(gt & valid)
    for j in rng.integers(len(ys), size=max(count - len(points), 0)):
        points.append((int(xs[j]), int(ys[j])))
    return points


@torch.no_grad()
def collect_head_data(model: torch.nn.Module, samples: list[Sample], *, prompts_per_mask: int = 4, seed: int = 0,
                      progress_bar: bool = False, refine: Any = None) -> HeadData:
    """Decode single-point prompts on every mask of ``samples`` and record (IoU token, true IoUs).

    ``refine`` (a ``RefineParams`` other than "none"): the true IoU of each candidate is that of the
    candidate refined with the image and the prompt's click, as annotators see it, so the head ranks
    the candidates by what they become rather than by the decoder's raw masks.
    """
    from backend.services.mask_refine import GuidedRefiner
    from workers.sam import SamPredictor

    if prompts_per_mask < 1:
        raise ValueError(f"prompts_per_mask must be >= 1, got {prompts_per_mask}")
    model = model.eval()
    predictor = SamPredictor(model)
    captured: dict[str, torch.Tensor] = {}
    hook = model.mask_decoder.iou_prediction_head.register_forward_hook(
        lambda module, inputs, output: captured.__setitem__("x", inputs[0].detach().float().cpu()))
    rng = np.random.default_rng(seed)
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    iterator: Any = samples
    if progress_bar:
        from tqdm import tqdm

        iterator = tqdm(samples, desc="iou-head data", unit="img", dynamic_ncols=True)
    try:
        for sample in iterator:
            image = read_image(sample.image_path)
            predictor.set_image(image)
            refiner = GuidedRefiner(image, refine) if refine is not None and refine.method != "none" else None
            pe = model.prompt_encoder.get_dense_pe()
            for mask_path in sample.mask_paths:
                raw = read_mask(mask_path)
                gt, valid = raw == 255, raw != 128
                points = _prompt_points(gt, valid, prompts_per_mask, rng)
                if not points:
                    continue
                coords = predictor.transform.apply_coords(np.asarray(points, dtype=np.float64), predictor.original_size)
                coords_t = torch.as_tensor(coords, dtype=torch.float32, device=predictor.device)[:, None]
                labels_t = torch.ones(len(points), 1, dtype=torch.int, device=predictor.device)
                sparse, dense = model.prompt_encoder(points=(coords_t, labels_t), boxes=None, masks=None)
                low_res, _ = model.mask_decoder.predict_masks(predictor.features, pe, sparse, dense)
                logits = model.postprocess_masks(low_res, predictor.input_size, predictor.original_size).float().cpu()
                if refiner is None:
                    masks = (logits > 0).numpy()
                else:
                    masks = np.stack([np.stack([refiner.refine(m, np.asarray([pt], dtype=np.float64), np.ones(1, int))
                                                for m in cands]) for pt, cands in zip(points, logits.numpy())])
                xs.append(captured["x"])  # the evaluation's own IoU, so targets match what it measures
                ys.append(torch.tensor([[iou(gt, m, ~valid) for m in per_prompt] for per_prompt in masks]))
    finally:
        hook.remove()
    if not xs:
        raise ValueError("no usable masks to fit the IoU head on")
    return HeadData(torch.cat(xs), torch.cat(ys))


def head_metrics(head: torch.nn.Module, data: HeadData) -> dict[str, float]:
    """MSE of the head on ``data`` and the mean true IoU of the multimask candidate it ranks first
    (``chosen``) beside the best candidate's (``oracle``) and a fixed slot's best mean (``best_slot``)."""
    with torch.no_grad():
        pred = head(data.x.to(next(head.parameters()).device)).float().cpu()
    multi = data.y[:, 1:]
    pick = pred[:, 1:].argmax(dim=1)
    return {"mse": float(((pred - data.y) ** 2).mean()),
            "chosen_iou": float(multi[torch.arange(len(multi)), pick].mean()),
            "oracle_iou": float(multi.max(dim=1).values.mean()),
            "best_slot_iou": float(multi.mean(dim=0).max()),
            "n": int(len(data.y))}


def fit_head(head: torch.nn.Module, train: HeadData, heldout: HeadData, *, epochs: int = 200, lr: float = 1e-3,
             weight_decay: float = 0.01, batch_size: int = 64, seed: int = 0) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Regress a copy of ``head`` onto ``train``; return the copy at its best held-out MSE and a report."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    fitted = copy.deepcopy(head).float().cpu().train()  # a small MLP: fitted on the CPU wherever the model is
    for p in fitted.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(fitted.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    best_state, best_epoch = copy.deepcopy(fitted.state_dict()), 0
    best_mse = head_metrics(fitted, heldout)["mse"]
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(train.y), generator=gen)
        for i in range(0, len(order), batch_size):
            batch = order[i:i + batch_size]
            loss = ((fitted(train.x[batch]) - train.y[batch]) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        mse = head_metrics(fitted, heldout)["mse"]
        if mse < best_mse:
            best_mse, best_epoch, best_state = mse, epoch, copy.deepcopy(fitted.state_dict())
    fitted.load_state_dict(best_state)
    fitted.eval()
    return fitted, {"best_epoch": best_epoch, "epochs": epochs, "lr": lr, "weight_decay": weight_decay}


def refit_iou_head(model: torch.nn.Module, samples: list[Sample], *, prompts_per_mask: int = 4,
                   heldout_every: int = 10, epochs: int = 200, lr: float = 1e-3, seed: int = 0,
                   progress_bar: bool = False, refine: Any = None) -> dict[str, Any]:
    """Refit ``model.mask_decoder.iou_prediction_head`` in place; every ``heldout_every``-th image is
    held out to pick the epoch. ``refine``: targets are the IoUs of the refined candidates (see
    ``collect_head_data``). Returns a report with the held-out metrics before and after."""
    if heldout_every < 2:
        raise ValueError(f"heldout_every must be >= 2, got {heldout_every}")
    held = [s for i, s in enumerate(samples) if i % heldout_every == heldout_every - 1]
    fit = [s for i, s in enumerate(samples) if i % heldout_every != heldout_every - 1]
    if not held or not fit:
        raise ValueError(f"need at least {heldout_every} images to hold out one of every {heldout_every}")
    train_data = collect_head_data(model, fit, prompts_per_mask=prompts_per_mask, seed=seed, progress_bar=progress_bar,
                                   refine=refine)
    held_data = collect_head_data(model, held, prompts_per_mask=prompts_per_mask, seed=seed + 1,
                                  progress_bar=progress_bar, refine=refine)
    head = model.mask_decoder.iou_prediction_head
    before = head_metrics(head, held_data)
    fitted, info = fit_head(head, train_data, held_data, epochs=epochs, lr=lr, seed=seed)
    head.load_state_dict(fitted.state_dict())
    after = head_metrics(head, held_data)
    logger.info("IoU head: held-out mse %.4f -> %.4f, chosen IoU %.3f -> %.3f (oracle %.3f)", before["mse"],
                after["mse"], before["chosen_iou"], after["chosen_iou"], after["oracle_iou"])
    return {"heldout_before": before, "heldout_after": after, "train_prompts": int(len(train_data.y)),
            "prompts_per_mask": prompts_per_mask, "heldout_every": heldout_every, "seed": seed,
            "targets": "raw" if refine is None or refine.method == "none" else {"refined": refine.to_dict()}, **info}


def refit_checkpoint(checkpoint: str | Path, samples: list[Sample], out: str | Path, *,
                     describe: dict[str, Any] | None = None, device: str = "cpu", **kwargs: Any) -> dict[str, Any]:
    """Load a Maskloop checkpoint, refit its IoU head on ``samples`` (``refit_iou_head`` keywords),
    and write it to ``out`` (atomically) with the report, plus ``describe`` (where the samples came
    from), in ``meta["iou_head_fit"]``; returns the report.

    Raises ``ValueError`` naming the file for an unreadable or non-Maskloop checkpoint.
    """
    from workers.sam import build_sam, save_checkpoint
    from workers.sam.build import read_checkpoint

    arch, _, _ = read_checkpoint(checkpoint)  # ValueError for an unreadable file, FileNotFoundError if missing
    if arch is None:
        raise ValueError(f"{checkpoint} is not a Maskloop checkpoint (expected the keys 'arch' and 'model')")
    model = build_sam(arch, checkpoint=str(checkpoint), device=device)
    report = refit_iou_head(model, samples, **kwargs)
    report.update(describe or {}, source=str(checkpoint))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, out, arch, {**model.meta, "iou_head_fit": report})
    return report
