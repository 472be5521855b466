"""Failing together on several ranks: an error on one rank reaches every rank (two gloo processes on CPU).

Before :func:`kgclip.training.distributed.together`, the other rank sat in its next collective
(DDP's all-reduce) until the failed process was gone, then died of gloo's "Connection closed by
peer" (under NCCL: until the watchdog's timeout). The failing rank here stays alive until the
other one has finished, so a rank that only learns of the failure from a dead peer never finishes
in time.
"""

import json
import os
import socket
import time
from pathlib import Path

import pytest
import torch

from kgclip.errors import ConfigError, KgclipError
from kgclip.training import OptimConfig, Trainer, trainer
from kgclip.training.distributed import DistEnv, RankFailed, raise_together, together
from tests.kgclip.training.test_trainer import ToyConfig, ToyLoader, ToyTask, _cfg

LINGER_S = 60


class FailingLoader(ToyLoader):
    """Rank 1's second batch does not load."""

    def __init__(self, seed: int, rank: int) -> None:
        super().__init__(seed)
        self.rank = rank

    def __iter__(self):
        for i, b in enumerate(super().__iter__()):
            if self.rank == 1 and i == 1:
                raise KgclipError("images/x.jpg: entity 'x' has no readable image")
            yield b


class FailingTask(ToyTask):
    def loader(self, env):
        return FailingLoader(self.seed, env.rank)


def _full_disk(*args, **kwargs):
    raise OSError(28, "No space left on device")


def _unreadable(*args, **kwargs):
    raise PermissionError(13, "Permission denied")


