"""How the simulation picks the stages' images and the held-out images (no server needed)."""
from __future__ import annotations

import pytest

from workers.simulation.engine_loop import pick_images

TRAIN = [f"t{i:03d}" for i in range(50)]
VAL = [f"v{i:03d}" for i in range(30)]


@pytest.mark.parametrize("split", ["train", "val"])
def test_slices_are_disjoint_deterministic_and_from_the_chosen_split(split):
    slices, heldout = pick_images(TRAIN, VAL, (6, 4, 2), 10, annotate_split=split, seed=3)
    assert [len(s) for s in slices] == [6, 4, 2] and len(heldout) == 10
    staged = [n for s in slices for n in s]
    assert len(set(staged)) == 12 and not set(staged) & set(heldout)
    assert set(heldout) <= set(VAL)
    assert set(staged) <= set(TRAIN if split == "train" else VAL)
    assert pick_images(TRAIN, VAL, (6, 4, 2), 10, annotate_split=split, seed=3) == (slices, heldout)
    assert pick_images(TRAIN, VAL, (6, 4, 2), 10, annotate_split=split, seed=4) != (slices, heldout)


def test_the_held_out_images_do_not_depend_on_the_annotated_split():
    _, from_train = pick_images(TRAIN, VAL, (5, 5, 5), 12, annotate_split="train", seed=0)
    _, from_val = pick_images(TRAIN, VAL, (5, 5, 5), 12, annotate_split="val", seed=0)
    assert from_train == from_val


@pytest.mark.parametrize("kwargs, message", [
    (dict(stage_images=(10, 5, 5), heldout_images=15, annotate_split="val"),
     "15 validation images besides the 15 held out, the stages need 20"),
    (dict(stage_images=(40, 10, 5), heldout_images=5, annotate_split="train"),
     "50 training images, the stages need 55"),
    (dict(stage_images=(1, 1, 1), heldout_images=31, annotate_split="train"),
     "30 validation images, the held-out set needs 31"),
    (dict(stage_images=(1, 1, 1), heldout_images=5, annotate_split="test"), "annotate_split must be one of"),
    (dict(stage_images=(0, 1, 1), heldout_images=5, annotate_split="train"), "stage 1 and the held-out set"),
])
def test_impossible_requests_name_the_shortfall(kwargs, message):
    with pytest.raises(ValueError, match=message):
        pick_images(TRAIN, VAL, **kwargs)
