"""Automatic masks for stage 2 (semi-automatic prefill) and stage 3 (fully automatic).

``generate_masks`` runs ``workers.sam.automatic.SamAutomaticMaskGenerator`` with
``output_mode="coco_rle"``; ``keep_new_masks`` drops masks that overlap what is already annotated.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from backend.services.mask_refine import GuidedRefiner, RefineParams, configured_refine, nearest_resize
from workers.engine.embedding import autocast_for
from workers.engine.objectness import object_scores

logger = logging.getLogger(__name__)

# Stage 3 (SA-1B fully automatic): 32x32 grid, one crop layer, confidence/stability filtering,
# NMS and small-region cleanup.
FULL_PARAMS: dict[str, Any] = {
    "points_per_side": 32,
    "points_per_batch": 64,
    "pred_iou_thresh": 0.88,
    "stability_score_thresh": 0.95,
    "box_nms_thresh": 0.7,
    "crop_n_layers": 1,
    "crop_n_points_downscale_factor": 2,
    "min_mask_region_area": 100,
}
# Stage 2 prefill: only confident, stable masks (an annotator verifies each one).
STRICT_PARAMS: dict[str, Any] = {
    "points_per_side": 32,
    "points_per_batch": 64,
    "pred_iou_thresh": 0.92,
    "stability_score_thresh": 0.96,
    "box_nms_thresh": 0.7,
    "crop_n_layers": 0,
    "min_mask_region_area": 100,
}
# The filters above are the reference values for Meta's SAM models, whose IoU head and logits are
# calibrated on SA-1B. Maskloop's compact models (``lite``, ``lite_clicks``, trained on a few hundred
# images) predict IoUs of only 0.03-0.37 for grid points, so no mask passes 0.88 and both stages would
# produce nothing; and their stability score falls as a mask grows (it picks the small blobs around
# the points: correlation -0.39 with the IoU against the object). For these arches stage 3 uses the
# filters below instead (a job's own values still win). Chosen on 20 train-split images of coco-mval
# at 12 points per side (docs/automatic-masks.md, "Filters for the compact models"). Prefill keeps the
# reference filters, so it offers these models' masks to no one: an annotator checks every prefilled
# mask, and the few that a looser filter lets through are mostly fragments (best IoU 0.26).
ARCH_FILTERS: dict[str, dict[str, dict[str, float]]] = {
    arch: {"fully_automatic": {"pred_iou_thresh": 0.15, "stability_score_thresh": 0.0}}
    for arch in ("lite", "lite_clicks")
}
# When the masks are refined with the image (the default, see ``job_refine``), a candidate the decoder
# gets partly right often becomes the whole object, so a lower predicted-IoU bar pays: on 24 train images
# the best refined candidate above 0.12 was worth 0.629 IoU against the object, above 0.15 0.610
# (docs/automatic-masks.md, "Refined automatic masks").
# They also get a bar on the object score (``workers.engine.objectness``), which the IoU head cannot
# replace: on the same 24 train images 0.005 cut 234 masks per image to 101 and kept every object that
# was found (docs/automatic-masks.md, "Object score").
REFINED_ARCH_FILTERS: dict[str, dict[str, dict[str, float]]] = {
    arch: {"fully_automatic": {"pred_iou_thresh": 0.12, "min_object_score": 0.005}} for arch in ("lite", "lite_clicks")
}
# Parameters of ``generate_masks`` itself, applied to the generator's records.
ENGINE_PARAMS = {"min_object_score"}
ALLOWED_PARAMS = set(FULL_PARAMS) | set(STRICT_PARAMS) | ENGINE_PARAMS | {
    "crop_nms_thresh", "stability_score_offset", "crop_overlap_ratio", "mask_threshold"}
# Job parameters that are not generator parameters (handled by the batch itself).
BATCH_PARAMS = {"max_overlap", "label_id", "image_ids", "refine"}
DEFAULT_MAX_OVERLAP = 0.3


def merged_params(base: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """``base`` updated with a job's ``overrides``; unknown names raise ``ValueError``."""
    params = dict(base)
    for name, value in (overrides or {}).items():
        if name in BATCH_PARAMS or value is None:
            continue
        if name not in ALLOWED_PARAMS:
            raise ValueError(f"unknown automatic generator parameter {name!r}")
        params[name] = value
    score = params.get("min_object_score")
    if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float)) or not 0 <= score <= 1):
        raise ValueError(f"min_object_score must be a number in [0, 1], got {score!r}")
    return params


