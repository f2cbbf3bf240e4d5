"""The object score of automatic masks (workers/engine/objectness.py) and its use in generate_masks."""
from __future__ import annotations

import numpy as np
import pytest

from tests.workers.sam.test_automatic import synthetic_rectangles as _scene
from workers.engine.objectness import CUES, OBJECT_SCORE_MODEL, ImageCues, mask_cues, object_scores


def _box(y0, y1, x0, x1, shape=(240, 320)):
    m = np.zeros(shape, dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def test_whole_objects_score_above_fragments_straddlers_and_background():
    image, truth = _scene()
    obj = truth[0]                       # the yellow rectangle, rows 40-150, cols 30-150
    fragment = _box(70, 120, 60, 120)    # well inside it
    straddler = _box(40, 150, 90, 210)   # half on it, half on the background
    background = _box(110, 220, 5, 125)  # mostly grey background, overlapping the rectangle's bottom only
    cues = mask_cues(image, [obj, fragment, straddler, background])
    assert cues.shape == (4, len(CUES))
    edge, colour = cues[:, CUES.index("edge")], cues[:, CUES.index("colour")]
    # the object's contour lies on its edges everywhere; the fragment's on flat colour
    assert edge[0] > 3 * edge[1] and edge[0] > edge[2]
    # the object's colours differ from its surroundings; the fragment's surroundings are the object
    assert colour[0] > 0.9 and colour[1] < 0.2
    scores = object_scores(image, [obj, fragment, straddler, background])
    assert np.all((0 < scores) & (scores < 1))
    assert scores[0] == scores.max() and scores[0] > 2 * max(scores[1], scores[3])
    # every rectangle beats the fragment
    assert object_scores(image, truth).min() > scores[1]


def test_bad_inputs_are_named_and_empty_masks_score_lowest():
    image, truth = _scene()
    empty = np.zeros(image.shape[:2], dtype=bool)
    scores = object_scores(image, [truth[1], empty])
    assert scores[1] < scores[0] and np.isfinite(scores).all()
    assert object_scores(image, []).shape == (0,)
    with pytest.raises(ValueError, match="does not match the image"):
        ImageCues(image).cues(np.zeros((10, 10), dtype=bool))
    with pytest.raises(ValueError, match="H×W×3 uint8"):
        ImageCues(image[..., 0])
    # a mask on the image's border is not rewarded for the border's "edge"
    corner = _box(0, 60, 0, 60)
    assert ImageCues(image).cues(corner)[CUES.index("edge")] < 1.5
    assert len(OBJECT_SCORE_MODEL["weights"]) == len(CUES)


def test_generate_masks_scores_sorts_and_filters_by_object_score():
    """With the shipped model and the installation's refinement, the most object-like record of the
    synthetic photo is one of its rectangles, and ``min_object_score`` drops exactly the records
    below it."""
    from backend.services.mask_refine import RefineParams
    from workers.engine.automatic import generate_masks
    from workers.sam import build_sam
    from workers.sam.amg import coco_rle_to_mask

    model = build_sam("default", device="cpu")
    image, truth = _scene()
    params = dict(points_per_side=6, points_per_batch=64, pred_iou_thresh=0.12, stability_score_thresh=0.0,
                  box_nms_thresh=0.7, crop_n_layers=0, min_mask_region_area=0)
    records = generate_masks(model, image, params, RefineParams())
    assert len(records) >= 3
    scores = [r["object_score"] for r in records]
    assert scores == sorted(scores, reverse=True)
    top = coco_rle_to_mask(records[0]["segmentation"])
    assert max(np.count_nonzero(top & t) / np.count_nonzero(top | t) for t in truth) > 0.9
    bar = float(np.median(scores))
    kept = generate_masks(model, image, dict(params, min_object_score=bar), RefineParams())
    assert [r["object_score"] for r in kept] == [s for s in scores if s >= bar]
    assert 0 < len(kept) < len(records)


def test_generate_masks_segments_a_large_photo_at_the_work_size_and_scales_the_masks_up():
    """A 1600×1200 photo is segmented at 1024×768 (the model's frame; at full size every batch of
    candidates was upsampled to the photo's size) and each record describes its full-size mask."""
    import cv2

    from backend.services.mask_refine import RefineParams
    from workers.engine.automatic import generate_masks, work_size
    from workers.sam import build_sam
    from workers.sam.amg import coco_rle_to_mask

    assert work_size(1200, 1600) == (768, 1024) and work_size(1200, 1600, crop_n_layers=1) == (1200, 1600)
    assert work_size(768, 1024) == (768, 1024)
    model = build_sam("default", device="cpu")
    small, truth = _scene()
    image = cv2.resize(small, (1600, 1200), interpolation=cv2.INTER_NEAREST)
    params = dict(points_per_side=6, points_per_batch=64, pred_iou_thresh=0.12, stability_score_thresh=0.0,
                  box_nms_thresh=0.7, crop_n_layers=0, min_mask_region_area=0)
    records = generate_masks(model, image, params, RefineParams())
    assert records
    rows = np.minimum(((np.arange(1200) + 0.5) * 768 / 1200).astype(int), 767)
    cols = np.minimum(((np.arange(1600) + 0.5) * 1024 / 1600).astype(int), 1023)
    key = rows[:, None] * 1024 + cols[None, :]
    big_truth = [cv2.resize(t.astype(np.uint8), (1600, 1200), interpolation=cv2.INTER_NEAREST).astype(bool)
                 for t in truth]
    best = 0.0
    for rec in records:
        mask = coco_rle_to_mask(rec["segmentation"])
        assert mask.shape == (1200, 1600) and rec["segmentation"]["size"] == [1200, 1600]
        work = np.zeros(768 * 1024, bool)
        work[key.ravel()] = mask.ravel()
        assert np.array_equal(work[key], mask), "not a work-size mask scaled up"
        assert rec["area"] == int(mask.sum())
        ys, xs = np.nonzero(mask)
        x0, y0 = float(xs.min()), float(ys.min())
        assert rec["bbox"] == [x0, y0, float(xs.max()) - x0 + 1, float(ys.max()) - y0 + 1]
        (px, py), = rec["point_coords"]
        assert 0 <= px < 1600 and 0 <= py < 1200
        assert rec["crop_box"] == [0, 0, 1600, 1200]
        best = max(best, max(np.count_nonzero(mask & t) / np.count_nonzero(mask | t) for t in big_truth))
    assert best > 0.9, best  # one of the rectangles is found, at full size
