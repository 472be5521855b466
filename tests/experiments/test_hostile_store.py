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


@pytest.mark.parametrize("argv", [
    ["prepare", "triples", "{triples}", "--out", "{out}"],
    ["prepare", "triples", "{triples}", "--out", "{out}", "--overwrite"],
    ["prepare", "merge", "{store}", "--out", "{out}"],
    ["prepare", "demo", "--out", "{out}", "--scenes", "4"],
    ["finetune", "glue", "--init", "kgclip-tiny", "--out", "{out}", "--task", "rte", "--train", "{triples}", "--eval", "{triples}"],
    ["export", "{triples}", "--out", "{out}"],
    ["eval", "{triples}", "--store", "{store}", "--out", "{out}"],
])
@pytest.mark.parametrize("where", ["sub", "triplets/deeper", "link/sub"])
def test_1_nothing_is_written_inside_a_store(tmp_path, triples, capsys, argv, where):
    write_toy_store(tmp_path / "s", image_root=tmp_path / "images")
    (tmp_path / "link").symlink_to(tmp_path / "s")  # a link to the store is the store
    out = tmp_path / where if where.startswith("link") else tmp_path / "s" / where
    args = [a.format(triples=triples, store=tmp_path / "s", out=out) for a in argv]
    refused(capsys, tmp_path, *args, match=f"{out}: inside the kgclip store {tmp_path / 's'}; a store folder holds only its own files")


@pytest.mark.parametrize("where", ["view.png", "triplets/view.png", "link/view.png"])
def test_1_inspect_png_inside_a_store_is_refused(tmp_path, capsys, where):
    write_toy_store(tmp_path / "s", image_root=tmp_path / "images")
    (tmp_path / "link").symlink_to(tmp_path / "s")
    png = tmp_path / where if where.startswith("link") else tmp_path / "s" / where
    refused(capsys, tmp_path, "inspect", tmp_path / "s", "--entity", "t:dog", "--png", png,
            match=f"{png}: inside the kgclip store {tmp_path / 's'}; a store folder holds only its own files")
    rc, err, out = run_cli(capsys, "inspect", tmp_path / "s", "--entity", "t:dog", "--png", tmp_path / "view.png")
    assert rc == 0 and "wrote" in out and (tmp_path / "view.png").stat().st_size > 0, err


@pytest.mark.parametrize("argv", [
    ["prepare", "triples", "{triples}", "--out", "{out}"],
    ["finetune", "glue", "--init", "kgclip-tiny", "--out", "{out}", "--task", "rte", "--train", "{triples}", "--eval", "{triples}"],
    ["export", "{triples}", "--out", "{out}"],
])
def test_1_an_out_through_a_loop_of_links_is_one_line(tmp_path, triples, capsys, argv):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    out = tmp_path / "loop" / "x"
    args = [a.format(triples=triples, out=out) for a in argv]
    refused(capsys, tmp_path, *args, match=f"{out}: cannot be resolved (a loop of symbolic links)")  # before: a RuntimeError traceback


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


# -- 4. a changed store is told apart ----------------------------------------------------------------

def test_4_a_triplet_shard_cut_from_1330_to_200_rows_is_refused(tmp_path, capsys):
    import pyarrow.parquet as pq

    from kgclip.store import KnowledgeStore, SplitConfig, StoreWriter

    with StoreWriter(tmp_path / "s", split=SplitConfig(ratios=(1, 0, 0))) as w:
        ids = w.add_entities([f"e{i}" for i in range(1331)], "text", source="x", texts=[f"e{i}" for i in range(1331)])
        w.add_triplets(ids[:-1], [w.add_relation("next", "next")] * 1330, ids[1:], source="x")
    before = KnowledgeStore(tmp_path / "s").fingerprint()
    shard = tmp_path / "s" / "triplets" / "part-00000.parquet"
    pq.write_table(pq.read_table(shard).slice(0, 200), shard)
    assert KnowledgeStore(tmp_path / "s").fingerprint() != before
    refused(capsys, tmp_path, "info", tmp_path / "s", match="invalid store: manifest.json: counts.triplets is 1330 but the shards hold 200 (and 2 more)")


# -- 9 and 11. every command that reads a store validates it first ---------------------------------------

def _edit_shard(path, fn):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    pq.write_table(pa.Table.from_pandas(fn(table.to_pandas()), schema=table.schema, preserve_index=False), path)


def _set(col, row, value):
    def fn(frame):
        frame.loc[row, col] = value
        return frame
    return fn


