"""The training configuration (one YAML file, sections below)."""

from dataclasses import dataclass, field

from kgclip.losses import LossConfig
from kgclip.model.knowledge_clip import ModelConfig


@dataclass
class DataConfig:
    """Attributes:
    store: the knowledge store folder.
    batch_size: triplets per step per process.
    fanouts: G2E in-edges per node and hop.
    num_workers: DataLoader workers for entity content.
    uneven: ``pad`` or ``drop`` the triplets that do not divide among ranks.
    cache_size: entities kept in each worker's LRU cache.
    """

    store: str = ""
    batch_size: int = 64
    fanouts: list[int] = field(default_factory=lambda: [4])
    num_workers: int = 0
    uneven: str = "pad"
    cache_size: int = 4096


@dataclass
class OptimConfig:
    """AdamW with two learning rates, cosine schedule with linear warm-up, clipping, accumulation."""

    tower_lr: float = 1e-5
    new_lr: float = 1e-3
    weight_decay: float = 0.2
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-6
    warmup_steps: int = 100
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0
    accum_steps: int = 1


@dataclass
class TrainConfig:
    """Attributes:
    steps: optimizer steps in all.
    checkpoint_every, keep_last: checkpoint cadence and how many to keep.
    log_every: metrics.csv rows every N steps.
    precision: ``auto`` (bf16 autocast on GPU, fp32 on CPU), ``fp32`` or ``bf16``.
    device: ``auto``, ``cpu`` or ``cuda``.
    grad_checkpointing: recompute the towers' activations in backward.
    lock_image, lock_text: freeze a tower.
    teacher: ``start`` (a frozen copy of the starting CLIP) or ``none``.
    resume: None, ``latest`` or a checkpoint path.
    """

    steps: int = 1000
    checkpoint_every: int = 500
    keep_last: int = 2
    log_every: int = 10
    precision: str = "auto"
    device: str = "auto"
    grad_checkpointing: bool = False
    lock_image: bool = False
    lock_text: bool = False
    teacher: str = "start"
    resume: str | None = None


@dataclass
class RunConfig:
    """A whole training run: ``runs/<name>/`` under ``run_dir``."""

    name: str = "run"
    run_dir: str = "runs"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
