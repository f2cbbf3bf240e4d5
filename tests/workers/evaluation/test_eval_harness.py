"""The evaluation harness with a recording segmenter and the real GrabCut baseline."""
from __future__ import annotations

import numpy as np
import pytest

from workers.evaluation import GrabCutSegmenter, evaluate, run_sample


class RecordingSegmenter:
    """Returns a fixed sequence of predictions and records how it was called."""

    def __init__(self, masks):
        self.masks = masks
        self.calls = []

    def set_image(self, image):
        self.image = image

    def predict(self, point_coords=None, point_labels=None, box=None, mask_input=None, multimask_output=True,
                return_logits=False):
        self.calls.append((point_coords.copy(), point_labels.copy(), mask_input, multimask_output))
        m = self.masks[min(len(self.calls) - 1, len(self.masks) - 1)]
        if multimask_output:
            return np.stack([np.zeros_like(m), m, m]), np.array([0.1, 0.9, 0.5]), np.full((3, 256, 256), 7.0)
        return m[None], np.array([0.8]), np.full((1, 256, 256), float(len(self.calls)))


def test_protocol_first_multimask_then_single_with_previous_logits():
    gt = np.zeros((20, 20), np.uint8)
    gt[5:15, 5:15] = 255
    half = np.zeros((20, 20), bool)
    half[5:15, 5:10] = True
    full = gt > 0
    seg = RecordingSegmenter([half, full])
    result = run_sample(seg, np.zeros((20, 20, 3), np.uint8), gt, max_clicks=4)
    first, second = seg.calls[0], seg.calls[1]
    assert first[3] is True and first[2] is None
    assert first[0].tolist() == [[9.0, 9.0]] and first[1].tolist() == [1]
    assert second[3] is False and second[2].shape == (1, 256, 256) and (second[2] == 7.0).all()
    assert second[0].shape == (2, 2) and second[1].tolist() == [1, 1]
    # the best-scored candidate (index 1, half the object) gave IoU 0.5; then perfect; nothing left to click
    assert result.ious == pytest.approx([0.5, 1.0, 1.0, 1.0])
    assert len(seg.calls) == 2


def _scene(seed):
    rng = np.random.default_rng(seed)
    image = np.zeros((60, 80, 3), np.uint8)
    image[:] = (30, 60, 200)
    gt = np.zeros((60, 80), np.uint8)
    gt[15:45, 20:55] = 255
    image[gt > 0] = (220, 40, 40)
    image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
    return image, gt


def test_grabcut_segments_a_clear_object_in_the_harness():
    samples = [(f"s{i}", *_scene(i)) for i in range(2)]
    report = evaluate(GrabCutSegmenter(work_size=80), samples, max_clicks=3)
    assert report["num_samples"] == 2 and len(report["miou_curve"]) == 3
    assert report["miou@1"] > 0.9
    assert report["noc@90"] == pytest.approx(1.0)
    assert report["seconds_per_click"] > 0


def test_harness_rejects_bad_samples():
    with pytest.raises(ValueError, match="empty"):
        run_sample(GrabCutSegmenter(), np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="differ in size"):
        run_sample(GrabCutSegmenter(), np.zeros((10, 10, 3), np.uint8), np.zeros((10, 12), np.uint8))
