"""The simulation's verdict on each round: paired per held-out object, noise is not called a gain."""
from __future__ import annotations

from workers.simulation.engine_loop import _verdicts


def _model(label: str, per_object: list[int] | None, miou1: float = 0.3) -> dict:
    noc90 = None if per_object is None else sum(per_object) / len(per_object)
    entry = {"label": label, "noc90": noc90, "miou1": miou1}
    if per_object is not None:
        entry["noc90_per_object"] = per_object
    return entry


def test_a_small_mean_drop_with_objects_moving_both_ways_is_noise() -> None:
    before = [10, 12, 8, 20, 5, 9, 14, 7]
    after = [9, 14, 6, 20, 7, 8, 12, 7]  # mean -0.375, objects both ways
    [line] = _verdicts({"models": [_model("initial", before), _model("after round 1", after)]})
    assert line.startswith("after round 1: held-out NoC@90 10.62 -> 10.38, mIoU@1 0.300 -> 0.300; paired NoC@90 -0.25")
    assert line.endswith("over 8 objects (within noise)")


def test_consistent_gains_and_losses_are_named() -> None:
    before = [10, 12, 8, 20, 5, 9, 14, 7]
    better = [b - 2 for b in before[:-1]] + [before[-1] - 1]
    worse = [b + 3 for b in before]
    lines = _verdicts({"models": [_model("initial", before), _model("after round 1", better),
                                  _model("after round 2", worse)]})
    assert lines[0].endswith("(better)") and "paired NoC@90 -1.88" in lines[0]
    assert lines[1].endswith("(worse)") and "paired NoC@90 +4.88" in lines[1]


def test_without_per_object_clicks_the_means_decide_and_missing_models_are_skipped() -> None:
    old = {"label": "initial", "noc90": 11.1, "miou1": 0.365}
    new = {"label": "after round 1", "noc90": 10.8, "miou1": 0.3}
    assert _verdicts({"models": [old, new]}) == [
        "after round 1: held-out NoC@90 11.10 -> 10.80, mIoU@1 0.365 -> 0.300 (better)"]
    assert _verdicts({"models": [old, _model("after round 1", None)]}) == []
