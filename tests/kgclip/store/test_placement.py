"""Replacing a store never loses it; leftovers of killed writers are cleaned, live ones never touched.

A kill is simulated for real: a forked child runs the writer and ends itself with ``os._exit``
between two steps of the swap, so its process id is dead afterwards, as after ``kill -9``.
"""

import os

import pytest

from kgclip.errors import StoreError
from kgclip.store import KnowledgeStore, StoreWriter, merge_stores, open_valid, placement, writer
from kgclip.store.placement import HOST, check_replaceable, clean_stale, exchange, is_store, temp_path
from tests.conftest import write_toy_store


def _one_entity_store(path, overwrite=True):
    with StoreWriter(path, overwrite=overwrite) as w:
        w.add_entity("only", "text", text="only", source="x")


def _killed(fn) -> int:
    """Run ``fn`` in a forked child that dies without cleanup; returns the dead child's pid."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            fn()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    return pid


def _die(*args, **kwargs):  # pragma: no cover - runs in the child
    os._exit(9)


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def _snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- what --overwrite may replace ------------------------------------------------------------------

def test_overwrite_refuses_a_folder_of_other_files(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        (data / f"f{i}.txt").write_text(f"source {i}")
    before = _snapshot(tmp_path)
    with pytest.raises(StoreError, match=r"data: is not a kgclip store \(no valid manifest.json\); --overwrite only replaces a store"):
        _one_entity_store(data)
    assert _snapshot(tmp_path) == before and _names(tmp_path) == ["data"]


def test_overwrite_refuses_a_file_a_link_and_a_broken_manifest(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(StoreError, match="is a file, not a kgclip store"):
        _one_entity_store(f)
    write_toy_store(tmp_path / "real")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(StoreError, match="is a symbolic link"):
        _one_entity_store(tmp_path / "link")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text("[1, 2]")
    with pytest.raises(StoreError, match="is not a kgclip store"):
        _one_entity_store(bad)
    assert _names(tmp_path) == ["bad", "file", "link", "real"] and f.read_text() == "x"


def test_overwrite_refuses_a_store_that_is_an_input(tmp_path):
    write_toy_store(tmp_path / "a")
    before = _snapshot(tmp_path)
    with pytest.raises(StoreError, match=r"a: is an input of this command"):
        merge_stores([tmp_path / "a"], tmp_path / "a", overwrite=True)
    with pytest.raises(StoreError, match="is an input"):
        check_replaceable(tmp_path / "a", [tmp_path / "a" / "entities" / "part-00000.parquet"])
    assert _snapshot(tmp_path) == before


def test_overwrite_replaces_a_store(toy_store):
    assert is_store(toy_store)
    _one_entity_store(toy_store)
    assert open_valid(toy_store).num_entities == 1
    assert _names(toy_store.parent) == ["toy"]


def test_overwrite_without_exchange_uses_an_aside_and_removes_it(toy_store, monkeypatch):
    monkeypatch.setattr(placement, "exchange", lambda a, b: False)
    _one_entity_store(toy_store)
    assert open_valid(toy_store).num_entities == 1
    assert _names(toy_store.parent) == ["toy"]


def test_exchange_swaps_two_folders(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x").write_text("a")
    (tmp_path / "b").mkdir()
    if not exchange(tmp_path / "a", tmp_path / "b"):
        pytest.skip("this file system cannot exchange")
    assert (tmp_path / "b" / "x").read_text() == "a" and not (tmp_path / "a" / "x").exists()


# -- killed writers ----------------------------------------------------------------------------------

@pytest.mark.parametrize("step", ["exchange-then-die", "aside-then-die", "die-before-move", "die-while-removing-the-old-aside"])
def test_a_kill_at_any_step_leaves_old_or_new_store_and_the_next_write_cleans_up(toy_store, monkeypatch, step):
    parent = toy_store.parent

    def child():  # pragma: no cover - runs in the child
        if step == "exchange-then-die":
            monkeypatch.setattr(placement.shutil, "rmtree", _die)  # dies right after the exchange
        elif step == "aside-then-die":
            real_rename = os.rename
            monkeypatch.setattr(placement, "exchange", lambda a, b: False)
            monkeypatch.setattr(placement.os, "rename", lambda a, b: (real_rename(a, b), _die()) if ".old-" in str(b) else real_rename(a, b))
        elif step == "die-before-move":
            monkeypatch.setattr(writer, "swap_into_place", _die)
        else:
            monkeypatch.setattr(placement, "exchange", lambda a, b: False)
            monkeypatch.setattr(placement.shutil, "rmtree", _die)
        _one_entity_store(toy_store)

    dead = _killed(child)
    left = [n for n in _names(parent) if n != "toy"]
    assert left and all(f"-{HOST}-{dead}-" in n for n in left), left  # the dead writer's leftovers
    if step == "aside-then-die":
        assert not toy_store.exists()  # killed between the two renames: the old store waits aside
    else:
        assert KnowledgeStore(toy_store).num_entities in (5, 1)  # old (5) or new (1), never nothing
    done = clean_stale(parent)
    assert _names(parent) == ["toy"] and done
    n = open_valid(toy_store).num_entities
    assert n == (1 if step in ("exchange-then-die", "die-while-removing-the-old-aside") else 5)


def test_the_next_writer_cleans_stale_temporaries_but_never_a_live_ones(tmp_path):
    dead = _killed(lambda: None)
    stale = tmp_path / f".s.tmp-{HOST}-{dead}-0123abcd"
    live = tmp_path / f".s.tmp-{HOST}-{os.getpid()}-0123abcd"
    other_host = tmp_path / f".s.tmp-ffffff-{dead}-0123abcd" if HOST != "ffffff" else tmp_path / f".s.tmp-000000-{dead}-0123abcd"
    old_style = tmp_path / ".s.tmp-0123abcd"
    user = tmp_path / ".notes.tmp-mine"
    for p in (stale, live, other_host, old_style, user):
        p.mkdir()
        (p / "f").write_text("x")
    _one_entity_store(tmp_path / "s")
    assert not stale.exists()
    assert all((p / "f").exists() for p in (live, other_host, old_style, user))


def test_temp_names_record_host_and_pid(tmp_path):
    p = temp_path(tmp_path / "store")
    assert p.parent == tmp_path and p.name.startswith(f".store.tmp-{HOST}-{os.getpid()}-")
    assert placement._TEMP.match(p.name)["pid"] == str(os.getpid())


def test_missing_store_names_the_aside_copy(tmp_path):
    aside = tmp_path / f".s.old-{HOST}-1-0123abcd"
    aside.mkdir()
    with pytest.raises(StoreError, match=r"no such store folder \(an interrupted overwrite left the old store at \.s\.old-"):
        KnowledgeStore(tmp_path / "s")