T0 = "triplets/part-00000.parquet"
BREAKAGES = {
    "dangling tail_id": (lambda s: _edit_shard(s / T0, _set("tail_id", 1, 42)), f"{T0}: 1 dangling tail_id (no such entity; 5 exist) at row(s) 1: ids 42"),
    "head_id -5": (lambda s: _edit_shard(s / T0, _set("head_id", 0, -5)), f"{T0}: 1 dangling head_id (no such entity; 5 exist) at row(s) 0: ids -5"),
    "unknown relation_id": (lambda s: _edit_shard(s / T0, _set("relation_id", 2, 7)), f"{T0}: 1 dangling relation_id (no such relation; 3 exist)"),
    "unknown split": (lambda s: _edit_shard(s / T0, _set("split", 3, "dev")), "triplets: 1 triplet(s) of unknown split 'dev'"),
    "duplicate key": (lambda s: _edit_shard(s / "entities" / "part-00000.parquet", _set("key", 4, "t:dog")), "entities: 1 duplicate entity key(s): 't:dog'"),
    "missing shard": (lambda s: (s / T0).unlink(), None),
    # unreadable entities and aliases: train crashed (AttributeError, TypeError), inspect of an alias raised IndexError
    "unknown modality": (lambda s: _edit_shard(s / "entities" / "part-00000.parquet", _set("modality", 0, "video")),
                         "entities: 1 entity(ies) of unknown modality: 't:dog'"),
    "text entity without text": (lambda s: _edit_shard(s / "entities" / "part-00000.parquet", _set("text", 4, None)),
                                 "entities: 1 text entity(ies) without text: 't:cat'"),
    "image entity without image": (lambda s: _edit_shard(s / "entities" / "part-00000.parquet", _set("image", 3, None)),
                                   "entities: 1 image entity(ies) without an image: 'i:cat.jpg'"),
    "alias of no entity": (lambda s: _aliases(s, ["alias:dog"], [99]), "aliases.parquet: 1 dangling entity_id (no such entity; 5 exist) at row(s) 0: ids 99"),
    "no counts": (lambda s: _edit_manifest(s, lambda m: m.pop("counts")), "manifest.json: no counts"),
    "foreign-schema shard": (lambda s: _foreign(s / T0), f"{T0}: no column head_id (a shard of another schema?)"),
    "invalid JSON manifest": (lambda s: (s / "manifest.json").write_bytes(b'{"format_version": 2,\n\xff\xfe\n "counts": '), "manifest.json: unreadable manifest ("),
    "truncated JSON manifest": (lambda s: (s / "manifest.json").write_text('{"format_version": 2,\n  "counts": {'), "manifest.json: unreadable manifest (Expecting"),
}


def _aliases(store, keys, ids):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from kgclip.store.files import file_table

    pq.write_table(pa.table({"key": pa.array(keys, pa.string()), "entity_id": pa.array(ids, pa.int64())}), store / "aliases.parquet")
    _edit_manifest(store, lambda m: m.__setitem__("files", file_table(store)))  # listed, so only its content is wrong


def _edit_manifest(store, fn):
    m = json.loads((store / "manifest.json").read_text())
    fn(m)
    (store / "manifest.json").write_text(json.dumps(m, indent=2))


def _foreign(path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"subject": ["dog"], "predicate": ["is a"], "object": ["animal"]}), path)


def _broken(tmp_path, name):
    write_toy_store(tmp_path / "s")
    breakage, message = BREAKAGES[name]
    breakage(tmp_path / "s")
    return tmp_path / "s", message


COMMANDS = {
    "info": lambda s, tmp: ["info", s],
    "inspect": lambda s, tmp: ["inspect", s, "--entity", "t:dog"],
    "inspect --png": lambda s, tmp: ["inspect", s, "--entity", "t:dog", "--png", tmp / "n.png"],
    "eval": lambda s, tmp: ["eval", tmp / "no-run-needed", "--store", s],
    "query": lambda s, tmp: ["query", tmp / "no-run-needed", "--store", s, "--head", "t:dog", "--relation", "is a"],
}


@pytest.mark.parametrize("name", BREAKAGES)
@pytest.mark.parametrize("command", COMMANDS)
def test_9_11_a_broken_store_is_one_line_and_exit_2_for_every_command(tmp_path, capsys, name, command):
    store, message = _broken(tmp_path, name)
    if message is None:  # a missing listed shard; the store has one triplet shard, so the reader names the folder
        message = "triplets: missing or holds no parquet shard"
    refused(capsys, tmp_path, *COMMANDS[command](store, tmp_path), match=message)


