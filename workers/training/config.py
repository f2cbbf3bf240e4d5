"""``TrainConfig``: everything a training run needs, as plain data (saved with every checkpoint)."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainConfig:
    """Configuration of one training or fine-tuning run.

    ``init_checkpoint`` starts from existing weights (fine-tuning, as a retraining round does);
    ``freeze_image_encoder`` then trains only the prompt encoder and mask decoder. ``names``
    restricts training to a subset of the dataset (a split) without copying files.
    """

    arch: str = "lite_clicks"
    dataset_dir: str = ""
    out_dir: str = "runs/train"
    init_checkpoint: str | None = None
    names: list[str] | None = None
    skip_bad: bool = False
    # optimisation
    steps: int = 1000
    time_budget_s: float | None = None  # stop (and finish the decay) by this much training time
    batch_size: int = 2
    lr: float = 8e-4
    min_lr_ratio: float = 0.01
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    warmup: int = 50
    decay: str = "cosine"  # "cosine" or "step" (x0.1 at decay_steps)
    decay_steps: list[int] = field(default_factory=list)
    grad_clip: float = 1.0
    # mask loss = focal_weight·focal + dice_weight·dice (the paper: 20 and 1)
    focal_weight: float = 20.0
    dice_weight: float = 1.0
    # interactive simulation
    iters_per_sample: int = 4
    box_prob: float = 0.5
    # before the iterations with gradients, a share ``warm_prob`` of sessions first runs 1..warm_clicks
    # corrective clicks without gradients (as the evaluation clicker would), so the model also learns
    # from sessions with many points, not only the first few (0 = off)
    warm_clicks: int = 0
    warm_prob: float = 0.5
    max_masks_per_image: int = 4
    # data
    image_size: int = 1024
    augment: bool = True
    copy_paste_prob: float = 0.5
    num_workers: int = 0
    # fine-tuning
    freeze_image_encoder: bool = False
    # bookkeeping
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    log_every: int = 10
    seed: int = 0
    device: str = "cpu"
    amp: bool = True
    num_threads: int | None = None
    progress_bar: bool = True

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        if not self.dataset_dir:
            raise ValueError("dataset_dir is required")
        for name in ("steps", "batch_size", "iters_per_sample", "checkpoint_every", "max_masks_per_image",
                     "image_size", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be > 0 and finite, got {self.lr}")
        if self.time_budget_s is not None and not (math.isfinite(self.time_budget_s) and self.time_budget_s > 0):
            raise ValueError(f"time_budget_s must be > 0 and finite, got {self.time_budget_s}")
        for name in ("weight_decay", "focal_weight", "dice_weight"):  # nan or inf would train a NaN model
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be >= 0 and finite, got {getattr(self, name)}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {self.num_threads}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if self.decay not in ("cosine", "step", "none"):
            raise ValueError(f"decay must be 'cosine', 'step' or 'none', got {self.decay!r}")
        if not 0 <= self.box_prob <= 1:
            raise ValueError(f"box_prob must be in [0, 1], got {self.box_prob}")
        if self.warm_clicks < 0:
            raise ValueError(f"warm_clicks must be >= 0, got {self.warm_clicks}")
        if not 0 <= self.warm_prob <= 1:
            raise ValueError(f"warm_prob must be in [0, 1], got {self.warm_prob}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {', '.join(unknown)}")
        data = dict(data)
        if "betas" in data:
            data["betas"] = tuple(data["betas"])
        return cls(**data)


def learning_rate(cfg: TrainConfig, step: int, progress: float | None = None) -> float:
    """Learning rate at ``step`` (0-based): linear warm-up, then cosine or step decay.

    ``progress`` (0..1) overrides the step-based position in the cosine decay (time budgets).
    """
    if cfg.warmup and step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if cfg.decay == "none":
        return cfg.lr
    if cfg.decay == "step":
        return cfg.lr * 0.1 ** sum(step >= s for s in cfg.decay_steps)
    import math

    span = max(cfg.steps - cfg.warmup, 1)
    if progress is None:
        progress = max(step - cfg.warmup, 0) / span
    progress = min(max(progress, 0.0), 1.0)
    ratio = cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return cfg.lr * ratio
