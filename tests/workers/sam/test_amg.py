"""Tests for ``workers.sam.amg``: each helper against hand-computed answers or a naive reference."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from workers.sam import amg


def test_point_grid_is_cell_centres_x_fastest():
    grid = amg.build_point_grid(2)
    assert grid.tolist() == [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]
    g3 = amg.build_point_grid(3)
    assert np.allclose(g3[:3, 0], [1 / 6, 0.5, 5 / 6]) and np.allclose(g3[:3, 1], 1 / 6)
    with pytest.raises(ValueError, match="n_per_side"):
        amg.build_point_grid(0)


def test_layer_grids_downscale():
    grids = amg.build_all_layer_point_grids(8, 2, 2)
    assert [g.shape[0] for g in grids] == [64, 16, 4]
    with pytest.raises(ValueError, match="points per side"):
        amg.build_all_layer_point_grids(2, 2, 4)


def test_crop_boxes_by_hand():
    # H=100, W=150, one layer: overlap = int(0.2 * 100 * 2 / 2) = 20; crop_w = ceil((20 + 150) / 2) = 85,
    # crop_h = ceil((20 + 100) / 2) = 60; starts x: 0, 65; y: 0, 40.
    boxes, layers = amg.generate_crop_boxes((100, 150), 1, 0.2)
    assert boxes == [[0, 0, 150, 100], [0, 0, 85, 60], [0, 40, 85, 100], [65, 0, 150, 60], [65, 40, 150, 100]]
    assert layers == [0, 1, 1, 1, 1]
    boxes2, layers2 = amg.generate_crop_boxes((100, 150), 2, 0.2)
    assert len(boxes2) == 1 + 4 + 16 and layers2.count(2) == 16
    assert all(0 <= b[0] < b[2] <= 150 and 0 <= b[1] < b[3] <= 100 for b in boxes2)


def test_stability_score_counts():
    logits = torch.tensor([[[-2.0, -0.5, 0.5, 2.0], [3.0, 0.9, -0.9, -3.0]]])  # 1×2×4
    # > +1: {2.0, 3.0} = 2 ; > -1: {-0.5, 0.5, 2.0, 3.0, 0.9, -0.9} = 6
    assert amg.calculate_stability_score(logits, 0.0, 1.0).tolist() == pytest.approx([2 / 6])
    assert amg.calculate_stability_score(torch.full((2, 3, 3), -5.0), 0.0, 1.0).tolist() == [0.0, 0.0]


def test_mask_to_box_inclusive_and_empty():
    masks = torch.zeros(2, 3, 5, 6, dtype=torch.bool)
    masks[0, 0, 1:3, 2:5] = True
    masks[0, 2, 4, 0] = True
    masks[1, 1, 0, 5] = True
    masks[1, 1, 4, 0] = True
    boxes = amg.batched_mask_to_box(masks)
    assert boxes.shape == (2, 3, 4)
    assert boxes[0].tolist() == [[2, 1, 4, 2], [0, 0, 0, 0], [0, 4, 0, 4]]
    assert boxes[1, 1].tolist() == [0, 0, 5, 4]


def _naive_nms(boxes: np.ndarray, scores: np.ndarray, thresh: float) -> list[int]:
    """Greedy NMS one pair at a time (pixel-area IoU on continuous boxes)."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    kept: list[int] = []
    for i in order:
        ok = True
        for k in kept:
            lo = np.maximum(boxes[i, :2], boxes[k, :2])
            hi = np.minimum(boxes[i, 2:], boxes[k, 2:])
            inter = float(np.prod(np.clip(hi - lo, 0, None)))
            areas = np.prod(boxes[i, 2:] - boxes[i, :2]) + np.prod(boxes[k, 2:] - boxes[k, :2])
            if inter / (areas - inter) > thresh:
                ok = False
                break
        if ok:
            kept.append(i)
    return kept


