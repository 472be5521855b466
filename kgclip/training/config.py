"""The training configuration (one YAML file, sections below).

Choices are ``Literal`` types and bounds are ``Range`` annotations: the config loader
(:func:`kgclip.config.from_dict`) checks them once, with a one-line error naming the key.
"""

from dataclasses import dataclass, field
from typing import Annotated, Literal

from kgclip.config import Range
from kgclip.losses import LossConfig
from kgclip.model.knowledge_clip import ModelConfig

Precision = Literal["auto", "fp32", "bf16"]
"""``auto``: bf16 autocast on GPU, fp32 on CPU."""
Device = Literal["auto", "cpu", "cuda"]

_POSITIVE = Range(ge=1)
SEED = Range(ge=0, lt=2**32)
"""Seeds are what numpy accepts: 0 <= seed < 2**32."""
_NON_NEGATIVE = Range(ge=0)


@dataclass
class DataConfig:
    """Attributes:
    store: the knowledge store folder.
    batch_size: triplets per step per process.
    fanouts: G2E in-edges per node, hop and edge type (PyG's ``num_neighbors``).
    num_workers: DataLoader workers for entity content.
    uneven: ``pad`` or ``drop`` the triplets that do not divide among ranks.
    cache_size: entities kept in each worker's LRU cache.
    views: ``random``: an entity that is a view of a concept (a VisualSem node's images and
        glosses) appears as a view of that concept drawn at random each time (heads, tails and G2E
        neighbours); ``fixed``: the stored entity. Stores without concepts: the same either way.
    source_weights: probability of drawing a triplet from each ``source`` of the training triplets
        (every source named, e.g. ``{visualsem: 0.4, conceptnet: 0.3, ...}``; normalised); None:
        proportional to size (every triplet once per epoch). Recorded in checkpoints.
    image_cache: ``auto`` reads image entities from the store's pre-resized cache
        (``kgclip prepare cache-images``) when one fits the store and the model's transform, else
        decodes the JPEGs (and logs why); ``off`` always decodes.
    """

    store: str = ""
    batch_size: Annotated[int, _POSITIVE] = 64
    fanouts: list[Annotated[int, _NON_NEGATIVE]] = field(default_factory=lambda: [4])
    num_workers: Annotated[int, _NON_NEGATIVE] = 0
    uneven: Literal["pad", "drop"] = "pad"
    cache_size: Annotated[int, _NON_NEGATIVE] = 4096
    views: Literal["random", "fixed"] = "random"
    image_cache: Literal["auto", "off"] = "auto"
    source_weights: dict[str, float] | None = None


@dataclass
class OptimConfig:
    """AdamW with two learning rates, cosine schedule with linear warm-up, clipping, accumulation.

    Attributes:
        tower_lr, new_lr: learning rates of the CLIP towers and of the new modules (a task's
            parameter groups choose which parameters get which).
        weight_decay, betas, eps: AdamW's.
        warmup_steps: linear warm-up from ``lr / warmup_steps`` to ``lr``; then a cosine down to
            ``min_lr_ratio * lr`` at the last step.
        grad_clip: the gradient norm is clipped to this (0: off).
        accum_steps: micro-batches per optimizer step.
    """

    tower_lr: Annotated[float, _NON_NEGATIVE] = 1e-5
    new_lr: Annotated[float, _NON_NEGATIVE] = 1e-3
    weight_decay: Annotated[float, _NON_NEGATIVE] = 0.2
    betas: tuple[Annotated[float, Range(ge=0, lt=1)], Annotated[float, Range(ge=0, lt=1)]] = (0.9, 0.98)
    eps: Annotated[float, Range(gt=0)] = 1e-6
    warmup_steps: Annotated[int, _NON_NEGATIVE] = 100
    min_lr_ratio: Annotated[float, Range(ge=0, le=1)] = 0.0
    grad_clip: Annotated[float, _NON_NEGATIVE] = 1.0
    accum_steps: Annotated[int, _POSITIVE] = 1


@dataclass
class TrainConfig:
    """Attributes:
    steps: optimizer steps in all.
    checkpoint_every, keep_last: checkpoint cadence and how many to keep (0: all).
    log_every: metrics.csv rows every N steps.
    precision: ``auto`` (bf16 autocast on GPU, fp32 on CPU), ``fp32`` or ``bf16``.
    device: ``auto``, ``cpu`` or ``cuda``.
    grad_checkpointing: recompute the towers' activations in backward.
    lock_image, lock_text: freeze a tower.
    teacher: ``start`` (a frozen copy of the starting CLIP) or ``none``.
    resume: None, ``latest`` (this run's newest checkpoint that loads) or a checkpoint path.
    """

    steps: Annotated[int, _POSITIVE] = 1000
    checkpoint_every: Annotated[int, _POSITIVE] = 500
    keep_last: Annotated[int, _NON_NEGATIVE] = 2
    log_every: Annotated[int, _POSITIVE] = 10
    precision: Precision = "auto"
    device: Device = "auto"
    grad_checkpointing: bool = False
    lock_image: bool = False
    lock_text: bool = False
    teacher: Literal["start", "none"] = "start"
    resume: str | None = None


@dataclass
class RunConfig:
    """A whole training run: ``<run_dir>/<name>/``; ``name`` is one path component."""

    name: str = "run"
    run_dir: str = "runs"
    seed: Annotated[int, SEED] = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def uses_fusion(config: RunConfig) -> bool:
    """True when the run trains the fusion encoder (a loss part needs it); else it is a plain CLIP run."""
    return bool(config.loss.e2e or config.loss.e2r or config.loss.g2e)