def test_9_a_store_missing_one_of_three_triplet_shards(tmp_path, capsys):
    from kgclip.store import SplitConfig, StoreWriter

    with StoreWriter(tmp_path / "s", shard_rows=2, split=SplitConfig(ratios=(1, 0, 0))) as w:
        ids = w.add_entities([f"e{i}" for i in range(7)], "text", source="x", texts=[f"e{i}" for i in range(7)])
        w.add_triplets(ids[:-1], [w.add_relation("r", "r")] * 6, ids[1:], source="x")
    (tmp_path / "s" / "triplets" / "part-00002.parquet").unlink()
    for argv in (["info", tmp_path / "s"], ["inspect", tmp_path / "s", "--entity", "e1"]):
        refused(capsys, tmp_path, *argv, match="invalid store: triplets/part-00002.parquet: listed in manifest.json but missing (and 2 more)")


@pytest.mark.parametrize(("flag", "value", "want"), [("--hops", -1, "--hops must be at least 0, got -1"),
                                                     ("--max-triplets", 0, "--max-triplets must be at least 1, got 0")])
def test_11_inspect_impossible_numbers(tmp_path, capsys, flag, value, want):
    write_toy_store(tmp_path / "s")
    refused(capsys, tmp_path, "inspect", tmp_path / "s", "--entity", "t:dog", flag, value, match=want)


def test_11_inspect_and_info_on_a_valid_store_still_work(tmp_path, capsys):
    write_toy_store(tmp_path / "s")
    rc, err, out = run_cli(capsys, "inspect", tmp_path / "s", "--entity", "t:dog", "--hops", 1)
    assert rc == 0 and err == [] and "animal" in out
    rc, err, out = run_cli(capsys, "info", tmp_path / "s")
    assert rc == 0 and "validation: ok" in out


# -- 11. query: --top, a corrupt candidate cache ------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from kgclip.training import train_loop
    from tests.kgclip.training.test_loop import _config, _store

    tmp = tmp_path_factory.mktemp("q")
    store = _store(tmp)
    cfg, _ = _config(tmp, store, **{"train.steps": 2})
    return train_loop(cfg, quiet=True).last_checkpoint, tmp


def test_11_query_top_minus_3_is_one_line(trained, capsys):
    ckpt, tmp = trained
    refused(capsys, tmp, "query", ckpt, "--head", "t3", "--relation", "r1", "--top", -3, match="kgclip query: error: --top must be at least 1, got -3")


@pytest.mark.parametrize("garbage", [b"", b"not a torch file", b"PK\x03\x04 truncated zip"])
def test_11_a_corrupt_candidate_cache_is_rebuilt(trained, capsys, garbage):
    import torch

    ckpt, tmp = trained
    cache = ckpt.with_name(ckpt.name + ".candidates.pt")
    cache.write_bytes(garbage)
    before = snapshot(tmp, skip=[cache])
    rc, err, out = run_cli(capsys, "query", ckpt, "--head", "t3", "--relation", "r1", "--top", 3)
    assert rc == 0, err
    assert len([line for line in out.splitlines() if line.strip()]) == 4  # header + 3 rows
    saved = torch.load(cache, weights_only=True)
    assert saved["vectors"].ndim == 2 and snapshot(tmp, skip=[cache]) == before


@pytest.mark.parametrize("content", [b"", b"garbage, not a PNG"])
def test_11_query_with_an_image_that_does_not_decode_is_one_line(trained, capsys, content):
    ckpt, tmp = trained
    bad = tmp / "head.png"
    bad.write_bytes(content)  # before: PIL.UnidentifiedImageError traceback
    refused(capsys, tmp, "query", ckpt, "--head", bad, "--relation", "r1", match=f"kgclip query: error: {bad}: not a readable image (cannot identify")


def test_11_query_answers_when_the_candidate_cache_cannot_be_written(trained, capsys, monkeypatch):
    import errno

    import kgclip.query

    def read_only(obj, path):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    ckpt, tmp = trained
    cache = ckpt.with_name(ckpt.name + ".candidates.pt")
    cache.unlink(missing_ok=True)
    monkeypatch.setattr(kgclip.query.torch, "save", read_only)
    before = snapshot(tmp)
    rc, err, out = run_cli(capsys, "query", ckpt, "--head", "t3", "--relation", "r1", "--top", 2)
    assert rc == 0 and len([line for line in out.splitlines() if line.strip()]) == 3, err
    assert snapshot(tmp) == before  # no cache and no temporary left


@pytest.mark.parametrize(("flags", "want"), [(["--max-queries", "-1"], "--max-queries must be at least 1, got -1"),
                                           (["--out", "{tmp}/nowhere/m.json"], "--out {tmp}/nowhere/m.json: no folder {tmp}/nowhere"),
                                           (["--out", "{tmp}"], "--out {tmp}: is a folder")])
