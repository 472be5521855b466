import os
import subprocess
import sys

import pytest

from kgclip.errors import ConfigError
from kgclip.store.placement import HOST
from kgclip.training.rundir import RunFolderError, RunLock, check_run_name, clean_stale_temporaries, open_run_folder


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "../x", "/abs", "a\0b"])
def test_run_names_are_one_component(name):
    with pytest.raises(ConfigError, match="a run name is one folder name"):
        check_run_name(name)


def test_good_names_pass():
    assert check_run_name("kc-2.old") == "kc-2.old" and check_run_name("..a") == "..a"


def test_lock_refuses_a_second_holder_and_is_released(tmp_path):
    with RunLock(tmp_path) as first:
        assert (tmp_path / ".lock").read_text().split()[0] == str(os.getpid())
        with pytest.raises(RunFolderError, match=f"another run is training in this folder \\(process {os.getpid()} on "):
            RunLock(tmp_path).acquire()
        assert first.taken_over is None
    assert not (tmp_path / ".lock").exists()
    RunLock(tmp_path).acquire().release()


def test_a_dead_holder_s_lock_is_taken_over(tmp_path):
    pid = _dead_pid()
    (tmp_path / ".lock").write_text(f"{pid} somewhere\n")
    lock = RunLock(tmp_path).acquire()
    assert lock.taken_over == f"took over the lock {tmp_path / '.lock'} left by process {pid} on somewhere (no longer running)"
    lock.release()


def test_open_refuses_an_existing_run_and_forces_it_aside(tmp_path):
    folder, lock = open_run_folder(tmp_path, "r", resume=False, force=False)
    (folder / "metrics.csv").write_text("step\n1\n")
    lock.release()
    with pytest.raises(RunFolderError, match="a run of this name exists"):
        open_run_folder(tmp_path, "r", resume=False, force=False)
    same, lock = open_run_folder(tmp_path, "r", resume=True, force=False)
    assert same == folder and (folder / "metrics.csv").is_file()
    lock.release()
    for _ in range(2):  # twice in one second: the second archive gets its own name
        new, lock = open_run_folder(tmp_path, "r", resume=False, force=True)
        (new / "metrics.csv").write_text("step\n")
        lock.release()
    aside = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("r.old-"))
    assert len(aside) == 2 and all((tmp_path / a / "metrics.csv").is_file() for a in aside)


def test_force_does_not_move_a_run_that_is_training(tmp_path):
    folder, lock = open_run_folder(tmp_path, "r", resume=False, force=False)
    (folder / "x").write_text("x")
    with pytest.raises(RunFolderError, match="another run is training"):
        open_run_folder(tmp_path, "r", resume=False, force=True)
    assert (folder / "x").is_file() and [p.name for p in tmp_path.iterdir()] == ["r"]
    lock.release()


@pytest.mark.parametrize("where", ["store", "link", "store/runs", "link/runs"])
def test_a_store_or_a_folder_inside_one_is_never_a_run_folder(tmp_path, where):
    """--force would move a store aside as if it were an old run; a run inside a store mixes with its files."""
    from kgclip.training.rundir import check_run_folder
    from tests.conftest import write_toy_store

    write_toy_store(tmp_path / "store")
    (tmp_path / "link").symlink_to(tmp_path / "store")
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    parent, name = os.path.split(tmp_path / where)
    state = "is" if where in ("store", "link") else "is inside"
    for force in (False, True):
        with pytest.raises(RunFolderError, match=f"{tmp_path / where}: {state} the kgclip store {tmp_path / 'store'}; "):
            check_run_folder(parent, name, resume=False, force=force)
        with pytest.raises(RunFolderError, match=f"{state} the kgclip store"):
            open_run_folder(parent, name, resume=False, force=force)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before  # not moved aside, no .lock, no runs/


def test_only_temporaries_of_dead_processes_of_this_host_are_cleaned(tmp_path):
    dead = _dead_pid()
    files = {
        f".step-0000002.pt.tmp-{dead}": True,
        f".step-0000002.pt.tmp-{HOST}-{dead}-0123abcd": True,
        f".step-0000002.pt.tmp-{os.getpid()}": False,
        f".step-0000002.pt.tmp-{HOST}-{os.getpid()}-0123abcd": False,
        f".step-0000002.pt.tmp-ffffff-{dead}-0123abcd" if HOST != "ffffff" else f".x.tmp-000000-{dead}-0123abcd": False,
        "step-0000002.pt": False,
    }
    for name in files:
        (tmp_path / name).write_text("x")
    removed = clean_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == sorted(n for n, gone in files.items() if gone)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n for n, gone in files.items() if not gone)
