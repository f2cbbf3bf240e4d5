"""Fit the refined-candidate rule (``SELECT_WEIGHTS`` in ``backend/services/mask_refine.py``).

A first click is ambiguous, so the decoder answers with three candidate masks and the tool shows one
first. Annotators see the candidates after refinement, and the decoder's IoU head scores the raw
masks: on the shipped model's first clicks it picks a candidate worth far less than the best refined
one. The rule predicts a refined candidate's IoU from what is known without the ground truth:
the agreement (IoU) of the raw and the refined mask, the log areas of both (fractions of the image)
and the decoder's IoU, linearly, fitted by ridge least squares onto the true IoUs of the refined
candidates.

For every object of the split: the evaluation's first click (``docs/evaluation.md``), the multimask
decode, each candidate refined as annotators see it, its features and its true IoU. Prints the mean
IoU of the candidate each rule shows (the decoder's head, the fitted rule under k-fold
cross-validation, the best of the three), the paired gain, and the weights fitted on all objects.

    .venv/bin/python benchmarks/fit_candidate_rule.py --split train --max-images 400 [--out runs/rule.json]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def features(raw: np.ndarray, refined: np.ndarray, decoder_iou: float) -> list[float]:
    """1, agreement, ln raw area, ln refined area, decoder IoU: the terms of ``refined_iou``."""
    union = np.count_nonzero(raw | refined)
    agree = 1.0 if union == 0 else np.count_nonzero(raw & refined) / union
    return [1.0, agree, math.log(raw.mean() + 1e-4), math.log(refined.mean() + 1e-4), float(decoder_iou)]


def fit(x: np.ndarray, y: np.ndarray, ridge: float) -> np.ndarray:
    a = x.reshape(-1, x.shape[-1])
    return np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ y.reshape(-1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default", help="'default' or a checkpoint")
    ap.add_argument("--dataset", default=str(Path(__file__).resolve().parents[2] / "shared/datasets/coco-mval"))
    ap.add_argument("--split", default="train", help="train | val | all (fit on train)")
    ap.add_argument("--max-images", type=int, default=400, help="the split's first N images")
    ap.add_argument("--folds", type=int, default=10)
    ap.add_argument("--ridge", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None, help="write the per-candidate data and the fit as JSON")
    args = ap.parse_args()

    import torch
    from tqdm import tqdm

    from backend.services.mask_refine import GuidedRefiner, RefineParams, configured_refine
    from workers.evaluation.clicker import iou, next_click
    from workers.evaluation.interactive import load_predictor
    from workers.training.data import names_for_split, read_image, read_mask, scan_dataset

    if args.threads:
        torch.set_num_threads(args.threads)
    params = configured_refine()
    if params.method == "none":
        params = RefineParams()
    names = names_for_split(args.dataset, args.split)
    samples = scan_dataset(args.dataset, names)[: args.max_images]
    predictor = load_predictor(args.model)
    xs, ys = [], []
    t0 = time.perf_counter()
    for sample in tqdm(samples, desc="first clicks", unit="img", dynamic_ncols=True):
        image = read_image(sample.image_path)
        predictor.set_image(image)
        refiner = GuidedRefiner(image, params)
        for mask_path in sample.mask_paths:
            raw = read_mask(mask_path)
            gt, ignore = raw == 255, raw == 128
            click = next_click(gt, np.zeros_like(gt), ignore=ignore)
            if click is None:
                continue
            points, labels = np.array([[click.x, click.y]], np.float32), np.ones(1, np.int64)
            logits, scores, _ = predictor.predict(points, labels, multimask_output=True, return_logits=True)
            logits = np.asarray(logits)
            if len(logits) < 2:
                raise SystemExit("the model's decoder gave one candidate: nothing to choose between")
            refined = [refiner.refine(lg, points.astype(np.float64), labels) for lg in logits]
            xs.append([features(lg > 0, m, s) for lg, m, s in zip(logits, refined, scores)])
            ys.append([iou(gt, m, ignore) for m in refined])
    x, y = np.asarray(xs), np.asarray(ys)
    n = len(y)
    rows = np.arange(n)
    head = y[rows, x[:, :, 4].argmax(1)]
    folds = rows % args.folds
    chosen = np.zeros(n)
    for f in range(args.folds):
        w = fit(x[folds != f], y[folds != f], args.ridge)
        held = folds == f
        chosen[held] = y[held][np.arange(held.sum()), (x[held] @ w).argmax(1)]
    weights = fit(x, y, args.ridge)
    gain = chosen - head
    print(f"{n} first clicks, {args.split} split, {time.perf_counter() - t0:.0f} s")
    print(f"mean IoU of the candidate shown: decoder's IoU head {head.mean():.3f}, "
          f"rule ({args.folds}-fold cross-validated) {chosen.mean():.3f}, best of the candidates {y.max(1).mean():.3f}")
    print(f"paired gain of the rule: {gain.mean():+.3f} ± {gain.std(ddof=1) / math.sqrt(n):.3f} "
          f"({(gain > 0).sum()} better, {(gain < 0).sum()} worse)")
    print("weights (intercept, agreement, ln raw area, ln refined area, decoder IoU):",
          "(" + ", ".join(f"{v:.3f}" for v in weights) + ")")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        report = {"weights": weights.tolist(), "head_iou": head.mean(), "rule_iou_cv": chosen.mean(),
                  "oracle_iou": y.max(1).mean(), "n": n, "refine": params.to_dict(), "features": x.tolist(),
                  "ious": y.tolist()}
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