def test_11_eval_flags_that_cannot_work_are_one_line_before_the_evaluation(trained, capsys, flags, want):
    ckpt, tmp = trained  # before: a pandas ValueError, or a FileNotFoundError after the whole evaluation
    refused(capsys, tmp, "eval", ckpt, "--store", tmp / "store", "--tasks", "link", *[f.format(tmp=tmp) for f in flags], match=want.format(tmp=tmp))


def test_11_eval_writes_its_metrics_file_whole(trained, capsys):
    ckpt, tmp = trained
    out = tmp / "m.json"
    rc, err, _ = run_cli(capsys, "eval", ckpt, "--store", tmp / "store", "--tasks", "relation", "--out", out)
    assert rc == 0, err
    assert "relation_acc" in json.loads(out.read_text())["metrics"] and not list(tmp.glob(".m.json.tmp-*"))
    out.unlink()


# -- 8. image paths never leave their image root ------------------------------------------------------------

@pytest.mark.parametrize("bad", ["../outside/secret.png", "{tmp}/outside/secret.png", "link/secret.png"])
def test_8_inspect_png_refuses_an_image_outside_its_root(tmp_path, capsys, bad):
    from PIL import Image

    from kgclip.store import SplitConfig, StoreWriter

    root, outside = tmp_path / "imgs", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(outside / "secret.png")
    Image.new("RGB", (8, 8), (0, 255, 0)).save(root / "ok.png")
    (root / "link").symlink_to(outside)
    bad = bad.format(tmp=tmp_path)
    with StoreWriter(tmp_path / "s", image_roots={"src": str(root)}, split=SplitConfig(ratios=(1, 0, 0))) as w:
        ok = w.add_entity("i:ok", "image", image="ok.png", source="src")
        evil = w.add_entity("i:evil", "image", image=bad, source="src")
        dog = w.add_entity("t:dog", "text", text="dog", source="src")
        r = w.add_relation("shows", "shows")
        w.add_triplet(ok, r, dog, source="src")
        w.add_triplet(evil, r, dog, source="src")
    refused(capsys, tmp_path, "inspect", tmp_path / "s", "--entity", "t:dog", "--png", tmp_path / "n.png",
            match=f"entity 'i:evil': image path {bad!r} escapes its image root {root}")
    rc, _, out = run_cli(capsys, "info", tmp_path / "s")
    assert rc == 2 and f"entity 'i:evil': image path {bad!r} escapes its image root" in out


def test_8_inspect_png_draws_images_inside_their_root(tmp_path, capsys):
    write_toy_store(tmp_path / "s", image_root=tmp_path / "imgs")
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    for name in ("dog.jpg", "cat.jpg"):
        Image.new("RGB", (16, 16), (0, 0, 255)).save(tmp_path / "imgs" / name)
    before = snapshot(tmp_path, skip=[tmp_path / "n.png"])
    rc, err, _ = run_cli(capsys, "inspect", tmp_path / "s", "--entity", "t:dog", "--png", tmp_path / "n.png")
    assert rc == 0, err
    assert (tmp_path / "n.png").stat().st_size > 0 and snapshot(tmp_path, skip=[tmp_path / "n.png"]) == before


@pytest.mark.parametrize(("target", "want"), [("nowhere/n.png", "no folder"), ("n.txt", "give a file name ending in .png"),
                                            ("imgs", "give a file name ending in .png")])
def test_11_inspect_png_that_cannot_be_written_is_one_line_before_any_work(tmp_path, capsys, target, want):
    # before: FileNotFoundError and matplotlib's ValueError tracebacks; a folder got "wrote imgs" while imgs.png was written
    write_toy_store(tmp_path / "s", image_root=tmp_path / "imgs")
    (tmp_path / "imgs").mkdir()
    refused(capsys, tmp_path, "inspect", tmp_path / "s", "--entity", "t:dog", "--png", tmp_path / target, match=f"--png {tmp_path / target}: {want}")


def test_9_merge_refuses_a_broken_input_before_writing(tmp_path, capsys):
    write_toy_store(tmp_path / "a")
    write_toy_store(tmp_path / "b")
    _edit_shard(tmp_path / "b" / T0, _set("tail_id", 1, 42))
    refused(capsys, tmp_path, "prepare", "merge", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "m",
            match=f"{tmp_path / 'b'}: invalid store: {T0}: 1 dangling tail_id")


def test_1_out_below_a_file_is_one_line(tmp_path, triples, capsys):
    refused(capsys, tmp_path, "prepare", "triples", triples, "--out", triples / "s", match=f"{triples / 's'}: cannot create the store folder (")
