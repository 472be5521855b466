"""Training: the loop, checkpoints and exact resume, distributed helpers, configs."""

from kgclip.training.checkpoint import load_checkpoint, resolve_checkpoint
from kgclip.training.config import DataConfig, OptimConfig, RunConfig, TrainConfig
from kgclip.training.loop import TrainingError, TrainResult, train_loop

__all__ = ["DataConfig", "OptimConfig", "RunConfig", "TrainConfig", "TrainResult", "TrainingError", "load_checkpoint", "resolve_checkpoint", "train_loop"]
