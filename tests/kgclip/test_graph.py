import numpy as np
import torch

from kgclip.graph import KnowledgeGraph, degree_stats, modality_pair_stats, relation_stats
from kgclip.store import KnowledgeStore
from kgclip.typing import EDGE_TYPES, IMAGE, TEXT


def test_hetero_data_counts_equal_store_counts(toy_store):
    s = KnowledgeStore(toy_store)
    kg = KnowledgeGraph.from_store(s, splits=None)
    data = kg.to_hetero_data()
    data.validate()
    assert data["image"].num_nodes == 2 and data["text"].num_nodes == 3
    assert data["image"].global_id.tolist() == [2, 3] and data["text"].global_id.tolist() == [0, 1, 4]
    pairs = modality_pair_stats(s).set_index(["head", "tail"])["total"]
    for et in EDGE_TYPES:
        assert data[et].edge_index.shape[1] == pairs.get((et[0], et[2]), 0)
    assert sum(data[et].edge_index.shape[1] for et in EDGE_TYPES) == s.manifest["counts"]["triplets"]


def test_hetero_data_edges_map_back_to_store_triplets(toy_store):
    s = KnowledgeStore(toy_store)
    kg = KnowledgeGraph.from_store(s, splits=None)
    data = kg.to_hetero_data(add_reverse=True)
    got = set()
    for et in EDGE_TYPES:
        src, dst = data[et].edge_index
        gh = data[et[0]].global_id[src]
        gt = data[et[2]].global_id[dst]
        got |= set(zip(gh.tolist(), data[et].relation.tolist(), gt.tolist(), strict=True))
        rev = data[(et[2], "rev_rel", et[0])]
        assert torch.equal(rev.edge_index, data[et].edge_index.flip(0))
    t = s.triplets
    assert got == set(zip(t.head_id, t.relation_id, t.tail_id, strict=True))
    for et in EDGE_TYPES:  # CSC order: sorted by destination
        dst = data[et].edge_index[1]
        assert torch.equal(dst, torch.sort(dst).values)


def test_local_global_maps_are_inverse(toy_store):
    kg = KnowledgeGraph.from_store(KnowledgeStore(toy_store), splits=None)
    for m, code in (("image", IMAGE), ("text", TEXT)):
        g = kg.global_ids[m]
        assert (kg.modality[g] == code).all()
        assert np.array_equal(kg.local[g], np.arange(len(g)))


def test_k_hop(toy_store):
    kg = KnowledgeGraph.from_store(KnowledgeStore(toy_store), splits=None)
    one = kg.k_hop([0], hops=1)  # t:dog: (dog isa animal), (img_dog of dog)
    assert sorted(one.tolist()) == [0, 2]
    two = kg.k_hop([0], hops=2)  # + animal's and img_dog's edges
    assert sorted(two.tolist()) == [0, 1, 2, 4, 5]
    assert len(kg.k_hop([0], hops=2, max_triplets=3)) == 3


def test_networkx_export_attributes(toy_store):
    s = KnowledgeStore(toy_store)
    g = KnowledgeGraph.from_store(s, splits=None).to_networkx()
    assert g.number_of_nodes() == 5 and g.number_of_edges() == 6
    assert g.nodes[0]["text"] == "dog" and g.nodes[0]["modality"] == "text"
    assert g.nodes[2]["image"] == str(toy_store / "images" / "dog.jpg") and g.nodes[2]["bbox"] == [0, 0, 8, 8]
    (edge,) = g.get_edge_data(2, 3).values()
    assert edge["relation_text"] == "near" and edge["relation_key"] == "near"


def test_stats(toy_store):
    s = KnowledgeStore(toy_store)
    rel = relation_stats(s).set_index("relation")
    assert rel.loc["image of", "total"] == 3 and rel.loc["/r/IsA", "train"] == 2
    deg = degree_stats(s).set_index("degree")
    assert deg["out"].sum() == 5 and deg.loc[0, "in"] == 1  # only i:dog.jpg has in-degree 0


def test_split_filter(tmp_path):
    from kgclip.store import SplitConfig
    from tests.conftest import write_toy_store

    write_toy_store(tmp_path / "s", split=SplitConfig(ratios=(0.5, 0.0, 0.5)))
    s = KnowledgeStore(tmp_path / "s")
    kg = KnowledgeGraph.from_store(s, splits=("train",))
    assert kg.num_triplets == s.manifest["counts"]["splits"]["train"]


