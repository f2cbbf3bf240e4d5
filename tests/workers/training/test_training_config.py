"""TrainConfig validation and the learning-rate schedule."""
from __future__ import annotations

import pytest

from workers.training.config import TrainConfig, learning_rate


def test_schedule_warmup_cosine_and_step():
    cfg = TrainConfig(dataset_dir="d", steps=110, warmup=10, lr=1e-3, min_lr_ratio=0.0)
    assert learning_rate(cfg, 0) == pytest.approx(1e-4)
    assert learning_rate(cfg, 9) == pytest.approx(1e-3)
    assert learning_rate(cfg, 60) == pytest.approx(0.5e-3)
    assert learning_rate(cfg, 110) == pytest.approx(0.0)
    # a time budget may move the decay ahead of the step count
    assert learning_rate(cfg, 20, progress=0.5) == pytest.approx(0.5e-3)
    step = TrainConfig(dataset_dir="d", steps=100, warmup=0, lr=1.0, decay="step", decay_steps=[50, 80])
    assert [learning_rate(step, s) for s in (0, 50, 80)] == pytest.approx([1.0, 0.1, 0.01])


@pytest.mark.parametrize("field,value,message", [
    ("steps", 0, "steps must be >= 1"), ("lr", 0.0, "lr must be > 0"), ("decay", "linear", "decay must be"),
    ("dataset_dir", "", "dataset_dir is required"), ("time_budget_s", -1.0, "time_budget_s must be > 0"),
    ("warm_clicks", -1, "warm_clicks must be >= 0"), ("warm_prob", 1.5, r"warm_prob must be in \[0, 1\]"),
])
def test_validation_names_the_field(field, value, message):
    cfg = TrainConfig(dataset_dir="d")
    setattr(cfg, field, value)
    with pytest.raises(ValueError, match=message):
        cfg.validate()


def test_round_trip_and_unknown_fields():
    cfg = TrainConfig(dataset_dir="d", names=["a"], betas=(0.8, 0.9))
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown TrainConfig fields: bogus"):
        TrainConfig.from_dict({"bogus": 1})
