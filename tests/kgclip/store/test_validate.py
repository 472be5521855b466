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
    with pytest.raises(StoreError, match=r"invalid store: triplets/part-00000.parquet: 1 dangling head_id \(no such entity; 5 exist\) at row\(s\) 0: ids 99 \(and 1 more\)$"):
        open_valid(toy_store)


def test_counts_mismatch_is_a_problem(toy_store):
    import json

    m = json.loads((toy_store / "manifest.json").read_text())
    m["counts"]["triplets"] = 1000
    (toy_store / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(StoreError, match=r"counts\.triplets is 1000"):
        open_valid(toy_store)


# -- the fast checks of open_valid: every problem one line, naming the shard --------------------------

def _rewrite(path, fn, schema=None):
    """Rewrite a parquet shard through pandas: ``fn(frame) -> frame``; ``schema`` None keeps the file's."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    frame = fn(table.to_pandas())
    pq.write_table(pa.Table.from_pandas(frame, schema=schema if schema is not None else table.schema, preserve_index=False), path)


def _manifest(store, edit):
    import json

    m = json.loads((store / "manifest.json").read_text())
    edit(m)
    (store / "manifest.json").write_text(json.dumps(m))


def _first_problem(store):
    with pytest.raises(StoreError) as exc:
        open_valid(store)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"{store}: invalid store: ")
    return msg.removeprefix(f"{store}: invalid store: ")


TRIPLETS = "triplets/part-00000.parquet"


@pytest.mark.parametrize(("col", "value", "want"), [
    ("tail_id", 42, "1 dangling tail_id (no such entity; 5 exist) at row(s) 1: ids 42"),
    ("head_id", -5, "1 dangling head_id (no such entity; 5 exist) at row(s) 1: ids -5"),
    ("relation_id", 3, "1 dangling relation_id (no such relation; 3 exist) at row(s) 1: ids 3"),
])
def test_fast_dangling_ids(toy_store, col, value, want):
    def edit(t):
        t.loc[1, col] = value
        return t
    _rewrite(toy_store / TRIPLETS, edit)
    assert _first_problem(toy_store).startswith(f"{TRIPLETS}: {want}")


@pytest.mark.parametrize(("value", "shown"), [("dev", "'dev'"), (None, "None")])
def test_fast_unknown_or_missing_split(toy_store, value, shown):
    def edit(t):
        t.loc[2, "split"] = value
        return t
    _rewrite(toy_store / TRIPLETS, edit)
    assert _first_problem(toy_store).startswith(f"triplets: 1 triplet(s) of unknown split {shown} (expected one of train, valid, test)")


def test_fast_duplicate_entity_and_relation_keys(toy_store):
    def dup_entity(e):
        e.loc[4, "key"] = "t:dog"
        return e
    _rewrite(toy_store / "entities" / "part-00000.parquet", dup_entity)
    assert _first_problem(toy_store).startswith("entities: 1 duplicate entity key(s): 't:dog'")


def test_fast_duplicate_relation_key(toy_store):
    def dup(r):
        r.loc[2, "key"] = "/r/IsA"
        return r
    _rewrite(toy_store / "relations.parquet", dup)
    assert _first_problem(toy_store).startswith("relations.parquet: 1 duplicate relation key(s): '/r/IsA'")


def test_fast_entity_ids_not_dense(toy_store):
    def edit(e):
        e.loc[0, "entity_id"] = 7
        return e
    _rewrite(toy_store / "entities" / "part-00000.parquet", edit)
    assert _first_problem(toy_store).startswith("entities/part-00000.parquet: entity_id is not dense from 0 in row order (expected 0..4)")


def _three_shard_store(path):
    from kgclip.store import SplitConfig, StoreWriter

    with StoreWriter(path, shard_rows=2, split=SplitConfig(ratios=(1, 0, 0))) as w:
        ids = w.add_entities([f"e{i}" for i in range(7)], "text", source="x", texts=[f"e{i}" for i in range(7)])
        r = w.add_relation("r", "r")
        w.add_triplets(ids[:-1], [r] * 6, ids[1:], source="x")


def test_fast_a_missing_listed_shard_and_an_unlisted_one(tmp_path):
    _three_shard_store(tmp_path / "s")
    (tmp_path / "s" / "triplets" / "part-00001.parquet").unlink()
    msg = _first_problem(tmp_path / "s")
    assert msg == "triplets/part-00001.parquet: listed in manifest.json but missing (and 2 more)"  # + counts.triplets, counts.splits.train
    with pytest.raises(StoreError, match=r"counts\.triplets is 6 but the shards hold 4"):
        open_valid(_manifest(tmp_path / "s", lambda m: m.pop("files")) or tmp_path / "s")  # an older store: the counts tell
    import shutil

    _three_shard_store(tmp_path / "t")
    shutil.copy(tmp_path / "t" / "triplets" / "part-00000.parquet", tmp_path / "t" / "triplets" / "part-00009.parquet")
    assert _first_problem(tmp_path / "t").startswith("triplets/part-00009.parquet: present but not listed in manifest.json (added after writing?)")


def test_fast_foreign_schema_shards(toy_store):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1], "b": ["x"]}), toy_store / TRIPLETS)
    assert _first_problem(toy_store).startswith(f"{TRIPLETS}: no column head_id (a shard of another schema?)")
    pq.write_table(pa.table({"head_id": ["0"], "relation_id": [0], "tail_id": [1], "source": ["toy"], "split": ["train"]}), toy_store / TRIPLETS)
    assert _first_problem(toy_store).startswith(f"{TRIPLETS}: column head_id is string, expected int64")
    (toy_store / "relations.parquet").write_bytes(b"not parquet")
    assert "relations.parquet: cannot read parquet" in _first_problem(toy_store)


def test_fast_accepts_compatible_types_and_the_reader_casts_them(toy_store):
    import pyarrow as pa

    schema = pa.schema([("head_id", pa.int32()), ("relation_id", pa.int32()), ("tail_id", pa.int32()), ("source", pa.large_string()),
                        ("split", pa.large_string()), ("weight", pa.float64()), ("dataset", pa.large_string())])
    _rewrite(toy_store / TRIPLETS, lambda t: t, schema=schema)
    _manifest(toy_store, lambda m: m.pop("files"))
    s = open_valid(toy_store)
    assert s.triplet_table().schema.field("head_id").type == pa.int64() and s.triplets["tail_id"].tolist() == [1, 1, 0, 4, 3, 3]


@pytest.mark.parametrize(("edit", "want"), [
    (lambda m: m.pop("counts"), "manifest.json: no counts (expected counts.entities, counts.relations, counts.triplets)"),
    (lambda m: m["counts"].update(entities="five"), "manifest.json: counts.entities is 'five', expected a number of rows"),
    (lambda m: m.update(image_roots=["images"]), "manifest.json: image_roots is not a table of source -> folder"),
    (lambda m: m.update(sources={"toy": 3}), "manifest.json: sources is not a table of source -> facts"),
    (lambda m: m.update(files={"x": 1}), "manifest.json: files is not a table of {path: {bytes, sha256}}"),
    (lambda m: m["counts"]["splits"].update(train=5), "manifest.json: counts.splits.train is 5 but the shards hold 6"),
])
def test_fast_manifest_structure(toy_store, edit, want):
    _manifest(toy_store, edit)
    assert _first_problem(toy_store).startswith(want)


def test_fast_checks_pass_on_a_clean_store_and_full_checks_run_after(toy_store):
    from kgclip.store.validate import content_problems, fast_problems

    s = open_valid(toy_store)
    assert fast_problems(s) == [] and content_problems(s) == []
