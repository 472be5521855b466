"""Checkpoints: everything needed to continue exactly, written atomically, the last K kept.

A checkpoint holds the model, optimizer, scheduler, step, RNG states (python, numpy, torch, CUDA),
the loader state, the resolved config, the entity and relation id maps (as PyKEEN does) and the
store's fingerprint. It is read back with ``torch.load(weights_only=True)``: only tensors and
plain Python values are stored.
"""

import os
import pickle
import random
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kgclip.errors import KgclipError
from kgclip.store.placement import temp_path

CKPT_RE = re.compile(r"^step-(\d+)\.pt$")


def first_line(exc: BaseException, limit: int = 200) -> str:
    """An exception as one short line; its type name when its message is empty (``EOFError()``)."""
    lines = str(exc).strip().splitlines()
    text = lines[0].strip() if lines else ""
    if text:
        return text[:limit]
    return "the file is empty or cut short" if isinstance(exc, EOFError) else type(exc).__name__


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {
        "python": [*internal, version, gauss],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[-2], tuple(py[:-2]), py[-1]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_step(path: Path) -> int:
    """The step in a checkpoint's file name (``step-0000042.pt`` -> 42)."""
    m = CKPT_RE.match(Path(path).name)
    if not m:
        raise KgclipError(f"{path}: not a checkpoint file name (step-NNNNNNN.pt)")
    return int(m.group(1))


def save_checkpoint(run_dir: Path, step: int, payload: dict[str, Any], keep_last: int) -> Path:
    """Write ``checkpoints/step-XXXXXXX.pt`` atomically and keep only the last ``keep_last`` (0: all).

    Pruning only looks at checkpoints up to ``step``: the run folder holds one run (see
    :mod:`kgclip.training.rundir`), and a resumed run sets later ones aside before it trains.
    """
    folder = run_dir / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{step:07d}.pt"
    tmp = temp_path(path)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    mine = [p for p in list_checkpoints(run_dir) if checkpoint_step(p) <= step]
    for old in mine[:-keep_last] if keep_last > 0 else []:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(run_dir: Path) -> list[Path]:
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if CKPT_RE.match(p.name)), key=lambda p: int(CKPT_RE.match(p.name).group(1)))


def resolve_checkpoint(path_or_run: str | os.PathLike) -> Path:
    """A checkpoint file, or the latest checkpoint of a run folder."""
    p = Path(path_or_run)
    if p.is_file():
        return p
    if p.is_dir():
        ckpts = list_checkpoints(p)
        if ckpts:
            return ckpts[-1]
        raise KgclipError(f"{p}: no checkpoint in {p / 'checkpoints'}")
    raise KgclipError(f"{p}: no such checkpoint or run folder")


def unreadable_reason(exc: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, as a short clause.

    torch's own messages run over several lines (the weights-only refusal) or are bare values of
    its unpickler (``KeyError: 101`` for a text file, ``pop from empty list`` for random bytes):
    only an unpickled class (named) and the zip reader's first sentence are passed on.
    """
    if isinstance(exc, EOFError):
        return "the file is empty or cut short"
    if isinstance(exc, OSError):
        return f"cannot read it ({exc.strerror or type(exc).__name__})"
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) and "Unsupported global" in text:
        named = re.search(r"GLOBAL (\S+)", text)
        return f"it holds pickled Python objects ({named.group(1) if named else 'a class'}), not only tensors"
    if isinstance(exc, RuntimeError) and "zip archive" in text:
        return first_line(exc).split(". ")[0]
    return "not a file torch.save wrote"


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``); a broken file is a one-line error naming it."""
    p = Path(path)
    try:
        with warnings.catch_warnings():  # a pickle of another protocol draws a warning before the refusal
            warnings.simplefilter("ignore", UserWarning)
            ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except MemoryError:  # not the file's fault: out of memory is not "not a checkpoint" (KeyboardInterrupt is no Exception)
        raise
    except Exception as exc:
        raise KgclipError(f"{p}: not a readable kgclip checkpoint ({unreadable_reason(exc)})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise KgclipError(f"{p}: not a kgclip checkpoint (no model/config entries)")
    return ckpt


def newest_loadable(run_dir: Path, up_to: int | None = None) -> tuple[Path, dict[str, Any], list[tuple[Path, str]]]:
    """The newest checkpoint of a run that loads, and those newer that did not (path, reason).

    Raises:
        KgclipError: no checkpoint, or none loads (naming the newest one's problem).
    """
    ckpts = list_checkpoints(run_dir)
    if up_to is not None:
        ckpts = [p for p in ckpts if checkpoint_step(p) <= up_to]
    if not ckpts:
        raise KgclipError(f"{run_dir}: no checkpoint in {run_dir / 'checkpoints'}")
    skipped: list[tuple[Path, str]] = []
    for path in reversed(ckpts):
        try:
            return path, load_checkpoint(path), skipped
        except KgclipError as exc:
            skipped.append((path, str(exc)))
    raise KgclipError(f"{run_dir}: none of its {len(ckpts)} checkpoint(s) loads; the newest: {skipped[0][1]}")
