"""Process groups from the usual environment variables, gathering features with gradients, and
failing together.

Works under ``torchrun`` (single and multi node through its rendezvous) and any launcher that sets
RANK, LOCAL_RANK and WORLD_SIZE (plus MASTER_ADDR / MASTER_PORT).

An error on one rank only (a bad batch, a full disk on the main rank) must not leave the other
ranks waiting in their next collective: rank-local work runs inside :func:`together`, whose end is
an agreement point (one all-reduce of a flag) where every rank learns that one failed and raises.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor

from kgclip.errors import KgclipError, one_line


@dataclass
class DistEnv:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistEnv:
    """Read RANK / LOCAL_RANK / WORLD_SIZE, pick the device, and start the process group if needed
    (NCCL on GPU, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    dev = torch.device(f"cuda:{local}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistEnv(rank=rank, local_rank=local, world_size=world, device=dev)


def gather_with_grad(x: Tensor) -> tuple[Tensor, int]:
    """All ranks' rows concatenated (gradients flow back to each rank's own rows) and the offset
    of this rank's rows. Ranks may hold different row counts: rows are padded to the largest and
    the padding removed."""
    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return x, 0
    import warnings

    import torch.distributed.nn.functional as dist_nn

    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, n)
    sizes_l = [int(s) for s in sizes]
    top = max(sizes_l)
    padded = torch.nn.functional.pad(x, (0, 0) * (x.dim() - 1) + (0, top - x.shape[0]))
    with warnings.catch_warnings():  # its successor is private API; this one still differentiates
        warnings.simplefilter("ignore", FutureWarning)
        parts = dist_nn.all_gather(padded)
    rank = dist.get_rank()
    return torch.cat([p[:s] for p, s in zip(parts, sizes_l, strict=True)]), sum(sizes_l[:rank])


def wrap_ddp(model: torch.nn.Module, env: DistEnv) -> torch.nn.Module:
    """DistributedDataParallel around ``model`` when several ranks run, else ``model`` itself.

    ``find_unused_parameters`` because a step may leave parts of the model unused (a switched-off
    loss part, a batch without images); see :class:`OutputTap` for the rest of that work-around.
    """
    if not env.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[env.device.index] if env.device.type == "cuda" else None, find_unused_parameters=True)


def _tensors(obj) -> "list[Tensor]":
    import dataclasses

    if isinstance(obj, Tensor):
        return [obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [t for f in dataclasses.fields(obj) for t in _tensors(getattr(obj, f.name))]
    if isinstance(obj, list | tuple):
        return [t for x in obj for t in _tensors(x)]
    if isinstance(obj, dict):
        return [t for x in obj.values() for t in _tensors(x)]
    return []


class OutputTap:
    """Records the outputs of every forward call of a module, so that ``zero_sum()`` can join them
    all to the loss.

    DDP expects every output that needs a gradient to reach the loss; a loss part switched off
    leaves some out and DDP would wait for their gradients forever. Adding ``0 * sum(outputs)``
    to the loss (the zero-sum trick) changes no value and no gradient.
    """

    def __init__(self, module: torch.nn.Module) -> None:
        self.outputs: list = []
        self.recording = False
        self._handle = module.register_forward_hook(self._record)

    def _record(self, _module, _inputs, out) -> None:
        if self.recording:  # forward calls outside a training step (evaluation) are not kept
            self.outputs.append(out)

    def __enter__(self) -> "OutputTap":
        self.outputs, self.recording = [], True
        return self

    def __exit__(self, *exc) -> None:
        self.recording = False

    def zero_sum(self) -> Tensor:
        """``0 * sum`` of the outputs recorded (inside ``with tap:``) that need a gradient; clears the record."""
        parts = [t.float().sum() for t in _tensors(self.outputs) if t.requires_grad]
        self.outputs = []
        return 0.0 * torch.stack(parts).sum() if parts else torch.zeros(())

    def close(self) -> None:
        self._handle.remove()


def mean_over_ranks(values: "dict[str, Tensor | float]", env: DistEnv) -> dict[str, float]:
    """The mean of each value over all ranks (the global batch's loss, not this rank's), as floats.

    Values may be tensors on the device: they are read back in one piece (one device sync), after
    one all-reduce on several ranks (none on one process).
    """
    if not values:
        return {}
    keys = sorted(values)  # the same order on every rank
    vals = torch.stack([torch.as_tensor(values[k], dtype=torch.float64, device=env.device).reshape(()) for k in keys])
    if env.distributed:
        dist.all_reduce(vals)
        vals = vals / env.world_size
    out = dict(zip(keys, vals.tolist(), strict=True))
    return {k: out[k] for k in values}


def on_main(env: DistEnv, fn):
    """Run ``fn`` on the main rank only and let every rank share its outcome: on several ranks a
    :class:`~kgclip.errors.KgclipError` raised there is raised on every rank (same message), any
    other exception as :class:`RankFailed` (``rank 0 failed (OSError: ...)``), instead of leaving
    the others waiting in a collective. Returns ``fn()``'s value on the main rank, None elsewhere."""
    error, out = None, None
    if env.is_main:
        try:
            out = fn()
        except Exception as exc:  # not only user errors: the others must never wait for a rank that is gone
            error = exc
    if env.distributed:
        user = isinstance(error, KgclipError)
        box = [None if error is None else (type(error).__name__, str(error) if user else one_line(error)[:300], user)]
        dist.broadcast_object_list(box, src=0)
        if box[0] is not None and error is None:
            name, text, user = box[0]
            raise KgclipError(text) if user else RankFailed(f"rank 0 failed ({name}: {text})")
    if error is not None:
        raise error
    return out


class RankFailed(KgclipError):
    """Another rank failed (its message, one line, prefixed with its rank)."""


def raise_together(env: DistEnv, error: BaseException | None) -> None:
    """An agreement point: when any rank brings an ``error``, every rank raises.

    A collective: every rank must call it at the same point of the program. A rank that failed
    raises its own ``error``; the others raise :class:`RankFailed` with the first failing rank's
    message (``rank 1: ...``; for an error that is not a KgclipError, its type too). On one
    process it only re-raises ``error``. Costs one all-reduce of one number when nothing failed.
    """
    if not env.distributed:
        if error is not None:
            raise error
        return
    flag = torch.tensor([0 if error is None else 1], dtype=torch.int32, device=env.device)
    dist.all_reduce(flag)
    if int(flag.item()) == 0:
        return
    mine = None if error is None else (env.rank, type(error).__name__, one_line(error)[:300], isinstance(error, KgclipError))
    found: list = [None] * env.world_size
    dist.all_gather_object(found, mine)
    if error is not None:
        raise error
    rank, name, text, user = next(f for f in found if f is not None)
    raise RankFailed(f"rank {rank}: {text}" if user else f"rank {rank} failed ({name}: {text})")


@contextmanager
def together(env: DistEnv) -> Iterator[None]:
    """Run rank-local work (no collective inside) so that an exception on one rank is raised on
    every rank at the end of the block (see :func:`raise_together`) instead of leaving the others
    waiting in their next collective. KeyboardInterrupt and other BaseExceptions pass straight
    through (every rank gets its own signal)."""
    error = None
    try:
        yield
    except Exception as exc:
        error = exc
    raise_together(env, error)