@pytest.mark.parametrize("seed", range(5))
def test_nms_matches_naive_reference(seed):
    rng = np.random.default_rng(seed)
    n = 120
    xy = rng.uniform(0, 50, size=(n, 2))
    wh = rng.uniform(1, 30, size=(n, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1)
    scores = rng.uniform(size=n).round(2)  # ties on purpose
    for thresh in (0.3, 0.7):
        kept = amg.nms(torch.as_tensor(boxes), torch.as_tensor(scores), thresh).tolist()
        assert kept == _naive_nms(boxes, scores, thresh)


def test_nms_by_hand_and_errors():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [0, 0, 9, 10.0]])
    scores = torch.tensor([0.5, 0.9, 0.3, 0.8])
    # 1 (0.9) keeps; 3 vs 1: inter 8*9=72, union 90+81-72=99 -> .727 > .7 suppressed; 0 vs 1: 81/100 suppressed
    assert amg.nms(boxes, scores, 0.7).tolist() == [1, 2]
    assert amg.nms(torch.zeros(0, 4), torch.zeros(0), 0.5).tolist() == []
    with pytest.raises(ValueError, match="N×4"):
        amg.nms(torch.zeros(3, 3), torch.zeros(3), 0.5)


def test_box_near_crop_edge():
    crop = [50, 0, 150, 100]  # right-hand crop of a 150×100 image: left edge x=50 is interior
    boxes = torch.tensor([[5, 10, 40, 50], [40, 10, 99, 99], [30, 30, 60, 60]])  # crop frame
    # box 0 -> x0 = 55 (within 20 of 50): near; box 1 -> x1 = 149, y1 = 99 (image edges): fine; box 2 -> x0 = 80
    assert amg.is_box_near_crop_edge(boxes, crop, [0, 0, 150, 100]).tolist() == [True, False, False]


def test_uncrop():
    crop = [10, 20, 14, 23]
    assert amg.uncrop_boxes_xyxy(torch.tensor([[0, 0, 2, 1]]), crop).tolist() == [[10, 20, 12, 21]]
    assert amg.uncrop_points(torch.tensor([[1.5, 2.0]]), crop).tolist() == [[11.5, 22.0]]
    masks = torch.ones(1, 3, 4, dtype=torch.bool)
    full = amg.uncrop_masks(masks, crop, 30, 16)
    assert full.shape == (1, 30, 16) and full.sum() == 12 and full[0, 20:23, 10:14].all()


def test_remove_small_regions():
    mask = np.zeros((12, 12), dtype=bool)
    mask[1:8, 1:8] = True
    mask[4, 4] = False  # 1-px hole
    mask[10, 10] = True  # 1-px island
    filled, changed = amg.remove_small_regions(mask, 3, "holes")
    assert changed and filled[4, 4] and filled.sum() == mask.sum() + 1
    cleaned, changed = amg.remove_small_regions(filled, 3, "islands")
    assert changed and not cleaned[10, 10] and cleaned.sum() == 49
    same, changed = amg.remove_small_regions(cleaned, 3, "islands")
    assert not changed and (same == cleaned).all()
    tiny = np.zeros((6, 6), dtype=bool)
    tiny[0, 0] = True
    tiny[3:5, 3:5] = True
    kept, changed = amg.remove_small_regions(tiny, 10, "islands")  # all small: keep the largest
    assert changed and kept.sum() == 4 and not kept[0, 0]
    with pytest.raises(ValueError, match="mode"):
        amg.remove_small_regions(mask, 3, "blobs")


def test_rle_round_trips_through_pycocotools():
    rng = np.random.default_rng(1)
    masks = rng.uniform(size=(4, 7, 9)) > 0.5
    masks[1] = False
    masks[2] = True
    coco = amg.masks_to_coco_rle(masks)
    unc = amg.masks_to_uncompressed_rle(torch.as_tensor(masks))
    for i in range(4):
        assert (amg.coco_rle_to_mask(coco[i]) == masks[i]).all()
        assert (amg.coco_rle_to_mask(unc[i]) == masks[i]).all()
        assert amg.uncompressed_rle_to_coco(unc[i]) == coco[i]
        assert sum(unc[i]["counts"][1::2]) == masks[i].sum() == int(mask_utils.area(
            {"size": coco[i]["size"], "counts": coco[i]["counts"].encode()}))
    hand = np.zeros((2, 3), dtype=bool)
    hand[0, 0] = hand[1, 0] = hand[1, 2] = True  # column-major: 1 1 0 0 0 1
    assert amg.masks_to_uncompressed_rle(torch.as_tensor(hand[None]))[0]["counts"] == [0, 2, 3, 1]
    assert amg.area_from_masks(torch.as_tensor(masks)).tolist() == masks.reshape(4, -1).sum(1).tolist()


def test_xywh():
    assert amg.box_xyxy_to_xywh(torch.tensor([[2, 3, 7, 9]])).tolist() == [[2, 3, 5, 6]]
