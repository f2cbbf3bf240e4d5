"""``SamPredictor``: embed an image once, then decode masks for many prompts (official API and semantics).

``set_image`` resizes (longest side 1024), normalises, pads and runs the image encoder;
``set_embedding`` accepts a precomputed 1×256×64×64 embedding instead (workers, evaluation).
``predict`` takes prompts in original-image pixels and returns numpy masks/scores/low-res logits;
``predict_torch`` is the batched tensor version (prompts already in the resized 1024 frame).
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any

import numpy as np
import torch

from workers.sam.modeling.sam import Sam
from workers.sam.transforms import ResizeLongestSide, validate_rgb_image

logger = logging.getLogger(__name__)

EMBED_SHAPE = (256, 64, 64)


class ImageNotSetError(ValueError, RuntimeError):
    """Raised when predicting or reading the embedding before ``set_image``/``set_embedding``."""


def _as_float_array(value: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric, got {type(value).__name__}") from exc
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def cuda_autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on a CUDA device; a no-op on a CPU or when ``dtype`` is None."""
    if dtype is not None and device.type == "cuda":
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


class SamPredictor:
    """Interactive predictor over a ``Sam`` model.

    Attributes: ``model``, ``transform``, ``device``, ``original_size`` (H, W), ``input_size`` (resized
    h, w), ``features`` (1×256×64×64), ``is_image_set``.
    """

    def __init__(self, sam_model: Sam, autocast_dtype: torch.dtype | None = None) -> None:
        """``autocast_dtype`` (torch.float16 / torch.bfloat16) enables mixed precision on CUDA only."""
        self.model = sam_model
        self.transform = ResizeLongestSide(sam_model.image_encoder.img_size)
        self.autocast_dtype = autocast_dtype
        self.reset_image()

    @property
    def device(self) -> torch.device:
        return self.model.device

    def _autocast(self) -> contextlib.AbstractContextManager:
        return cuda_autocast(self.device, self.autocast_dtype)

    def reset_image(self) -> None:
        """Forget the current image and embedding."""
        self.is_image_set = False
        self.features: torch.Tensor | None = None
        self.original_size: tuple[int, int] | None = None
        self.input_size: tuple[int, int] | None = None
        self.orig_h = self.orig_w = self.input_h = self.input_w = None

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Embed ``image``: an H×W×3 uint8 array in ``image_format`` ("RGB" or "BGR")."""
        validate_rgb_image(image)
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
        if image_format != self.model.image_format:
            image = image[..., ::-1]
        resized = self.transform.apply_image(np.ascontiguousarray(image))
        tensor = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None].float()
        self.set_torch_image(tensor, image.shape[:2])

    @torch.no_grad()
    def set_torch_image(self, transformed_image: torch.Tensor, original_image_size: tuple[int, ...]) -> None:
        """Embed an already resized 1×3×h×w float tensor (0–255, max(h, w) = 1024) of an image of
        ``original_image_size`` (H, W)."""
        img = self.model.image_encoder.img_size
        if (transformed_image.ndim != 4 or transformed_image.shape[0] != 1 or transformed_image.shape[1] != 3
                or max(transformed_image.shape[2:]) != img):
            raise ValueError(f"set_torch_image expects 1×3×h×w with max(h, w) = {img}, "
                             f"got {tuple(transformed_image.shape)}")
        self.reset_image()
        self.original_size = (int(original_image_size[0]), int(original_image_size[1]))
        self.input_size = (int(transformed_image.shape[2]), int(transformed_image.shape[3]))
        with self._autocast():
            features = self.model.image_encoder(self.model.preprocess(transformed_image.to(self.device).float()))
        self._store(features.float())

    def set_embedding(self, embedding: np.ndarray | torch.Tensor, original_size: tuple[int, int],
                      input_size: tuple[int, int] | None = None) -> None:
        """Use a precomputed 1×256×64×64 (or 256×64×64) embedding of an image of ``original_size`` (H, W).

        ``input_size`` (resized h, w) defaults to the resize-longest-side shape of ``original_size``.
        """
        emb = torch.as_tensor(np.asarray(embedding) if not isinstance(embedding, torch.Tensor) else embedding)
        if emb.ndim == 3:
            emb = emb[None]
        if tuple(emb.shape) != (1, *EMBED_SHAPE):
            raise ValueError(f"embedding must be 1×256×64×64, got shape {tuple(emb.shape)}")
        if not emb.is_floating_point():
            raise ValueError(f"embedding must be a float tensor, got dtype {emb.dtype}")
        if not torch.isfinite(emb).all():
            raise ValueError("embedding contains NaN or infinite values")
        if len(original_size) != 2 or min(original_size) < 1:
            raise ValueError(f"original_size must be (H, W) with positive sides, got {original_size}")
        expected = self.transform.get_preprocess_shape(int(original_size[0]), int(original_size[1]),
                                                       self.transform.target_length)
        if input_size is None:
            input_size = expected
        elif tuple(int(v) for v in input_size) != expected:
            raise ValueError(f"input_size {tuple(input_size)} does not match original_size {tuple(original_size)} "
                             f"(expected {expected})")
        self.reset_image()
        self.original_size = (int(original_size[0]), int(original_size[1]))
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self._store(emb.to(device=self.device, dtype=torch.float32))

    def _store(self, features: torch.Tensor) -> None:
        self.features = features
        self.orig_h, self.orig_w = self.original_size
        self.input_h, self.input_w = self.input_size
        self.is_image_set = True

    def get_image_embedding(self) -> torch.Tensor:
        """The current image embedding, 1×256×64×64."""
        self._require_image()
        return self.features

    def _require_image(self) -> None:
        if not self.is_image_set:
            raise ImageNotSetError("no image is set: call set_image() or set_embedding() before predicting")

    def _check_prompts(self, point_coords: Any, point_labels: Any, box: Any,
                       mask_input: Any) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None,
                                                 np.ndarray | None]:
        h, w = self.original_size
        coords = labels = boxes = mask = None
        if point_coords is not None:
            if point_labels is None:
                raise ValueError("point_labels must be given with point_coords")
            coords = _as_float_array(point_coords, "point_coords")
            if coords.ndim != 2 or coords.shape[1] != 2:
                raise ValueError(f"point_coords must be N×2 (x, y), got shape {coords.shape}")
            labels = _as_float_array(point_labels, "point_labels")
            if labels.ndim != 1 or labels.shape[0] != coords.shape[0]:
                raise ValueError(f"point_labels must have one label per point: {coords.shape[0]} points, "
                                 f"labels of shape {labels.shape}")
            bad = sorted(set(labels.tolist()) - {-1.0, 0.0, 1.0})
            if bad:
                raise ValueError(f"point_labels must be 1 (foreground), 0 (background) or -1 (padding), got {bad}")
            outside = (coords[:, 0] < 0) | (coords[:, 0] > w) | (coords[:, 1] < 0) | (coords[:, 1] > h)
            if outside.any():
                raise ValueError(f"point {coords[outside][0].tolist()} lies outside the {w}×{h} (W×H) image")
        elif point_labels is not None:
            raise ValueError("point_labels given without point_coords")
        if box is not None:
            boxes = _as_float_array(box, "box").reshape(-1)
            if boxes.shape != (4,):
                raise ValueError(f"box must be 4 numbers XYXY, got {np.asarray(box).shape}")
            x1, y1, x2, y2 = boxes
            if x2 < x1 or y2 < y1:
                raise ValueError(f"box must be XYXY with x1 ≤ x2 and y1 ≤ y2, got {boxes.tolist()}")
            if x1 < 0 or y1 < 0 or x2 > w or y2 > h:
                raise ValueError(f"box {boxes.tolist()} lies outside the {w}×{h} (W×H) image")
            boxes = boxes[None]
        if mask_input is not None:
            mask = _as_float_array(mask_input, "mask_input")
            if mask.shape not in ((256, 256), (1, 256, 256), (1, 1, 256, 256)):
                raise ValueError(f"mask_input must be 1×256×256 low-res logits, got shape {mask.shape}")
            mask = mask.reshape(1, 256, 256)
        return coords, labels, boxes, mask

    def predict(self, point_coords: np.ndarray | None = None, point_labels: np.ndarray | None = None,
                box: np.ndarray | None = None, mask_input: np.ndarray | None = None, multimask_output: bool = True,
                return_logits: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for prompts in original-image pixels.

        point_coords N×2 (x, y), point_labels N (1 fg, 0 bg), box 4 (XYXY), mask_input 1×256×256 logits.
        Returns masks K×H×W (bool, or float logits with ``return_logits``), scores K and low-res logits
        K×256×256 (K = 3 with ``multimask_output`` else 1).
        """
        self._require_image()
        coords, labels, boxes, mask = self._check_prompts(point_coords, point_labels, box, mask_input)
        dev = self.device
        coords_t = labels_t = box_t = mask_t = None
        if coords is not None:
            coords_t = torch.as_tensor(self.transform.apply_coords(coords, self.original_size),
                                       dtype=torch.float, device=dev)[None]
            labels_t = torch.as_tensor(labels, dtype=torch.int, device=dev)[None]
        if boxes is not None:
            box_t = torch.as_tensor(self.transform.apply_boxes(boxes, self.original_size), dtype=torch.float,
                                    device=dev)
        if mask is not None:
            mask_t = torch.as_tensor(mask, dtype=torch.float, device=dev)[None]
        masks, scores, low_res = self.predict_torch(coords_t, labels_t, box_t, mask_t, multimask_output,
                                                    return_logits)
        return (masks[0].detach().cpu().numpy(), scores[0].float().detach().cpu().numpy(),
                low_res[0].float().detach().cpu().numpy())

    @torch.no_grad()
    def predict_torch(self, point_coords: torch.Tensor | None, point_labels: torch.Tensor | None,
                      boxes: torch.Tensor | None = None, mask_input: torch.Tensor | None = None,
                      multimask_output: bool = True,
                      return_logits: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batched prediction with prompts already in the resized (1024) frame.

        point_coords B×N×2, point_labels B×N, boxes B×4, mask_input B×1×256×256.
        Returns masks B×K×H×W (bool unless ``return_logits``), scores B×K, low-res logits B×K×256×256.
        """
        self._require_image()
        if (point_coords is None) != (point_labels is None):
            raise ValueError("point_coords and point_labels must be given together")
        if point_coords is not None:
            if point_coords.ndim != 3 or point_coords.shape[-1] != 2:
                raise ValueError(f"point_coords must be B×N×2, got {tuple(point_coords.shape)}")
            if tuple(point_labels.shape) != tuple(point_coords.shape[:2]):
                raise ValueError(f"point_labels must be B×N = {tuple(point_coords.shape[:2])}, "
                                 f"got {tuple(point_labels.shape)}")
        if boxes is not None and (boxes.ndim != 2 or boxes.shape[-1] != 4):
            raise ValueError(f"boxes must be B×4, got {tuple(boxes.shape)}")
        if mask_input is not None and (mask_input.ndim != 4 or tuple(mask_input.shape[1:]) != (1, 256, 256)):
            raise ValueError(f"mask_input must be B×1×256×256, got {tuple(mask_input.shape)}")
        low_res, scores = self.decode_low_res(point_coords, point_labels, boxes, mask_input, multimask_output)
        masks = self.model.postprocess_masks(low_res, self.input_size, self.original_size)
        if not return_logits:
            masks = masks > self.model.mask_threshold
        return masks, scores.float(), low_res

    def decode_low_res(self, point_coords: torch.Tensor | None, point_labels: torch.Tensor | None,
                       boxes: torch.Tensor | None = None, mask_input: torch.Tensor | None = None,
                       multimask_output: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt encoder + mask decoder only (inputs as ``predict_torch``, already checked):
        low-res logits B×K×256×256 (float32) and scores B×K (float32), nothing upscaled."""
        points = (point_coords, point_labels) if point_coords is not None else None
        with self._autocast():
            sparse, dense = self.model.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
            low_res, scores = self.model.mask_decoder(
                image_embeddings=self.features, image_pe=self.model.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=multimask_output)
        return low_res.float(), scores.float()
