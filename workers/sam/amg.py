"""Helpers for the automatic mask generator: point grids, crop boxes, scoring, boxes, NMS, cleanup, RLE.

Everything that runs once per candidate mask is batched in torch (stability scores, boxes, NMS,
crop-edge tests); OpenCV is used for the optional island/hole cleanup and pycocotools for COCO RLE.
Boxes are XYXY with inclusive pixel indices for the max corner (as the reference generator does).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = [
    "area_from_masks", "batched_mask_to_box", "box_iou", "box_xyxy_to_xywh", "build_all_layer_point_grids",
    "build_point_grid", "calculate_stability_score", "coco_rle_to_mask", "generate_crop_boxes",
    "is_box_near_crop_edge", "mask_to_coco_rle", "masks_to_coco_rle", "masks_to_uncompressed_rle", "nms",
    "remove_small_regions", "uncompressed_rle_to_coco", "uncrop_boxes_xyxy", "uncrop_masks", "uncrop_points",
]


def build_point_grid(n_per_side: int) -> np.ndarray:
    """Cell centres of an ``n_per_side``² grid on [0, 1]², x varying fastest.

    Returns (n_per_side², 2) float64 ``(x, y)``.
    """
    if int(n_per_side) < 1:
        raise ValueError(f"n_per_side must be a positive integer, got {n_per_side}")
    n = int(n_per_side)
    centres = (np.arange(n, dtype=np.float64) + 0.5) / n
    xs, ys = np.meshgrid(centres, centres, indexing="xy")
    return np.stack([xs.reshape(-1), ys.reshape(-1)], axis=1)


def build_all_layer_point_grids(n_per_side: int, n_layers: int, scale_per_layer: int) -> list[np.ndarray]:
    """One grid per crop layer 0..n_layers; layer i has ``int(n_per_side / scale_per_layer**i)`` points a side."""
    if scale_per_layer < 1:
        raise ValueError(f"crop_n_points_downscale_factor must be ≥ 1, got {scale_per_layer}")
    grids = []
    for layer in range(n_layers + 1):
        n = int(n_per_side / (scale_per_layer ** layer))
        if n < 1:
            raise ValueError(f"crop layer {layer} would have {n} points per side "
                             f"(points_per_side={n_per_side}, downscale factor={scale_per_layer})")
        grids.append(build_point_grid(n))
    return grids


def generate_crop_boxes(im_size: tuple[int, int], n_layers: int,
                        overlap_ratio: float) -> tuple[list[list[int]], list[int]]:
    """Crop boxes (XYXY, exclusive max) for an image of ``im_size`` (H, W) and their layer indices.

    Layer 0 is the whole image; layer i ≥ 1 has 2^i × 2^i crops overlapping by
    ``int(overlap_ratio · min(H, W) · 2 / 2^i)`` pixels, enumerated x-major then y.
    """
    im_h, im_w = int(im_size[0]), int(im_size[1])
    boxes: list[list[int]] = [[0, 0, im_w, im_h]]
    layers: list[int] = [0]
    short = min(im_h, im_w)
    for layer in range(1, n_layers + 1):
        per_side = 2 ** layer
        overlap = int(overlap_ratio * short * 2 / per_side)
        crop_w = int(math.ceil((overlap * (per_side - 1) + im_w) / per_side))
        crop_h = int(math.ceil((overlap * (per_side - 1) + im_h) / per_side))
        x_starts = [int((crop_w - overlap) * i) for i in range(per_side)]
        y_starts = [int((crop_h - overlap) * i) for i in range(per_side)]
        for x0 in x_starts:
            for y0 in y_starts:
                boxes.append([x0, y0, min(x0 + crop_w, im_w), min(y0 + crop_h, im_h)])
                layers.append(layer)
    return boxes, layers


def calculate_stability_score(logits: torch.Tensor, mask_threshold: float, offset: float) -> torch.Tensor:
    """IoU between the masks thresholded at ``mask_threshold ± offset``, from integer pixel counts.

    logits (..., H, W) → scores (...); 0 where the looser mask is empty.
    """
    inner = (logits > (mask_threshold + offset)).sum(dim=(-1, -2), dtype=torch.int64)
    outer = (logits > (mask_threshold - offset)).sum(dim=(-1, -2), dtype=torch.int64)
    score = inner.double() / outer.clamp(min=1).double()
    return torch.where(outer > 0, score, torch.zeros_like(score)).float()


def batched_mask_to_box(masks: torch.Tensor) -> torch.Tensor:
    """Tight XYXY boxes (inclusive max) of boolean masks (..., H, W) → (..., 4) int64; empty → zeros."""
    if masks.numel() == 0:
        return torch.zeros(*masks.shape[:-2], 4, dtype=torch.int64, device=masks.device)
    h, w = masks.shape[-2:]
    masks = masks.bool()
    rows = masks.any(dim=-1)  # (..., H)
    cols = masks.any(dim=-2)  # (..., W)
    ys = torch.arange(h, device=masks.device)
    xs = torch.arange(w, device=masks.device)
    y_max = torch.where(rows, ys, -1).amax(dim=-1)
    y_min = torch.where(rows, ys, h).amin(dim=-1)
    x_max = torch.where(cols, xs, -1).amax(dim=-1)
    x_min = torch.where(cols, xs, w).amin(dim=-1)
    boxes = torch.stack([x_min, y_min, x_max, y_max], dim=-1)
    empty = ~rows.any(dim=-1)
    return torch.where(empty[..., None], torch.zeros_like(boxes), boxes)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU matrix (N×M) of XYXY boxes a (N×4) and b (M×4), area = (x2−x1)(y2−y1); 0 where the union is 0."""
    a = a.double()
    b = b.double()
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression: indices of kept boxes (N×4 XYXY), by decreasing score.

    A box is suppressed when its IoU with a higher-scoring kept box is > ``iou_threshold``; ties in
    score keep the earlier index first. The IoU matrix is computed once; the loop visits kept boxes only.
    """
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be N×4, got {tuple(boxes.shape)}")
    if scores.shape != boxes.shape[:1]:
        raise ValueError(f"scores must have shape ({boxes.shape[0]},), got {tuple(scores.shape)}")
    n = boxes.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    ordered = boxes[order]
    overlaps = (box_iou(ordered, ordered) > iou_threshold).cpu().numpy()
    suppressed = np.zeros(n, dtype=bool)
    kept: list[int] = []
    pos = 0
    while pos < n:
        kept.append(pos)
        suppressed |= overlaps[pos]
        suppressed[: pos + 1] = True
        remaining = np.flatnonzero(~suppressed)
        if remaining.size == 0:
            break
        pos = int(remaining[0])
    return order[torch.as_tensor(kept, dtype=torch.int64, device=order.device)]


def is_box_near_crop_edge(boxes: torch.Tensor, crop_box: list[int], orig_box: list[int],
                          atol: float = 20.0) -> torch.Tensor:
    """Which boxes (N×4, crop frame) lie within ``atol`` px of a crop edge that is not an image edge → (N,) bool."""
    crop = torch.as_tensor(crop_box, dtype=torch.float32, device=boxes.device)
    orig = torch.as_tensor(orig_box, dtype=torch.float32, device=boxes.device)
    full = uncrop_boxes_xyxy(boxes, crop_box).float()
    near_crop = torch.isclose(full, crop[None, :], atol=atol, rtol=0)
    near_image = torch.isclose(full, orig[None, :], atol=atol, rtol=0)
    return (near_crop & ~near_image).any(dim=1)


def uncrop_boxes_xyxy(boxes: torch.Tensor, crop_box: list[int]) -> torch.Tensor:
    """Shift XYXY boxes (N×4) from the crop frame to the image frame."""
    x0, y0 = crop_box[0], crop_box[1]
    return boxes + torch.as_tensor([x0, y0, x0, y0], dtype=boxes.dtype, device=boxes.device)


def uncrop_points(points: torch.Tensor, crop_box: list[int]) -> torch.Tensor:
    """Shift (N×2) ``(x, y)`` points from the crop frame to the image frame."""
    return points + torch.as_tensor(crop_box[:2], dtype=points.dtype, device=points.device)


def uncrop_masks(masks: torch.Tensor, crop_box: list[int], orig_h: int, orig_w: int) -> torch.Tensor:
    """Zero-pad crop-resolution masks (N×h×w) into the full image (N×orig_h×orig_w)."""
    x0, y0, x1, y1 = crop_box
    if x0 == 0 and y0 == 0 and x1 == orig_w and y1 == orig_h:
        return masks
    pad = (x0, orig_w - x1, y0, orig_h - y1)
    return torch.nn.functional.pad(masks, pad, value=0)


def remove_small_regions(mask: np.ndarray, area_thresh: float, mode: str) -> tuple[np.ndarray, bool]:
    """Fill holes (``mode="holes"``) or drop islands (``mode="islands"``) smaller than ``area_thresh``.

    mask H×W bool; 8-connectivity. If every island is small the largest is kept.
    Returns (new mask, whether it changed).
    """
    import cv2

    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    fill_holes = mode == "holes"
    working = (~mask if fill_holes else mask).astype(np.uint8)
    n_labels, labels, stats, _ = cv2.connectedComponentsWithStats(working, connectivity=8)
    sizes = stats[1:, cv2.CC_STAT_AREA]
    small = np.flatnonzero(sizes < area_thresh) + 1
    if small.size == 0:
        return mask, False
    if fill_holes:
        return mask | np.isin(labels, small), True
    big = np.flatnonzero(sizes >= area_thresh) + 1
    if big.size == 0:
        big = np.asarray([int(np.argmax(sizes)) + 1])
    return np.isin(labels, big), True


def area_from_masks(masks: torch.Tensor) -> torch.Tensor:
    """Foreground pixel counts of masks (N×H×W) → (N,) int64."""
    return masks.flatten(1).sum(dim=1, dtype=torch.int64)


def box_xyxy_to_xywh(boxes: torch.Tensor) -> torch.Tensor:
    """XYXY (…×4) → XYWH with w = x2 − x1, h = y2 − y1."""
    out = boxes.clone()
    out[..., 2] = boxes[..., 2] - boxes[..., 0]
    out[..., 3] = boxes[..., 3] - boxes[..., 1]
    return out


def masks_to_coco_rle(masks: np.ndarray) -> list[dict[str, Any]]:
    """COCO RLE dicts (``size`` [H, W], ``counts`` str) of boolean masks N×H×W, via pycocotools."""
    from pycocotools import mask as mask_utils

    if masks.ndim != 3:
        raise ValueError(f"masks must be N×H×W, got shape {masks.shape}")
    if masks.shape[0] == 0:
        return []
    fortran = np.asfortranarray(np.transpose(masks.astype(np.uint8), (1, 2, 0)))
    rles = mask_utils.encode(fortran)
    return [{"size": [int(s) for s in r["size"]], "counts": r["counts"].decode("ascii")} for r in rles]


def mask_to_coco_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO RLE of one boolean H×W mask."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be H×W, got shape {mask.shape}")
    return masks_to_coco_rle(mask[None])[0]


def coco_rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """Decode a COCO RLE (compressed or uncompressed counts) to an H×W bool mask with pycocotools."""
    from pycocotools import mask as mask_utils

    h, w = (int(v) for v in rle["size"])
    if isinstance(rle["counts"], list):
        rle = mask_utils.frPyObjects(rle, h, w)
    else:
        counts = rle["counts"]
        rle = {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_utils.decode(rle).astype(bool)


def masks_to_uncompressed_rle(masks: torch.Tensor) -> list[dict[str, Any]]:
    """Uncompressed (list-of-ints) column-major run lengths of masks N×H×W, starting with a background run.

    Change points are found for the whole batch at once; the result is the format pycocotools'
    ``frPyObjects`` accepts.
    """
    n, h, w = masks.shape
    flat = masks.bool().transpose(1, 2).reshape(n, h * w)
    changes = torch.nonzero(flat[:, 1:] != flat[:, :-1])  # (K, 2): mask index, position before change
    per_mask = torch.bincount(changes[:, 0], minlength=n).tolist() if changes.numel() else [0] * n
    positions = (changes[:, 1] + 1).split(per_mask)
    starts_fg = flat[:, 0].tolist() if h * w else [False] * n
    out = []
    for i in range(n):
        bounds = torch.cat([torch.zeros(1, dtype=torch.int64), positions[i].cpu(),
                            torch.as_tensor([h * w], dtype=torch.int64)])
        counts = torch.diff(bounds).tolist()
        if starts_fg[i]:
            counts = [0] + counts
        out.append({"size": [h, w], "counts": counts})
    return out


def uncompressed_rle_to_coco(rle: dict[str, Any]) -> dict[str, Any]:
    """Compress an uncompressed RLE with pycocotools (string counts)."""
    from pycocotools import mask as mask_utils

    h, w = (int(v) for v in rle["size"])
    coco = mask_utils.frPyObjects(rle, h, w)
    return {"size": [h, w], "counts": coco["counts"].decode("ascii")}
