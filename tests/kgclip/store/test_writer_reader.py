import json

import numpy as np
import pytest

from kgclip.errors import StoreError
from kgclip.store import KnowledgeStore, SplitConfig, StoreWriter, open_valid, validate_store
from kgclip.store.format import FORMAT_VERSION


def test_round_trip(toy_store):
    s = open_valid(toy_store)
    assert s.manifest["format_version"] == FORMAT_VERSION
    assert s.manifest["counts"] == {"entities": 5, "relations": 3, "triplets": 6, "splits": {"train": 6, "valid": 0, "test": 0}}
    assert s.entities["key"].tolist() == ["t:dog", "t:animal", "i:dog.jpg", "i:cat.jpg", "t:cat"]
    assert s.entities["entity_id"].tolist() == [0, 1, 2, 3, 4]
    assert list(s.entities.loc[2, "bbox"]) == [0, 0, 8, 8]
    assert s.entities.loc[2, "image_width"] == 16
    assert s.relations["text"].tolist() == ["is a", "image of", "near"]
    t = s.triplets
    assert list(zip(t.head_id, t.relation_id, t.tail_id, strict=True))[:2] == [(0, 0, 1), (4, 0, 1)]
    assert s.entity_index["t:cat"] == 4 and s.entity_keys[4] == "t:cat"
    assert s.relation_index["near"] == 2
    assert s.image_path(2) == toy_store / "images" / "dog.jpg"


def test_entity_keys_dedupe_and_triplets_dedupe(tmp_path):
    with StoreWriter(tmp_path / "s", split=SplitConfig(ratios=(1, 0, 0))) as w:
        a = w.add_entity("a", "text", text="a", source="x")
        assert w.add_entity("a", "text", text="other", source="x") == a
        b = w.add_entity("b", "text", text="b", source="x")
        r = w.add_relation("r", "r")
        for _ in range(3):
            w.add_triplet(a, r, b, source="x")
    s = KnowledgeStore(tmp_path / "s")
    assert len(s.triplets) == 1
    assert s.manifest["duplicates_removed"] == 2
    assert s.entities["text"].tolist() == ["a", "b"]


def test_shards_are_flushed_and_read_back(tmp_path):
    with StoreWriter(tmp_path / "s", shard_rows=3, split=SplitConfig(ratios=(1, 0, 0))) as w:
        ids = [w.add_entity(f"e{i}", "text", text=f"e{i}", source="x") for i in range(10)]
        r = w.add_relation("r", "r")
        w.add_triplets(ids[:-1], [r] * 9, ids[1:], source="x")
    s = open_valid(tmp_path / "s")
    assert len(s.entity_files) == 4 and len(s.triplet_files) == 3
    assert s.entities["key"].tolist() == [f"e{i}" for i in range(10)]
    assert s.triplets["head_id"].tolist() == list(range(9))


def test_interrupted_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), StoreWriter(tmp_path / "s") as w:
        w.add_entity("a", "text", text="a", source="x")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_overwrite_only_when_asked(toy_store):
    with pytest.raises(StoreError, match="already exists"):
        StoreWriter(toy_store)
    with StoreWriter(toy_store, overwrite=True) as w:
        w.add_entity("only", "text", text="only", source="x")
    assert KnowledgeStore(toy_store).num_entities == 1
    assert sorted(p.name for p in toy_store.parent.iterdir()) == ["toy"]


def test_writer_refuses_unknown_modality_and_split(tmp_path):
    w = StoreWriter(tmp_path / "s")
    with pytest.raises(StoreError, match="unknown modality 'video'"):
        w.add_entity("v", "video", source="x")
    with pytest.raises(StoreError, match="unknown split 'dev'"):
        w.add_triplet(0, 0, 0, source="x", split="dev")
    w.abort()
    assert list(tmp_path.iterdir()) == []


# -- broken stores: one line naming the file and the problem -------------------------------------

def test_missing_manifest(toy_store):
    (toy_store / "manifest.json").unlink()
    with pytest.raises(StoreError, match=r"manifest.json: missing"):
        KnowledgeStore(toy_store)


