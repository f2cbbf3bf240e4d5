"""Metrics of interactive segmentation: NoC@k, NoF@k, mIoU@k and the mIoU curve."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def clicks_to_reach(ious: Sequence[float], threshold: float, max_clicks: int = 20) -> int:
    """Number of clicks until the IoU first reaches ``threshold`` (``max_clicks`` if never).

    ``ious[k]`` is the IoU after ``k + 1`` clicks.
    """
    for k, value in enumerate(ious[:max_clicks]):
        if value >= threshold:
            return k + 1
    return max_clicks


def summarize(per_sample_ious: Sequence[Sequence[float]], max_clicks: int = 20) -> dict:
    """Aggregate per-sample IoU curves (each of length ``max_clicks``) into the report metrics.

    Returns NoC@85, NoC@90, NoF@85, NoF@90 (samples never reaching it), mIoU@1/3/5 and
    ``miou_curve`` (mean IoU after 1..max_clicks clicks).
    """
    if not per_sample_ious:
        raise ValueError("no samples to summarize")
    curves = np.array([list(c) for c in per_sample_ious], dtype=np.float64)
    if curves.ndim != 2 or curves.shape[1] != max_clicks:
        raise ValueError(f"every IoU curve must have {max_clicks} values, got shape {curves.shape}")
    out: dict = {"num_samples": int(curves.shape[0])}
    for pct in (85, 90):
        noc = [clicks_to_reach(c, pct / 100, max_clicks) for c in curves]
        out[f"noc@{pct}"] = float(np.mean(noc))
        out[f"nof@{pct}"] = int(sum(1 for c in curves if c.max() < pct / 100))
    curve = curves.mean(axis=0)
    for k in (1, 3, 5):
        if k <= max_clicks:
            out[f"miou@{k}"] = float(curve[k - 1])
    out["miou_curve"] = [float(v) for v in curve]
    return out
