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
