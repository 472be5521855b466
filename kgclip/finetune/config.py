"""Fine-tuning configurations: one dataclass per task, all sharing the Trainer's sections.

Every task config has ``name`` / ``run_dir`` (the run folder ``<run_dir>/<name>``), ``seed``,
``optim`` (:class:`~kgclip.training.config.OptimConfig`: ``tower_lr`` for the CLIP towers,
``new_lr`` for the fusion encoder and the task's head) and ``train``
(:class:`~kgclip.training.config.TrainConfig`: steps, precision, device, checkpoints, resume), plus
its ``data`` (the benchmark's files) and its own options. The short overrides ``steps=N``,
``batch_size=N`` and ``lr=X`` name ``train.steps``, ``batch_size`` and the rate of what the task
trains first (``optim.new_lr``; for retrieval, which trains only the towers, ``optim.tower_lr``).
"""

import copy
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from kgclip.config import Range, apply_overrides, from_dict
from kgclip.errors import ConfigError
from kgclip.model.knowledge_clip import FusionConfig
from kgclip.training.config import SEED, OptimConfig, TrainConfig


@dataclass
class FinetuneOptim(OptimConfig):
    """:class:`~kgclip.training.config.OptimConfig` with fine-tuning defaults (new modules at 1e-4,
    towers at 1e-5, weight decay 0.05)."""

    tower_lr: Annotated[float, Range(ge=0)] = 1e-5
    new_lr: Annotated[float, Range(ge=0)] = 1e-4
    weight_decay: Annotated[float, Range(ge=0)] = 0.05


@dataclass
class FinetuneTrain(TrainConfig):
    """:class:`~kgclip.training.config.TrainConfig` without a KD teacher (fine-tuning has none)."""

    teacher: Literal["start", "none"] = "none"


@dataclass
class CommonConfig:
    """What every task shares.

    Attributes:
        name, run_dir: the run folder is ``<run_dir>/<name>`` (``--out`` sets both).
        seed: seeds the new modules' initialisation and the batch order.
        optim, train: the Trainer's sections.
        model: the fusion encoder of a CLIP init (fusion tasks only).
        batch_size: training examples per step per process; eval_batch_size: at evaluation.
        num_workers: DataLoader worker processes that decode images.
        augment: the towers' random training transform (seeded per example) instead of the
            evaluation transform.
        head_hidden: the head MLP's hidden width as a multiple of its input width (0: a linear head).
    """

    name: str = "finetune"
    run_dir: str = "runs"
    seed: Annotated[int, SEED] = 0
    optim: FinetuneOptim = field(default_factory=FinetuneOptim)
    train: FinetuneTrain = field(default_factory=FinetuneTrain)
    model: FusionConfig = field(default_factory=FusionConfig)
    batch_size: Annotated[int, Range(ge=1)] = 32
    eval_batch_size: Annotated[int, Range(ge=1)] = 64
    num_workers: Annotated[int, Range(ge=0)] = 2
    augment: bool = False
    head_hidden: Annotated[int, Range(ge=0)] = 2


@dataclass
class VqaData:
    train_questions: str = ""
    train_annotations: str = ""
    eval_questions: str = ""
    eval_annotations: str = ""
    images: str = ""


@dataclass
class VqaConfig(CommonConfig):
    """VQA v2: ``num_answers`` most frequent training answers, soft-score BCE."""

    data: VqaData = field(default_factory=VqaData)
    num_answers: Annotated[int, Range(ge=1)] = 3129


@dataclass
class SnliVeData:
    train: str = ""
    eval: str = ""
    images: str = ""


@dataclass
class SnliVeConfig(CommonConfig):
    """SNLI-VE: 3-way cross-entropy on the fusion encoder's <head>."""

    data: SnliVeData = field(default_factory=SnliVeData)


@dataclass
class RetrievalData:
    karpathy: str = ""
    images: str = ""


@dataclass
class RetrievalConfig(CommonConfig):
    """Image-text retrieval: contrastive fine-tuning of the towers (Karpathy splits).

    Attributes:
        eval_splits: evaluated after training (``val`` for model selection, ``test`` reported).
        max_eval_images: evaluate at most this many images per split (None: all).
    """

    data: RetrievalData = field(default_factory=RetrievalData)
    eval_splits: list[str] = field(default_factory=lambda: ["val", "test"])
    max_eval_images: Annotated[int, Range(ge=1)] | None = None


@dataclass
class ClassificationData:
    train: str = ""
    eval: str = ""


@dataclass
class ClassificationConfig(CommonConfig):
    """Image classification on the image tower: ``linear`` probe (tower frozen) or ``full`` fine-tuning."""

    data: ClassificationData = field(default_factory=ClassificationData)
    mode: Literal["linear", "full"] = "linear"


@dataclass
class GlueData:
    task: str = ""
    train: str = ""
    eval: str = ""


@dataclass
class GlueConfig(CommonConfig):
    """GLUE on the text tower. A sentence pair is one text: ``first + pair_separator + second``."""

    data: GlueData = field(default_factory=GlueData)
    pair_separator: str = " . "


TASK_CONFIGS: dict[str, type] = {"vqa": VqaConfig, "snli-ve": SnliVeConfig, "retrieval": RetrievalConfig,
                                 "classification": ClassificationConfig, "glue": GlueConfig}

SHORT_KEYS = {"steps": "train.steps", "lr": "optim.new_lr", "tower_lr": "optim.tower_lr", "resume": "train.resume",
              "precision": "train.precision", "device": "train.device"}


def config_class(task: str) -> type:
    if task not in TASK_CONFIGS:
        raise ConfigError(f"unknown fine-tuning task {task!r}; known: {', '.join(TASK_CONFIGS)}")
    return TASK_CONFIGS[task]


def _short_keys(task: str) -> dict[str, str]:
    return dict(SHORT_KEYS, lr="optim.tower_lr") if task == "retrieval" else dict(SHORT_KEYS)


def expand_short_keys(task: str, overrides: list[str]) -> list[str]:
    """``steps=N lr=X ...`` as their full keys (``train.steps=N optim.new_lr=X``)."""
    keys = _short_keys(task)
    out = []
    for item in overrides:
        key, sep, value = item.partition("=")
        out.append(f"{keys.get(key.strip(), key.strip())}{sep}{value}" if sep else item)
    return out


def _move_short_keys(task: str, data: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(data)
    for short, full in _short_keys(task).items():
        if short not in out:
            continue
        value = out.pop(short)
        node = out
        *parents, last = full.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{short}: {p} is not a section")
        node[last] = value
    return out


def load_config(task: str, settings: dict[str, Any] | None = None, overrides: list[str] | None = None):
    """The task's config from a mapping (a YAML file's content) and ``key=value`` overrides (short
    keys allowed in both); unknown keys and wrong types are one-line ConfigErrors."""
    data = _move_short_keys(task, settings or {})
    return from_dict(config_class(task), apply_overrides(data, expand_short_keys(task, overrides or [])))
