"""Learning-rate schedule: linear warm-up, then a cosine down to a floor (open_clip's ``cosine_lr``)."""

import math

import torch


def cosine_with_warmup(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Learning-rate multiplier of optimizer step ``step`` (0-based).

    Linear warm-up ``(step + 1) / warmup`` for the first ``warmup`` steps, then a cosine from 1 at
    step ``warmup`` down to ``min_ratio`` at step ``total``.
    """
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def cosine_schedule(optimizer: torch.optim.Optimizer, warmup: int, total: int, min_ratio: float) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler stepping every optimizer step; each group's rate is its ``lr`` times the multiplier."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine_with_warmup(s, warmup, total, min_ratio))
