"""Hostile but plausible store-side input (issue 16, items 1, 4, 6, 8, 9, 11).

Each case runs the real command line and asserts the exit code, the one-line message on stderr
and that nothing outside the target changed (a snapshot of the whole temporary tree before and
after).
"""

import json
import os

import pytest

from experiments.cli import main
from kgclip.store import placement, writer
from kgclip.store.placement import HOST
from tests.conftest import write_toy_store


def snapshot(root, skip=()):
    """Every file and folder under ``root`` (bytes of files), leaving out the paths under ``skip``."""
    skip = [os.fspath(s) for s in skip]
    out = {}
    for p in sorted(root.rglob("*")):
        if any(os.fspath(p) == s or os.fspath(p).startswith(s + os.sep) for s in skip):
            continue
        out[str(p.relative_to(root))] = p.read_bytes() if p.is_file() and not p.is_symlink() else ("dir" if p.is_dir() else "other")
    return out


def run_cli(capsys, *argv) -> tuple[int, list[str], str]:
    """(exit code, stderr lines, stdout) of ``kgclip --quiet ARGV``."""
    rc = main(["--quiet", *map(str, argv)])
    cap = capsys.readouterr()
    return rc, cap.err.strip().splitlines(), cap.out


def refused(capsys, root, *argv, match: str, skip=()) -> None:
    """The command exits 2 with one line on stderr containing ``match`` and leaves ``root`` as it was."""
    before = snapshot(root, skip)
    rc, err, _ = run_cli(capsys, *argv)
    assert rc == 2, err
    assert len(err) == 1 and match in err[0], err
    assert snapshot(root, skip) == before


@pytest.fixture
def triples(tmp_path):
    f = tmp_path / "t.tsv"
    f.write_text("dog\t/r/IsA\tanimal\ncat\t/r/IsA\tanimal\n")
    return f


def _killed(fn) -> int:
    """Run ``fn`` in a forked child that dies without any cleanup (as under kill -9); returns its pid."""
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


# -- 1. --overwrite only replaces a kgclip store -----------------------------------------------------

def test_1_overwrite_refuses_a_folder_of_sources_holding_the_input(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(42):
        (data / f"part{i}.tsv").write_text(f"a{i}\tr\tb{i}\n")
    refused(capsys, tmp_path, "prepare", "triples", data / "part0.tsv", "--out", data, "--overwrite",
            match=f"{data}: is not a kgclip store (no valid manifest.json); --overwrite only replaces a store, not replaced")


def test_1_overwrite_refuses_a_regular_file_and_the_input_itself(tmp_path, triples, capsys):
    other = tmp_path / "notes.txt"
    other.write_text("keep me")
    refused(capsys, tmp_path, "prepare", "triples", triples, "--out", other, "--overwrite", match=f"{other}: is a file, not a kgclip store")
    refused(capsys, tmp_path, "prepare", "triples", triples, "--out", triples, "--overwrite", match=f"{triples}: is a file, not a kgclip store")


def test_1_merge_overwrite_refuses_an_input_store_and_a_foreign_folder(tmp_path, capsys):
    write_toy_store(tmp_path / "a", image_root=tmp_path / "images")
    write_toy_store(tmp_path / "b", image_root=tmp_path / "images")
    refused(capsys, tmp_path, "prepare", "merge", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "a", "--overwrite",
            match=f"{tmp_path / 'a'}: is an input of this command")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "x.jpg").write_bytes(b"\xff\xd8")
    refused(capsys, tmp_path, "prepare", "merge", tmp_path / "a", "--out", tmp_path / "photos", "--overwrite", match="is not a kgclip store")


