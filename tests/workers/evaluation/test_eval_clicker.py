"""The robot clicker and the NoC metrics on hand-made masks."""
from __future__ import annotations

import numpy as np
import pytest

from workers.evaluation.clicker import iou, next_click
from workers.evaluation.metrics import clicks_to_reach, summarize


def _mask(h, w, box):
    m = np.zeros((h, w), dtype=bool)
    y0, y1, x0, x1 = box
    m[y0:y1, x0:x1] = True
    return m


def test_first_click_is_the_interior_most_object_pixel():
    gt = _mask(9, 9, (2, 7, 2, 7))  # 5×5 square, centre (4, 4)
    click = next_click(gt, np.zeros_like(gt))
    assert (click.y, click.x, click.positive) == (4, 4, True)


def test_ties_go_to_the_first_pixel_in_row_major_order():
    gt = _mask(8, 10, (2, 4, 2, 8))  # 2 rows × 6 cols: every pixel has distance 1
    click = next_click(gt, np.zeros_like(gt))
    assert (click.y, click.x) == (2, 2)


def test_image_border_counts_as_boundary():
    gt = _mask(5, 5, (0, 5, 0, 5))  # whole image: padding makes the centre the farthest
    click = next_click(gt, np.zeros_like(gt))
    assert (click.y, click.x) == (2, 2)


def test_negative_click_when_false_positive_is_larger_or_equal():
    gt = _mask(12, 12, (0, 3, 0, 3))
    pred = gt | _mask(12, 12, (5, 12, 5, 12))  # 7×7 false positive block
    click = next_click(gt, pred)
    assert (click.y, click.x, click.positive) == (8, 8, False)
    # equal distances: fn block 3×3 at top-left, fp block 3×3 elsewhere -> negative
    gt2 = _mask(12, 12, (0, 3, 0, 3))
    pred2 = _mask(12, 12, (6, 9, 6, 9))
    click2 = next_click(gt2, pred2)
    assert (click2.y, click2.x, click2.positive) == (7, 7, False)


def test_ignore_and_clicked_pixels_are_never_chosen():
    gt = _mask(9, 9, (2, 7, 2, 7))
    clicked = np.zeros_like(gt)
    clicked[4, 4] = True
    click = next_click(gt, np.zeros_like(gt), clicked=clicked)
    assert (click.y, click.x) != (4, 4) and gt[click.y, click.x]
    ignore = np.zeros_like(gt)
    ignore[2:7, 2:7] = True
    assert next_click(gt, np.zeros_like(gt), ignore=ignore) is None


def test_iou_ignores_band():
    gt = _mask(4, 4, (0, 2, 0, 4))
    pred = _mask(4, 4, (0, 3, 0, 4))
    assert iou(gt, pred) == pytest.approx(8 / 12)
    ignore = _mask(4, 4, (2, 3, 0, 4))
    assert iou(gt, pred, ignore) == pytest.approx(1.0)


def test_noc_and_summary():
    assert clicks_to_reach([0.5, 0.86, 0.95], 0.85, 3) == 2
    assert clicks_to_reach([0.5, 0.6, 0.7], 0.85, 3) == 3
    s = summarize([[0.5, 0.86, 0.95], [0.91, 0.92, 0.93]], max_clicks=3)
    assert s["noc@85"] == pytest.approx(1.5)
    assert s["noc@90"] == pytest.approx(2.0)
    assert s["nof@90"] == 0
    assert s["miou@1"] == pytest.approx(0.705)
    assert s["miou@3"] == pytest.approx(0.94)
    s2 = summarize([[0.1, 0.2, 0.3]], max_clicks=3)
    assert s2["noc@90"] == 3 and s2["nof@90"] == 1
    with pytest.raises(ValueError):
        summarize([[0.1, 0.2]], max_clicks=3)
