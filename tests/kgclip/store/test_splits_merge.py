import numpy as np
import pandas as pd
import pytest

from kgclip.errors import ConfigError
from kgclip.store import KnowledgeStore, SplitConfig, StoreWriter, merge_stores, open_valid
from kgclip.store.splits import finish_triplets, hash_splits, key_hashes


def _chain_store(path, n=400, order=1, split=None):
    """n entities e0..e(n-1) and a chain e_i -r-> e_{i+1}; written in forward or reversed order."""
    with StoreWriter(path, split=split or SplitConfig(ratios=(0.6, 0.2, 0.2), leakage="allow")) as w:
        idx = range(n) if order == 1 else range(n - 1, -1, -1)
        ids = {i: w.add_entity(f"e{i}", "text", text=f"e{i}", source="x") for i in idx}
        r = w.add_relation("r", "r")
        for i in (range(n - 1) if order == 1 else range(n - 2, -1, -1)):
            w.add_triplet(ids[i], r, ids[i + 1], source="x")


def _splits_by_keys(path):
    s = KnowledgeStore(path)
    k = s.entity_keys
    return {(k[h], k[t]): sp for h, t, sp in zip(s.triplets.head_id, s.triplets.tail_id, s.triplets.split, strict=True)}


def test_split_is_deterministic_and_independent_of_ids(tmp_path):
    _chain_store(tmp_path / "a", order=1)
    _chain_store(tmp_path / "b", order=-1)  # other ids, other write order
    a, b = _splits_by_keys(tmp_path / "a"), _splits_by_keys(tmp_path / "b")
    assert a == b
    counts = pd.Series(list(a.values())).value_counts()
    # 399 triplets at 0.6/0.2/0.2: each share within 0.1 of its ratio
    assert abs(counts["train"] / 399 - 0.6) < 0.1 and abs(counts["test"] / 399 - 0.2) < 0.1


def test_split_seed_changes_the_split():
    rng = np.random.default_rng(0)
    h, r, t = (rng.integers(0, 2**63, 1000, dtype=np.int64).astype(np.uint64) for _ in range(3))
    s0 = hash_splits(h, r, t, SplitConfig(seed=0))
    s1 = hash_splits(h, r, t, SplitConfig(seed=1))
    assert (s0 != s1).any() and (s0 == hash_splits(h, r, t, SplitConfig(seed=0))).all()


def test_leakage_blocking_removes_inverse_and_other_relation_from_train():
    # triplets: 0:(0,r0,1) test ; 1:(1,r0,0) inverse, train ; 2:(0,r1,1) other relation, train ; 3:(2,r0,3) train
    frame = pd.DataFrame(
        {"head_id": [0, 1, 0, 2], "relation_id": [0, 0, 1, 0], "tail_id": [1, 0, 1, 3], "source": "x",
         "split": ["test", "train", "train", "train"], "weight": np.nan, "dataset": None}
    )
    eh, rh = key_hashes(np.array(["a", "b", "c", "d"], dtype=object)), key_hashes(np.array(["r0", "r1"], dtype=object))
    out, rep = finish_triplets(frame, eh, rh, SplitConfig(leakage="block"))
    assert rep.leakage_blocked == 2
    assert list(zip(out.head_id, out.tail_id, out.split, strict=True)) == [(0, 1, "test"), (2, 3, "train")]
    out2, rep2 = finish_triplets(frame, eh, rh, SplitConfig(leakage="allow"))
    assert rep2.leakage_blocked == 0 and len(out2) == 4


def test_explicit_split_kept_and_self_loops_counted():
    frame = pd.DataFrame({"head_id": [0, 1], "relation_id": [0, 0], "tail_id": [0, 0], "source": "x",
                          "split": ["valid", None], "weight": np.nan, "dataset": None})
    eh, rh = key_hashes(np.array(["a", "b"], dtype=object)), key_hashes(np.array(["r"], dtype=object))
    out, rep = finish_triplets(frame, eh, rh, SplitConfig(ratios=(1, 0, 0), leakage="allow"))
    assert out.split.tolist() == ["valid", "train"] and rep.self_loops == 1


@pytest.mark.parametrize("kwargs", [{"ratios": (0.5, 0.2, 0.2)}, {"ratios": (1.2, -0.2, 0)}, {"leakage": "maybe"}])
def test_bad_split_config(kwargs):
    with pytest.raises(ConfigError):
        SplitConfig(**kwargs)


def test_merge_dedupes_keys_unifies_relations_keeps_provenance(tmp_path):
    cfg = SplitConfig(ratios=(1, 0, 0))
    with StoreWriter(tmp_path / "a", image_roots={"va": "/imgs/a"}, split=cfg) as w:
        dog, animal = (w.add_entity(k, "text", text=k, source="sa") for k in ("dog", "animal"))
        w.add_triplet(dog, w.add_relation("/r/IsA", "is a"), animal, source="sa")
    with StoreWriter(tmp_path / "b", split=cfg) as w:
        cat = w.add_entity("cat", "text", text="cat", source="sb")
        animal = w.add_entity("animal", "text", text="ANIMAL (b)", source="sb")
        part = w.add_relation("/r/PartOf", "part of")
        isa = w.add_relation("/r/IsA", "is a")
        w.add_triplet(cat, isa, animal, source="sb")
        w.add_triplet(cat, part, animal, source="sb")
        w.count_skip("sb", "bad line", 3)
    m = merge_stores([tmp_path / "a", tmp_path / "b"], tmp_path / "m", split=SplitConfig(ratios=(1, 0, 0), leakage="allow"))
    s = open_valid(tmp_path / "m")
    assert s.entities["key"].tolist() == ["dog", "animal", "cat"]
    assert s.entities["text"].tolist() == ["dog", "animal", "cat"]  # first store wins
    assert s.relations["key"].tolist() == ["/r/IsA", "/r/PartOf"]
    k, rk = s.entity_keys, s.relation_keys
    got = {(k[h], rk[r], k[t], src) for h, r, t, src in zip(s.triplets.head_id, s.triplets.relation_id, s.triplets.tail_id, s.triplets.source, strict=True)}
    assert got == {("dog", "/r/IsA", "animal", "sa"), ("cat", "/r/IsA", "animal", "sb"), ("cat", "/r/PartOf", "animal", "sb")}
    assert m["sources"]["sb"]["skipped"] == {"bad line": 3}
    assert m["image_roots"] == {"va": "/imgs/a"}


def test_merge_removes_cross_store_duplicates(tmp_path):
    for name in ("a", "b"):
        with StoreWriter(tmp_path / name, split=SplitConfig(ratios=(1, 0, 0))) as w:
            x, y = (w.add_entity(k, "text", text=k, source=name) for k in ("x", "y"))
            w.add_triplet(x, w.add_relation("r", "r"), y, source=name)
    m = merge_stores([tmp_path / "a", tmp_path / "b"], tmp_path / "m")
    assert m["counts"]["triplets"] == 1 and m["duplicates_removed"] == 1
