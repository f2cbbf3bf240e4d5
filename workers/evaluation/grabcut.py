"""The classic baseline: OpenCV GrabCut seeded by the clicks, behind a SamPredictor-like interface.

Positive clicks become discs of sure foreground, negative clicks discs of sure background, and
every other pixel starts as probable background; GrabCut (colour GMMs + graph cut) then labels the
image. For speed the image is processed at ``work_size`` pixels on its longest side and the mask
is resized back. ``predict`` returns one mask per call and ignores ``mask_input``.
"""
from __future__ import annotations

import cv2
import numpy as np


class GrabCutSegmenter:
    """``set_image`` / ``predict`` like ``SamPredictor``, computed with ``cv2.grabCut``."""

    name = "grabcut"

    def __init__(self, *, work_size: int = 320, disc_radius: int = 5, iterations: int = 5) -> None:
        if work_size < 16 or disc_radius < 1 or iterations < 1:
            raise ValueError("GrabCut needs work_size >= 16, disc_radius >= 1 and iterations >= 1")
        self.work_size = work_size
        self.disc_radius = disc_radius
        self.iterations = iterations
        self._image: np.ndarray | None = None
        self._size: tuple[int, int] = (0, 0)

    def set_image(self, image: np.ndarray) -> None:
        """``image``: H×W×3 uint8 RGB."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an H×W×3 uint8 image, got {image.shape} {image.dtype}")
        h, w = image.shape[:2]
        self._size = (h, w)
        scale = min(self.work_size / max(h, w), 1.0)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        work = cv2.resize(image, size, interpolation=cv2.INTER_AREA) if scale < 1 else image
        self._image = np.ascontiguousarray(cv2.cvtColor(work, cv2.COLOR_RGB2BGR))

    def predict(self, point_coords: np.ndarray | None = None, point_labels: np.ndarray | None = None,
                box: np.ndarray | None = None, mask_input: np.ndarray | None = None,
                multimask_output: bool = False, return_logits: bool = False
                ) -> tuple[np.ndarray, np.ndarray, None]:
        """Segment from clicks ``point_coords`` N×2 (x, y in original pixels), ``point_labels`` N.

        Returns masks 1×H×W bool, a dummy score array [1.0] and no low-resolution logits.
        """
        if self._image is None:
            raise RuntimeError("call set_image before predict")
        if point_coords is None or point_labels is None or len(point_coords) == 0:
            raise ValueError("GrabCut needs at least one click")
        h, w = self._size
        wh, ww = self._image.shape[:2]
        sx, sy = ww / w, wh / h
        seeds = np.full((wh, ww), cv2.GC_PR_BGD, dtype=np.uint8)
        for (x, y), label in zip(np.asarray(point_coords, dtype=np.float64), np.asarray(point_labels)):
            centre = (int(round(x * sx)), int(round(y * sy)))
            cv2.circle(seeds, centre, self.disc_radius, int(cv2.GC_FGD if label == 1 else cv2.GC_BGD), -1)
        if not (seeds == cv2.GC_FGD).any():
            mask = np.zeros((h, w), dtype=bool)
        else:
            bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
            cv2.grabCut(self._image, seeds, None, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_MASK)
            work_mask = ((seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)).astype(np.uint8)
            mask = cv2.resize(work_mask, (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
        return mask[None], np.ones(1, dtype=np.float32), None
