"""The run folder: its name, the rules for reusing it, its lock, and leftovers of dead processes.

``<run_dir>/<name>/`` belongs to one run. Starting a run under a name that exists is refused
unless the run resumes (``train.resume=latest``) or is forced, which moves the old folder aside to
``<name>.old-<timestamp>`` (nothing is mixed, nothing deleted). While a run trains, its folder
holds a lock file (``.lock``, with the PID and host): a second run of that name is refused, and
a lock left by a dead process (the OS drops its ``flock``) is taken over.
"""

import errno
import fcntl
import logging
import os
import re
import socket
import time
from pathlib import Path

from kgclip.errors import ConfigError, KgclipError
from kgclip.store.placement import HOST, pid_alive, store_holding

log = logging.getLogger("kgclip.training")

LOCK_NAME = ".lock"
# checkpoint temporaries: .step-N.pt.tmp-HOST-PID-RAND (kgclip.store.placement.temp_path), and the
# older .step-N.pt.tmp-PID
_TMP_RE = re.compile(r"^\..+\.tmp-(?:(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-[0-9a-f]{8}|(?P<old_pid>\d+))$")


class RunFolderError(KgclipError):
    """A run folder cannot be used: it exists, another process trains in it, or it is not writable."""


def check_run_name(name: str) -> str:
    """``name`` if it is one path component (no separator, not empty, ``.`` or ``..``), else a ConfigError."""
    seps = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    if not isinstance(name, str) or name in ("", ".", "..") or any(s in name for s in seps) or "\0" in name:
        raise ConfigError(f"name: a run name is one folder name (no '/', not '.' or '..'), got {name!r}")
    return name


class RunLock:
    """An exclusive ``flock`` on ``<folder>/.lock``, which also holds ``pid host``.

    The OS releases a ``flock`` when its process dies, so a lock file left by a killed run is
    taken over (and said so in the log); a live holder makes :meth:`acquire` raise.
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_NAME
        self._fd: int | None = None
        self.taken_over: str | None = None
        """Set by :meth:`acquire` when the lock file was left by a process that died (to be logged)."""

    def acquire(self) -> "RunLock":
        """Take the lock or raise :class:`RunFolderError` naming the process that holds it."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                raise RunFolderError(f"{self.path.parent}: another run is training in this folder ({self._holder()}); "
                                     f"wait for it to end or choose another name") from None
            try:  # the holder may have removed the file between our open and our flock: lock the new one
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        old = os.pread(fd, 200, 0).decode(errors="replace").split()
        if old and old[0].isdigit() and int(old[0]) != os.getpid():
            self.taken_over = f"took over the lock {self.path} left by process {' on '.join(old[:2])} (no longer running)"
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def _holder(self) -> str:
        try:
            words = self.path.read_text().split()
        except OSError:
            words = []
        return f"process {words[0]} on {words[1]}" if len(words) >= 2 else "lock file " + str(self.path)

    def moved_to(self, folder: Path) -> None:
        """The locked folder was renamed to ``folder``."""
        self.path = folder / LOCK_NAME

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _contents(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name != LOCK_NAME]


def _archive_name(folder: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = folder.with_name(f"{folder.name}.old-{stamp}")
    i = 1
    while target.exists():
        i += 1
        target = folder.with_name(f"{folder.name}.old-{stamp}-{i}")
    return target


def _exists_error(folder: Path) -> RunFolderError:
    return RunFolderError(f"{folder}: a run of this name exists; pass train.resume=latest to continue it, "
                          f"--force to move it aside, or choose another name")


def check_not_in_store(folder: Path) -> None:
    """Refuse a run folder that is a knowledge store, or lies inside one (a link to a store is the store).

    ``--force`` would otherwise move the store aside as if it were an old run, and a run inside a
    store would mix its files with the store's.
    """
    store = store_holding(folder)
    if store is not None:
        where = "is" if store == folder.resolve() else "is inside"
        raise RunFolderError(f"{folder}: {where} the kgclip store {store}; a store folder holds only its own files, "
                             f"write the run elsewhere")


def check_run_folder(run_dir: str | os.PathLike, name: str, *, resume: bool, force: bool) -> None:
    """Refuse early, writing nothing, what :func:`open_run_folder` would refuse: an existing run
    (neither resume nor force) or a folder another live run holds; so that a run that will be
    refused does not first build its model and data.

    Raises:
        ConfigError: bad name. RunFolderError: as :func:`open_run_folder`.
    """
    folder = Path(run_dir) / check_run_name(name)
    check_not_in_store(folder)
    if not folder.is_dir():
        return
    if not resume and not force and _contents(folder):
        raise _exists_error(folder)
    lock = folder / LOCK_NAME
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EACCES):
            return
        raise RunFolderError(f"{folder}: another run is training in this folder ({RunLock(folder)._holder()}); "
                             f"wait for it to end or choose another name") from None
    finally:
        os.close(fd)  # closing drops the probe's lock


def open_run_folder(run_dir: str | os.PathLike, name: str, *, resume: bool, force: bool) -> tuple[Path, RunLock]:
    """Make or reopen ``<run_dir>/<name>/`` and lock it.

    Args:
        run_dir, name: where; ``name`` must be one path component.
        resume: the run continues from a checkpoint in this folder (an existing folder is expected).
        force: an existing folder (of a run that is not training now) is moved aside to
            ``<name>.old-<timestamp>`` and a fresh one made.

    Returns:
        The folder and its held lock (release it when the run ends).

    Raises:
        ConfigError: bad name or a folder that cannot be written. RunFolderError: the folder
        exists (and neither resume nor force), another live run holds it, or it is (inside) a
        knowledge store.
    """
    folder = Path(run_dir) / check_run_name(name)
    check_not_in_store(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = RunLock(folder).acquire()
    except OSError as exc:
        raise ConfigError(f"{folder}: run folder cannot be written ({exc.strerror or exc})") from None
    try:
        if _contents(folder) and not resume:
            if not force:
                raise _exists_error(folder)
            aside = _archive_name(folder)
            folder.rename(aside)
            lock.moved_to(aside)
            lock.release()
            log.warning("moved the earlier run %s aside to %s", folder, aside)
            folder.mkdir()
            lock = RunLock(folder).acquire()
        probe = folder / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        lock.release()
        raise ConfigError(f"{folder}: run folder cannot be written ({exc.strerror or exc})") from None
    except BaseException:
        lock.release()
        raise
    return folder, lock


def clean_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files of saves killed mid-write in ``folder``: ``.NAME.tmp-HOST-PID-RAND``
    of this host and ``.NAME.tmp-PID`` (older kgclip), whose process is no longer alive.

    Returns:
        The files removed.
    """
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for p in sorted(folder.iterdir()):
        m = _TMP_RE.match(p.name)
        if not m or not p.is_file() or p.is_symlink() or (m["host"] and m["host"] != HOST):
            continue
        pid = int(m["pid"] or m["old_pid"])
        if not pid_alive(pid):
            p.unlink(missing_ok=True)
            removed.append(p)
            log.warning("removed %s, left by a save of process %d that did not finish", p, pid)
    return removed
