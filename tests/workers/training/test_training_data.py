"""Dataset validation, the category split, augmentation and prompt simulation."""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from workers.training.data import (AugmentConfig, DatasetError, MaskDataset, names_for_split, scan_dataset,
                                   split_dataset)
from workers.training.prompts import error_points, first_prompts, plan_iterations


def make_dataset(root: Path, names=("cat00_1", "cat01_2"), size=(24, 32)) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    h, w = size
    for i, name in enumerate(names):
        image = np.full((h, w, 3), 40 * i, np.uint8)
        mask = np.zeros((h, w), np.uint8)
        mask[4:14, 6 + i:20 + i] = 255
        image[mask > 0] = (200, 30, 30)
        cv2.imwrite(str(root / "images" / f"{name}.png"), image)
        cv2.imwrite(str(root / "masks" / f"{name}.png"), mask)
    return root


def test_valid_dataset_and_instance_folders(tmp_path):
    root = make_dataset(tmp_path)
    (root / "masks" / "cat01_2.png").unlink()
    (root / "masks" / "cat01_2").mkdir()
    for k in range(2):
        m = np.zeros((24, 32), np.uint8)
        m[k * 10:k * 10 + 5, 3:9] = 255
        cv2.imwrite(str(root / "masks" / "cat01_2" / f"{k}.png"), m)
    samples = scan_dataset(root)
    assert [s.name for s in samples] == ["cat00_1", "cat01_2"]
    assert len(samples[1].mask_paths) == 2


@pytest.mark.parametrize("breakage,message", [
    ("missing", "missing mask for image .*cat01_2"),
    ("size", "size mismatch: mask .*cat01_2.png is 10x10"),
    ("empty", "empty mask .*cat01_2.png"),
    ("unreadable", "unreadable image: .*cat01_2.png"),
])
def test_bad_samples_are_named_or_skipped(tmp_path, caplog, breakage, message):
    root = make_dataset(tmp_path)
    if breakage == "missing":
        (root / "masks" / "cat01_2.png").unlink()
    elif breakage == "size":
        cv2.imwrite(str(root / "masks" / "cat01_2.png"), np.full((10, 10), 255, np.uint8))
    elif breakage == "empty":
        cv2.imwrite(str(root / "masks" / "cat01_2.png"), np.zeros((24, 32), np.uint8))
    else:
        (root / "images" / "cat01_2.png").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match=message):
        scan_dataset(root)
    with caplog.at_level(logging.WARNING):
        samples = scan_dataset(root, skip_bad=True)
    assert [s.name for s in samples] == ["cat00_1"]
    assert "skipping cat01_2" in caplog.text


def test_missing_folders_and_unknown_names(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        scan_dataset(tmp_path / "nope")
    (tmp_path / "masks").mkdir()
    with pytest.raises(DatasetError, match="no images/ folder"):
        scan_dataset(tmp_path)
    root = make_dataset(tmp_path / "d")
    with pytest.raises(DatasetError, match="'dog00_3' not found"):
        scan_dataset(root, ["dog00_3"])


def test_split_by_category_is_deterministic_and_complete(tmp_path):
    names = [f"{c}{i:02d}_{100 + i}" for c in ("cat", "traffic light") for i in range(10)] + ["odd"]
    root = tmp_path
    (root / "images").mkdir()
    for n in names:
        (root / "images" / f"{n}.jpg").write_bytes(b"")
    train, val = split_dataset(root)
    assert sorted(val) == ["cat08_108", "cat09_109", "traffic light08_108", "traffic light09_109"]
    assert len(train) == 17 and "odd" in train and not set(train) & set(val)
    assert names_for_split(root, "val") == val and names_for_split(root, "all") is None
    with pytest.raises(DatasetError, match="unknown split"):
        names_for_split(root, "test")


def test_augmented_samples_keep_objects(tmp_path):
    root = make_dataset(tmp_path, names=("a00_1", "b00_2", "c00_3"))
    ds = MaskDataset(scan_dataset(root), image_size=64, augment=AugmentConfig(copy_paste_prob=1.0), seed=3)
    for i in range(len(ds)):
        item = ds[i]
        h, w = item["size"]
        assert max(h, w) == 64 and item["image"].shape == (3, h, w) and item["image"].dtype == torch.uint8
        assert item["masks"].shape[1:] == (h, w) and item["masks"].shape[0] >= 1
        assert (item["masks"].flatten(1).sum(1) > 0).all()
    again = MaskDataset(scan_dataset(root), image_size=64, augment=AugmentConfig(copy_paste_prob=1.0), seed=3)[0]
    assert torch.equal(again["image"], ds[0]["image"])


def test_first_prompts_and_error_points():
    gen = torch.Generator().manual_seed(0)
    gt = torch.zeros(2, 40, 60, dtype=torch.bool)
    gt[0, 5:15, 10:30] = True
    gt[1, 20:35, 40:55] = True
    kinds = set()
    for _ in range(20):
        state = first_prompts(gt, gen)
        if state.boxes is not None:
            kinds.add("box")
            assert not state.multimask and (state.boxes[:, 2:] >= state.boxes[:, :2]).all()
        else:
            kinds.add("point")
            assert state.multimask
            for i in range(2):
                x, y = state.coords[i, 0].long().tolist()
                assert gt[i, y, x]
    assert kinds == {"box", "point"}
    # error points: a false negative region gives positive clicks, a false positive negative clicks
    gt_low = torch.zeros(2, 256, 256, dtype=torch.bool)
    gt_low[:, 10:20, 10:20] = True
    logits = torch.full((2, 256, 256), -5.0)
    logits[1, 100:110, 100:110] = 5.0
    logits[1, 10:20, 10:20] = 5.0
    coords, labels = error_points(gt_low, logits, gen, image_size=1024)
    assert labels.tolist() == [[1], [0]]
    assert 40 <= coords[0, 0, 0] < 80 and 40 <= coords[0, 0, 1] < 80
    assert 400 <= coords[1, 0, 0] < 440 and 400 <= coords[1, 0, 1] < 440


def test_plan_iterations():
    gen = torch.Generator().manual_seed(1)
    assert plan_iterations(1, gen) == [True]
    assert plan_iterations(3, gen) == [True, True, False]
    plan = plan_iterations(8, gen)
    assert plan[0] and not plan[-1] and plan.count(False) == 2
    with pytest.raises(ValueError):
        plan_iterations(0, gen)
