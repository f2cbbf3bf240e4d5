"""Quality of automatic masks against ground truth, per filter setting, with and without refinement.

Runs ``workers.engine.automatic.generate_masks`` (the code of the stage-2 prefill and the stage-3
batch) on images of a dataset split and compares the masks with the annotated objects. coco-mval
annotates one object per image, so the numbers are about *that* object:

- masks per image;
- best IoU of the object with any mask (mean over images), and the share of objects found at
  IoU ≥ 0.5 (recall);
- precision: the share of masks that match an annotated object at IoU ≥ 0.5. Masks of objects nobody
  annotated count as misses, so on coco-mval this is a lower bound;
- seconds per image.

Each ``--setting`` is ``STAGE[:IOU[:STABILITY[:OBJECT]]][:refine|:raw]``, STAGE ``full`` (stage 3's
parameters) or ``strict`` (prefill's); IOU / STABILITY / OBJECT (the bar on the object score,
``min_object_score``) default to what the server uses for the model (``params_for_model``);
``refine`` (default) applies the installation's refinement (``configured_refine``), ``raw`` keeps the
decoder's masks. Masks come out most object-like first, with their ``object_score``.

    .venv/bin/python benchmarks/auto_quality.py --split val --max-images 20 --points-per-side 12 \\
        --settings full:raw full:refine strict:0.25:0:refine
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = REPO.parent / "shared" / "datasets" / "coco-mval"


def parse_setting(text: str) -> dict:
    parts = text.split(":")
    refine = True
    if parts[-1] in ("refine", "raw"):
        refine = parts.pop() == "refine"
    if parts[0] not in ("full", "strict") or len(parts) > 4:
        raise argparse.ArgumentTypeError(f"bad setting {text!r}: STAGE[:IOU[:STABILITY[:OBJECT]]][:refine|:raw], "
                                         "STAGE full or strict")
    out: dict = {"stage": parts[0], "refine": refine, "name": text}
    try:
        if len(parts) > 1 and parts[1]:
            out["pred_iou_thresh"] = float(parts[1])
        if len(parts) > 2 and parts[2]:
            out["stability_score_thresh"] = float(parts[2])
        if len(parts) > 3 and parts[3]:
            out["min_object_score"] = float(parts[3])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad number in setting {text!r}") from exc
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--split", default="val", help="train, val or all")
    parser.add_argument("--max-images", type=int, default=20)
    parser.add_argument("--stride", type=int, default=1, help="take every STRIDE-th image of the split (by name)")
    parser.add_argument("--model", default="default", help="'default' or a checkpoint path")
    parser.add_argument("--points-per-side", type=int, default=12)
    parser.add_argument("--settings", type=parse_setting, nargs="+",
                        default=[parse_setting("full:raw"), parse_setting("full:refine")])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="write the per-image numbers as JSON")
    args = parser.parse_args()

    import numpy as np
    import torch

    from backend.services.mask_refine import configured_refine
    from workers.engine.automatic import FULL_PARAMS, STRICT_PARAMS, generate_masks, params_for_model
    from workers.evaluation.clicker import iou
    from workers.sam import build_sam
    from workers.sam.amg import coco_rle_to_mask
    from workers.training.data import names_for_split, read_image, read_mask, scan_dataset

    if args.threads:
        torch.set_num_threads(args.threads)
    model = build_sam(args.model) if args.model == "default" else build_sam(None, checkpoint=args.model)
    model.eval()
    names = names_for_split(args.dataset, None if args.split == "all" else args.split)
    samples = scan_dataset(args.dataset, names)[:: args.stride][: args.max_images]
    refine = configured_refine()
    print(f"machine: {platform.machine()} cpus={os.cpu_count()} torch threads={torch.get_num_threads()} "
          f"load={os.getloadavg()[0]:.1f}; model {args.model} (arch {getattr(model, 'arch', '?')}); "
          f"{len(samples)} {args.split} images, {args.points_per_side} points per side; refinement {refine.method}")

    results = {}
    for setting in args.settings:
        stage = "fully_automatic" if setting["stage"] == "full" else "semi_automatic"
        base = FULL_PARAMS if setting["stage"] == "full" else STRICT_PARAMS
        params = params_for_model(base, model, stage, setting["refine"] and refine.method != "none")
        params["points_per_side"] = args.points_per_side
        for key in ("pred_iou_thresh", "stability_score_thresh", "min_object_score"):
            if key in setting:
                params[key] = setting[key]
        per_image = []
        for sample in samples:
            image = read_image(sample.image_path)
            gts = [read_mask(p) > 127 for p in sample.mask_paths]
            t0 = time.perf_counter()
            records = generate_masks(model, image, params, refine if setting["refine"] else None)
            seconds = time.perf_counter() - t0
            masks = [coco_rle_to_mask(r["segmentation"]) for r in records]
            ious = np.array([[iou(g, m) for g in gts] for m in masks]).reshape(len(masks), len(gts))
            per_image.append({"name": sample.name, "masks": len(masks), "seconds": seconds,
                              "best_iou": ious.max(axis=0).tolist() if len(masks) else [0.0] * len(gts),
                              "matched": int((ious >= 0.5).any(axis=1).sum()) if len(masks) else 0})
        best = [b for r in per_image for b in r["best_iou"]]
        total = sum(r["masks"] for r in per_image)
        summary = {"params": {k: params.get(k) for k in ("pred_iou_thresh", "stability_score_thresh",
                                                          "min_object_score", "crop_n_layers")},
                   "refine": setting["refine"],
                   "masks_per_image": total / len(per_image),
                   "best_iou": statistics.fmean(best), "found@0.5": statistics.fmean(b >= 0.5 for b in best),
                   "precision": sum(r["matched"] for r in per_image) / total if total else None,
                   "seconds_per_image": statistics.fmean(r["seconds"] for r in per_image)}
        results[setting["name"]] = {"summary": summary, "per_image": per_image}
        prec = "-" if summary["precision"] is None else f"{summary['precision']:.3f}"
        print(f"{setting['name']:28s} iou>{params['pred_iou_thresh']:.2f} stab>={params['stability_score_thresh']:.2f} "
              f"obj>={params.get('min_object_score') or 0:.4f} "
              f"| masks/img {summary['masks_per_image']:6.1f} | best IoU {summary['best_iou']:.3f} "
              f"| found@0.5 {summary['found@0.5']:.2f} | precision {prec} | {summary['seconds_per_image']:.1f} s/img",
              flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
