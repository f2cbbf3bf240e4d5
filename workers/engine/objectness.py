"""How much an automatic mask looks like a whole object, from the image alone.

Maskloop's compact models are weak judges of their own one-click masks: their IoU head barely ranks a
grid point's candidates (docs/automatic-masks.md). Once the masks are refined with the image, three
cues that do not depend on the model tell whole objects from fragments and background pieces:

- ``log_area``: log of the mask's share of the image (fragments are small);
- ``edge``: mean colour-gradient strength on the mask's contour (inside the image), relative to the
  image's mean gradient; objects end on edges, fragments cut through them;
- ``colour``: how different the colours inside the mask are from those of a ring just outside it
  (1 − Bhattacharyya coefficient of 8×8×8-bin RGB histograms).

``object_scores`` combines them with a logistic model (``OBJECT_SCORE_MODEL``) fitted by
``benchmarks/fit_object_score.py`` on refined stage-3 candidates of coco-mval *train* images, with
"the mask matches the annotated object at IoU ≥ 0.5" as the label. coco-mval annotates one object
per image, so the score's absolute values are small; it is meant for ranking and for a low bar that
drops what is clearly not an object (``min_object_score``).
"""
from __future__ import annotations

from typing import Iterable

import cv2
import numpy as np

CUES = ("log_area", "edge", "colour")
# Fitted by benchmarks/fit_object_score.py (2026-12-05) on 5,605 refined candidates of 24 coco-mval
# train images (lite_clicks default model, 12 points per side); standardise with mean/scale, then
# logistic. Checked on 20 val images (docs/automatic-masks.md, "Object score").
OBJECT_SCORE_MODEL: dict[str, list[float] | float] = {
    "mean": [-5.7771, 2.1312, 0.19357],
    "scale": [1.7245, 2.0979, 0.19358],
    "weights": [0.5757, 0.2617, 0.3186],
    "bias": -5.2192,
}
_COLOUR_BINS = 8  # per channel


class ImageCues:
    """Per-image work shared by every mask of one image (gradient map, colour bins)."""

    def __init__(self, image: np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an H×W×3 uint8 image, got {image.shape} {image.dtype}")
        self.height, self.width = image.shape[:2]
        lab = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2LAB).astype(np.float32)
        lab = cv2.GaussianBlur(lab, (0, 0), 1.0)
        gx = cv2.Sobel(lab, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(lab, cv2.CV_32F, 0, 1, ksize=3)
        self.gradient = np.sqrt((gx * gx + gy * gy).sum(axis=2))
        self.mean_gradient = float(self.gradient.mean()) + 1e-6
        q = (image // (256 // _COLOUR_BINS)).astype(np.int32)
        self.bins = (q[..., 0] * _COLOUR_BINS + q[..., 1]) * _COLOUR_BINS + q[..., 2]

    def cues(self, mask: np.ndarray) -> np.ndarray:
        """``CUES`` of one H×W boolean mask (zeros but a very small area for an empty mask)."""
        if mask.shape != (self.height, self.width):
            raise ValueError(f"mask shape {mask.shape} does not match the image {(self.height, self.width)}")
        ys, xs = np.nonzero(mask)
        area = ys.size
        if area == 0:
            return np.array([np.log(1e-5), 0.0, 0.0])
        ring_radius = max(3, int(0.1 * np.sqrt(area)))
        pad = ring_radius + 2
        y0, y1 = max(0, ys.min() - pad), min(self.height, ys.max() + pad + 1)
        x0, x1 = max(0, xs.min() - pad), min(self.width, xs.max() + pad + 1)
        m = mask[y0:y1, x0:x1].astype(np.uint8)
        inner = cv2.erode(m, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=1)
        contour = (m > 0) & (inner == 0)
        # the image's own border is not an edge the object chose
        if y0 == 0:
            contour[0, :] = False
        if y1 == self.height:
            contour[-1, :] = False
        if x0 == 0:
            contour[:, 0] = False
        if x1 == self.width:
            contour[:, -1] = False
        edge = float(self.gradient[y0:y1, x0:x1][contour].mean() / self.mean_gradient) if contour.any() else 0.0
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring_radius + 1, 2 * ring_radius + 1))
        ring = (cv2.dilate(m, disk) > 0) & (m == 0)
        bins = self.bins[y0:y1, x0:x1]
        n_bins = _COLOUR_BINS ** 3
        inside = np.bincount(bins[m > 0], minlength=n_bins).astype(np.float64)
        outside = np.bincount(bins[ring], minlength=n_bins).astype(np.float64)
        colour = 0.0
        if outside.sum() > 0:
            colour = 1.0 - float(np.sqrt(inside / inside.sum() * outside / outside.sum()).sum())
        return np.array([np.log(max(area / (self.height * self.width), 1e-5)), edge, colour])


def mask_cues(image: np.ndarray, masks: Iterable[np.ndarray]) -> np.ndarray:
    """N×3 array of ``CUES`` for H×W boolean masks of ``image`` (H×W×3 uint8); ``masks`` is consumed one
    at a time, so a generator that decodes each mask keeps one mask in memory."""
    cues = ImageCues(image)
    return np.array([cues.cues(np.asarray(m, dtype=bool)) for m in masks]).reshape(-1, len(CUES))


def scores_from_cues(cues: np.ndarray, model: dict | None = None) -> np.ndarray:
    """The logistic object score (0–1) of ``N×3`` cues."""
    model = OBJECT_SCORE_MODEL if model is None else model
    z = (np.asarray(cues, dtype=np.float64) - np.asarray(model["mean"])) / np.asarray(model["scale"])
    return 1.0 / (1.0 + np.exp(-(z @ np.asarray(model["weights"]) + float(model["bias"]))))


def object_scores(image: np.ndarray, masks: Iterable[np.ndarray], model: dict | None = None) -> np.ndarray:
    """Object score (0–1, higher = more like a whole object) of each H×W boolean mask of ``image``."""
    return scores_from_cues(mask_cues(image, masks), model)