def test_wrong_format_version(toy_store):
    m = json.loads((toy_store / "manifest.json").read_text())
    m["format_version"] = 99
    (toy_store / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(StoreError, match="format version 99"):
        KnowledgeStore(toy_store)


def test_missing_relations_file(toy_store):
    (toy_store / "relations.parquet").unlink()
    with pytest.raises(StoreError, match=r"relations.parquet: missing"):
        KnowledgeStore(toy_store)


def test_corrupt_parquet(toy_store):
    shard = toy_store / "triplets" / "part-00000.parquet"
    shard.write_bytes(b"PAR1 not really")
    with pytest.raises(StoreError, match=r"part-00000.parquet: cannot read parquet"):
        KnowledgeStore(toy_store).triplets  # noqa: B018


def test_validate_clean_store_has_no_problems(toy_store):
    assert validate_store(KnowledgeStore(toy_store)) == []


def test_store_ids_are_int64(toy_store):
    s = KnowledgeStore(toy_store)
    assert s.triplets["head_id"].dtype == np.int64


# -- the manifest's file table and the fingerprint (issue 16.4) ---------------------------------------

def _chain_store(path, n=1330):
    with StoreWriter(path, split=SplitConfig(ratios=(1, 0, 0))) as w:
        ids = w.add_entities([f"e{i}" for i in range(n + 1)], "text", source="x", texts=[f"e{i}" for i in range(n + 1)])
        r = w.add_relation("next", "next")
        w.add_triplets(ids[:-1], [r] * n, ids[1:], source="x")


def _cut(shard, rows):
    import pyarrow.parquet as pq

    t = pq.read_table(shard)
    pq.write_table(t.slice(0, rows), shard)


def test_manifest_records_every_data_file_size_and_sha256(toy_store):
    import hashlib

    files = json.loads((toy_store / "manifest.json").read_text())["files"]
    assert sorted(files) == ["entities/part-00000.parquet", "relations.parquet", "triplets/part-00000.parquet"]
    for name, rec in files.items():
        data = (toy_store / name).read_bytes()
        assert rec == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_fingerprint_is_stable_and_does_not_depend_on_the_folder(toy_store, tmp_path):
    import shutil

    shutil.copytree(toy_store, tmp_path / "copy")
    a = KnowledgeStore(toy_store).fingerprint()
    assert a == KnowledgeStore(toy_store).fingerprint() == KnowledgeStore(tmp_path / "copy").fingerprint()
    assert len(a) == 16


def test_a_cut_triplet_shard_changes_the_fingerprint_and_fails_validation(tmp_path):
    _chain_store(tmp_path / "s")
    s = open_valid(tmp_path / "s")
    assert s.manifest["counts"]["triplets"] == 1330
    before = s.fingerprint()
    _cut(tmp_path / "s" / "triplets" / "part-00000.parquet", 200)
    after = KnowledgeStore(tmp_path / "s")
    assert after.fingerprint() != before
    assert len(after.triplets) == 200
    with pytest.raises(StoreError, match=r"invalid store: manifest.json: counts.triplets is 1330 but the shards hold 200 \(and 2 more\)$"):
        open_valid(tmp_path / "s")
    (size_problem,) = after.file_problems()
    assert size_problem.startswith("triplets/part-00000.parquet:") and "bytes, manifest.json records" in size_problem


def test_a_same_size_change_is_found_by_the_hashes_only(toy_store):
    shard = toy_store / "relations.parquet"
    data = bytearray(shard.read_bytes())
    i = data.index(b"near")
    data[i : i + 4] = b"nEar"  # same size, a different relation key
    shard.write_bytes(bytes(data))
    s = KnowledgeStore(toy_store)
    assert s.file_problems() == []
    assert s.file_problems(hashes=True) == ["relations.parquet: content differs from the SHA-256 in manifest.json (changed after writing)"]
    assert validate_store(s) == ["relations.parquet: content differs from the SHA-256 in manifest.json (changed after writing)"]


def test_an_older_store_without_the_file_table_opens_and_its_fingerprint_follows_sizes(tmp_path):
    _chain_store(tmp_path / "s")
    m = json.loads((tmp_path / "s" / "manifest.json").read_text())
    del m["files"]
    (tmp_path / "s" / "manifest.json").write_text(json.dumps(m))
    s = open_valid(tmp_path / "s")
    assert s.file_problems(hashes=True) == []
    before = s.fingerprint()
    _cut(tmp_path / "s" / "triplets" / "part-00000.parquet", 200)
    assert KnowledgeStore(tmp_path / "s").fingerprint() != before


# -- image paths stay inside their image root (issue 16.8) --------------------------------------------

def _image_store(path, root, images):
    with StoreWriter(path, image_roots={"src": str(root)}, split=SplitConfig(ratios=(1, 0, 0))) as w:
        ids = [w.add_entity(f"i:{n}", "image", image=img, source="src") for n, img in enumerate(images)]
        w.add_triplet(ids[0], w.add_relation("r", "r"), ids[-1], source="src")
    return KnowledgeStore(path)


def test_image_paths_inside_the_root_are_returned(tmp_path):
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    s = _image_store(tmp_path / "s", root, ["a.jpg", "sub/b.jpg", "sub/../c.jpg", "a.jpg"])
    assert s.image_path(1) == root / "sub/b.jpg"
    assert s.image_paths().tolist() == [str(root / "a.jpg"), str(root / "sub/b.jpg"), str(root / "sub/../c.jpg"), str(root / "a.jpg")]


@pytest.mark.parametrize("bad", ["../../../../etc/passwd", "/etc/passwd", "sub/../../outside/secret"])
def test_an_image_path_that_climbs_out_names_the_entity(tmp_path, bad):
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    s = _image_store(tmp_path / "s", root, ["ok.jpg", bad])
    assert s.image_path(0) == root / "ok.jpg"
    with pytest.raises(StoreError, match=rf"entity 'i:1': image path '{bad}' escapes its image root {root}$"):
        s.image_path(1)
    with pytest.raises(StoreError, match=r"entity 'i:1': image path .* escapes"):
        s.image_paths()
    assert any("escapes its image root" in p for p in validate_store(s))


def test_a_symbolic_link_out_of_the_root_is_refused(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    (tmp_path / "secret.jpg").write_bytes(b"x")
    (root / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    (root / "dir").symlink_to(tmp_path)
    (root / "inner.jpg").write_bytes(b"y")
    (root / "fine.jpg").symlink_to(root / "inner.jpg")  # a link that stays inside is fine
    (tmp_path / "a" / "b").mkdir(parents=True)
    (root / "deep").symlink_to(tmp_path / "a" / "b")  # deep/../x is tmp_path/a/x for the kernel, root/x lexically
    s = _image_store(tmp_path / "s", root, ["fine.jpg", "link.jpg", "dir/secret.jpg", "deep/../x.jpg"])
    assert s.image_path(0) == root / "fine.jpg"
    for eid in (1, 2, 3):
        with pytest.raises(StoreError, match=rf"entity 'i:{eid}': image path .* escapes its image root"):
            s.image_path(eid)
    with pytest.raises(StoreError, match=r"entity 'i:1': image path 'link\.jpg' escapes"):
        s.image_paths()