def job_refine(overrides: dict[str, Any] | None) -> RefineParams | None:
    """The refinement a job's automatic masks get: the installation's (``MASKLOOP_MASK_REFINE...``)
    unless the job says ``"refine": false``; None when there is none."""
    wanted = (overrides or {}).get("refine", True)
    if wanted is None:
        wanted = True
    if not isinstance(wanted, bool):
        raise ValueError(f"refine must be true or false, got {wanted!r}")
    if not wanted:
        return None
    params = configured_refine()
    return None if params.method == "none" else params


def params_for_model(base: dict[str, Any], model: Any, stage: str, refined: bool = False) -> dict[str, Any]:
    """``base`` with the filters of ``ARCH_FILTERS`` (and, for masks that will be ``refined``,
    ``REFINED_ARCH_FILTERS``) for the model's arch and ``stage`` (``fully_automatic`` or
    ``semi_automatic``); other arches keep ``base`` as it is."""
    arch = str(getattr(model, "arch", ""))
    params = dict(base)
    params.update(ARCH_FILTERS.get(arch, {}).get(stage, {}))
    if refined:
        params.update(REFINED_ARCH_FILTERS.get(arch, {}).get(stage, {}))
    return params


def generate_masks(model: Any, image: np.ndarray, params: dict[str, Any],
                   refine: RefineParams | None = None) -> list[dict[str, Any]]:
    """Run the automatic generator on an ``H×W×3`` uint8 image.

    ``refine``: the edge-aware refinement annotators' masks get (``backend.services.mask_refine``),
    applied to every candidate that passes the filters and NMS, from its soft logits and its grid
    point; None or method "none" keeps the decoder's masks.

    ``params`` may hold ``min_object_score``: records whose object score (``workers.engine.objectness``)
    is below it are dropped.

    Returns records with ``segmentation`` (COCO RLE ``{size: [H, W], counts: str}``), ``area``,
    ``bbox`` (XYWH), ``predicted_iou``, ``stability_score``, ``object_score``, ``point_coords``,
    ``crop_box``, most object-like first.
    """
    import torch

    from workers.sam.amg import coco_rle_to_mask
    from workers.sam.automatic import SamAutomaticMaskGenerator

    params = dict(params)
    min_object_score = float(params.pop("min_object_score", None) or 0.0)  # ENGINE_PARAMS: not the generator's

    refiner = None
    if refine is not None and refine.method != "none":
        def refiner(crop: np.ndarray) -> GuidedRefiner:
            return GuidedRefiner(crop, refine)

    # a large photo is segmented at the work size and its masks scaled up at the end (see work_size)
    full_h, full_w = image.shape[:2]
    work_h, work_w = work_size(full_h, full_w, int(params.get("crop_n_layers", 0) or 0))
    if (work_h, work_w) != (full_h, full_w):
        import cv2

        image = cv2.resize(image, (work_w, work_h), interpolation=cv2.INTER_AREA)
    generator = SamAutomaticMaskGenerator(model, output_mode="coco_rle", refiner=refiner, **params)
    with torch.inference_mode(), autocast_for(model):
        records = generator.generate(image)
    for rec in records:
        counts = rec["segmentation"]["counts"]
        if isinstance(counts, bytes):
            rec["segmentation"]["counts"] = counts.decode("ascii")
    if records:  # decoded one at a time: a 32-point grid gives ~1,000 masks on a big image
        scores = object_scores(image, (coco_rle_to_mask(r["segmentation"]) for r in records))
        for rec, score in zip(records, scores):
            rec["object_score"] = float(score)
    kept = [r for r in records if r["object_score"] >= min_object_score]
    if len(kept) < len(records):
        logger.debug("automatic masks: %d of %d below object score %.3f dropped", len(records) - len(kept),
                     len(records), min_object_score)
    kept.sort(key=lambda r: -r["object_score"])
    if (work_h, work_w) != (full_h, full_w):
        kept = [scale_record(r, full_h, full_w) for r in kept]
    return kept


# The longest side at which the generator segments an image without crops: the model's own frame (its
# image embedding is computed at 1024 on the long side, its logits are 256² for it). Each crop layer
# doubles it, so zoomed crops still see the photo at the model's scale. Decoding a 4000×3000 photo at
# full size upsampled every batch of candidates to 12 megapixels: 17 GB of memory and 66 s for an
# 8×8 grid, against 1.8 GB and 8 s at 1024×768.
AUTOMATIC_WORK_SIDE = 1024