def test_concepts_and_sources(tmp_path):
    from kgclip.store import StoreWriter

    with StoreWriter(tmp_path / "s", image_roots={"v": str(tmp_path)}) as w:
        d1 = w.add_entity("v:d1", "image", image="d1.png", source="v", concept="v:dog")
        x = w.add_entity("o:x", "text", text="x", source="o")
        w.add_entity("v:dg", "text", text="a dog", source="v", concept="v:dog")
        a = w.add_entity("v:a", "text", text="an animal", source="v", concept="v:animal")
        r = w.add_relation("r", "r")
        w.add_triplet(d1, r, a, source="v", split="train")
        w.add_triplet(x, r, d1, source="o", split="train")
        w.add_triplet(a, r, x, source="o", split="test")
    kg = KnowledgeGraph.from_store(KnowledgeStore(tmp_path / "s"))
    c = kg.concept.tolist()
    assert c[0] == c[2] >= 0 and c[3] >= 0 and c[3] != c[0] and c[1] == -1
    assert kg.modality.tolist() == [IMAGE, TEXT, TEXT, TEXT]
    assert kg.num_triplets == 2 and sorted(kg.sources[i] for i in kg.source) == ["o", "v"]  # the train split's sources only


def test_no_concepts_is_none(toy_store):
    kg = KnowledgeGraph.from_store(KnowledgeStore(toy_store), splits=None)
    assert kg.concept is None and kg.sources == ("toy",) and (kg.source == 0).all()


def _csc_reference(kg):
    """Each edge type's edges in a stable sort by destination: the order to_hetero_data promises."""
    code = kg.modality[kg.head].astype(np.int64) * 2 + kg.modality[kg.tail]
    order = np.lexsort((kg.local[kg.tail], code))  # lexsort is stable: ties keep triplet order
    return code[order], order


def test_hetero_data_order_is_a_stable_sort_by_destination_whatever_the_id_sizes():
    rng = np.random.default_rng(0)
    for n_ent, n, rel_high, local_scale in [(30, 400, 3, 1), (30, 400, 2**61, 1), (30, 400, -1, 1), (30, 400, 5, 2**55), (5, 0, 3, 1)]:
        modality = rng.integers(0, 2, n_ent).astype(np.int8)
        local = np.empty(n_ent, dtype=np.int64)
        for m in (0, 1):
            local[modality == m] = np.arange((modality == m).sum())
        local *= local_scale  # past 63 bits the packed sort falls back to a stable argsort
        relation = rng.integers(0, rel_high, n) if rel_high > 0 else rng.integers(-5, 5, n)  # negative ids: gathered, not packed
        kg = KnowledgeGraph(store=None, head=rng.integers(0, n_ent, n), relation=relation, tail=rng.integers(0, n_ent, n),
                            modality=modality, local=local)
        data = kg.to_hetero_data()
        code, order = _csc_reference(kg)
        for i, et in enumerate(EDGE_TYPES):
            o = order[code == i]
            want = np.stack([local[kg.head[o]], local[kg.tail[o]]])
            assert np.array_equal(data[et].edge_index.numpy(), want), (n, rel_high, local_scale, et)
            assert np.array_equal(data[et].relation.numpy(), relation[o]) and data[et].relation.dtype == torch.int64


def test_sources_are_those_of_the_kept_triplets_in_order_of_first_appearance(tmp_path):
    from kgclip.store import StoreWriter

    with StoreWriter(tmp_path / "s") as w:
        e = [w.add_entity(f"e{i}", "text", text=f"e{i}", source="x") for i in range(4)]
        r = w.add_relation("r", "r")
        for i, (src, split) in enumerate([("a", "test"), ("b", "train"), ("c", "train"), ("b", "train"), ("a", "valid")]):
            w.add_triplets([e[i % 4]], [r], [e[(i + 1) % 4]], source=src, split=split)
    s = KnowledgeStore(tmp_path / "s")
    everything = KnowledgeGraph.from_store(s, splits=None)
    assert everything.sources == ("a", "b", "c") and everything.source.tolist() == [0, 1, 2, 1, 0]
    train = KnowledgeGraph.from_store(s)
    assert train.sources == ("b", "c") and train.source.tolist() == [0, 1, 0]
    assert KnowledgeGraph.from_store(s, splits=("valid", "test")).sources == ("a",)
    assert KnowledgeGraph.from_store(s, splits=()).num_triplets == 0


