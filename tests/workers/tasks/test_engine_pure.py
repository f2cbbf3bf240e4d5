"""Engine pieces that need no model: image decoding, overlap filtering, held-out split, dataset files."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from workers.engine.automatic import (FULL_PARAMS, STRICT_PARAMS, job_refine, keep_new_masks, merged_params,
                                      overlap_with, params_for_model)
from workers.engine.errors import BadInputError
from workers.engine.images import decode_image
from workers.engine.rounds import (Sample, head_verdict, inherited_recipe, is_heldout, run_round, split_samples,
                                   write_dataset)


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}


def _box(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def test_decode_image_roundtrip_and_grayscale() -> None:
    rgb = np.random.default_rng(0).integers(0, 255, (7, 5, 3), dtype=np.uint8)
    assert np.array_equal(decode_image(_png(rgb), max_pixels=100), rgb)
    gray = decode_image(_png(rgb[..., 0]), max_pixels=100)
    assert gray.shape == (7, 5, 3) and np.array_equal(gray[..., 1], rgb[..., 0])


def test_decode_image_exif_rotation() -> None:
    img = Image.fromarray(np.zeros((4, 10, 3), np.uint8))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif)
    assert decode_image(buf.getvalue(), max_pixels=1000).shape == (10, 4, 3)


@pytest.mark.parametrize("data,match", [(b"", "empty"), (b"not an image at all", "cannot decode"),
                                        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "cannot decode")])
def test_decode_image_bad_bytes(data: bytes, match: str) -> None:
    with pytest.raises(BadInputError, match=match):
        decode_image(data, max_pixels=100, name="img.png")


def test_decode_image_too_large() -> None:
    with pytest.raises(BadInputError, match="20x20 = 400 pixels, more than the limit of 399"):
        decode_image(_png(np.zeros((20, 20, 3), np.uint8)), max_pixels=399)


def test_overlap_is_fraction_of_candidate_covered() -> None:
    existing = [_rle(_box(20, 20, 0, 10, 0, 20))]  # top half
    cand = [_rle(_box(20, 20, 5, 15, 0, 20)), _rle(_box(20, 20, 12, 20, 0, 20))]
    assert overlap_with(cand, existing) == pytest.approx([0.5, 0.0])
    assert overlap_with(cand, []).tolist() == [0.0, 0.0]


def test_keep_new_masks_filters_overlap_confidence_and_duplicates() -> None:
    existing = [_rle(_box(20, 20, 0, 10, 0, 10))]
    recs = [
        {"segmentation": _rle(_box(20, 20, 0, 10, 0, 10)), "predicted_iou": 0.99, "stability_score": 0.99, "area": 100},
        {"segmentation": _rle(_box(20, 20, 10, 20, 10, 20)), "predicted_iou": 0.95, "stability_score": 0.97, "area": 100},
        {"segmentation": _rle(_box(20, 20, 11, 20, 11, 20)), "predicted_iou": 0.94, "stability_score": 0.97, "area": 81},
        {"segmentation": _rle(_box(20, 20, 0, 10, 10, 20)), "predicted_iou": 0.80, "stability_score": 0.99, "area": 100},
    ]
    kept = keep_new_masks(recs, existing, max_overlap=0.3, min_predicted_iou=0.9)
    assert [r["predicted_iou"] for r in kept] == [0.95]
    assert len(keep_new_masks(recs, [], max_overlap=0.3)) == 3
    with pytest.raises(ValueError, match="max_overlap"):
        keep_new_masks(recs, existing, max_overlap=2)


def test_merged_params_rejects_unknown() -> None:
    merged = merged_params(FULL_PARAMS, {"points_per_side": 4, "label_id": 3, "image_ids": [1], "max_overlap": 0.1,
                                         "pred_iou_thresh": None})
    assert merged == {**FULL_PARAMS, "points_per_side": 4}
    with pytest.raises(ValueError, match="'bogus'"):
        merged_params(FULL_PARAMS, {"bogus": 1})


def test_compact_arches_get_their_own_filters_and_jobs_still_override() -> None:
    class Model:
        def __init__(self, arch: str) -> None:
            self.arch = arch

    full = params_for_model(FULL_PARAMS, Model("lite_clicks"), "fully_automatic")
    assert (full["pred_iou_thresh"], full["stability_score_thresh"]) == (0.15, 0.0)
    assert full["points_per_side"] == FULL_PARAMS["points_per_side"]
    assert params_for_model(FULL_PARAMS, Model("lite"), "fully_automatic") == full
    # prefill keeps the reference filters for every arch
    assert params_for_model(STRICT_PARAMS, Model("lite_clicks"), "semi_automatic") == STRICT_PARAMS
    # Meta's models keep the reference filters; the base dicts are not modified
    assert params_for_model(FULL_PARAMS, Model("vit_b"), "fully_automatic") == FULL_PARAMS
    assert FULL_PARAMS["pred_iou_thresh"] == 0.88
    job = merged_params(full, {"pred_iou_thresh": 0.3})
    assert (job["pred_iou_thresh"], job["stability_score_thresh"]) == (0.3, 0.0)
    # masks refined with the image get a lower predicted-IoU bar (stage 3 only, compact arches only)
    refined = params_for_model(FULL_PARAMS, Model("lite_clicks"), "fully_automatic", refined=True)
    assert (refined["pred_iou_thresh"], refined["stability_score_thresh"]) == (0.12, 0.0)
    assert refined["min_object_score"] == 0.005 and "min_object_score" not in full
    assert merged_params(refined, {"min_object_score": 0})["min_object_score"] == 0
    for bad in (-0.1, 1.5, "high", True):
        with pytest.raises(ValueError, match="min_object_score must be a number in"):
            merged_params(refined, {"min_object_score": bad})
    assert params_for_model(STRICT_PARAMS, Model("lite_clicks"), "semi_automatic", refined=True) == STRICT_PARAMS
    assert params_for_model(FULL_PARAMS, Model("vit_h"), "fully_automatic", refined=True) == FULL_PARAMS


def test_automatic_jobs_refine_as_the_installation_does_unless_told_not_to(monkeypatch) -> None:
    from backend.core.config import get_settings

    monkeypatch.delenv("MASKLOOP_MASK_REFINE", raising=False)
    monkeypatch.setenv("MASKLOOP_MASK_REFINE_GRABCUT", "160")
    get_settings.cache_clear()
    refine = job_refine({})
    assert refine is not None and refine.method == "guided" and refine.grabcut == 160
    assert job_refine(None) == refine and job_refine({"refine": True}) == refine
    assert job_refine({"refine": False}) is None
    # the refine flag is the batch's, not the generator's
    assert "refine" not in merged_params(FULL_PARAMS, {"refine": False})
    with pytest.raises(ValueError, match="refine must be true or false"):
        job_refine({"refine": "yes"})
    monkeypatch.setenv("MASKLOOP_MASK_REFINE", "none")
    get_settings.cache_clear()
    try:
        assert job_refine({}) is None
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_heldout_split_is_fixed_by_content() -> None:
    shas = [f"{i:064x}" for i in range(200)]
    held = [s for s in shas if is_heldout(s)]
    assert 20 <= len(held) <= 60 and held == [s for s in shas if is_heldout(s)]
    samples = [Sample(f"s{i}", s, np.zeros((2, 2, 3), np.uint8), [{}]) for i, s in enumerate(shas[:30])]
    train, heldout = split_samples(samples)
    assert {s.sha256 for s in heldout} == {s for s in shas[:30] if is_heldout(s)}
    assert len(train) + len(heldout) == 30
    one = split_samples(samples[:1])
    assert one[0] and one[1]


def test_write_dataset_layout(tmp_path) -> None:
    img = np.full((8, 6, 3), 7, np.uint8)
    m = _box(8, 6, 1, 4, 1, 3)
    out = write_dataset([Sample("a", "0" * 64, img, [_rle(m), _rle(1 - m)])], tmp_path / "ds")
    assert sorted(p.name for p in (out / "masks" / "a").iterdir()) == ["0.png", "1.png"]
    assert np.array_equal(np.asarray(Image.open(out / "masks" / "a" / "0.png")) > 0, m > 0)
    assert np.asarray(Image.open(out / "images" / "a.png")).shape == (8, 6, 3)
    with pytest.raises(BadInputError, match="differs"):
        write_dataset([Sample("b", "1" * 64, img, [_rle(np.zeros((3, 3)))])], tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    assert not any(p.name.startswith(".bad") for p in tmp_path.iterdir())


def test_round_inherits_the_base_models_recipe(tmp_path) -> None:
    import torch

    trained = tmp_path / "trained.pt"
    config = {"focal_weight": 1.0, "dice_weight": 2, "warm_clicks": 10, "warm_prob": 0.5, "iters_per_sample": 4,
              "lr": 3e-4, "amp": True, "arch": "lite_clicks"}
    torch.save({"arch": "lite", "model": {}, "meta": {"config": config}}, trained)
    assert inherited_recipe(trained) == {"focal_weight": 1.0, "dice_weight": 2.0, "warm_clicks": 10,
                                         "warm_prob": 0.5, "iters_per_sample": 4}  # not lr, amp or arch
    shipped = tmp_path / "shipped.pt"  # models/default stores it under train_config
    torch.save({"arch": "lite", "model": {}, "meta": {"train_config": {"focal_weight": 1.0}}}, shipped)
    assert inherited_recipe(shipped) == {"focal_weight": 1.0}
    official = tmp_path / "official.pt"  # an official checkpoint is a bare state_dict: nothing to inherit
    torch.save({"image_encoder.x": torch.zeros(1)}, official)
    assert inherited_recipe(official) == {}
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    assert inherited_recipe(broken) == {}


def test_refitted_iou_head_is_kept_only_when_the_first_candidate_does_not_get_worse() -> None:
    before = {"mse": 0.0139, "chosen_iou": 0.0196}
    # the 30-mask round of runs/sim_window: lower error, but a worse first candidate
    verdict = head_verdict(before, {"mse": 0.0120, "chosen_iou": 0.0148})
    assert verdict["kept"] is False and "0.020 -> 0.015" in verdict["reason"]
    assert head_verdict(before, {"mse": 0.0139, "chosen_iou": 0.05}) == {
        "kept": False, "reason": "the refit did not lower the held-out error"}
    assert head_verdict(before, {"mse": 0.0120, "chosen_iou": 0.0196}) == {"kept": True}


def test_round_rejects_a_head_minimum_below_two(tmp_path) -> None:
    sample = Sample("a", "0" * 64, np.zeros((8, 8, 3), np.uint8), [_rle(_box(8, 8, 2, 6, 2, 6))])
    with pytest.raises(BadInputError, match="iou_head_min_images must be >= 2, got 1"):
        run_round(tmp_path / "r", [sample], base_checkpoint=tmp_path / "none.pt", arch="lite", steps=1,
                  head_min_images=1)
