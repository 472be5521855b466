import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from kgclip.store import KnowledgeStore, SplitConfig, StoreWriter
from kgclip.store.splits import entity_groups, finish_triplets, key_hashes

SPLIT = SplitConfig(ratios=(0.5, 0.3, 0.2), seed=7)


def _raw(seed=0, n_ent=40, n=3000):
    """Raw triplets with repeats, given splits, converter groups, weights (NaN: none) and datasets."""
    rng = np.random.default_rng(seed)
    h, t = rng.integers(0, n_ent, n), rng.integers(0, n_ent, n)
    rows = pd.DataFrame({
        "head_id": h, "relation_id": rng.integers(0, 3, n), "tail_id": t,
        "source": rng.choice(np.array(["a", "b"], dtype=object), n),
        "split": rng.choice(np.array(["train", "valid", "test", None, None], dtype=object), n),
        "weight": np.where(rng.random(n) < 0.3, np.nan, rng.random(n).round(2)),
        "dataset": rng.choice(np.array(["/d/x", None], dtype=object), n),
        "group": rng.choice(np.array(["g1", "g2", None, None, None], dtype=object), n),
    })
    keys = np.array([f"e{i}" for i in range(n_ent)], dtype=object)
    concepts = np.array([f"c{i // 4}" if i % 3 == 0 else None for i in range(n_ent)], dtype=object)
    return rows, keys, concepts


def _write(path, rows, keys, concepts, **kwargs):
    with StoreWriter(path, split=SPLIT, **kwargs) as w:
        for k, c in zip(keys, concepts, strict=True):
            w.add_entity(k, "text", text=k, source="a", concept=c)
        for r in range(3):
            w.add_relation(f"r{r}", f"r{r}")
        half = len(rows) // 2
        for src, part in rows.iloc[:half].groupby("source", sort=False):  # in bulk, one call per source
            w.add_triplets(part.head_id, part.relation_id, part.tail_id, source=src, split=part.split.tolist(),
                           weight=part.weight.to_numpy(), dataset=part.dataset.tolist(), group=part.group.tolist())
        for row in rows.iloc[half:].itertuples():  # one at a time
            split, weight, dataset, group = (None if pd.isna(v) else v for v in (row.split, row.weight, row.dataset, row.group))
            w.add_triplet(row.head_id, row.relation_id, row.tail_id, source=row.source, split=split, weight=weight,
                          dataset=dataset, group=group)
    return KnowledgeStore(path)


def _spooled_order(rows):
    """The rows in the order the writer spools them: the bulk half by source, then the single rows by source."""
    half = len(rows) // 2
    parts = [p for _, p in rows.iloc[:half].groupby("source", sort=False)]
    parts += [p for _, p in rows.iloc[half:].groupby("source", sort=False)]  # add_triplet buffers, then groups by source
    return pd.concat(parts, ignore_index=True)


