"""Training and fine-tuning of Segment Anything-style models (data, prompt simulation, losses, loop)."""
from workers.training.config import TrainConfig
from workers.training.loop import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
