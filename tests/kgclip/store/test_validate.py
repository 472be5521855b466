"""Each validation failure has its own test: a table is broken on purpose and checked."""

import numpy as np
import pytest

from kgclip.errors import StoreError
from kgclip.store import KnowledgeStore, open_valid
from kgclip.store.validate import check_entities, check_relations, check_triplets


@pytest.fixture
def tables(toy_store):
    s = KnowledgeStore(toy_store)
    return s.entities.copy(), s.relations.copy(), s.triplets.copy()


def test_dangling_entity_id(tables):
    _, _, t = tables
    t.loc[1, "tail_id"] = 42
    (msg,) = check_triplets(t, 5, 3)
    assert "dangling tail_id" in msg and "row(s) 1" in msg and "42" in msg


def test_dangling_relation_id(tables):
    _, _, t = tables
    t.loc[0, "relation_id"] = -1
    (msg,) = check_triplets(t, 5, 3)
    assert "dangling relation_id" in msg


def test_duplicate_keys(tables):
    e, _, _ = tables
    e.loc[4, "key"] = "t:dog"
    (msg,) = check_entities(e)
    assert "1 duplicate key(s): 't:dog'" in msg


def test_duplicate_relation_keys(tables):
    _, r, _ = tables
    r.loc[2, "key"] = "/r/IsA"
    (msg,) = check_relations(r)
    assert "duplicate relation key" in msg


def test_unknown_modality(tables):
    e, _, _ = tables
    e.loc[0, "modality"] = "audio"
    (msg,) = check_entities(e)
    assert "unknown modality 'audio'" in msg and "'t:dog'" in msg


def test_image_entity_without_image(tables):
    e, _, _ = tables
    e.loc[3, "image"] = None
    (msg,) = check_entities(e)
    assert "image entity(ies) without an image: 'i:cat.jpg'" in msg


def test_text_entity_without_text(tables):
    e, _, _ = tables
    e.loc[1, "text"] = ""
    (msg,) = check_entities(e)
    assert "text entity(ies) without text: 't:animal'" in msg


def test_bbox_non_positive(tables):
    e, _, _ = tables
    e.at[2, "bbox"] = np.array([0.0, 0.0, 0.0, 5.0])
    (msg,) = check_entities(e)
    assert "non-positive size: 'i:dog.jpg'" in msg


def test_bbox_outside_known_image(tables):
    e, _, _ = tables
    e.at[2, "bbox"] = np.array([10.0, 0.0, 8.0, 8.0])  # 10 + 8 > width 16
    (msg,) = check_entities(e)
    assert "outside their image: 'i:dog.jpg'" in msg


def test_bbox_unchecked_when_size_unknown(tables):
    e, _, _ = tables
    e.at[3, "bbox"] = np.array([1000.0, 0.0, 8.0, 8.0])  # i:cat.jpg has no known size
    assert check_entities(e) == []


def test_unknown_split(tables):
    _, _, t = tables
    t.loc[0, "split"] = "dev"
    (msg,) = check_triplets(t, 5, 3)
    assert "unknown split 'dev'" in msg


def test_ids_not_dense(tables):
    e, _, _ = tables
    e.loc[0, "entity_id"] = 7
    assert any("not dense" in m for m in check_entities(e))


def test_open_valid_names_the_first_problem(toy_store):
    import pyarrow.parquet as pq

    path = toy_store / "triplets" / "part-00000.parquet"
    t = pq.read_table(path).to_pandas()
    t.loc[0, "head_id"] = 99
    pq.write_table(__import__("pyarrow").Table.from_pandas(t, preserve_index=False), path)
    with pytest.raises(StoreError, match=r"invalid store: triplets: 1 dangling head_id"):
        open_valid(toy_store)


def test_counts_mismatch_is_a_problem(toy_store):
    import json

    m = json.loads((toy_store / "manifest.json").read_text())
    m["counts"]["triplets"] = 1000
    (toy_store / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(StoreError, match=r"counts\.triplets is 1000"):
        open_valid(toy_store)