def test_random_store_builds_the_reference_graph(tmp_path):
    """A random store (both modalities, several sources and splits, repeated destinations): the
    per-entity maps and the HeteroData equal those computed the plain way from the store's tables."""
    from kgclip.store import StoreWriter

    rng = np.random.default_rng(3)
    n_ent, n = 300, 4000
    is_text = rng.random(n_ent) < 0.6
    with StoreWriter(tmp_path / "s") as w:
        for i in range(n_ent):
            if is_text[i]:
                w.add_entity(f"e{i}", "text", text=f"e{i}", source="x")
            else:
                w.add_entity(f"e{i}", "image", image=f"{i}.png", source="x")
        for r in range(7):
            w.add_relation(f"r{r}", f"r{r}")
        sources = np.array(["b", "a", "c"])[rng.integers(0, 3, n)]
        for src in ("b", "a", "c"):
            sel = sources == src
            w.add_triplets(rng.integers(0, n_ent, sel.sum()), rng.integers(0, 7, sel.sum()), rng.integers(0, 40, sel.sum()), source=src)
    s = KnowledgeStore(tmp_path / "s")
    for splits in (None, ("train",), ("valid", "test")):
        kg = KnowledgeGraph.from_store(s, splits=splits)
        t = s.triplets if splits is None else s.triplets[s.triplets["split"].isin(splits)].reset_index(drop=True)
        assert np.array_equal(kg.head, t["head_id"]) and np.array_equal(kg.tail, t["tail_id"])
        assert np.array_equal(kg.modality, np.where(is_text, TEXT, IMAGE))
        for code in (IMAGE, TEXT):
            assert np.array_equal(kg.local[kg.modality == code], np.arange((kg.modality == code).sum()))
        first = list(dict.fromkeys(t["source"]))  # sources in order of first appearance
        assert kg.sources == tuple(first) and [first[c] for c in kg.source] == t["source"].tolist()
        data = kg.to_hetero_data()
        code, order = _csc_reference(kg)
        for i, et in enumerate(EDGE_TYPES):
            o = order[code == i]
            assert np.array_equal(data[et].edge_index.numpy(), np.stack([kg.local[kg.head[o]], kg.local[kg.tail[o]]]))
            assert np.array_equal(data[et].relation.numpy(), kg.relation[o])
            assert data[et].edge_index.dtype == torch.int64 and data[et].edge_index.is_contiguous()


def test_hetero_data_with_local_ids_past_int32():
    """Local indices too large for the int32 entity table (but small enough to pack): the int64 table."""
    rng = np.random.default_rng(1)
    n_ent, n = 40, 500
    modality = rng.integers(0, 2, n_ent).astype(np.int8)
    local = np.empty(n_ent, dtype=np.int64)
    for m in (0, 1):
        local[modality == m] = np.arange((modality == m).sum()) * 2**31
    kg = KnowledgeGraph(store=None, head=rng.integers(0, n_ent, n), relation=rng.integers(0, 4, n), tail=rng.integers(0, n_ent, n),
                        modality=modality, local=local)
    data = kg.to_hetero_data()
    code, order = _csc_reference(kg)
    for i, et in enumerate(EDGE_TYPES):
        o = order[code == i]
        assert np.array_equal(data[et].edge_index.numpy(), np.stack([local[kg.head[o]], local[kg.tail[o]]]))
        assert np.array_equal(data[et].relation.numpy(), kg.relation[o])


def test_first_appearance_scans_until_every_code_appeared():
    from kgclip.graph import _first_appearance

    codes = np.array([-1, 2, 2, -1, 0, 2, 0, 1, 3, 1])
    assert _first_appearance(codes, 4, step=3).tolist() == [2, 0, 1, 3]
    assert _first_appearance(codes, 5, step=3).tolist() == [2, 0, 1, 3]  # code 4 never appears: every slice read
    assert _first_appearance(codes, 300).tolist() == [2, 0, 1, 3]  # many possible codes: one pass
    assert _first_appearance(np.full(5, -1), 2).tolist() == []
