"""The entity ``concept`` column: written, read back, merged, validated; version-1 stores still read."""

import json

import pyarrow.parquet as pq
import pytest

from kgclip.errors import StoreError
from kgclip.store import KnowledgeStore, SplitConfig, StoreWriter, merge_stores, open_valid
from kgclip.store.format import ENTITY_SCHEMA
from kgclip.store.validate import check_entities


def _views_store(path):
    with StoreWriter(path, image_roots={"vs": "imgs"}, split=SplitConfig(ratios=(1, 0, 0))) as w:
        g = w.add_entity("vs:A/gloss/0", "text", text="a pet", source="vs", concept="vs:A")
        i = w.add_entity("vs:A/image/x", "image", image="x.jpg", source="vs", concept="vs:A")
        ids = w.add_entities(["vs:B/gloss/0", "plain"], "text", source="vs", texts=["b", "plain"], concepts=["vs:B", None])
        r = w.add_relation("is-a", "is a")
        w.add_triplet(g, r, int(ids[0]), source="vs")
        w.add_triplet(i, r, int(ids[1]), source="vs")


def test_concept_round_trip_and_merge(tmp_path):
    _views_store(tmp_path / "s")
    s = open_valid(tmp_path / "s")
    assert s.entities["concept"].tolist() == ["vs:A", "vs:A", "vs:B", None]
    assert s.entity_table(["key", "concept"]).column("concept").to_pylist() == ["vs:A", "vs:A", "vs:B", None]
    merge_stores([tmp_path / "s"], tmp_path / "m")
    assert open_valid(tmp_path / "m").entities["concept"].tolist() == ["vs:A", "vs:A", "vs:B", None]


def test_empty_concept_is_refused(tmp_path):
    with pytest.raises(StoreError, match="empty concept"), StoreWriter(tmp_path / "s") as w:
        w.add_entity("a", "text", text="a", source="x", concept="")
    with pytest.raises(StoreError, match="empty concept"), StoreWriter(tmp_path / "s") as w:
        w.add_entities(["a"], "text", source="x", texts=["a"], concepts=[""])
    assert not (tmp_path / "s").exists()


def test_validation_names_an_empty_concept(tmp_path):
    _views_store(tmp_path / "s")
    e = KnowledgeStore(tmp_path / "s").entities.copy()
    e.loc[2, "concept"] = ""
    (msg,) = check_entities(e)
    assert "1 entity(ies) with an empty concept" in msg and "'vs:B/gloss/0'" in msg


def test_version_1_store_reads_with_null_concepts(tmp_path):
    _views_store(tmp_path / "s")
    for f in (tmp_path / "s" / "entities").glob("*.parquet"):  # rewrite as version 1: no concept column
        pq.write_table(pq.read_table(f).drop(["concept"]), f)
    mpath = tmp_path / "s" / "manifest.json"
    m = json.loads(mpath.read_text())
    m["format_version"] = 1
    del m["files"]  # version-1 stores predate the manifest's file table
    mpath.write_text(json.dumps(m))
    s = open_valid(tmp_path / "s")
    assert s.entities.columns.tolist() == ENTITY_SCHEMA.names
    assert s.entities["concept"].tolist() == [None] * 4
    assert s.entity_table(["concept", "key"]).column_names == ["concept", "key"]
