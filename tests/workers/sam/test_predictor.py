"""SamPredictor and transforms: documented pre/post-processing, shapes, thresholding, reuse, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from workers.sam import SamPredictor
from workers.sam.transforms import ResizeLongestSide


@pytest.fixture
def predictor(lite_model, image):
    p = SamPredictor(lite_model)
    p.set_image(image)
    return p


@pytest.mark.parametrize("hw, expected", [((480, 640), (768, 1024)), ((333, 1000), (341, 1024)),
                                          ((1024, 3), (1024, 3)), ((96, 160), (614, 1024))])
def test_preprocess_shape_rounds_half_up(hw, expected):
    assert ResizeLongestSide.get_preprocess_shape(*hw, 1024) == expected


def test_coordinate_and_box_transforms_use_rounded_size():
    t = ResizeLongestSide(1024)
    coords = np.array([[10.0, 20.0], [333.0, 96.0]])
    out = t.apply_coords(coords, (96, 160))
    np.testing.assert_allclose(out, coords * np.array([1024 / 160, 614 / 96]))
    boxes = np.array([[1.0, 2.0, 3.0, 4.0]])
    np.testing.assert_allclose(t.apply_boxes(boxes, (96, 160)), [[1 * 6.4, 2 * 614 / 96, 3 * 6.4, 4 * 614 / 96]])
    torch.testing.assert_close(t.apply_coords_torch(torch.tensor(coords), (96, 160)),
                               torch.tensor(out, dtype=torch.float))
    torch.testing.assert_close(t.apply_boxes_torch(torch.tensor(boxes), (96, 160)),
                               torch.tensor(t.apply_boxes(boxes, (96, 160)), dtype=torch.float))
    img = np.zeros((96, 160, 3), np.uint8)
    assert t.apply_image(img).shape == (614, 1024, 3)
    assert t.apply_image_torch(torch.zeros(1, 3, 96, 160)).shape == (1, 3, 614, 1024)


def test_preprocess_normalises_then_pads_with_zeros(lite_model):
    x = torch.full((3, 10, 20), 200.0)
    out = lite_model.preprocess(x)
    assert out.shape == (3, 1024, 1024)
    expected = (200.0 - torch.tensor([123.675, 116.28, 103.53])) / torch.tensor([58.395, 57.12, 57.375])
    torch.testing.assert_close(out[:, 5, 7], expected)
    assert torch.all(out[:, 10:, :] == 0) and torch.all(out[:, :, 20:] == 0)


def test_postprocess_maps_low_res_regions_to_the_original_frame(lite_model):
    # image 100×200 (H×W) → resized 512×1024: low-res rows ≥ 128 are padding and must be cropped away
    low = torch.full((1, 1, 256, 256), -5.0)
    low[..., :128, :128] = 5.0   # left half of the real image area
    low[..., 128:, :] = 50.0     # padding region: never visible
    out = lite_model.postprocess_masks(low, (512, 1024), (100, 200))
    assert out.shape == (1, 1, 100, 200)
    mask = (out > 0)[0, 0].numpy()
    assert mask[:, :99].all() and not mask[:, 101:].any()
    assert out.max() <= 5.0 + 1e-4


def test_predict_shapes_types_and_threshold(predictor, image):
    masks, scores, low = predictor.predict(np.array([[60, 40]]), np.array([1]))
    assert masks.shape == (3, 96, 160) and masks.dtype == bool
    assert scores.shape == (3,) and low.shape == (3, 256, 256) and low.dtype == np.float32
    logits, scores2, low2 = predictor.predict(np.array([[60, 40]]), np.array([1]), return_logits=True)
    assert logits.dtype == np.float32
    np.testing.assert_array_equal(masks, logits > predictor.model.mask_threshold)
    np.testing.assert_allclose(scores, scores2)
    assert 0 < masks.sum() < masks.size  # random weights still give a non-trivial split
    single, s1, l1 = predictor.predict(np.array([[60, 40], [10, 10]]), np.array([1, 0]), multimask_output=False)
    assert single.shape == (1, 96, 160) and s1.shape == (1,) and l1.shape == (1, 256, 256)
    boxed, _, _ = predictor.predict(box=np.array([40, 20, 110, 60]), multimask_output=False)
    assert boxed.shape == (1, 96, 160)


def test_predict_equals_official_batched_forward(predictor, image, lite_model):
    point = np.array([[60.0, 40.0]])
    masks, scores, low = predictor.predict(point, np.array([1]), multimask_output=True)
    t = predictor.transform
    resized = torch.as_tensor(t.apply_image(image)).permute(2, 0, 1).float()
    out = lite_model([{"image": resized, "original_size": image.shape[:2],
                       "point_coords": torch.as_tensor(t.apply_coords(point, image.shape[:2]),
                                                       dtype=torch.float)[None],
                       "point_labels": torch.tensor([[1]])}], multimask_output=True)[0]
    np.testing.assert_allclose(low, out["low_res_logits"][0].numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(scores, out["iou_predictions"][0].numpy(), rtol=1e-4, atol=1e-4)
    assert (masks != out["masks"][0].numpy()).mean() < 1e-3


def test_mask_input_round_trip(predictor):
    masks, scores, low = predictor.predict(np.array([[60, 40]]), np.array([1]))
    best = low[int(np.argmax(scores))][None]
    refined, _, low2 = predictor.predict(np.array([[60, 40]]), np.array([1]), mask_input=best,
                                         multimask_output=False)
    plain, _, low3 = predictor.predict(np.array([[60, 40]]), np.array([1]), multimask_output=False)
    assert refined.shape == (1, 96, 160)
    assert not np.allclose(low2, low3)  # the mask prompt is actually used
    model = predictor.model
    with torch.no_grad():
        coords = torch.as_tensor(predictor.transform.apply_coords(np.array([[60.0, 40.0]]), (96, 160)),
                                 dtype=torch.float)[None]
        sparse, dense = model.prompt_encoder(points=(coords, torch.tensor([[1]])), boxes=None,
                                             masks=torch.as_tensor(best)[None])
        expected, _ = model.mask_decoder(predictor.features, model.prompt_encoder.get_dense_pe(), sparse, dense,
                                         multimask_output=False)
    np.testing.assert_allclose(low2, expected[0].numpy(), rtol=1e-4, atol=1e-4)


def test_predict_torch_batched(predictor):
    coords = torch.tensor([[[300.0, 200.0]], [[600.0, 400.0]]])
    labels = torch.ones(2, 1, dtype=torch.int)
    boxes = torch.tensor([[100.0, 100.0, 500.0, 400.0], [0.0, 0.0, 900.0, 600.0]])
    masks, scores, low = predictor.predict_torch(coords, labels, boxes=boxes, multimask_output=True)
    assert masks.shape == (2, 3, 96, 160) and masks.dtype == torch.bool
    assert scores.shape == (2, 3) and low.shape == (2, 3, 256, 256)
    m1, s1, _ = predictor.predict_torch(coords[1:], labels[1:], boxes=boxes[1:])
    torch.testing.assert_close(s1[0], scores[1], rtol=1e-4, atol=1e-4)


def test_set_embedding_reuses_precomputed_features(lite_model, predictor, image):
    masks, scores, low = predictor.predict(np.array([[60, 40]]), np.array([1]))
    emb = predictor.get_image_embedding()
    assert emb.shape == (1, 256, 64, 64)
    other = SamPredictor(lite_model)
    other.set_embedding(emb.numpy().astype(np.float16).astype(np.float32), original_size=(96, 160))
    assert other.input_size == (614, 1024) and other.original_size == (96, 160) and other.is_image_set
    m2, s2, l2 = other.predict(np.array([[60, 40]]), np.array([1]))
    np.testing.assert_allclose(s2, scores, atol=5e-3)
    with pytest.raises(ValueError, match="1×256×64×64"):
        other.set_embedding(np.zeros((1, 256, 32, 32), np.float32), (96, 160))
    with pytest.raises(ValueError, match="does not match"):
        other.set_embedding(emb, (96, 160), input_size=(600, 1024))


def test_bgr_input_is_flipped(lite_model, image, predictor):
    bgr = SamPredictor(lite_model)
    bgr.set_image(np.ascontiguousarray(image[..., ::-1]), image_format="BGR")
    torch.testing.assert_close(bgr.features, predictor.features)


def test_reset_and_predict_before_set_image(lite_model):
    p = SamPredictor(lite_model)
    assert not p.is_image_set and p.features is None
    for call in (lambda: p.predict(np.array([[1, 1]]), np.array([1])), p.get_image_embedding):
        with pytest.raises(ValueError, match="set_image"):
            call()
    with pytest.raises(RuntimeError):  # also a RuntimeError, like the official predictor
        p.get_image_embedding()


@pytest.mark.parametrize("bad, match", [
    (np.zeros((10, 10, 3), np.float32), "uint8"),
    (np.zeros((10, 10), np.uint8), "H×W×3"),
    (np.zeros((10, 10, 4), np.uint8), "H×W×3"),
    (np.zeros((0, 10, 3), np.uint8), "empty"),
    ([[1, 2, 3]], "numpy array"),
])
def test_set_image_rejects_bad_images(lite_model, bad, match):
    with pytest.raises(ValueError, match=match):
        SamPredictor(lite_model).set_image(bad)


def test_set_image_rejects_bad_format(lite_model, image):
    with pytest.raises(ValueError, match="image_format"):
        SamPredictor(lite_model).set_image(image, image_format="HSV")
    with pytest.raises(ValueError, match="1×3×h×w"):
        SamPredictor(lite_model).set_torch_image(torch.zeros(1, 3, 100, 100), (100, 100))


@pytest.mark.parametrize("kwargs, match", [
    (dict(point_coords=np.array([[10, 10]])), "point_labels must be given"),
    (dict(point_labels=np.array([1])), "without point_coords"),
    (dict(point_coords=np.array([[10, 10], [20, 20]]), point_labels=np.array([1])), "one label per point"),
    (dict(point_coords=np.array([10, 10]), point_labels=np.array([1])), "N×2"),
    (dict(point_coords=np.array([[10, 10]]), point_labels=np.array([3])), "point_labels must be 1"),
    (dict(point_coords=np.array([[170, 10]]), point_labels=np.array([1])), "outside"),
    (dict(point_coords=np.array([[10, -1]]), point_labels=np.array([1])), "outside"),
    (dict(point_coords=np.array([[np.nan, 1]]), point_labels=np.array([1])), "NaN"),
    (dict(box=np.array([1, 2, 3])), "4 numbers"),
    (dict(box=np.array([50, 20, 10, 60])), "x1 ≤ x2"),
    (dict(box=np.array([0, 0, 500, 60])), "outside"),
    (dict(mask_input=np.zeros((1, 64, 64))), "1×256×256"),
])
def test_predict_rejects_bad_prompts(predictor, kwargs, match):
    with pytest.raises(ValueError, match=match):
        predictor.predict(**kwargs)


def test_predict_torch_rejects_bad_shapes(predictor):
    with pytest.raises(ValueError, match="B×N×2"):
        predictor.predict_torch(torch.zeros(1, 2), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="point_labels must be B×N"):
        predictor.predict_torch(torch.zeros(1, 2, 2), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="B×1×256×256"):
        predictor.predict_torch(None, None, mask_input=torch.zeros(1, 256, 256))
