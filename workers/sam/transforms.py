"""Resize-longest-side transform of SAM: images, point coordinates and boxes, in numpy and torch.

The encoder sees images whose longer side is ``target_length`` (1024); prompts given in original
pixels are scaled by new_w/old_w and new_h/old_h with the *rounded* new size.
"""
from __future__ import annotations

from copy import deepcopy

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


class ResizeLongestSide:
    """Resizes images so the longest side is ``target_length`` and maps coordinates accordingly."""

    def __init__(self, target_length: int = 1024) -> None:
        self.target_length = target_length

    @staticmethod
    def get_preprocess_shape(oldh: int, oldw: int, long_side_length: int) -> tuple[int, int]:
        """(new_h, new_w) with scale = long_side / max(h, w), each rounded half up."""
        scale = long_side_length * 1.0 / max(oldh, oldw)
        return int(oldh * scale + 0.5), int(oldw * scale + 0.5)

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """H×W×3 uint8 → new_h×new_w×3 uint8 (PIL bilinear, as the official transform)."""
        h, w = self.get_preprocess_shape(image.shape[0], image.shape[1], self.target_length)
        return np.array(Image.fromarray(image).resize((w, h), Image.BILINEAR))

    def apply_coords(self, coords: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
        """…×2 (x, y) in original pixels → resized frame (float copy)."""
        old_h, old_w = original_size
        new_h, new_w = self.get_preprocess_shape(old_h, old_w, self.target_length)
        coords = deepcopy(coords).astype(float)
        coords[..., 0] = coords[..., 0] * (new_w / old_w)
        coords[..., 1] = coords[..., 1] * (new_h / old_h)
        return coords

    def apply_boxes(self, boxes: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
        """B×4 XYXY in original pixels → B×4 in the resized frame."""
        return self.apply_coords(boxes.reshape(-1, 2, 2), original_size).reshape(-1, 4)

    def apply_image_torch(self, image: torch.Tensor) -> torch.Tensor:
        """B×3×H×W float → B×3×new_h×new_w (bilinear with antialiasing; close to, not equal to, PIL)."""
        h, w = self.get_preprocess_shape(image.shape[2], image.shape[3], self.target_length)
        return F.interpolate(image, (h, w), mode="bilinear", align_corners=False, antialias=True)

    def apply_coords_torch(self, coords: torch.Tensor, original_size: tuple[int, int]) -> torch.Tensor:
        """…×2 (x, y) tensor in original pixels → resized frame (float copy)."""
        old_h, old_w = original_size
        new_h, new_w = self.get_preprocess_shape(old_h, old_w, self.target_length)
        coords = coords.clone().to(torch.float)
        coords[..., 0] = coords[..., 0] * (new_w / old_w)
        coords[..., 1] = coords[..., 1] * (new_h / old_h)
        return coords

    def apply_boxes_torch(self, boxes: torch.Tensor, original_size: tuple[int, int]) -> torch.Tensor:
        """B×4 XYXY tensor in original pixels → B×4 in the resized frame."""
        return self.apply_coords_torch(boxes.reshape(-1, 2, 2), original_size).reshape(-1, 4)


def validate_rgb_image(image: np.ndarray) -> None:
    """Raise ``ValueError`` naming the problem unless ``image`` is a non-empty H×W×3 uint8 array."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array (H×W×3 uint8), got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (0–255), got dtype {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be H×W×3 (RGB), got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image is empty: shape {image.shape}")