def work_size(height: int, width: int, crop_n_layers: int = 0) -> tuple[int, int]:
    """(height, width) at which the automatic generator segments an ``height×width`` image."""
    limit = AUTOMATIC_WORK_SIDE * 2 ** max(crop_n_layers, 0)
    long = max(height, width)
    if long <= limit:
        return height, width
    return max(1, round(height * limit / long)), max(1, round(width * limit / long))


def scale_record(rec: dict[str, Any], height: int, width: int) -> dict[str, Any]:
    """A record of the work-size image for the full ``height×width`` image: its mask scaled up by nearest
    neighbour (each pixel takes the work pixel under its centre), box and area from that mask, grid
    point and crop box scaled."""
    from pycocotools import mask as mask_utils

    from workers.sam.amg import coco_rle_to_mask

    small = coco_rle_to_mask(rec["segmentation"])
    sh, sw = small.shape
    big = nearest_resize(small.astype(np.uint8), height, width)
    rle = mask_utils.encode(np.asfortranarray(big))
    sx, sy = width / sw, height / sh
    out = dict(rec)
    out["segmentation"] = {"size": [height, width], "counts": rle["counts"].decode("ascii")}
    out["area"] = int(mask_utils.area(rle))
    out["bbox"] = [float(v) for v in mask_utils.toBbox(rle)]
    if rec.get("point_coords") is not None:
        out["point_coords"] = [[float(x) * sx, float(y) * sy] for x, y in rec["point_coords"]]
    if rec.get("crop_box") is not None:
        x0, y0, x1, y1 = rec["crop_box"]
        out["crop_box"] = [round(x0 * sx), round(y0 * sy), min(width, round(x1 * sx)), min(height, round(y1 * sy))]
    return out


def _as_rle(seg: dict[str, Any]) -> dict[str, Any]:
    counts = seg["counts"]
    if isinstance(counts, list):  # uncompressed RLE -> compressed
        from pycocotools import mask as mask_utils

        return mask_utils.frPyObjects(seg, *seg["size"])
    return {"size": list(seg["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def overlap_with(candidates: list[dict[str, Any]], existing: list[dict[str, Any]]) -> np.ndarray:
    """For each candidate RLE, the largest fraction of its area covered by one existing RLE.

    Shape ``(len(candidates),)``; zeros when nothing exists.
    """
    if not candidates:
        return np.zeros(0)
    if not existing:
        return np.zeros(len(candidates))
    from pycocotools import mask as mask_utils

    cand = [_as_rle(c) for c in candidates]
    ex = [_as_rle(e) for e in existing]
    # With iscrowd=1 on the second set, pycocotools returns intersection / area(candidate).
    cover = np.asarray(mask_utils.iou(cand, ex, [1] * len(ex)), dtype=np.float64)
    return cover.reshape(len(cand), len(ex)).max(axis=1)


def keep_new_masks(records: list[dict[str, Any]], existing: list[dict[str, Any]], *,
                   max_overlap: float = DEFAULT_MAX_OVERLAP, min_predicted_iou: float = 0.0,
                   min_stability: float = 0.0) -> list[dict[str, Any]]:
    """Keep confident records whose mask is covered by existing annotations at most ``max_overlap``.

    Kept records also must not overlap an already kept, more confident record by more than
    ``max_overlap`` (records are considered by decreasing ``predicted_iou``).
    """
    if not 0 <= max_overlap <= 1:
        raise ValueError(f"max_overlap must be in [0, 1], got {max_overlap}")
    confident = [r for r in records if r.get("predicted_iou", 0) >= min_predicted_iou
                 and r.get("stability_score", 0) >= min_stability and r.get("area", 1) > 0]
    confident.sort(key=lambda r: -float(r.get("predicted_iou", 0)))
    covered = overlap_with([r["segmentation"] for r in confident], existing)
    kept: list[dict[str, Any]] = []
    for rec, cov in zip(confident, covered):
        if cov > max_overlap:
            continue
        if kept and overlap_with([rec["segmentation"]], [k["segmentation"] for k in kept])[0] > max_overlap:
            continue
        kept.append(rec)
    return kept
