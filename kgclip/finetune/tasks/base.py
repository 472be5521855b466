"""What every fine-tuning task shares: the TrainTask plumbing, image loading, sharded evaluation."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn

from kgclip.config import to_dict
from kgclip.errors import ConfigError, KgclipError
from kgclip.finetune.data import Batch, CollateFn, ExampleLoader, LoadFn, eval_batches
from kgclip.finetune.images import load_image
from kgclip.finetune.init import Backbone, backbone_config
from kgclip.model.optim import parameter_groups
from kgclip.progress import bar
from kgclip.skips import Skips
from kgclip.training.distributed import DistEnv, together


@dataclass
class Evaluation:
    """A task's evaluation.

    Attributes:
        metrics: flat metric name -> value (written to ``metrics.json``).
        predictions: one record per evaluated item (``predictions.json``).
        details: anything else worth a line in the report (per-class figures, counts).
    """

    metrics: dict[str, float]
    predictions: list[dict[str, Any]]
    details: dict[str, Any] = field(default_factory=dict)


def transform_seeded(transform: Callable, image: Image.Image, seed: int | None) -> Tensor:
    """``transform(image)``, its random choices drawn from ``seed`` (the global RNG left untouched)."""
    if seed is None:
        return transform(image)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return transform(image)


def require(data, keys: tuple[str, ...], task: str) -> None:
    """A ConfigError naming the command-line flags of the data files not given."""
    missing = [k for k in keys if not getattr(data, k)]
    if missing:
        flags = ", ".join("--" + k.replace("_", "-") for k in missing)
        raise ConfigError(f"finetune {task}: {flags} not given (data.{', data.'.join(missing)})")


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return getattr(model, "module", model)


def gather_records(items: list, env: DistEnv) -> list:
    """Every rank's ``items`` concatenated (on every rank); a no-op on one process."""
    if not env.distributed:
        return items
    import torch.distributed as dist

    parts: list = [None] * env.world_size
    dist.all_gather_object(parts, items)
    return [x for p in parts for x in p]


class FinetuneTask:
    """Base of the fine-tuning tasks (each a :class:`~kgclip.training.trainer.TrainTask`).

    A subclass reads its data in ``__init__`` (bad input fails before any run folder exists) and
    defines ``name``, ``loss_parts``, :meth:`make_model`, :meth:`train_item`, :meth:`collate`,
    :meth:`loss` and :meth:`evaluate`.

    Args:
        config: the task's config (see :mod:`kgclip.finetune.config`).
        backbone: the starting model (see :func:`kgclip.finetune.init.load_backbone`).
        skips: where bad input records are counted.
    """

    name = ""
    loss_parts: tuple[str, ...] = ()

    def __init__(self, config, backbone: Backbone, skips: Skips) -> None:
        self.config, self.backbone, self.skips = config, backbone, skips
        m = backbone.model
        self.tokenizer = m.tokenizer
        self.train_transform = m.preprocess_train if config.augment else m.preprocess_val
        self.eval_transform = m.preprocess_val
        self.load_failures = Skips(echo=None)
        self._failed: set[str] = set()
        self.train_examples: Sequence = []

    # -- to define ---------------------------------------------------------------------------------
    def make_model(self) -> nn.Module:
        raise NotImplementedError

    def train_item(self, i: int, seed: int | None) -> Any:
        """Load training example ``i`` (raise ImageLoadError when its image fails)."""
        raise NotImplementedError

    def collate(self, indices: list[int], items: list[Any]) -> dict[str, Tensor]:
        raise NotImplementedError

    def example_name(self, i: int) -> str:
        return f"train example {i}"

    def evaluate(self, model: nn.Module, env: DistEnv) -> Evaluation:
        raise NotImplementedError

    def extra(self) -> dict[str, Any]:
        """Task values saved in checkpoints and compared on resume (vocabulary, classes)."""
        return {}

    def summary(self) -> dict[str, Any]:
        """Counts for the report."""
        return {"train examples": len(self.train_examples)}

    # -- TrainTask ---------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        return self.make_model()

    def parameter_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        o = self.config.optim
        groups = parameter_groups(model, o.tower_lr, o.new_lr, o.weight_decay)
        if not groups:
            raise KgclipError(f"{self.name}: nothing to train (every parameter is frozen)")
        return groups

    def loader(self, env: DistEnv) -> ExampleLoader:
        return ExampleLoader(len(self.train_examples), self.config.batch_size, self._load, self.collate, self.example_name,
                             seed=self.config.seed, rank=env.rank, world_size=env.world_size, augment=self.config.augment,
                             num_workers=self.config.num_workers)

    def _load(self, i: int, seed: int | None) -> Any:
        return self.train_item(i, seed)

    def note_skipped(self, batch: Batch) -> None:
        """Count the examples a batch dropped (each example once, however often it comes back)."""
        for where, reason in batch.skipped:
            if where not in self._failed:
                self._failed.add(where)
                self.load_failures.add(where, reason)

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"finetune": {"task": self.name, "init": backbone_config(self.backbone), **self.extra()}}

    def check_resume(self, ckpt: dict[str, Any], force: bool) -> None:
        saved = ckpt.get("finetune")
        if not isinstance(saved, dict):
            raise KgclipError("not a fine-tuning checkpoint")
        if saved.get("task") != self.name:
            raise KgclipError(f"written by fine-tuning task {saved.get('task')!r}, this run is {self.name!r}")
        now = backbone_config(self.backbone)
        if saved.get("init", {}).get("source") != now["source"] and not force:
            raise KgclipError(f"started from {saved['init'].get('source')!r}, this run from {now['source']!r}; pass --force to resume anyway")
        for key, value in self.extra().items():
            if saved.get(key) != value:
                raise KgclipError(f"its {key} differs from this run's (the training files changed?)")

    # -- helpers ---------------------------------------------------------------------------------
    def image(self, path: str, seed: int | None, train: bool = True) -> Tensor:
        return transform_seeded(self.train_transform if train else self.eval_transform, load_image(path), seed)

    def eval_loop(self, indices: Sequence[int], load: LoadFn, collate: CollateFn, name: Callable[[int], str], step: Callable[[Batch], Any],
                  env: DistEnv, desc: str) -> list[tuple[Batch, Any]]:
        """Run ``step`` (under no_grad, on the device) over this rank's share of ``indices``;
        returns (batch, output) pairs on this rank, the batch index holding example positions.

        ``step`` must use the unwrapped model (no collective inside): an error on one rank is
        raised on every rank at the end, so that none waits in the gathering that follows."""
        mine = list(indices)[env.rank :: env.world_size]
        out = []
        batches = eval_batches(mine, self.config.eval_batch_size, load, collate, name, self.config.num_workers)
        total = -(-len(mine) // self.config.eval_batch_size)
        with together(env), torch.no_grad():
            for b in bar(batches, total=total, desc=desc, unit="batch", disable=not env.is_main):
                self.note_skipped(b)
                if len(b):
                    out.append((b, step(b.to(env.device))))
        return out

    def config_dict(self) -> dict[str, Any]:
        return to_dict(self.config)
