"""Edge-aware refinement of decoded masks (backend/services/mask_refine.py)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backend.services.mask_refine import (
    NO_REFINE,
    SELECT_WEIGHTS,
    GuidedRefiner,
    RefinedPredictor,
    RefineParams,
    _box_mean,
    refine_predictor,
    refined_iou,
)

ROOT = Path(__file__).resolve().parents[2]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def _scene(h: int = 120, w: int = 160, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A textured background with a star-shaped object of another colour; returns (image, object mask)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    angle = np.arctan2(yy - h / 2, xx - w / 2)
    radius = np.hypot(yy - h / 2, xx - w / 2)
    obj = radius < (h * 0.3) * (1 + 0.3 * np.sin(5 * angle))
    image = np.where(obj[..., None], [220, 180, 40], [40, 70, 150]).astype(np.float64)
    image += rng.normal(0, 12, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), obj


def _coarse_logits(obj: np.ndarray, shift: int = 3) -> np.ndarray:
    """What a low-resolution decoder gives: the object blurred to a blob, shifted a little."""
    import cv2

    blob = cv2.GaussianBlur(obj.astype(np.float32), (0, 0), 6)
    blob = np.roll(blob, (shift, -shift), axis=(0, 1))
    return (blob - 0.5) * 12


def test_refinement_follows_the_image_edges():
    image, obj = _scene()
    logits = _coarse_logits(obj)
    plain = logits > 0
    for params in (RefineParams(grabcut=0), RefineParams(work_size=64, radius=3, grabcut=0),
                   RefineParams(work_size=512, radius=8, grabcut=0)):
        refined = GuidedRefiner(image, params).refine(logits)
        assert refined.shape == obj.shape and refined.dtype == bool
        assert _iou(refined, obj) > _iou(plain, obj) + 0.05, (params, _iou(refined, obj), _iou(plain, obj))


def test_refinement_keeps_a_mask_that_already_follows_the_edges():
    image, obj = _scene(seed=1)
    logits = np.where(obj, 8.0, -8.0).astype(np.float32)
    refined = GuidedRefiner(image, RefineParams(grabcut=0)).refine(logits)
    assert _iou(refined, obj) > 0.97


def test_colour_term_pulls_uncertain_cells_of_the_object_colour_in_and_keeps_confident_ones():
    """The decoder is sure of the object's left half and unsure (logit −1.5) of its right half; a second
    object of the same colour far away has confident logits −10. The colour term takes the right half
    in and leaves the far object out; without it the guided filter alone cannot reach that far."""
    h, w = 80, 160
    rng = np.random.default_rng(3)
    obj = np.zeros((h, w), bool)
    obj[30:50, 10:110] = True
    twin = np.zeros((h, w), bool)
    twin[30:50, 130:150] = True
    image = np.where((obj | twin)[..., None], [200, 60, 40], [40, 90, 160]).astype(np.float64)
    image = np.clip(image + rng.normal(0, 10, image.shape), 0, 255).astype(np.uint8)
    logits = np.full((h, w), -6.0, np.float32)
    logits[obj] = -1.5
    logits[30:50, 10:60] = 6.0
    logits[twin] = -10.0
    plain = GuidedRefiner(image, RefineParams(work_size=160, radius=2, colour=0, grabcut=0)).refine(logits)
    coloured = GuidedRefiner(image, RefineParams(work_size=160, radius=2, colour=3, grabcut=0)).refine(logits)
    assert _iou(plain, obj) < 0.6
    assert _iou(coloured, obj) > 0.95, _iou(coloured, obj)
    assert not (coloured & twin).any()


def test_colour_bins_come_from_exact_block_sums():
    from backend.services.mask_refine import _colour_bins

    image = np.zeros((3, 3, 3), np.uint8)
    image[..., 0] = 255  # red channel at the top bin, green at 0, blue one value below a bin edge in a 2×2 block
    image[:2, :2, 2] = [[16, 16], [16, 15]]  # mean 15.75: 15.75 · 16 / 255 < 1
    image[2, :, 2] = 17
    bins = _colour_bins(image, 2, 16)
    assert bins.shape == (2, 2)
    assert bins[0, 0] == (15 * 16 + 0) * 16 + 0
    assert bins[1, 0] == (15 * 16 + 0) * 16 + 1  # 17 · 16 / 255 ≥ 1


def test_box_mean_clips_the_window_at_the_border():
    x = np.arange(1, 5, dtype=np.float64).reshape(1, 4)
    np.testing.assert_allclose(_box_mean(x, 1), [[1.5, 2, 3, 3.5]])
    np.testing.assert_allclose(_box_mean(x.T, 1), [[1.5], [2], [3], [3.5]])


def test_params_and_bad_input_are_checked():
    with pytest.raises(ValueError, match="unknown mask refinement"):
        RefineParams(method="crf")
    with pytest.raises(ValueError, match="radius"):
        RefineParams(radius=0)
    with pytest.raises(ValueError, match="colour_bins"):
        RefineParams(colour_bins=1)
    with pytest.raises(ValueError, match="colour"):
        RefineParams(colour=-1)
    with pytest.raises(ValueError, match="grabcut"):
        RefineParams(grabcut=8)
    with pytest.raises(ValueError, match="grabcut_iters"):
        RefineParams(grabcut_iters=0)
    assert RefineParams.from_dict(None) == NO_REFINE
    assert RefineParams.from_dict(RefineParams(radius=5).to_dict()) == RefineParams(radius=5)
    image, _ = _scene()
    with pytest.raises(ValueError, match="H×W×3"):
        GuidedRefiner(image[..., 0])
    with pytest.raises(ValueError, match="do not match the image"):
        GuidedRefiner(image).refine(np.zeros((10, 10), np.float32))
    with pytest.raises(ValueError, match="method='guided'"):
        GuidedRefiner(image, NO_REFINE)


class _CoarsePredictor:
    """A predictor whose masks are the coarse logits of one known object (the scene's decoder stand-in)."""

    def __init__(self, logits: np.ndarray):
        self.logits = logits

    def set_image(self, image):
        self.image = image

    def predict(self, point_coords=None, point_labels=None, box=None, mask_input=None, multimask_output=True,
                return_logits=False):
        masks = np.stack([self.logits] * (3 if multimask_output else 1))
        low = np.zeros((len(masks), 256, 256), np.float32)
        return (masks if return_logits else masks > 0), np.array([0.5] * len(masks)), low


def test_refined_predictor_refines_masks_and_passes_scores_and_logits_through():
    image, obj = _scene()
    inner = _CoarsePredictor(_coarse_logits(obj))
    assert refine_predictor(inner, NO_REFINE) is inner
    wrapped = refine_predictor(inner, RefineParams())
    assert isinstance(wrapped, RefinedPredictor)
    with pytest.raises(RuntimeError, match="set_image"):
        wrapped.predict(point_coords=np.array([[80, 60]]), point_labels=np.array([1]))
    wrapped.set_image(image)
    masks, scores, low = wrapped.predict(point_coords=np.array([[80, 60]]), point_labels=np.array([1]))
    assert masks.shape == (3,) + obj.shape and masks.dtype == bool
    assert _iou(masks[0], obj) > _iou(inner.logits > 0, obj) + 0.05
    assert scores.tolist() == [0.5] * 3 and low.shape == (3, 256, 256)
    logits, _, _ = wrapped.predict(point_coords=np.array([[80, 60]]), point_labels=np.array([1]),
                                   multimask_output=False, return_logits=True)
    np.testing.assert_array_equal(logits[0] > 0, masks[0])


def test_refined_iou_follows_its_formula():
    raw = np.zeros((10, 10), bool)
    raw[:5] = True  # half the image
    refined = np.zeros_like(raw)
    refined[:4] = True  # 40 %, agreement 0.8
    w = (0.1, 0.5, -0.1, 0.05, 0.9)
    want = 0.1 + 0.5 * 0.8 - 0.1 * np.log(0.5 + 1e-4) + 0.05 * np.log(0.4 + 1e-4) + 0.9 * 0.3
    assert refined_iou(raw, refined, 0.3, w) == pytest.approx(want)
    # clipped to [0, 1]; two empty masks agree fully
    assert refined_iou(raw, refined, 5.0, w) == 1.0
    assert refined_iou(raw, refined, -5.0, w) == 0.0
    empty = np.zeros_like(raw)
    assert refined_iou(empty, empty, 0.0, (0, 1, 0, 0, 0)) == 1.0


def test_choose_ranks_refined_candidates_or_follows_the_decoder():
    image, obj = _scene()
    good = _coarse_logits(obj)
    # a candidate that spills over the background on the right: refinement cuts it down to the
    # object, so it agrees little with its refined mask and is larger; the decoder prefers it
    spill = good.copy()
    spill[:, 100:] = 4.0
    logits, scores = np.stack([spill, good]), np.array([0.7, 0.6])
    pts, labels = np.array([[80.0, 60.0]]), np.array([1])
    refiner = GuidedRefiner(image, RefineParams(select="refined"))
    best, masks, ious = refiner.choose(logits, scores, pts, labels)
    assert best == 1 and all(m is not None for m in masks)
    assert ious[1] > ious[0] and 0 <= ious.min() and ious.max() <= 1
    np.testing.assert_array_equal(masks[1], refiner.refine(good, pts, labels))
    by_head = GuidedRefiner(image, RefineParams())  # the default
    best, masks, ious = by_head.choose(logits, scores, pts, labels)
    assert best == 0 and masks[1] is None and ious.tolist() == [0.7, 0.6]
    # one candidate: nothing to rank
    best, masks, _ = refiner.choose(logits[1:], scores[1:], pts, labels)
    assert best == 0 and masks[0] is not None


def test_refined_predictor_chooses_like_the_refiner():
    image, obj = _scene()

    class TwoCandidates(_CoarsePredictor):
        def predict(self, *args, multimask_output=True, return_logits=False, **kwargs):
            spill = self.logits.copy()
            spill[:, 100:] = 4.0  # as above: spills over the background, preferred by the decoder
            logits = np.stack([spill, self.logits])
            masks = logits if multimask_output else logits[1:]
            scores = np.array([0.7, 0.6]) if multimask_output else np.array([0.6])
            return (masks if return_logits else masks > 0), scores, np.zeros((len(masks), 256, 256), np.float32)

    for select, want in (("refined", 1), ("head", 0)):
        wrapped = RefinedPredictor(TwoCandidates(_coarse_logits(obj)), RefineParams(select=select))
        wrapped.set_image(image)
        _, scores, _ = wrapped.predict(point_coords=np.array([[80, 60]]), point_labels=np.array([1]))
        assert scores.tolist() == [0.7, 0.6]  # the decoder's, passed through
        assert wrapped.choose(scores) == want


def test_selection_params_are_checked():
    assert RefineParams().select == "head" and RefineParams().select_weights == SELECT_WEIGHTS
    with pytest.raises(ValueError, match="candidate selection"):
        RefineParams(select="largest")
    with pytest.raises(ValueError, match="select_weights"):
        RefineParams(select_weights=(1.0, 2.0))
    with pytest.raises(ValueError, match="select_weights"):
        RefineParams(select_weights=(0, 1, 0, 0, float("nan")))
    # the weights travel as a JSON list (GET /models) and come back as the same params
    data = RefineParams().to_dict()
    assert RefineParams.from_dict({**data, "select_weights": list(data["select_weights"])}) == RefineParams()


def test_browser_fixture_is_up_to_date():
    """frontend/tests/refine.test.ts checks the browser's copy against this fixture."""
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_refine_fixture.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def _partial_scene(h: int = 120, w: int = 160) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A red ellipse on blue; returns (image, object, logits of a decoder blob that confidently covers
    only the object's left part, so neither the guided filter nor the colour term can reach the rest)."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:h, 0:w]
    obj = (yy - h * 0.5) ** 2 / (h * 0.3) ** 2 + (xx - w * 0.5) ** 2 / (w * 0.32) ** 2 < 1
    image = np.where(obj[..., None], [210, 60, 50], [50, 80, 150])
    image = np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)
    logits = (1 - ((yy - h * 0.5) ** 2 / (h * 0.3) ** 2 + (xx - w * 0.38) ** 2 / (w * 0.2) ** 2)) * 20
    return image, obj, logits.astype(np.float32)


def test_grabcut_pass_grows_the_mask_to_the_object():
    image, obj, logits = _partial_scene()
    points, labels = np.array([[60.0, 60.0]]), np.array([1])
    without = GuidedRefiner(image, RefineParams(grabcut=0)).refine(logits, points, labels)
    refiner = GuidedRefiner(image, RefineParams(grabcut=100))
    snapped = refiner.refine(logits, points, labels)
    assert _iou(snapped, obj) > 0.95 and _iou(without, obj) < 0.7
    # OpenCV's random generator is seeded before each call: the same input gives the same mask
    assert (refiner.refine(logits, points, labels) == snapped).all()
    # a negative click is sure background: a disc around it stays out even inside the object
    neg = refiner.refine(logits, np.array([[60.0, 60.0], [100.0, 60.0]]), np.array([1, 0]))
    assert not neg[60, 100] and neg[60, 60] and neg[60, 120]


def test_grabcut_pass_keeps_the_mask_when_it_has_nothing_to_cut():
    image, obj, _ = _partial_scene()
    everywhere = np.full(obj.shape, 30.0, np.float32)  # the whole image inside: no background to model
    refined = GuidedRefiner(image, RefineParams(grabcut=0)).refine(everywhere)
    assert (GuidedRefiner(image, RefineParams(grabcut=100)).refine(everywhere) == refined).all()


def test_grabcut_setting_is_checked():
    from pydantic import ValidationError

    from backend.core.config import Settings
    from backend.services.mask_refine import settings_refine

    assert settings_refine(Settings(mask_refine_grabcut=0)).grabcut == 0
    assert settings_refine(Settings()).grabcut == 200
    with pytest.raises(ValidationError, match="MASKLOOP_MASK_REFINE_GRABCUT"):
        Settings(mask_refine_grabcut=8)


def test_grabcut_window_is_the_box_around_the_mask_and_positive_clicks():
    image = np.zeros((100, 200, 3), np.uint8)
    refiner = GuidedRefiner(image, RefineParams(grabcut=100, grabcut_crop=0.5))
    mask = np.zeros((100, 200), bool)
    mask[40:50, 60:80] = True  # a 20×10 box: widened by ceil(0.5 × 20) = 10 on every side
    assert refiner.crop_box(mask) == (50, 30, 90, 60)
    # a positive click outside the mask widens the box; a negative one does not
    assert refiner.crop_box(mask, np.array([[100.7, 45.0], [5.0, 5.0]]), np.array([1, 0])) == (39, 19, 122, 71)
    # clipped to the image
    assert refiner.crop_box(mask, np.array([[195.0, 95.0]]), np.array([1])) == (0, 0, 200, 100)
    # neither mask nor positive click: no window
    assert refiner.crop_box(np.zeros_like(mask), np.array([[5.0, 5.0]]), np.array([0])) is None


def test_cropped_grabcut_pass_grows_the_mask_inside_its_window_only():
    # the object of _partial_scene in a corner of a larger image, with a second object of the same
    # colour far away: the whole-image pass may take both, the cropped pass only sees the first
    image, obj, logits = _partial_scene()
    big = np.zeros((300, 400, 3), np.uint8)
    big[...] = image[5:6, 5:6]  # background colour
    big[:120, :160] = image
    big[200:260, 300:380] = image[40:100, 40:120]  # a red patch of the object's colour
    big_obj = np.zeros((300, 400), bool)
    big_obj[:120, :160] = obj
    big_logits = np.full((300, 400), -20.0, np.float32)
    big_logits[:120, :160] = logits
    points, labels = np.array([[60.0, 60.0]]), np.array([1])
    refiner = GuidedRefiner(big, RefineParams(grabcut=240, grabcut_crop=0.5))
    x0, y0, x1, y1 = refiner.crop_box(refiner.probabilities(big_logits) > 0.5, points, labels)
    assert x1 < 300 and y1 < 200  # the patch lies outside the window
    snapped = refiner.refine(big_logits, points, labels)
    assert _iou(snapped, big_obj) > 0.95
    assert not snapped[y1:].any() and not snapped[:, x1:].any()
    assert (refiner.refine(big_logits, points, labels) == snapped).all()


def test_grabcut_crop_setting_is_checked():
    from pydantic import ValidationError

    from backend.core.config import Settings
    from backend.services.mask_refine import settings_refine

    assert settings_refine(Settings(mask_refine_grabcut_crop=0.5)).grabcut_crop == 0.5
    with pytest.raises(ValidationError, match="mask_refine_grabcut_crop"):
        Settings(mask_refine_grabcut_crop=-1)
    with pytest.raises(ValueError, match="grabcut_crop"):
        RefineParams(grabcut_crop=5)