def test_1_demo_refuses_a_folder_that_is_not_a_demo_world_and_a_file(tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("\\documentclass{article}")
    refused(capsys, tmp_path, "prepare", "demo", "--out", tmp_path / "mine", "--scenes", 4, match="is not a demo world")
    (tmp_path / "f").write_text("x")
    refused(capsys, tmp_path, "prepare", "demo", "--out", tmp_path / "f", "--scenes", 4, match="is not a demo world")


def test_1_overwrite_replaces_a_store_and_nothing_else(tmp_path, triples, capsys):
    write_toy_store(tmp_path / "s")
    before = snapshot(tmp_path, skip=[tmp_path / "s"])
    rc, err, out = run_cli(capsys, "prepare", "triples", triples, "--out", tmp_path / "s", "--overwrite", "--split-ratios", "1,0,0")
    assert rc == 0, err
    assert "wrote" in out and json.loads((tmp_path / "s" / "manifest.json").read_text())["counts"]["entities"] == 3
    assert snapshot(tmp_path, skip=[tmp_path / "s"]) == before


# -- 6. leftovers of killed writers; the overwrite swap -------------------------------------------------

def test_6_a_killed_prepare_leaves_a_temporary_that_the_next_prepare_removes(tmp_path, triples, capsys, monkeypatch):
    def child():  # pragma: no cover - the child
        monkeypatch.setattr(writer.StoreWriter, "close", _die)
        main(["--quiet", "prepare", "triples", str(triples), "--out", str(tmp_path / "s")])

    dead = _killed(child)
    (left,) = [p for p in tmp_path.iterdir() if p.name.startswith(".s.tmp-")]
    assert left.name.startswith(f".s.tmp-{HOST}-{dead}-") and not (tmp_path / "s").exists()
    before = snapshot(tmp_path, skip=[left, tmp_path / "s2"])
    rc, err, _ = run_cli(capsys, "prepare", "triples", triples, "--out", tmp_path / "s2")
    assert rc == 0, err
    assert not left.exists() and (tmp_path / "s2" / "manifest.json").is_file()
    assert snapshot(tmp_path, skip=[left, tmp_path / "s2"]) == before


def test_6_a_kill_between_the_renames_of_overwrite_is_recovered(tmp_path, triples, capsys, monkeypatch):
    write_toy_store(tmp_path / "s")
    old_manifest = (tmp_path / "s" / "manifest.json").read_bytes()

    def child():  # pragma: no cover - the child
        real_rename = os.rename
        monkeypatch.setattr(placement, "exchange", lambda a, b: False)  # a file system without RENAME_EXCHANGE
        monkeypatch.setattr(placement.os, "rename", lambda a, b: (real_rename(a, b), _die()) if ".old-" in str(b) else real_rename(a, b))
        main(["--quiet", "prepare", "triples", str(triples), "--out", str(tmp_path / "s"), "--overwrite"])

    _killed(child)
    assert not (tmp_path / "s").exists()
    refused(capsys, tmp_path, "info", tmp_path / "s", match="no such store folder (an interrupted overwrite left the old store at .s.old-")
    rc, err, _ = run_cli(capsys, "prepare", "triples", triples, "--out", tmp_path / "other")
    assert rc == 0, err
    assert (tmp_path / "s" / "manifest.json").read_bytes() == old_manifest  # the old store is back
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "s", "t.tsv"]


def test_6_a_kill_right_after_the_exchange_leaves_the_new_store(tmp_path, triples, capsys, monkeypatch):
    write_toy_store(tmp_path / "s")

    def child():  # pragma: no cover - the child
        monkeypatch.setattr(placement.shutil, "rmtree", _die)
        main(["--quiet", "prepare", "triples", str(triples), "--out", str(tmp_path / "s"), "--overwrite", "--split-ratios", "1,0,0"])

    _killed(child)
    assert json.loads((tmp_path / "s" / "manifest.json").read_text())["counts"]["entities"] == 3
    rc, err, _ = run_cli(capsys, "info", tmp_path / "s")
    assert rc == 0, err
    rc, err, _ = run_cli(capsys, "prepare", "triples", triples, "--out", tmp_path / "other")
    assert rc == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["other", "s", "t.tsv"]
