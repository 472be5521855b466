"""The Trainer: one training loop for Knowledge-CLIP and every fine-tuning task.

What differs between trainings is a *task* (:class:`TrainTask`): the model, its parameter groups,
the batches and the loss. Everything else is the Trainer's, the same for every task:

- the run folder ``<run_dir>/<name>/`` (:mod:`~kgclip.training.rundir`: one path component, an
  existing run refused unless resumed or forced aside, a lock against a second run);
- building: seeding, the device, AdamW over the task's parameter groups, the cosine schedule with
  warm-up (:mod:`~kgclip.training.schedule`), DistributedDataParallel
  (:mod:`~kgclip.training.distributed`); an error on one rank (a bad batch, a failed write on
  the main rank) is raised on every rank at the next agreement point (after building, after a
  step's micro-batches are fetched, after each step's records and checkpoint), never leaving ranks
  waiting; one process pays no collective at all;
- one optimizer step (:meth:`Trainer.step`): micro-batches for gradient accumulation, bf16
  autocast on GPU (:mod:`~kgclip.training.precision`), the DDP zero-sum work-around, a guard
  naming the step and loss part that went non-finite, gradient clipping;
- state (:meth:`Trainer.state_dict` / :meth:`Trainer.load_state_dict`): model, optimizer,
  scheduler, loader position and every RNG, so that a resumed run continues bit for bit on CPU;
- checkpoints (:meth:`Trainer.save` / :meth:`Trainer.resume`): atomic, the last
  ``train.keep_last`` of this run kept, resume from the newest one that loads;
- records (:mod:`~kgclip.training.logger`): ``metrics.csv``, TensorBoard, ``train.log``, a progress
  bar; a resumed run first cuts ``metrics.csv`` back to its checkpoint's step;
- :meth:`Trainer.fit`: all of the above; Ctrl-C saves the state after the last finished step.

Use::

    task = KnowledgeTask(config)                  # opens and validates its data first
    result = Trainer(task, config).fit()          # -> TrainResult

``config`` is any dataclass with ``name``, ``run_dir``, ``seed``, ``optim``
(:class:`~kgclip.training.config.OptimConfig`) and ``train``
(:class:`~kgclip.training.config.TrainConfig`) (:class:`RunSettings`); it is saved whole as
``config.yaml`` and in every checkpoint.
"""

import itertools
import logging
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, is_dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import yaml
from torch import Tensor, nn

