import numpy as np
import pandas as pd
import pytest

from kgclip.errors import ConfigError
from kgclip.store import KnowledgeStore, SplitConfig, StoreWriter, merge_stores, open_valid
from kgclip.store.connectivity import component_labels, connectivity
from kgclip.store.merge import link_entities, normalise_text, synset_lemma
from kgclip.store.splits import count_leakage, entity_groups, finish_triplets, hash_splits, key_hashes, pair_hashes


def _chain_store(path, n=400, order=1, split=None):
    """n entities e0..e(n-1) and a chain e_i -r-> e_{i+1}; written in forward or reversed order."""
    with StoreWriter(path, split=split or SplitConfig(ratios=(0.6, 0.2, 0.2))) as w:
        idx = range(n) if order == 1 else range(n - 1, -1, -1)
        ids = {i: w.add_entity(f"e{i}", "text", text=f"e{i}", source="x") for i in idx}
        r = w.add_relation("r", "r")
        for i in (range(n - 1) if order == 1 else range(n - 2, -1, -1)):
            w.add_triplet(ids[i], r, ids[i + 1], source="x")


def _splits_by_keys(path):
    s = KnowledgeStore(path)
    k = s.entity_keys
    return {(k[h], k[t]): sp for h, t, sp in zip(s.triplets.head_id, s.triplets.tail_id, s.triplets.split, strict=True)}


def _frame(rows, split=None, group=None):
    h, r, t = zip(*rows, strict=True)
    f = pd.DataFrame({"head_id": h, "relation_id": r, "tail_id": t, "source": "x",
                      "split": split if split is not None else [None] * len(rows), "weight": np.nan, "dataset": None})
    if group is not None:
        f["group_hash"] = np.asarray(group, dtype=np.uint64)
    return f


def test_split_is_deterministic_and_independent_of_ids(tmp_path):
    _chain_store(tmp_path / "a", order=1)
    _chain_store(tmp_path / "b", order=-1)  # other ids, other write order
    a, b = _splits_by_keys(tmp_path / "a"), _splits_by_keys(tmp_path / "b")
    assert a == b
    counts = pd.Series(list(a.values())).value_counts()
    # 399 triplets, each its own pair, at 0.6/0.2/0.2: each share within 0.1 of its ratio
    assert abs(counts["train"] / 399 - 0.6) < 0.1 and abs(counts["test"] / 399 - 0.2) < 0.1
    assert KnowledgeStore(tmp_path / "a").manifest["leakage"] == {"train": 0, "valid": 0, "test": 0}


def test_split_seed_changes_the_split():
    g = np.random.default_rng(0).integers(1, 2**63, 1000, dtype=np.int64).astype(np.uint64)
    s0 = hash_splits(g, SplitConfig(seed=0))
    s1 = hash_splits(g, SplitConfig(seed=1))
    assert (s0 != s1).any() and (s0 == hash_splits(g, SplitConfig(seed=0))).all()


def test_pair_hash_is_symmetric():
    a, b = key_hashes(np.array(["a", "b", "c"], dtype=object)), key_hashes(np.array(["b", "a", "c"], dtype=object))
    assert (pair_hashes(a, b) == pair_hashes(b, a)).all() and pair_hashes(a, b)[0] == pair_hashes(a, b)[1] != pair_hashes(a, b)[2]


def test_an_entity_pair_lands_in_one_split_and_nothing_is_dropped():
    # 300 pairs (2i, 2i+1), each as (h, r0, t), its inverse (t, r1, h) and (h, r2, t): 900 triplets
    rows = [row for i in range(300) for row in ((2 * i, 0, 2 * i + 1), (2 * i + 1, 1, 2 * i), (2 * i, 2, 2 * i + 1))]
    groups = entity_groups(np.array([f"e{i}" for i in range(600)], dtype=object), np.full(600, None, dtype=object))
    out, rep = finish_triplets(_frame(rows), groups, SplitConfig(ratios=(0.5, 0.25, 0.25)))
    assert len(out) == 900 and rep.duplicates_removed == 0
    per_pair = out.groupby(np.minimum(out.head_id, out.tail_id))["split"].nunique()
    assert (per_pair == 1).all()
    assert set(out.split) == {"train", "valid", "test"}
    assert rep.leakage == {"train": 0, "valid": 0, "test": 0}
    assert sum(rep.splits.values()) == 900


