"""``SamAutomaticMaskGenerator``: masks for a whole image from a grid of single-point prompts.

Per crop (layer 0 = whole image, layer i = 2^i × 2^i overlapping crops) the crop is embedded once
(or a precomputed embedding is used for the whole-image crop), grid points are decoded in batches
with three masks per point, and candidates are filtered by predicted IoU, stability score and
crop-edge contact, then box NMS. Across crops NMS prefers smaller crops; optional cleanup removes
small islands/holes and runs NMS again. Filtering is batched in torch; see ``workers.sam.amg``.

Optionally (``refiner``, not part of the reference algorithm) each crop's candidates that survive its
NMS are refined with the crop's pixels from their soft logits (Maskloop's edge-aware refinement,
``backend.services.mask_refine``), and NMS runs again on the refined masks, which often converge on
the same object.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Protocol

import numpy as np
import torch

from workers.sam import amg
from workers.sam.transforms import validate_rgb_image
from workers.sam.modeling.sam import Sam
from workers.sam.onnx import resolve_decoder
from workers.sam.predictor import SamPredictor

logger = logging.getLogger(__name__)

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")


class MaskRefiner(Protocol):
    """What ``refiner(crop)`` returns: refines full-size (crop) ``logits`` prompted by ``points``."""

    def refine(self, logits: np.ndarray, points: np.ndarray | None = None,
               labels: np.ndarray | None = None) -> np.ndarray: ...


class SamAutomaticMaskGenerator:
    """Automatic mask generation with the reference algorithm and defaults (tuned for ViT-H)."""

    def __init__(self, model: Sam, points_per_side: int | None = 32, points_per_batch: int = 64,
                 pred_iou_thresh: float = 0.88, stability_score_thresh: float = 0.95,
                 stability_score_offset: float = 1.0, box_nms_thresh: float = 0.7, crop_n_layers: int = 0,
                 crop_nms_thresh: float = 0.7, crop_overlap_ratio: float = 512 / 1500,
                 crop_n_points_downscale_factor: int = 1, point_grids: list[np.ndarray] | None = None,
                 min_mask_region_area: int = 0, output_mode: str = "binary_mask",
                 mask_threshold: float | None = None, decoder: str = "auto",
                 refiner: Callable[[np.ndarray], MaskRefiner] | None = None,
                 refine_threads: int | None = None) -> None:
        """``point_grids``: one (N×2) grid in [0, 1]² per crop layer, instead of ``points_per_side``.

        ``mask_threshold`` defaults to the model's (0.0 logits). ``decoder``: ``"torch"`` runs the
        grid batches through the model's torch decoder, ``"onnx"`` through the same decoder exported
        to onnxruntime (several times faster on a CPU), ``"auto"`` picks onnx on a CPU and torch
        otherwise (GPU).

        ``refiner``: called with each crop's H×W×3 pixels, returns an object whose ``refine(logits,
        points, labels)`` gives the refined mask (H×W bool) of one candidate's full-size logits and its
        grid point; the candidates a crop's NMS keeps are refined, masks that refinement empties are
        dropped, and NMS (by predicted IoU) runs again on the refined masks' boxes. ``refine_threads``
        refinements run at once (default: torch's thread count).
        """
        if (points_per_side is None) == (point_grids is None):
            raise ValueError("give exactly one of points_per_side and point_grids")
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode must be one of {', '.join(OUTPUT_MODES)}; got {output_mode!r}")
        if int(crop_n_layers) < 0:
            raise ValueError(f"crop_n_layers must be ≥ 0, got {crop_n_layers}")
        if int(points_per_batch) < 1:
            raise ValueError(f"points_per_batch must be ≥ 1, got {points_per_batch}")
        for name, value in (("box_nms_thresh", box_nms_thresh), ("crop_nms_thresh", crop_nms_thresh)):
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if not 0.0 <= float(crop_overlap_ratio) < 1.0:
            raise ValueError(f"crop_overlap_ratio must be in [0, 1), got {crop_overlap_ratio}")
        if min_mask_region_area < 0:
            raise ValueError(f"min_mask_region_area must be ≥ 0, got {min_mask_region_area}")
        if points_per_side is not None:
            if int(points_per_side) < 1:
                raise ValueError(f"points_per_side must be ≥ 1, got {points_per_side}")
            self.point_grids = amg.build_all_layer_point_grids(int(points_per_side), int(crop_n_layers),
                                                               int(crop_n_points_downscale_factor))
        else:
            grids = [np.asarray(g, dtype=np.float64) for g in point_grids]
            if len(grids) != int(crop_n_layers) + 1:
                raise ValueError(f"point_grids needs one grid per crop layer ({int(crop_n_layers) + 1}), "
                                 f"got {len(grids)}")
            for g in grids:
                if g.ndim != 2 or g.shape[1] != 2 or g.shape[0] < 1 or g.min() < 0 or g.max() > 1:
                    raise ValueError(f"each point grid must be N×2 in [0, 1], got shape {g.shape}")
            self.point_grids = grids
        self.predictor = SamPredictor(model)
        self.points_per_batch = int(points_per_batch)
        self.pred_iou_thresh = float(pred_iou_thresh)
        self.stability_score_thresh = float(stability_score_thresh)
        self.stability_score_offset = float(stability_score_offset)
        self.box_nms_thresh = float(box_nms_thresh)
        self.crop_n_layers = int(crop_n_layers)
        self.crop_nms_thresh = float(crop_nms_thresh)
        self.crop_overlap_ratio = float(crop_overlap_ratio)
        self.min_mask_region_area = int(min_mask_region_area)
        self.output_mode = output_mode
        self.mask_threshold = float(model.mask_threshold if mask_threshold is None else mask_threshold)
        self.decoder = resolve_decoder(decoder, self.predictor.device)
        self._onnx: Any = None  # OnnxPromptBatchDecoder, exported on first use
        self.refiner = refiner
        self.refine_threads = None if refine_threads is None else max(1, int(refine_threads))

    @torch.no_grad()
    def generate(self, image: np.ndarray, embedding: np.ndarray | torch.Tensor | None = None) -> list[dict[str, Any]]:
        """Masks for an H×W×3 uint8 RGB ``image``.

        ``embedding``: optional precomputed 1×256×64×64 embedding of the whole image (used for the
        layer-0 crop instead of running the encoder). Returns one record per mask: ``segmentation``
        (per ``output_mode``), ``area``, ``bbox`` XYWH, ``predicted_iou``, ``point_coords`` [[x, y]],
        ``stability_score``, ``crop_box`` XYWH.
        """
        validate_rgb_image(image)
        data = self._generate(image, embedding)
        if self.min_mask_region_area > 0 and data["masks"].shape[0]:
            data = self._cleanup(data, self.min_mask_region_area,
                                 max(self.box_nms_thresh, self.crop_nms_thresh))
        return self._records(data)

    def _generate(self, image: np.ndarray, embedding: Any) -> dict[str, torch.Tensor]:
        h, w = image.shape[:2]
        crop_boxes, layers = amg.generate_crop_boxes((h, w), self.crop_n_layers, self.crop_overlap_ratio)
        parts = []
        for index, (box, layer) in enumerate(zip(crop_boxes, layers)):
            part = self._process_crop(image, box, layer, embedding if index == 0 else None)
            parts.append(part)
        data = {key: torch.cat([p[key] for p in parts]) for key in parts[0]}
        if len(crop_boxes) > 1 and data["boxes"].shape[0]:
            crop_xyxy = data["crop_boxes"].double()
            crop_area = (crop_xyxy[:, 2] - crop_xyxy[:, 0]) * (crop_xyxy[:, 3] - crop_xyxy[:, 1])
            keep = amg.nms(data["boxes"].float(), 1.0 / crop_area, self.crop_nms_thresh)
            data = {key: value[keep] for key, value in data.items()}
        logger.debug("automatic masks: %d crops, %d masks kept", len(crop_boxes), data["boxes"].shape[0])
        return data

    def _process_crop(self, image: np.ndarray, crop_box: list[int], layer: int,
                      embedding: Any) -> dict[str, torch.Tensor]:
        """Candidates from one crop, after within-crop NMS, in image coordinates (masks full size)."""
        x0, y0, x1, y1 = crop_box
        h, w = image.shape[:2]
        crop = image[y0:y1, x0:x1]
        crop_h, crop_w = crop.shape[:2]
        if embedding is not None:
            self.predictor.set_embedding(embedding, (crop_h, crop_w))
        else:
            self.predictor.set_image(crop)
        points = torch.as_tensor(self.point_grids[layer] * np.array([[crop_w, crop_h]]), dtype=torch.float32)
        batches = [self._process_batch(points[i:i + self.points_per_batch], (crop_h, crop_w), crop_box, (h, w))
                   for i in range(0, points.shape[0], self.points_per_batch)]
        input_size = self.predictor.input_size
        self.predictor.reset_image()
        data = {key: torch.cat([b[key] for b in batches]) for key in batches[0]}
        keep = amg.nms(data["boxes"].float(), data["iou_preds"], self.box_nms_thresh)
        data = {key: value[keep] for key, value in data.items()}
        if self.refiner is not None:
            data = self._refine_crop(data, crop, crop_box, (h, w), input_size)
        data.pop("low_res", None)
        data["boxes"] = amg.uncrop_boxes_xyxy(data["boxes"], crop_box)
        data["points"] = amg.uncrop_points(data["points"], crop_box)
        data["masks"] = amg.uncrop_masks(data["masks"], crop_box, h, w)
        data["crop_boxes"] = torch.as_tensor([crop_box], dtype=torch.int64).repeat(data["boxes"].shape[0], 1)
        return data

    def _process_batch(self, points: torch.Tensor, crop_size: tuple[int, int], crop_box: list[int],
                       image_size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Decode B points (B×2, crop pixels) → filtered candidates (≤ 3B) with crop-frame masks/boxes."""
        device = self.predictor.device
        coords = self.predictor.transform.apply_coords_torch(points.to(device), crop_size)[:, None, :]
        labels = torch.ones(coords.shape[:2], dtype=torch.int, device=device)
        if self.decoder == "onnx":
            if self._onnx is None:
                from workers.sam.onnx import OnnxPromptBatchDecoder

                self._onnx = OnnxPromptBatchDecoder(self.predictor.model)
            low_res, iou_preds = self._onnx(self.predictor.get_image_embedding(), coords.cpu(), labels.cpu())
            low_res, iou_preds = low_res.to(device), iou_preds.to(device)
        else:
            low_res, iou_preds = self.predictor.decode_low_res(coords, labels, multimask_output=True)
        k = low_res.shape[1]
        low_res = low_res.flatten(0, 1)
        iou_preds = iou_preds.flatten(0, 1)
        pts = points.to(device).repeat_interleave(k, dim=0)
        if self.pred_iou_thresh > 0:  # needs no upscaled mask: upscale only the candidates that pass
            passed = iou_preds > self.pred_iou_thresh
            low_res, iou_preds, pts = low_res[passed], iou_preds[passed], pts[passed]
        logits = self.predictor.model.postprocess_masks(low_res[:, None], self.predictor.input_size,
                                                        self.predictor.original_size)[:, 0]
        stability = amg.calculate_stability_score(logits, self.mask_threshold, self.stability_score_offset)
        keep = torch.ones_like(iou_preds, dtype=torch.bool)
        if self.stability_score_thresh > 0:
            keep &= stability >= self.stability_score_thresh
        masks = logits[keep] > self.mask_threshold
        boxes = amg.batched_mask_to_box(masks)
        ih, iw = image_size
        edge = amg.is_box_near_crop_edge(boxes, crop_box, [0, 0, iw, ih])
        inside = ~edge
        out = {"masks": masks[inside].cpu(), "boxes": boxes[inside].cpu(), "iou_preds": iou_preds[keep][inside].cpu(),
               "stability": stability[keep][inside].cpu(), "points": pts[keep][inside].cpu()}
        if self.refiner is not None:  # the soft logits, for refining the survivors of NMS (half precision)
            out["low_res"] = low_res[keep][inside].to(torch.float16).cpu()
        return out

    def _refine_crop(self, data: dict[str, torch.Tensor], crop: np.ndarray, crop_box: list[int],
                     image_size: tuple[int, int], input_size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Refine a crop's candidates (crop frame) from their low-res logits; drop the ones refinement
        empties or pushes against a crop edge; NMS again on the refined boxes."""
        n = data["masks"].shape[0]
        if n == 0:
            return data
        assert self.refiner is not None
        refiner = self.refiner(np.ascontiguousarray(crop))
        crop_h, crop_w = crop.shape[:2]
        model = self.predictor.model

        def refine_one(i: int) -> np.ndarray:
            logits = model.postprocess_masks(data["low_res"][i:i + 1, None].float(), input_size,
                                             (crop_h, crop_w))[0, 0].numpy()
            point = data["points"][i:i + 1].numpy().astype(np.float64)
            return np.asarray(refiner.refine(logits, point, np.ones(1, dtype=np.int64)), dtype=bool)

        # OpenCV and numpy release the GIL, and each thread seeds its own OpenCV generator: threads give
        # the same masks as one loop
        threads = min(n, self.refine_threads or torch.get_num_threads())
        if threads > 1:
            with ThreadPoolExecutor(threads) as pool:
                refined = list(pool.map(refine_one, range(n)))
        else:
            refined = [refine_one(i) for i in range(n)]
        masks = torch.from_numpy(np.stack(refined))
        boxes = amg.batched_mask_to_box(masks)
        ih, iw = image_size
        keep = masks.flatten(1).any(dim=1) & ~amg.is_box_near_crop_edge(boxes, crop_box, [0, 0, iw, ih])
        data = {key: value[keep] for key, value in data.items()}
        data["masks"], data["boxes"] = masks[keep], boxes[keep]
        keep = amg.nms(data["boxes"].float(), data["iou_preds"], self.box_nms_thresh)
        return {key: value[keep] for key, value in data.items()}

    @staticmethod
    def _cleanup(data: dict[str, torch.Tensor], min_area: int, nms_thresh: float) -> dict[str, torch.Tensor]:
        """Fill holes, then drop islands, smaller than ``min_area``; NMS preferring unchanged masks."""
        masks = data["masks"].numpy()
        cleaned = np.empty_like(masks)
        scores = np.empty(masks.shape[0], dtype=np.float32)
        for i in range(masks.shape[0]):
            mask, holes_changed = amg.remove_small_regions(masks[i], min_area, "holes")
            mask, islands_changed = amg.remove_small_regions(mask, min_area, "islands")
            cleaned[i] = mask
            scores[i] = 0.0 if (holes_changed or islands_changed) else 1.0
        new_masks = torch.from_numpy(cleaned)
        boxes = amg.batched_mask_to_box(new_masks)
        keep = amg.nms(boxes.float(), torch.from_numpy(scores), nms_thresh)
        out = {key: value[keep] for key, value in data.items()}
        out["masks"] = new_masks[keep]
        out["boxes"] = boxes[keep]
        return out

    def _records(self, data: dict[str, torch.Tensor]) -> list[dict[str, Any]]:
        masks = data["masks"]
        n = masks.shape[0]
        if n == 0:
            return []
        if self.output_mode == "coco_rle":
            segs: list[Any] = amg.masks_to_coco_rle(masks.numpy())
        elif self.output_mode == "uncompressed_rle":
            segs = amg.masks_to_uncompressed_rle(masks)
        else:
            segs = list(masks.numpy())
        areas = amg.area_from_masks(masks).tolist()
        bboxes = amg.box_xyxy_to_xywh(data["boxes"]).tolist()
        crops = amg.box_xyxy_to_xywh(data["crop_boxes"]).tolist()
        ious = data["iou_preds"].tolist()
        stab = data["stability"].tolist()
        points = data["points"].tolist()
        return [{"segmentation": segs[i], "area": int(areas[i]), "bbox": [int(v) for v in bboxes[i]],
                 "predicted_iou": float(ious[i]), "point_coords": [[float(points[i][0]), float(points[i][1])]],
                 "stability_score": float(stab[i]), "crop_box": [int(v) for v in crops[i]]} for i in range(n)]
