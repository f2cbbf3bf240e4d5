"""The robot clicker of the interactive-segmentation protocol (``docs/evaluation.md``).

The next click goes to the interior-most pixel of the larger error: false negatives give a
positive click, false positives a negative one. Interior-most means largest Euclidean distance to
the nearest non-error pixel, with the error map padded by one background pixel on every side so
that image borders count as boundaries; ties go to the first pixel in row-major order; a false
negative wins only when strictly farther inside than every false positive. Pixels marked ignore
(value 128 in the ground truth) and pixels already clicked are never chosen.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import distance_transform_edt


@dataclass(frozen=True)
class Click:
    """One click: pixel row ``y``, column ``x`` in the original image, ``positive`` or not."""

    y: int
    x: int
    positive: bool

    @property
    def label(self) -> int:
        return int(self.positive)


def _interior_distance(error: np.ndarray) -> np.ndarray:
    """Distance of every error pixel to the nearest non-error pixel, image border included."""
    padded = np.pad(error, 1, mode="constant", constant_values=False)
    return distance_transform_edt(padded)[1:-1, 1:-1]


def next_click(gt: np.ndarray, pred: np.ndarray, ignore: np.ndarray | None = None,
               clicked: np.ndarray | None = None) -> Click | None:
    """The robot's next click for boolean H×W ``gt`` and ``pred``; None if there is no error left.

    ``ignore`` (bool H×W) marks pixels excluded from errors; ``clicked`` (bool H×W) marks pixels
    already clicked, which are excluded too.
    """
    if gt.shape != pred.shape:
        raise ValueError(f"gt {gt.shape} and pred {pred.shape} differ in shape")
    excluded = np.zeros(gt.shape, dtype=bool)
    if ignore is not None:
        excluded |= ignore
    if clicked is not None:
        excluded |= clicked
    fn = gt & ~pred & ~excluded
    fp = ~gt & pred & ~excluded
    if not fn.any() and not fp.any():
        return None
    fn_dist = _interior_distance(fn)
    fp_dist = _interior_distance(fp)
    fn_max, fp_max = fn_dist.max(), fp_dist.max()
    positive = bool(fn_max > fp_max)
    dist = fn_dist if positive else fp_dist
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)  # argmax: first maximum, row-major
    return Click(int(y), int(x), positive)


def split_ground_truth(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth mask (0/255 with 128 = ignore) → (foreground bool, ignore bool)."""
    return mask > 128, mask == 128


def iou(gt: np.ndarray, pred: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """IoU of boolean masks, ignoring the ``ignore`` pixels (1.0 if both are empty)."""
    if ignore is not None:
        keep = ~ignore
        gt, pred = gt & keep, pred & keep
    union = np.count_nonzero(gt | pred)
    return 1.0 if union == 0 else np.count_nonzero(gt & pred) / union
