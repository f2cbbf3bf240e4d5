"""Fit the object score of automatic masks (``workers.engine.objectness``) and measure it.

Runs stage 3's generator (``generate_masks`` with the model's refined stage-3 filters, no object-score
bar) on images of one split, labels each mask by whether it matches the annotated object at IoU ≥ 0.5,
and fits a logistic model on the masks' ``CUES`` (standardised, L2-regularised, plain gradient
descent). Then, on the fit split and on a check split, it prints how well each ranking finds the
object (best IoU with the object among the top K masks of each image, and the share found at IoU ≥ 0.5)
and what a bar on the score keeps (masks per image, best IoU, found, precision). The printed
``OBJECT_SCORE_MODEL`` is what ``workers/engine/objectness.py`` ships.

    .venv/bin/python benchmarks/fit_object_score.py --fit-split train --fit-stride 26 --fit-images 24 \\
        --check-split val --check-stride 8 --check-images 20 --cache runs/objectness
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = REPO.parent / "shared" / "datasets" / "coco-mval"
TOP_K = (1, 5, 10, 20, 50)
BARS = (0.0, 0.0025, 0.005, 0.01, 0.02)


def candidates(dataset: Path, split: str, stride: int, count: int, points_per_side: int, cache: Path | None):
    """Per image: (cues N×3, predicted IoU N, IoU with the object N); cached as JSON per image."""
    from backend.services.mask_refine import configured_refine
    from workers.engine.automatic import FULL_PARAMS, generate_masks, params_for_model
    from workers.engine.objectness import mask_cues
    from workers.evaluation.clicker import iou
    from workers.sam import build_sam
    from workers.sam.amg import coco_rle_to_mask
    from workers.training.data import names_for_split, read_image, read_mask, scan_dataset

    model = None
    refine = configured_refine()
    samples = scan_dataset(dataset, names_for_split(dataset, split))[::stride][:count]
    out = []
    for sample in samples:
        path = cache / f"{split}_{sample.name}_{points_per_side}.json" if cache else None
        if path is not None and path.exists():
            out.append(json.loads(path.read_text()))
            continue
        if model is None:
            model = build_sam("default")
            model.eval()
        params = params_for_model(FULL_PARAMS, model, "fully_automatic", refined=refine.method != "none")
        params.update(points_per_side=points_per_side, min_object_score=0.0)
        image = read_image(sample.image_path)
        truth = read_mask(sample.mask_paths[0]) > 127
        t0 = time.perf_counter()
        records = generate_masks(model, image, params, refine)
        masks = [coco_rle_to_mask(r["segmentation"]) for r in records]
        item = {"name": sample.name, "cues": mask_cues(image, masks).tolist(),
                "predicted_iou": [r["predicted_iou"] for r in records],
                "iou": [float(iou(truth, m)) for m in masks]}
        print(f"  {split} {sample.name}: {len(masks)} masks, best IoU {max(item['iou'], default=0):.3f}, "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(item))
        out.append(item)
    return out


def fit(cues: np.ndarray, labels: np.ndarray, l2: float = 0.01, steps: int = 3000, lr: float = 0.5) -> dict:
    mean, scale = cues.mean(axis=0), cues.std(axis=0) + 1e-9
    z = np.c_[(cues - mean) / scale, np.ones(len(cues))]
    w = np.zeros(z.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(z @ w)))
        w -= lr * (z.T @ (p - labels) / len(labels) + l2 * np.r_[w[:-1], 0.0])
    return {"mean": mean.round(5).tolist(), "scale": scale.round(5).tolist(),
            "weights": w[:-1].round(4).tolist(), "bias": round(float(w[-1]), 4)}


def report(name: str, items: list[dict], model: dict) -> None:
    from workers.engine.objectness import scores_from_cues

    rng = np.random.default_rng(0)
    rankings = {"random": lambda it: rng.random(len(it["iou"])),
                "predicted IoU": lambda it: np.asarray(it["predicted_iou"]),
                "object score": lambda it: scores_from_cues(np.asarray(it["cues"]).reshape(-1, 3), model)}
    items = [it for it in items if it["iou"]]
    per_image = sum(len(it["iou"]) for it in items) / max(len(items), 1)
    print(f"{name}: {len(items)} images, {per_image:.1f} masks per image")
    for label, rank in rankings.items():
        cells = []
        for k in TOP_K:
            best = [np.asarray(it["iou"])[np.argsort(-rank(it), kind="stable")[:k]].max() for it in items]
            cells.append(f"top {k}: {np.mean(best):.3f} / {np.mean(np.asarray(best) >= 0.5):.2f}")
        print(f"  {label:14s} " + " | ".join(cells))
    for bar in BARS:
        kept = [np.asarray(it["iou"])[rankings["object score"](it) >= bar] for it in items]
        best = np.array([k.max(initial=0.0) for k in kept])
        total = sum(len(k) for k in kept)
        precision = sum(int((k >= 0.5).sum()) for k in kept) / total if total else 0.0
        print(f"  object score ≥ {bar:<6}: {total / len(items):6.1f} masks per image, best IoU {best.mean():.3f}, "
              f"found@0.5 {np.mean(best >= 0.5):.2f}, precision {precision:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--fit-split", default="train")
    parser.add_argument("--fit-stride", type=int, default=26)
    parser.add_argument("--fit-images", type=int, default=24)
    parser.add_argument("--check-split", default="val")
    parser.add_argument("--check-stride", type=int, default=8)
    parser.add_argument("--check-images", type=int, default=20)
    parser.add_argument("--points-per-side", type=int, default=12)
    parser.add_argument("--cache", type=Path, default=None, help="keep each image's candidates here")
    args = parser.parse_args()

    from workers.engine.objectness import OBJECT_SCORE_MODEL

    fit_items = candidates(args.dataset, args.fit_split, args.fit_stride, args.fit_images, args.points_per_side,
                           args.cache)
    check_items = candidates(args.dataset, args.check_split, args.check_stride, args.check_images,
                             args.points_per_side, args.cache)
    cues = np.concatenate([np.asarray(it["cues"]).reshape(-1, 3) for it in fit_items])
    labels = np.concatenate([np.asarray(it["iou"]) >= 0.5 for it in fit_items]).astype(np.float64)
    model = fit(cues, labels)
    print(f"fitted on {len(labels)} masks ({int(labels.sum())} match the object): OBJECT_SCORE_MODEL = {model}")
    print(f"shipped: {OBJECT_SCORE_MODEL}")
    report(f"fit split ({args.fit_split})", fit_items, model)
    report(f"check split ({args.check_split})", check_items, model)


if __name__ == "__main__":
    main()
