"""Minibatches of downstream examples: shuffled, sharded over ranks, resumable, image loading in workers.

Like :class:`kgclip.sampling.TripletLoader`, a training batch is a pure function of (seed, epoch,
batch index, rank): the loader's state is two numbers, workers compute batches independently and
a restored loader yields exactly the remaining batches of its epoch. Random image augmentation is
seeded per example from the same numbers. An example whose image is missing or does not decode
is dropped from its batch and named in ``Batch.skipped``.
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from kgclip.errors import ConfigError, KgclipError
from kgclip.finetune.images import ImageLoadError


@dataclass
class Batch:
    """One step's examples.

    Attributes:
        index: [B] positions of the examples in the task's example list.
        tensors: the model inputs and targets by name (task-specific; e.g. ``images`` [B, 3, H, W],
            ``texts`` [B, context] token ids, ``targets`` [B, ...]).
        skipped: (example, reason) of the examples dropped because their content failed to load.
    """

    index: Tensor
    tensors: dict[str, Tensor]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.index.numel())

    @property
    def dropped(self) -> int:
        """Examples left out of this batch (their content failed to load)."""
        return len(self.skipped)

    def __getitem__(self, name: str) -> Tensor:
        return self.tensors[name]

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(self.index.to(device), {k: v.to(device, non_blocking=True) for k, v in self.tensors.items()}, self.skipped)


LoadFn = Callable[[int, int | None], Any]
"""Loads example ``i`` (an item for the collate function); the second argument seeds its random
augmentation (None: no augmentation). Raises :class:`~kgclip.finetune.images.ImageLoadError` when
it cannot."""

CollateFn = Callable[[list[int], list[Any]], dict[str, Tensor]]
"""Turns the loaded items of a batch (with their example positions) into named tensors."""


def _seed(*parts: int) -> int:
    s = 0
    for p in parts:
        s = (s * 1_000_003 + int(p)) % (2**63 - 1)
    return s


def load_batch(indices: Sequence[int], load: LoadFn, collate: CollateFn, name: Callable[[int], str],
               seeds: Sequence[int] | None = None) -> Batch:
    """Load and collate the examples at ``indices``; the ones that fail are dropped and named."""
    kept, items, skipped = [], [], []
    for j, i in enumerate(indices):
        try:
            items.append(load(i, seeds[j] if seeds is not None else None))
            kept.append(i)
        except ImageLoadError as exc:
            skipped.append((f"{name(i)} ({exc.path})", exc.reason))
    tensors = collate(kept, items) if items else {}
    return Batch(torch.tensor(kept, dtype=torch.long), tensors, skipped)


class _Batches(Dataset):
    def __init__(self, fn: Callable[[int], Batch], count: int) -> None:
        self.fn, self.count = fn, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> Batch:
        return self.fn(i)


def _identity(x: Any) -> Any:
    return x


def _iterate(fn: Callable[[int], Batch], start: int, stop: int, num_workers: int) -> Iterator[Batch]:
    if num_workers > 0 and stop - start > 1:
        ds = _Batches(lambda i: fn(start + i), stop - start)
        yield from DataLoader(ds, batch_size=None, shuffle=False, num_workers=num_workers, collate_fn=_identity,
                              persistent_workers=False, prefetch_factor=2)
    else:
        for i in range(start, stop):
            yield fn(i)


class ExampleLoader:
    """Shuffled training minibatches of ``n`` examples, a disjoint share per rank.

    Args:
        n: number of examples.
        batch_size: examples per batch on this rank.
        load, collate: see :data:`LoadFn` and :data:`CollateFn`.
        name: a readable name of example ``i`` (for skips).
        seed: the global seed (the same on every rank).
        rank, world_size: this process's shard; every rank gets the same number of examples per
            epoch (the order is padded by repeating its start).
        augment: pass a seeded generator to ``load`` (random augmentation), else None.
        num_workers: DataLoader worker processes (0: load in this process).
        drop_last: leave out a last batch smaller than ``batch_size``.
    """

    def __init__(self, n: int, batch_size: int, load: LoadFn, collate: CollateFn, name: Callable[[int], str], *, seed: int = 0,
                 rank: int = 0, world_size: int = 1, augment: bool = False, num_workers: int = 0, drop_last: bool = False) -> None:
        if n < 1:
            raise ConfigError("no training examples")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self.n, self.batch_size, self.seed, self.rank, self.world_size = n, batch_size, seed, rank, world_size
        self.load, self.collate, self.name = load, collate, name
        self.augment, self.num_workers, self.drop_last = augment, num_workers, drop_last
        self.per_rank = -(-n // world_size)
        self.epoch = 0
        self.position = 0
        self._pending: list[tuple[str, str]] = []  # skipped examples of empty batches not yet reported

    def __len__(self) -> int:
        full, rest = divmod(self.per_rank, self.batch_size)
        return max(1, full + (1 if rest and not self.drop_last else 0))

    def rank_order(self, epoch: int) -> Tensor:
        """This rank's example positions for ``epoch`` (one global permutation, dealt round-robin)."""
        g = torch.Generator().manual_seed(_seed(self.seed, epoch))
        perm = torch.randperm(self.n, generator=g)
        total = self.per_rank * self.world_size
        if total > self.n:
            perm = torch.cat([perm.repeat(total // self.n), perm[: total % self.n]])
        return perm[:total][self.rank :: self.world_size]

    def batch(self, epoch: int, index: int) -> Batch:
        """The ``index``-th batch of ``epoch`` on this rank (deterministic)."""
        ids = self.rank_order(epoch)[index * self.batch_size : (index + 1) * self.batch_size].tolist()
        seeds = [_seed(self.seed, epoch, index, self.rank, j) for j in range(len(ids))] if self.augment else None
        return load_batch(ids, self.load, self.collate, self.name, seeds)

    def __iter__(self) -> Iterator[Batch]:
        """This epoch's remaining batches. A batch none of whose examples loaded is not yielded: its
        skipped examples ride along with the next batch that has examples.

        Raises:
            KgclipError: not one example of a whole epoch (this rank's share) loaded.
        """
        epoch, start = self.epoch, self.position
        yielded = 0
        for b in _iterate(lambda i: self.batch(epoch, i), start, len(self), self.num_workers):
            self.position += 1
            if not len(b):
                self._pending += b.skipped
                continue
            if self._pending:
                b.skipped, self._pending = self._pending + b.skipped, []
            yielded += 1
            yield b
        self.epoch, self.position = epoch + 1, 0
        if not yielded and start == 0:
            first = "; ".join(f"{w}: {r}" for w, r in self._pending[:3])
            raise KgclipError(f"none of the {self.per_rank} training examples of an epoch could be loaded ({first})")

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "world_size": self.world_size, "examples": self.n}

    def load_state_dict(self, state: dict[str, int]) -> None:
        saved = (state.get("seed", self.seed), state.get("world_size", self.world_size), state.get("examples", self.n))
        if saved != (self.seed, self.world_size, self.n):
            raise ConfigError(f"loader state was saved with seed {saved[0]} on {saved[1]} ranks over {saved[2]} examples; "
                              f"this run has seed {self.seed} on {self.world_size} ranks over {self.n} examples")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


def eval_batches(indices: Sequence[int], batch_size: int, load: LoadFn, collate: CollateFn, name: Callable[[int], str],
                 num_workers: int = 0) -> Iterator[Batch]:
    """The examples at ``indices`` in order, in batches, without augmentation."""
    chunks = [list(indices[i : i + batch_size]) for i in range(0, len(indices), batch_size)]
    yield from _iterate(lambda i: load_batch(chunks[i], load, collate, name), 0, len(chunks), num_workers)
