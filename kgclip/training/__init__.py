"""Training: the Trainer and its tasks, checkpoints and exact resume, run folders, distributed helpers, configs."""

from kgclip.training.checkpoint import load_checkpoint, resolve_checkpoint
from kgclip.training.config import DataConfig, OptimConfig, RunConfig, TrainConfig
from kgclip.training.distributed import DistEnv
from kgclip.training.knowledge import KnowledgeTask
from kgclip.training.loop import train_loop
from kgclip.training.trainer import StatefulLoader, Trainer, TrainingError, TrainResult, TrainTask

__all__ = ["DataConfig", "DistEnv", "KnowledgeTask", "OptimConfig", "RunConfig", "StatefulLoader", "TrainConfig", "TrainResult", "TrainTask",
           "Trainer", "TrainingError", "load_checkpoint", "resolve_checkpoint", "train_loop"]