def _rank_main(rank: int, world: int, port: int, folder: str, case: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    if case == "save" and rank == 0:
        trainer.save_checkpoint = _full_disk  # the main rank cannot write its checkpoint at step 2
    if case == "folder" and rank == 0:
        trainer.check_run_folder = _unreadable  # the main rank's look at the run folder fails with an OSError
    env = DistEnv(rank=rank, local_rank=rank, world_size=world)
    cfg = _cfg(Path(folder), steps=4, checkpoint_every=2)
    try:
        Trainer(FailingTask() if case == "batch" else ToyTask(), cfg, env=env, quiet=True).fit()
        outcome = "finished"
    except Exception as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    with open(os.path.join(folder, f"rank{rank}.txt"), "w") as f:
        f.write(outcome)
    failed_rank = 1 if case == "batch" else 0
    if rank == failed_rank:  # stay alive until the other rank has its result (as a hung NCCL peer would)
        other = os.path.join(folder, f"rank{1 - rank}.txt")
        t0 = time.monotonic()
        while not os.path.exists(other) and time.monotonic() - t0 < LINGER_S:
            time.sleep(0.05)
        with open(os.path.join(folder, "other_finished_first.txt"), "w") as f:
            f.write(str(os.path.exists(other)))
    os._exit(0)  # no process group teardown: the other rank may be gone


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_two(tmp_path, case: str) -> tuple[str, str, str]:
    ctx = torch.multiprocessing.spawn(_rank_main, args=(2, _free_port(), str(tmp_path), case), nprocs=2, join=False)
    deadline = time.monotonic() + LINGER_S + 60
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("the two ranks did not finish")
    return tuple((tmp_path / n).read_text() for n in ("rank0.txt", "rank1.txt", "other_finished_first.txt"))


def test_a_batch_that_fails_on_one_rank_stops_every_rank_with_its_message(tmp_path):
    rank0, rank1, in_time = _run_two(tmp_path, "batch")
    assert rank1 == "KgclipError: images/x.jpg: entity 'x' has no readable image"
    assert rank0 == "RankFailed: rank 1: images/x.jpg: entity 'x' has no readable image"  # before: gloo's "Connection closed by peer"
    assert in_time == "True"  # rank 0 did not wait for rank 1 to die


def test_a_failed_checkpoint_write_on_the_main_rank_stops_the_others(tmp_path):
    rank0, rank1, in_time = _run_two(tmp_path, "save")
    assert rank0 == "OSError: [Errno 28] No space left on device"
    assert rank1 == "RankFailed: rank 0 failed (OSError: [Errno 28] No space left on device)"
    assert in_time == "True"


def test_an_error_that_is_no_kgclip_error_on_the_main_rank_s_own_work_stops_the_others(tmp_path):
    rank0, rank1, in_time = _run_two(tmp_path, "folder")
    assert rank0 == "PermissionError: [Errno 13] Permission denied"
    assert rank1 == "RankFailed: rank 0 failed (PermissionError: [Errno 13] Permission denied)"  # before: waited in on_main's broadcast
    assert in_time == "True"


def test_on_one_process_an_error_is_raised_as_it_was():
    err = KgclipError("x")
    with pytest.raises(KgclipError) as got:
        with together(DistEnv()):
            raise err
    assert got.value is err
    raise_together(DistEnv(), None)  # nothing failed: nothing raised
    with pytest.raises(KeyboardInterrupt):  # not caught: every rank gets its own signal
        with together(DistEnv()):
            raise KeyboardInterrupt
    assert issubclass(RankFailed, KgclipError)  # the CLI prints it in one line, exit 2


class RefusingTask(ToyTask):
    """Refuses every checkpoint; notes which rank checked."""

    def __init__(self, folder: str, rank: int) -> None:
        super().__init__()
        self.folder, self.rank = folder, rank

    def check_resume(self, ckpt, force):
        Path(self.folder, f"checked{self.rank}").touch()
        raise ConfigError("another vocabulary")


def _outcome(fn) -> str:
    try:
        fn()
        return "finished"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def _rank_steps(rank: int, world: int, port: int, folder: str) -> None:
    """Several cases in one process group (each failure is agreed, so the group stays usable)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    env, out = DistEnv(rank=rank, local_rank=rank, world_size=world), {}
    base = _cfg(Path(folder), steps=2, checkpoint_every=2)
    t = Trainer(ToyTask(), ToyConfig(run_dir=base.run_dir, train=base.train, optim=OptimConfig(accum_steps=2)), env=env, quiet=True).build()
    b = [t.loader.batch(0, i) for i in range(2)]
    calls, all_reduce = [], torch.distributed.all_reduce
    torch.distributed.all_reduce = lambda *a, **k: calls.append(1) or all_reduce(*a, **k)
    t.step(b)
    torch.distributed.all_reduce = all_reduce
    out["all_reduces_per_step"] = len(calls)
    out["short_step"] = _outcome(lambda: t.step(b[: 2 - rank]))  # rank 1 brings one micro-batch of two
    Trainer(ToyTask(), base, env=env, quiet=True).fit()
    out["refused_resume"] = _outcome(lambda: Trainer(RefusingTask(folder, rank), _cfg(Path(folder), resume="latest", steps=4), env=env,
                                                     quiet=True).fit())
    Path(folder, f"rank{rank}.json").write_text(json.dumps(out))
    os._exit(0)


def test_one_agreement_per_step_a_short_step_and_a_refused_resume_reach_every_rank(tmp_path):
    ctx = torch.multiprocessing.spawn(_rank_steps, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=False)
    deadline = time.monotonic() + 120
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("the two ranks did not finish")  # before: rank 0 waited in DDP's all-reduce of its second micro-batch
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    # the fetch agreement and the loss mean: before, one agreement (all-reduce + .item()) per micro-batch made it 3
    assert r0["all_reduces_per_step"] == r1["all_reduces_per_step"] == 2
    assert r1["short_step"] == "TrainingError: step 2: got 1 micro-batches, optim.accum_steps is 2"
    assert r0["short_step"] == "RankFailed: rank 1: step 2: got 1 micro-batches, optim.accum_steps is 2"
    ckpt = tmp_path / "runs" / "toy" / "checkpoints" / "step-0000002.pt"
    assert r0["refused_resume"] == f"ConfigError: {ckpt}: another vocabulary"
    assert r1["refused_resume"] == f"KgclipError: {ckpt}: another vocabulary"  # the main rank's verdict, same line
    assert (tmp_path / "checked0").exists() and not (tmp_path / "checked1").exists()  # the store is read by the main rank only