def test_views_of_a_concept_are_split_together():
    # entities 0..3 are views of concept A, 4..7 of concept B; every view of A relates to every view of B
    keys = np.array([f"v{i}" for i in range(8)], dtype=object)
    concepts = np.array(["A"] * 4 + ["B"] * 4, dtype=object)
    rows = [(a, 0, b) for a in range(4) for b in range(4, 8)] + [(b, 1, a) for a in range(4) for b in range(4, 8)]
    for seed in range(20):
        out, rep = finish_triplets(_frame(rows), entity_groups(keys, concepts), SplitConfig(ratios=(0.4, 0.3, 0.3), seed=seed))
        assert out.split.nunique() == 1 and len(out) == 32 and sum(rep.leakage.values()) == 0
    # without concepts the 16 pairs would scatter over the splits
    scattered = {finish_triplets(_frame(rows), entity_groups(keys, np.full(8, None, dtype=object)), SplitConfig(ratios=(0.4, 0.3, 0.3)))[0]
                 .split.nunique()}
    assert scattered != {1}


def test_a_converter_group_holds_its_triplets_together():
    # 50 images (groups), each with 4 captions in both directions: ids 5k (image), 5k+1..5k+4 (captions)
    rows, group = [], []
    gh = key_hashes(np.array([f"img{k}" for k in range(50)], dtype=object))
    for k in range(50):
        for c in range(1, 5):
            rows += [(5 * k, 0, 5 * k + c), (5 * k + c, 1, 5 * k)]
            group += [gh[k], gh[k]]
    groups = entity_groups(np.array([f"e{i}" for i in range(250)], dtype=object), np.full(250, None, dtype=object))
    out, rep = finish_triplets(_frame(rows, group=group), groups, SplitConfig(ratios=(0.5, 0.25, 0.25)))
    assert len(out) == 400 and "group_hash" not in out and rep.duplicates_removed == 0
    assert (out.groupby(out[["head_id", "tail_id"]].min(axis=1) // 5)["split"].nunique() == 1).all()
    assert set(out.split) == {"train", "valid", "test"}


def test_given_splits_are_kept_and_their_leakage_counted():
    # 0:(0,r0,1) test; 1:(1,r0,0) inverse in train; 2:(0,r1,1) train; 3:(2,r0,3) train; 4:(0,r0,1) again in train
    # 5:(2,r0,3) twice in valid; 6: the same again (a duplicate within valid, removed)
    rows = [(0, 0, 1), (1, 0, 0), (0, 1, 1), (2, 0, 3), (0, 0, 1), (2, 0, 3), (2, 0, 3)]
    split = ["test", "train", "train", "train", "train", "valid", "valid"]
    groups = key_hashes(np.array(["a", "b", "c", "d"], dtype=object))
    out, rep = finish_triplets(_frame(rows, split=split), groups, SplitConfig(ratios=(1, 0, 0)))
    assert out.split.tolist() == split[:6] and rep.duplicates_removed == 1
    # pair {a,b}: test 1, train 3; pair {c,d}: train 1, valid 1
    assert rep.leakage == {"train": 4, "valid": 1, "test": 1}
    assert count_leakage(groups[[0, 1]], groups[[1, 0]], np.array(["train", "train"], dtype=object)) == {"train": 0, "valid": 0, "test": 0}


def test_explicit_split_kept_and_self_loops_counted():
    groups = key_hashes(np.array(["a", "b"], dtype=object))
    out, rep = finish_triplets(_frame([(0, 0, 0), (1, 0, 0)], split=["valid", None]), groups, SplitConfig(ratios=(1, 0, 0)))
    assert out.split.tolist() == ["valid", "train"] and rep.self_loops == 1


@pytest.mark.parametrize("kwargs", [{"ratios": (0.5, 0.2, 0.2)}, {"ratios": (1.2, -0.2, 0)}, {"ratios": (1, 0)}])
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
    m = merge_stores([tmp_path / "a", tmp_path / "b"], tmp_path / "m")
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


# -- linking ---------------------------------------------------------------------------------------

def test_normalise_text_and_synset_lemma():
    assert normalise_text("  Red_Circle \t shape ") == "red circle shape" and normalise_text("STRASSE") == "strasse"
    assert synset_lemma("wordnet:hot_dog.n.01") == "hot dog" and synset_lemma("visualsem:bn:1n") is None
    assert synset_lemma("wordnet:nodots") is None


def test_link_entities_by_hand():
    # 0 "Circle"  1 "circle " (same)  2 image  3 "red_circle"  4 "red circle" (same as 3)
    # 5 "a pet" view of A  6 "A PET" view of B (refused: two concepts)  7 "circles" synset circle.n.01 (joins 0 by lemma)
    # 8 "a pet" plain (joins 5, takes concept A)
    mod = np.array(["text", "text", "image", "text", "text", "text", "text", "text", "text"], dtype=object)
    text = np.array(["Circle", "circle ", None, "red_circle", "red circle", "a pet", "A PET", "circles", "a pet"], dtype=object)
    concept = np.array([None, None, None, None, None, "vs:A", "vs:B", "wordnet:circle.n.01", None], dtype=object)
    rep, group_concept, report = link_entities(mod, text, concept)
    assert rep.tolist() == [0, 0, 2, 3, 3, 5, 6, 0, 5]
    assert group_concept[0] == "wordnet:circle.n.01" and group_concept[5] == "vs:A" and group_concept[6] == "vs:B"
    assert (report.entities_joined, report.groups, report.refused) == (4, 3, 1)


def _island_stores(tmp_path):
    """A Visual-Genome-like store (region -is a-> name 'circle', synset circle.n.01) and a ConceptNet-like one."""
    with StoreWriter(tmp_path / "vg", image_roots={"vg": "/imgs"}, split=SplitConfig(ratios=(1, 0, 0))) as w:
        region = w.add_entity("vg:object/1", "image", image="1.jpg", source="vg")
        name = w.add_entity("vg:name/circle", "text", text="circle", source="vg", concept="wordnet:circle.n.01")
        rounds = w.add_entity("vg:name/rounds", "text", text="rounds", source="vg", concept="wordnet:circle.n.01")
        w.add_triplet(region, w.add_relation("/r/IsA", "is a"), name, source="vg")
        w.add_triplet(region, w.add_relation("near", "near"), rounds, source="vg")
    with StoreWriter(tmp_path / "cn", split=SplitConfig(ratios=(0, 0, 1))) as w:
        c, cn, shape = (w.add_entity(f"cn:/c/en/{k}", "text", text=k.split("/")[0].replace("_", " "), source="cn")
                        for k in ("circle", "circle/n", "round_shape"))
        isa = w.add_relation("/r/IsA", "is a")
        w.add_triplet(c, isa, shape, source="cn")
        w.add_triplet(cn, w.add_relation("/r/RelatedTo", "related to"), c, source="cn")  # becomes a self-loop when linked


def test_merge_with_link_text_joins_the_sources(tmp_path):
    _island_stores(tmp_path)
    merge_stores([tmp_path / "vg", tmp_path / "cn"], tmp_path / "plain")
    plain = open_valid(tmp_path / "plain")
    assert connectivity(plain)["components"] == 2 and connectivity(plain)["cross_source_triplets"] == 0
    assert len(plain.aliases) == 0 and plain.manifest["aliases"] == 0

    m = merge_stores([tmp_path / "vg", tmp_path / "cn"], tmp_path / "linked", link="text")
    s = open_valid(tmp_path / "linked")
    # the names of one synset and the ConceptNet nodes of its lemma become one entity
    assert s.entities["key"].tolist() == ["vg:object/1", "vg:name/circle", "cn:/c/en/round_shape"]
    assert s.entities["concept"].tolist() == [None, "wordnet:circle.n.01", None]
    assert dict(zip(s.aliases.key, s.aliases.entity_id, strict=True)) == {"vg:name/rounds": 1, "cn:/c/en/circle": 1, "cn:/c/en/circle/n": 1}
    assert s.entity_index["cn:/c/en/circle"] == 1 and s.entity_index["vg:name/circle"] == 1
    from kgclip.inspect import resolve_entity

    assert resolve_entity(s, "cn:/c/en/circle/n") == 1
    k, rk = s.entity_keys, s.relation_keys
    got = {(k[h], rk[r], k[t], sp) for h, r, t, sp in zip(s.triplets.head_id, s.triplets.relation_id, s.triplets.tail_id, s.triplets.split, strict=True)}
    assert got == {("vg:object/1", "/r/IsA", "vg:name/circle", "train"), ("vg:object/1", "near", "vg:name/circle", "train"),
                   ("vg:name/circle", "/r/IsA", "cn:/c/en/round_shape", "test"), ("vg:name/circle", "/r/RelatedTo", "vg:name/circle", "test")}
    assert m["self_loops"] == 1 and m["settings"]["link_report"] == {"entities_joined": 3, "groups": 1, "refused": 0}
    c = connectivity(s)
    assert c["components"] == 1 and c["largest_component"] == 3 and c["cross_source_triplets"] == 1
    # the pair (region, circle) is only in train; the pair (circle, round shape) only in test: no leakage
    assert m["leakage"] == {"train": 0, "valid": 0, "test": 0}
    # aliases survive another merge
    merge_stores([tmp_path / "linked"], tmp_path / "again")
    assert open_valid(tmp_path / "again").entity_index["cn:/c/en/circle/n"] == 1


def test_merge_link_cli_and_info(tmp_path, capsys):
    from experiments.cli import main

    _island_stores(tmp_path)
    assert main(["prepare", "merge", str(tmp_path / "vg"), str(tmp_path / "cn"), "--out", str(tmp_path / "m"), "--link", "text"]) == 0
    assert "'entities_joined': 3" in capsys.readouterr().out
    assert main(["info", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert "connectivity: {'components': 1, 'largest_component': 3, 'isolated_entities': 0, 'cross_source_triplets': 1" in out
    assert "aliases 3" in out


def test_component_labels_by_hand():
    # 0-1-2 chain, 3 alone, 4-5, 6-4 (given in an order that needs several rounds)
    labels = component_labels(7, np.array([2, 1, 5, 6]), np.array([1, 0, 4, 5]))
    assert labels.tolist() == [0, 0, 0, 3, 4, 4, 4]
    rng = np.random.default_rng(0)
    h, t = rng.integers(0, 300, 200), rng.integers(0, 300, 200)
    import networkx as nx

    g = nx.Graph()
    g.add_nodes_from(range(300))
    g.add_edges_from(zip(h.tolist(), t.tolist(), strict=True))
    want = np.empty(300, dtype=np.int64)
    for comp in nx.connected_components(g):
        want[list(comp)] = min(comp)
    assert component_labels(300, h, t).tolist() == want.tolist()


def test_alias_validation():
    import pandas as pd

    from kgclip.store.validate import check_aliases

    keys = pd.Series(["a", "b"])
    a = pd.DataFrame({"key": ["b", "x", "x", "y"], "entity_id": [0, 1, 1, 5]})
    problems = check_aliases(a, keys)
    assert len(problems) == 3 and "alias(es) that are entity keys: 'b'" in problems[0]
    assert "duplicate alias(es): 'x'" in problems[1] and "of no entity: 'y'" in problems[2]


def test_connectivity_joins_the_views_of_a_concept(tmp_path):
    # views a1, a2 of concept A (only a1 in a triplet), b alone in a triplet with a1, c in no triplet
    with StoreWriter(tmp_path / "s", split=SplitConfig(ratios=(1, 0, 0))) as w:
        a1, _a2 = (w.add_entity(f"a{i}", "text", text=f"a{i}", source="x", concept="A") for i in (1, 2))
        b = w.add_entity("b", "text", text="b", source="y")
        w.add_entity("c", "text", text="c", source="x")
        w.add_triplet(a1, w.add_relation("r", "r"), b, source="x")
    c = connectivity(KnowledgeStore(tmp_path / "s"))
    assert c == {"components": 1, "largest_component": 3, "isolated_entities": 1, "cross_source_triplets": 1, "cross_source_share": 1.0}