@pytest.mark.parametrize("partition_rows", [1 << 20, 97])
def test_out_of_core_finish_equals_the_in_memory_finish(tmp_path, partition_rows):
    rows, keys, concepts = _raw()
    s = _write(tmp_path / "s", rows, keys, concepts, partition_rows=partition_rows, shard_rows=400)

    ordered = _spooled_order(rows)
    named = ordered.group.notna().to_numpy()
    group_hash = np.zeros(len(ordered), dtype=np.uint64)
    group_hash[named] = key_hashes(ordered.group[named].to_numpy(dtype=object))
    frame = ordered.drop(columns="group").assign(group_hash=group_hash)
    want, report = finish_triplets(frame, entity_groups(keys, concepts), SPLIT)

    got = s.triplets
    assert len(got) == len(want) and report.duplicates_removed > 0 and sum(report.leakage.values()) > 0
    for c in ("head_id", "relation_id", "tail_id", "source", "split", "dataset"):
        assert got[c].tolist() == want[c].tolist(), c
    assert np.allclose(got.weight.to_numpy(float), want.weight.to_numpy(float), equal_nan=True)
    m = s.manifest
    assert m["duplicates_removed"] == report.duplicates_removed and m["self_loops"] == report.self_loops
    assert m["leakage"] == report.leakage and m["counts"]["splits"] == report.splits
    assert m["sources"]["a"]["triplets"] + m["sources"]["b"]["triplets"] == len(want)
    assert m["sources"]["a"]["triplets"] == int((want.source == "a").sum())
    assert len(list((tmp_path / "s" / "triplets").glob("*.parquet"))) == -(-len(want) // 400)


def test_partitions_do_not_change_the_store(tmp_path):
    rows, keys, concepts = _raw(seed=3)
    a = _write(tmp_path / "a", rows, keys, concepts, partition_rows=1 << 20)
    b = _write(tmp_path / "b", rows, keys, concepts, partition_rows=50)
    assert a.triplet_table().equals(b.triplet_table()) and a.entity_table().equals(b.entity_table())
    ma, mb = (json.loads((p / "manifest.json").read_text()) for p in (tmp_path / "a", tmp_path / "b"))
    for m in (ma, mb):
        m.pop("created")
        m.pop("files")
    assert ma == mb


def test_duplicates_across_row_groups_keep_the_first_and_shards_keep_the_order(tmp_path):
    with StoreWriter(tmp_path / "s", split=SplitConfig(ratios=(1, 0, 0)), shard_rows=5, partition_rows=2) as w:
        ids = [w.add_entity(f"e{i}", "text", text=f"e{i}", source="x") for i in range(30)]
        r = w.add_relation("r", "r")
        for i in range(23):
            w.add_triplet(ids[i], r, ids[i + 1], source="x", weight=float(i))
        for i in range(0, 23, 2):  # again, with another weight: dropped, the first is kept
            w.add_triplet(ids[i], r, ids[i + 1], source="x", weight=-1.0)
        w.add_triplet(ids[3], r, ids[4], source="x", split="test")  # another split: kept
    s = KnowledgeStore(tmp_path / "s")
    t = s.triplets
    assert t.head_id.tolist() == [*list(range(23)), 3] and t.weight.tolist()[:23] == [float(i) for i in range(23)]
    assert t.split.tolist() == ["train"] * 23 + ["test"]
    assert s.manifest["duplicates_removed"] == 12 and s.manifest["leakage"] == {"train": 1, "valid": 0, "test": 1}
    shards = sorted((tmp_path / "s" / "triplets").glob("*.parquet"))
    assert [pq.read_metadata(p).num_rows for p in shards] == [5, 5, 5, 5, 4]


def test_no_spool_file_is_left_in_the_store_or_after_a_failure(tmp_path):
    rows, keys, concepts = _raw(n=200)
    _write(tmp_path / "s", rows, keys, concepts, partition_rows=10)
    names = {p.relative_to(tmp_path / "s").as_posix() for p in (tmp_path / "s").rglob("*")}
    assert names == {"manifest.json", "relations.parquet", "entities", "triplets", "entities/part-00000.parquet", "triplets/part-00000.parquet"}
    with pytest.raises(RuntimeError), StoreWriter(tmp_path / "t", partition_rows=10) as w:
        w.add_triplets([0] * 100, [0] * 100, [1] * 100, source="x")
        w._spool.flush()
        raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == [tmp_path / "s"]


def test_an_empty_store_has_one_empty_triplet_shard(tmp_path):
    with StoreWriter(tmp_path / "s") as w:
        w.add_entity("a", "text", text="a", source="x")
    s = KnowledgeStore(tmp_path / "s")
    assert len(s.triplets) == 0 and s.manifest["counts"]["splits"] == {"train": 0, "valid": 0, "test": 0}
    assert [p.name for p in (tmp_path / "s" / "triplets").iterdir()] == ["part-00000.parquet"]