from kgclip.config import check, to_dict
from kgclip.errors import KgclipError
from kgclip.training.checkpoint import (
    CKPT_RE,
    checkpoint_step,
    first_line,
    list_checkpoints,
    load_checkpoint,
    newest_loadable,
    resolve_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from kgclip.training.config import OptimConfig, TrainConfig
from kgclip.training.distributed import DistEnv, OutputTap, init_distributed, mean_over_ranks, on_main, together, wrap_ddp
from kgclip.training.logger import METRICS, MetricsLogger, RunLog, truncate_metrics
from kgclip.training.precision import autocast
from kgclip.training.rundir import RunLock, check_run_folder, check_run_name, clean_stale_temporaries, open_run_folder
from kgclip.training.schedule import cosine_schedule

log = logging.getLogger("kgclip.training")


class TrainingError(KgclipError):
    """Training cannot go on (a non-finite loss, an incompatible checkpoint)."""


# -- the interface ------------------------------------------------------------------------------


@runtime_checkable
class Batch(Protocol):
    """A batch: moves to a device; ``len()`` is its number of examples (for examples/s)."""

    def to(self, device: torch.device) -> "Batch": ...

    def __len__(self) -> int: ...


@runtime_checkable
class StatefulLoader(Protocol):
    """An iterable of batches (one pass = one epoch) whose position can be saved and restored.

    Batches must be a pure function of the seed and the position, so that a restored loader
    yields exactly the batches the interrupted run would have. Optional: an ``epoch`` attribute
    (logged), batches with a ``dropped`` count (examples left out, logged as ``skipped_examples``).
    """

    def __iter__(self) -> Iterator[Batch]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class TrainTask(Protocol):
    """What the Trainer trains. :class:`~kgclip.training.knowledge.KnowledgeTask` is Knowledge-CLIP
    training; fine-tuning tasks (``kgclip/finetune/``) implement the same protocol.

    Attributes:
        loss_parts: names of the loss parts :meth:`loss` returns, the columns of ``metrics.csv``
            (e.g. ``("e2e", "e2r", "g2e", "kd", "clip")`` or ``("bce",)``).
    """

    loss_parts: tuple[str, ...]

    def build_model(self) -> nn.Module:
        """The model, built on CPU and seeded; the Trainer moves it to the device."""
        ...

    def parameter_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """torch parameter groups, each with ``name``, ``params``, ``lr`` (and ``weight_decay``)."""
        ...

    def loader(self, env: DistEnv) -> StatefulLoader:
        """This rank's batches (``env.rank`` of ``env.world_size``)."""
        ...

    def loss(self, model: nn.Module, batch: Any) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss and its named parts for one batch already on the device; called under autocast.

        ``model`` is the model as trained (wrapped in DDP on several ranks): call it, not its parts,
        so that gradients are synchronised. Any other module the task uses (a teacher) it moves to
        ``batch``'s device itself.
        """
        ...

    def checkpoint_extra(self) -> dict[str, Any]:
        """Plain values / tensors saved in every checkpoint (id maps, store fingerprint, vocabulary)."""
        ...

    def check_resume(self, ckpt: dict[str, Any], force: bool) -> None:
        """Raise a KgclipError if ``ckpt`` does not fit this task (changed data, another model);
        ``force`` waives what the user may waive (a changed store). The Trainer puts the
        checkpoint's path in front of the message. Called on the main rank only (it may read all
        the data); on several ranks its error is raised on every rank."""
        ...


class RunSettings(Protocol):
    """The part of a run's config the Trainer reads (a dataclass; saved whole)."""

    name: str
    run_dir: str
    seed: int
    optim: OptimConfig
    train: TrainConfig


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns.

    Attributes:
        run_dir: the run folder. steps: the step reached. last_checkpoint: the newest checkpoint
        (a file that exists; None only on ranks other than 0). metrics: the last step's losses
        (``loss`` and each part, mean over ranks). examples_per_second: over all ranks, all steps
        of this call. data_wait_share: share of step time spent waiting for batches.
    """

    run_dir: Path
    steps: int
    last_checkpoint: Path | None
    metrics: dict[str, float]
    examples_per_second: float
    data_wait_share: float


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _forever(loader: Iterable) -> Iterator:
    while True:
        yield from loader


def _lr_name(group_name: str) -> str:
    return "lr_" + group_name.removesuffix("_no_decay")


class _Window:
    """Throughput counters between two metrics rows, and over the whole call."""

    def __init__(self) -> None:
        self.wait = self.total = 0.0
        self.examples = self.skipped = 0

    def add(self, wait: float, total: float, examples: int, skipped: int) -> None:
        self.wait += wait
        self.total += total
        self.examples += examples
        self.skipped += skipped

    @property
    def rate(self) -> float:
        return self.examples / max(self.total, 1e-9)

    @property
    def wait_share(self) -> float:
        return self.wait / max(self.total, 1e-9)


# -- the Trainer --------------------------------------------------------------------------------


class Trainer:
    """Trains ``task`` as ``config`` says, in ``<config.run_dir>/<config.name>/``.

    Args:
        task: what to train (:class:`TrainTask`); construct it first, so that bad data fails
            before a run folder is made.
        config: the run's settings (:class:`RunSettings`); checked like a loaded config.
        env: the process group (default: from the environment, see
            :func:`~kgclip.training.distributed.init_distributed`).
        force: move an existing run folder of this name aside (to ``<name>.old-<timestamp>``);
            when resuming, resume even from a checkpoint the task would refuse (a changed store).
        quiet: no progress bar.

    Attributes (after :meth:`build`): ``model`` (as trained; DDP-wrapped on several ranks),
    ``core`` (the unwrapped model), ``optimizer``, ``scheduler``, ``loader``; ``global_step``;
    ``run_dir`` and ``last_checkpoint`` once :meth:`fit` opened the run folder.
    """

    def __init__(self, task: TrainTask, config: RunSettings, *, env: DistEnv | None = None, force: bool = False,
                 quiet: bool = False) -> None:
        self.config = check(config) if is_dataclass(config) else config
        check_run_name(self.config.name)
        self.task, self.force, self.quiet = task, force, quiet
        self.env = env or init_distributed(self.config.train.device)
        self.global_step = 0
        self.model: nn.Module | None = None
        self.core: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        self.loader: StatefulLoader | None = None
        self.run_dir = Path(self.config.run_dir) / self.config.name
        self.last_checkpoint: Path | None = None
        self.last_lrs: dict[str, float] = {}
        self._tap: OutputTap | None = None
        self._between: dict[str, Any] = {}
        self._dropped = self._examples = 0

    # -- building -------------------------------------------------------------------------------

    def build(self) -> "Trainer":
        """Seed, build the task's model on the device, the optimizer, the schedule, the loader, DDP."""
        o, env = self.config.optim, self.env
        with together(env):  # DDP's constructor below is a collective
            seed_everything(self.config.seed)
            self.core = self.task.build_model().to(env.device)
            groups = self.task.parameter_groups(self.core)
            for i, g in enumerate(groups):
                g.setdefault("name", f"group{i}")
            self.optimizer = torch.optim.AdamW(groups, betas=tuple(o.betas), eps=o.eps, foreach=True)
            self.scheduler = cosine_schedule(self.optimizer, o.warmup_steps, self.config.train.steps, o.min_lr_ratio)
            self.loader = self.task.loader(env)
        self.model = wrap_ddp(self.core, env)
        self._tap = OutputTap(self.core) if env.distributed else None
        self._between = self._snapshot()
        return self

    def _snapshot(self) -> dict[str, Any]:
        """Loader and RNG state as they are between two steps (what a checkpoint must hold)."""
        return {"loader": self.loader.state_dict(), "rng": rng_state()}

    # -- one step -------------------------------------------------------------------------------

    def step(self, batch: Batch | Iterable[Batch]) -> dict[str, float]:
        """One optimizer step; returns ``loss`` and each loss part (mean over micro-batches and ranks).

        Args:
            batch: one batch, or an iterable of exactly ``optim.accum_steps`` micro-batches (whose
                gradients accumulate; each loss is divided by ``accum_steps``). All of them are
                fetched first (one agreement point per step, before any forward); they may be on
                the CPU and are moved to the device one at a time.

        Raises:
            TrainingError: a non-finite loss (naming the step, the parts, the last checkpoint), or
            not ``accum_steps`` micro-batches. KgclipError: a batch failed to load here;
            RankFailed: on another rank (either error, raised on every rank).
        """
        assert self.optimizer is not None, "call build() first"
        env, accum = self.env, self.config.optim.accum_steps
        single = isinstance(batch, Batch)
        div = 1 if single else accum
        with together(env):  # the step's one agreement point, before the forward's collectives
            fetched = [batch] if single else list(itertools.islice(iter(batch), div + 1))  # a failed fetch stops every rank here
            if len(fetched) != div:  # on every rank, not only where the count is off
                got = len(fetched) if len(fetched) <= div else f"more than {div}"
                raise TrainingError(f"step {self.global_step + 1}: got {got} micro-batches, optim.accum_steps is {accum}")
            self._dropped += sum(int(getattr(b, "dropped", 0)) for b in fetched)
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, Tensor] = {}  # on the device: read once per step, not once per micro-batch
        examples = 0
        for b in fetched:
            b = b.to(env.device)
            examples += len(b)
            with autocast(self.config.train.precision, env.device):
                if self._tap is None:
                    total, parts = self.task.loss(self.model, b)
                else:
                    with self._tap:
                        total, parts = self.task.loss(self.model, b)
                    total = total + self._tap.zero_sum()
            (total / div).backward()
            for k, v in {"loss": total, **parts}.items():  # a non-finite value stays non-finite in the sum
                v = v.detach().to(torch.float64).reshape(()) / div
                sums[k] = sums[k] + v if k in sums else v
        fetched = b = None  # the batches' memory is free for the optimizer step
        means = mean_over_ranks(sums, env)
        self._check_finite(means)  # after the mean, so that on several ranks every rank stops; before the update
        if self.config.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.core.parameters(), self.config.optim.grad_clip)
        self.last_lrs = {}
        for g in self.optimizer.param_groups:  # the rates this step used
            self.last_lrs.setdefault(_lr_name(g["name"]), g["lr"])
        self.optimizer.step()
        self.scheduler.step()
        self.global_step += 1
        self._between = self._snapshot()  # an interrupt in the next step resumes from here
        self._examples = examples
        return means

    def _check_finite(self, values: dict[str, float]) -> None:
        if all(np.isfinite(v) for v in values.values()):
            return
        bad = [k for k, v in values.items() if k != "loss" and not np.isfinite(v)] or ["loss"]
        shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items() if k != "loss")
        raise TrainingError(f"non-finite loss at step {self.global_step + 1} in part(s) {', '.join(bad)} ({shown}); "
                            f"the last good checkpoint is {self.last_checkpoint or 'none (no checkpoint yet)'}")

    # -- state ----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly after the last finished step, plus the task's extras."""
        return {
            "model": self.core.state_dict(), "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": None, "step": self.global_step, "rng": self._between["rng"], "loader": self._between["loader"],
            "config": to_dict(self.config), **self.task.checkpoint_extra(),
        }

    def load_state_dict(self, state: dict[str, Any], where: str | Path = "checkpoint") -> None:
        """Restore :meth:`state_dict`'s output (after :meth:`build`); ``where`` names it in errors."""
        try:
            self.core.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise TrainingError(f"{where}: model weights do not fit this model ({first_line(exc)})") from None
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            for group in self.optimizer.param_groups:  # a checkpoint of an older kgclip saved foreach=None
                group["foreach"] = True
            self.scheduler.load_state_dict(state["scheduler"])
        except (ValueError, KeyError) as exc:
            raise TrainingError(f"{where}: optimizer state does not fit this model's parameter groups ({exc})") from None
        self.loader.load_state_dict(state["loader"])
        set_rng_state(state["rng"])
        self.global_step = int(state["step"])
        self._between = {"loader": state["loader"], "rng": state["rng"]}

    # -- checkpoints ----------------------------------------------------------------------------

    def save(self) -> Path | None:
        """Write ``checkpoints/step-NNNNNNN.pt`` atomically (main rank; others return None) and keep
        this run's last ``train.keep_last``."""
        if not self.env.is_main:
            return None
        self.last_checkpoint = save_checkpoint(self.run_dir, self.global_step, self.state_dict(), self.config.train.keep_last)
        return self.last_checkpoint

    def resume(self, spec: str | Path = "latest") -> Path:
        """Continue from ``latest`` (this run's newest checkpoint that loads) or a checkpoint file
        (or a run folder: its newest), after :meth:`build`.

        Skipped (unreadable) checkpoints are named in a warning and renamed ``*.pt.corrupt``;
        checkpoints of this run after the one resumed from are renamed ``*.pt.superseded``, and
        ``metrics.csv`` loses its rows after that step: the run goes on from there, unmixed.

        Returns:
            The checkpoint resumed from.

        Raises:
            KgclipError: no checkpoint loads, or the task refuses it (naming the file).
        """
        found = self._find_checkpoint(spec)
        self._restore(*found)
        return found[0]

    def _find_checkpoint(self, spec: str | Path) -> tuple[Path, dict[str, Any], list[tuple[Path, str]]]:
        """(path, checkpoint, skipped) checked by the task; reads only, so it can run before the run folder is opened.

        Every rank reads the checkpoint (an error on one is raised on every rank); the task checks
        it on the main rank only (:meth:`TrainTask.check_resume` may read the whole store) and its
        refusal is raised on every rank.
        """
        with together(self.env):
            if str(spec) == "latest":
                if not list_checkpoints(self.run_dir):
                    raise TrainingError(f"{self.run_dir}: nothing to resume (no checkpoint in {self.run_dir / 'checkpoints'})")
                path, ckpt, skipped = newest_loadable(self.run_dir)
            else:
                path = resolve_checkpoint(spec)
                ckpt, skipped = load_checkpoint(path), []

        def check() -> None:
            try:
                self.task.check_resume(ckpt, self.force)
            except KgclipError as exc:
                raise type(exc)(f"{path}: {exc}") from None

        on_main(self.env, check)
        return path, ckpt, skipped

    def _in_this_run(self, path: Path) -> bool:
        return CKPT_RE.match(path.name) is not None and path.resolve().parent == (self.run_dir / "checkpoints").resolve()

    def _restore(self, path: Path, ckpt: dict[str, Any], skipped: list[tuple[Path, str]]) -> None:
        for bad, why in skipped:
            log.warning("skipped checkpoint %s: %s", bad, why)
            if self.env.is_main and bad.exists():
                bad.rename(bad.with_name(bad.name + ".corrupt"))
        self.load_state_dict(ckpt, where=path)
        if self.env.is_main and self._in_this_run(path):
            for later in list_checkpoints(self.run_dir):
                if checkpoint_step(later) > self.global_step:
                    later.rename(later.with_name(later.name + ".superseded"))
                    log.warning("set aside %s: this run goes on from step %d", later, self.global_step)
            dropped = truncate_metrics(self.run_dir / METRICS, self.global_step)
            if dropped:
                log.info("dropped %d metrics.csv row(s) written after step %d", dropped, self.global_step)
        self.last_checkpoint = path
        log.info("resumed from %s at step %d", path, self.global_step)

    # -- the whole run --------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        """Build, open the run folder, resume if configured, train to ``train.steps``, save.

        Everything that can refuse the run (the checkpoint to resume, an existing or busy run
        folder, the task's model and data as :meth:`build` makes them) is checked before the run
        folder is made or changed: a refused run writes nothing.

        Raises:
            KgclipError: the run folder cannot be used, the checkpoint does not fit, the model or
            the data cannot be built, a loss went non-finite. KeyboardInterrupt: after saving the
            state of the last finished step.
        """
        spec = self.config.train.resume
        cfg = self.config
        lock: RunLock | None = None
        with RunLog(self.env.is_main) as run_log:  # kept in memory until the run folder exists; nothing written if refused
            found = self._find_checkpoint(spec) if spec else None
            here = found is not None and self._in_this_run(found[0])
            on_main(self.env, lambda: check_run_folder(cfg.run_dir, cfg.name, resume=here, force=self.force))
            try:
                if self.model is None:
                    self.build()  # bad data or model settings fail here, before the run folder exists
                if self.env.is_main:
                    self.run_dir, lock = on_main(self.env, lambda: open_run_folder(cfg.run_dir, cfg.name, resume=here, force=self.force))
                else:
                    on_main(self.env, lambda: None)
                with together(self.env):
                    if self.env.is_main:
                        run_log.to_file(self.run_dir / "train.log")
                        if lock is not None and lock.taken_over:
                            log.info(lock.taken_over)
                        clean_stale_temporaries(self.run_dir / "checkpoints")
                    if found is not None:
                        self._restore(*found)
                        found = None  # the checkpoint's tensors are in the model now
                    if self.env.is_main:
                        (self.run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(self.config), sort_keys=False))
                return self._loop()
            finally:
                if lock is not None:
                    lock.release()

    def _loop(self) -> TrainResult:
        cfg, env = self.config, self.env
        lr_cols = list(dict.fromkeys(_lr_name(g["name"]) for g in self.optimizer.param_groups))
        fields = ["step", "epoch", "loss", *self.task.loss_parts, *lr_cols, "examples_per_s", "data_wait_share", "skipped_examples"]
        metrics = MetricsLogger(self.run_dir if env.is_main else None, fields, total=cfg.train.steps, start=self.global_step,
                                every=cfg.train.log_every, desc=f"train {cfg.name}", quiet=self.quiet)
        batches = _forever(self.loader)
        window, whole = _Window(), _Window()
        last: dict[str, float] = {}
        wait = 0.0

        def micro() -> Iterator[Batch]:
            nonlocal wait
            for _ in range(cfg.optim.accum_steps):
                t = time.perf_counter()
                b = next(batches)
                wait += time.perf_counter() - t
                yield b

        self.core.train()
        try:
            while self.global_step < cfg.train.steps:
                t0, wait, self._dropped = time.perf_counter(), 0.0, 0
                last = self.step(micro())
                dt = time.perf_counter() - t0
                for w in (window, whole):
                    w.add(wait, dt, self._examples * env.world_size, self._dropped)
                row = {"step": self.global_step, "epoch": getattr(self.loader, "epoch", ""), **last, **self.last_lrs,
                       "examples_per_s": window.rate, "data_wait_share": window.wait_share, "skipped_examples": window.skipped}
                with together(env):  # the main rank's writes: a failure stops every rank
                    if metrics.update(self.global_step, row, {"loss": f"{last['loss']:.3f}", "ex/s": f"{window.rate:.0f}"}):
                        window = _Window()
                    if self.global_step % cfg.train.checkpoint_every == 0 and self.global_step < cfg.train.steps:
                        self.save()
            with together(env):
                self.save()
        except KeyboardInterrupt:
            # The step in flight is dropped: the checkpoint holds the state after the last finished
            # step, so resuming redoes that step exactly.
            path = self.save()
            log.warning("interrupted at step %d; checkpoint %s", self.global_step, path)
            raise
        finally:
            metrics.close()
        result = TrainResult(run_dir=self.run_dir, steps=self.global_step, last_checkpoint=self.last_checkpoint, metrics=last,
                             examples_per_second=whole.rate, data_wait_share=whole.wait_share)
        log.info("done: %d steps, %.1f examples/s, data wait %.1f%%", self.global_step, result.examples_per_second,
                 100 * result.data_wait_share)
        return result
