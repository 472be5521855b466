"""Putting a finished store folder in place without ever losing the old one.

A store is written under a hidden temporary folder beside its target,
``.NAME.tmp-HOST-PID-RAND`` (HOST: a short hash of the host name, PID: the writing process), and
moved into place at the end:

- no store at the target: one rename;
- replacing a store (``overwrite``): the two folders are exchanged in one atomic step
  (Linux ``renameat2(RENAME_EXCHANGE)``), then the old store, now under the temporary name, is
  removed. Where the OS or file system cannot exchange, the old store is first renamed aside to
  ``.NAME.old-HOST-PID-RAND`` and the new one renamed into place; a process killed between the two
  renames leaves the old store aside, and the next write to the same parent folder puts it back.

So at every instant either the old or the new store is at the target, or (killed between the two
renames of the fallback) the old one waits aside to be restored. Only a kgclip store (a folder whose
``manifest.json`` is a JSON object with a ``format_version``) is ever replaced.

Leftovers of killed writers are cleaned by :func:`clean_stale` on the next write to the same parent
folder: only names of the two patterns above, only of this host, only of processes that are no
longer alive. A live writer's temporaries are never touched. Temporaries named by kgclip versions
before this scheme (``.NAME.tmp-RAND``, no process id) are left alone: nothing tells whether their
writer still runs.
"""

import ctypes
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import uuid
from collections.abc import Iterable
from pathlib import Path

from kgclip.errors import StoreError
from kgclip.store.format import MANIFEST

log = logging.getLogger(__name__)

HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-[0-9a-f]{8}$")
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def temp_path(path: Path, kind: str = "tmp") -> Path:
    """A fresh hidden name beside ``path`` that records this host and process (``kind``: tmp or old)."""
    return path.parent / f".{path.name}.{kind}-{HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def is_store(path: Path) -> bool:
    """Whether ``path`` is a kgclip store folder: a real folder whose manifest is a JSON object with a format version."""
    if path.is_symlink() or not path.is_dir():
        return False
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(manifest, dict) and "format_version" in manifest


def store_holding(path: str | os.PathLike, include_self: bool = True) -> Path | None:
    """The kgclip store folder that ``path`` is (with ``include_self``) or lies in, links resolved; None if none.

    Raises:
        StoreError: the path cannot be resolved (a loop of symbolic links).
    """
    try:
        resolved = Path(path).resolve()
    except (OSError, RuntimeError) as exc:  # Python raises RuntimeError for a link loop
        raise StoreError(f"{path}: cannot be resolved ({exc.strerror if isinstance(exc, OSError) else 'a loop of symbolic links'})") from None
    candidates = (resolved, *resolved.parents) if include_self else resolved.parents
    return next((p for p in candidates if is_store(p)), None)


def check_replaceable(path: Path, inputs: Iterable[str | os.PathLike] = ()) -> None:
    """Raise :class:`StoreError` unless ``path`` is absent or a kgclip store that may be replaced.

    Args:
        path: the target of a write with ``overwrite``.
        inputs: files or folders the write reads; a target that is one of them or holds one is refused.
    """
    if not os.path.lexists(path):
        return
    if path.is_symlink():
        raise StoreError(f"{path}: is a symbolic link; --overwrite only replaces a store folder, not replaced")
    if not path.is_dir():
        raise StoreError(f"{path}: is a file, not a kgclip store; --overwrite only replaces a store, not replaced")
    if not is_store(path):
        raise StoreError(f"{path}: is not a kgclip store (no valid {MANIFEST}); --overwrite only replaces a store, not replaced")
    target = path.resolve()
    for item in inputs:
        p = Path(item).resolve()
        if p == target or p.is_relative_to(target):
            raise StoreError(f"{path}: is an input of this command ({item}); not replaced")


def pid_alive(pid: int) -> bool:
    """Whether a process of this id exists (a process of another user counts as alive)."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(parent: Path) -> list[str]:
    """Remove the temporaries of dead writers under ``parent`` and restore stores left aside.

    Returns what was done, one line per folder (also logged).
    """
    done: list[str] = []
    try:
        entries = sorted(parent.iterdir())
    except OSError:
        return done
    stale = []
    for p in entries:
        m = _TEMP.match(p.name)
        if m and m["host"] == HOST and not pid_alive(int(m["pid"])) and p.is_dir() and not p.is_symlink():
            stale.append((m["kind"], m["name"], p))
    for kind, name, p in stale:  # asides first: a store left aside goes back before temporaries go
        if kind != "old":
            continue
        target = parent / name
        if not os.path.lexists(target):
            try:
                os.rename(p, target)
            except OSError as exc:
                log.warning("cannot restore %s from %s (%s); it stays there", target, p.name, exc)
                continue
            done.append(f"restored {target} from {p.name} (an overwrite was interrupted)")
            log.warning(done[-1])
        else:
            shutil.rmtree(p, ignore_errors=True)
            done.append(f"removed {p} (the old store of a finished overwrite)")
    for kind, _, p in stale:
        if kind == "tmp":
            shutil.rmtree(p, ignore_errors=True)
            done.append(f"removed {p} (temporary of a writer that died)")
    for line in done:
        log.info(line)
    return done


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step; False where the OS or file system cannot (nothing changed then)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def swap_into_place(tmp: Path, path: Path) -> None:
    """Move the finished folder ``tmp`` to ``path``, replacing the store there (see the module doc)."""
    if not os.path.lexists(path):
        os.rename(tmp, path)
        return
    if exchange(tmp, path):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old store; a remnant is cleaned once this process is gone
        return
    aside = temp_path(path, "old")
    os.rename(path, aside)
    os.rename(tmp, path)
    shutil.rmtree(aside, ignore_errors=True)
