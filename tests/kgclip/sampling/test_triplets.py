import numpy as np
import pytest
import torch

from kgclip.errors import ConfigError
from kgclip.sampling import TripletLoader


def _train_set(graph):
    return set(zip(graph.head.tolist(), graph.relation.tolist(), graph.tail.tolist(), strict=True))


def test_batch_structure(graph):
    loader = TripletLoader(graph, 16, fanouts=[3, 2], seed=0)
    b = next(iter(loader))
    assert len(b) == 16
    assert torch.equal(b.entities[b.head_index], b.head) and torch.equal(b.entities[b.tail_index], b.tail)
    assert b.entities.unique().numel() == b.entities.numel()  # each entity once
    assert torch.equal(b.modality, torch.from_numpy(graph.modality[b.entities.numpy()]).long())
    assert torch.equal(torch.from_numpy(graph.head[b.triplet.numpy()]), b.head)


def test_g2e_edges_exist_respect_fanout_and_exclude_supervision(graph):
    train = _train_set(graph)
    loader = TripletLoader(graph, 32, fanouts=[3, 2], seed=1)
    for b in loader:
        src, dst = b.entities[b.g2e_edge_index[0]], b.entities[b.g2e_edge_index[1]]
        edges = list(zip(src.tolist(), b.g2e_relation.tolist(), dst.tolist(), strict=True))
        assert set(edges) <= train  # every sampled edge exists with its relation
        sup = set(zip(b.head.tolist(), b.relation.tolist(), b.tail.tolist(), strict=True))
        assert not set(edges) & sup
        hop1 = b.g2e_hop == 1
        assert set(dst[hop1].tolist()) <= set(b.tail.tolist())  # hop 1 ends at batch tails
        for hop, k in ((1, 3), (2, 2)):  # fan-out per node and edge type (the edge type: source modality, as the node's is fixed)
            at = b.g2e_hop == hop
            d, s = b.g2e_edge_index[1][at], b.g2e_edge_index[0][at]
            if d.numel():
                assert torch.bincount(d * 2 + b.modality[s]).max() <= k


def test_sharding_partitions_the_triplets(graph):
    n = graph.num_triplets
    for uneven in ("pad", "drop"):
        seen = []
        for rank in range(3):
            loader = TripletLoader(graph, 10, seed=5, rank=rank, world_size=3, uneven=uneven)
            seen.append(torch.cat([b.triplet for b in loader]))
        lens = {len(s) for s in seen}
        assert len(lens) == 1  # every rank the same count
        allt = torch.cat(seen)
        if uneven == "drop":
            assert allt.unique().numel() == allt.numel() == n - n % 3  # disjoint
        else:
            assert set(allt.tolist()) == set(range(n)) and allt.numel() == 3 * -(-n // 3)
    # the global order is the same on every rank: rank r takes every 3rd element of it
    orders = [TripletLoader(graph, 10, seed=5, rank=r, world_size=3).rank_triplets(0) for r in range(3)]
    interleaved = torch.stack([o[: min(map(len, orders))] for o in orders], 1).flatten()
    single = TripletLoader(graph, 10, seed=5).rank_triplets(0)
    k = min(interleaved.numel(), single.numel())
    assert torch.equal(interleaved[:k], single[:k])


def test_epochs_reshuffle_and_seed_determines_order(graph):
    a = TripletLoader(graph, 8, seed=2)
    e0 = torch.cat([b.triplet for b in a])
    e1 = torch.cat([b.triplet for b in a])
    assert sorted(e0.tolist()) == sorted(e1.tolist()) and not torch.equal(e0, e1)
    b = TripletLoader(graph, 8, seed=2)
    assert torch.equal(torch.cat([x.triplet for x in b]), e0)


def test_resume_yields_exactly_the_remaining_batches(graph):
    full = TripletLoader(graph, 16, fanouts=[2], seed=3)
    ref = list(full)
    part = TripletLoader(graph, 16, fanouts=[2], seed=3)
    it = iter(part)
    for _ in range(5):
        next(it)
    state = part.state_dict()
    assert state["position"] == 5
    resumed = TripletLoader(graph, 16, fanouts=[2], seed=3)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(rest) == len(ref) - 5
    for x, y in zip(rest, ref[5:], strict=True):
        assert torch.equal(x.triplet, y.triplet) and torch.equal(x.g2e_edge_index, y.g2e_edge_index)
    with pytest.raises(ConfigError, match="seed"):
        TripletLoader(graph, 16, seed=4).load_state_dict(state)


def test_workers_give_the_same_batches(graph):
    a = [b.triplet for b in TripletLoader(graph, 64, fanouts=[2], seed=0)]
    b = [b.triplet for b in TripletLoader(graph, 64, fanouts=[2], seed=0, num_workers=2)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_negatives_are_corrupted_and_filtered(graph):
    known = _train_set(graph)
    loader = TripletLoader(graph, 32, seed=0, negatives=4)
    b = next(iter(loader))
    assert b.neg_head.shape == (32, 4)
    h, t = b.entities[b.neg_head], b.entities[b.neg_tail]
    changed = (h != b.head[:, None]).int() + (t != b.tail[:, None]).int() + (b.neg_relation != b.relation[:, None]).int()
    assert (changed <= 1).all()
    negs = set(zip(h.flatten().tolist(), b.neg_relation.flatten().tolist(), t.flatten().tolist(), strict=True))
    assert len(negs & known) <= 6  # redrawn once; a few leftovers are allowed (about 2.4 of 128 on average over seeds)
    # replaced entities keep their modality
    assert torch.equal(b.modality[b.neg_head], b.modality[b.head_index][:, None].expand(-1, 4))


def test_bad_arguments(graph):
    with pytest.raises(ConfigError):
        TripletLoader(graph, 0)
    with pytest.raises(ConfigError):
        TripletLoader(graph, 4, rank=2, world_size=2)
    with pytest.raises(ConfigError):
        TripletLoader(graph, 4, uneven="wrap")


def test_len_and_drop_last(graph):
    n = graph.num_triplets
    assert len(TripletLoader(graph, 7)) == -(-n // 7)
    assert len(TripletLoader(graph, 7, drop_last=True)) == n // 7
    assert sum(len(b) for b in TripletLoader(graph, 7, drop_last=True)) == (n // 7) * 7
    assert np.isclose(sum(len(b) for b in TripletLoader(graph, 7)), n)


# -- G2E through the graph's sampler: a hand-made graph with known neighbourhoods ----------------
class _NoStore:
    num_relations = 3


def _hand_graph():
    """Entities 0 img, 1 txt, 2 txt, 3 img, 4 txt. Triplet 3 is a copy of triplet 0; 6 ends at 0."""
    from kgclip.graph import KnowledgeGraph

    head = np.array([0, 2, 3, 0, 4, 1, 4])
    rel = np.array([0, 1, 0, 0, 2, 1, 0])
    tail = np.array([1, 1, 1, 1, 2, 3, 0])
    modality = np.array([0, 1, 1, 0, 1], dtype=np.int8)
    local = np.array([0, 0, 1, 1, 2])
    return KnowledgeGraph(_NoStore(), head, rel, tail, modality, local)  # type: ignore[arg-type]


def _g2e_edges(b):
    src, dst = b.entities[b.g2e_edge_index[0]], b.entities[b.g2e_edge_index[1]]
    return set(zip(src.tolist(), b.g2e_relation.tolist(), dst.tolist(), b.g2e_hop.tolist(), strict=True))


def test_g2e_known_answer_excludes_copies_and_what_only_they_reach():
    from kgclip.sampling.triplets import TripletSampler

    s = TripletSampler(_hand_graph(), [-1, -1])  # take every in-edge
    b = s.sample(torch.tensor([0]), torch.Generator().manual_seed(0))
    # tail 1's in-edges: (0,r0,1) is the batch's triplet and (0,r0,1) again its copy: both out, and
    # with them node 0's in-edge (4,r0,0) at hop 2; (2,r1,1), (3,r0,1) stay and bring 2's and 3's in-edges.
    assert _g2e_edges(b) == {(2, 1, 1, 1), (3, 0, 1, 1), (4, 2, 2, 2), (1, 1, 3, 2)}
    assert b.entities.tolist() == [0, 1, 2, 3, 4]
    assert b.modality.tolist() == [0, 1, 1, 0, 1]
    assert b.g2e_edge_index.dtype == torch.long and b.g2e_edge_index.shape == (2, 4)
    assert b.entities[b.head_index].tolist() == [0] and b.entities[b.tail_index].tolist() == [1]


def test_g2e_keeps_edges_a_kept_edge_also_reaches():
    from kgclip.sampling.triplets import TripletSampler

    s = TripletSampler(_hand_graph(), [-1, -1])
    b = s.sample(torch.tensor([1]), torch.Generator().manual_seed(0))  # batch (2, r1, 1): node 0 now reached by kept edges
    assert _g2e_edges(b) == {(0, 0, 1, 1), (3, 0, 1, 1), (4, 0, 0, 2), (1, 1, 3, 2)}


def test_batches_are_a_pure_function_of_seed_epoch_index_rank(graph):
    a = TripletLoader(graph, 16, fanouts=[3, 2], seed=7, rank=1, world_size=2, negatives=2)
    b = TripletLoader(graph, 16, fanouts=[3, 2], seed=7, rank=1, world_size=2, negatives=2)
    list(b)  # b has been used: its position must not matter
    for epoch, index in ((0, 3), (2, 0), (1, 5)):
        x, y = a.batch(epoch, index), b.batch(epoch, index)
        for f in ("triplet", "head", "tail", "entities", "g2e_edge_index", "g2e_relation", "g2e_hop", "neg_head", "neg_tail"):
            assert torch.equal(getattr(x, f), getattr(y, f)), f
    assert not torch.equal(a.batch(0, 3).g2e_edge_index, a.batch(1, 3).g2e_edge_index)


def test_state_dict_survives_weights_only_load(graph, tmp_path):
    loader = TripletLoader(graph, 16, seed=3, source_weights={"r": 1.0})
    state = loader.state_dict()
    torch.save(state, tmp_path / "s.pt")
    back = torch.load(tmp_path / "s.pt", weights_only=True)
    assert back == state == {"epoch": 0, "position": 0, "seed": 3, "rank": 0, "world_size": 1, "views": "random", "source_weights": {"r": 1.0}}
    TripletLoader(graph, 16, seed=3, source_weights={"r": 2.0}).load_state_dict(back)  # same after normalising


# -- views of concepts ----------------------------------------------------------------------------
def _concept_store(path):
    """Concept dog: images d1, d2 and gloss dg; concept animal: gloss a1, image a2; x has no concept.
    Facts are stored once, between canonical views (d1, a1)."""
    from kgclip.store import KnowledgeStore, StoreWriter

    with StoreWriter(path, image_roots={"v": str(path.parent)}) as w:
        d1 = w.add_entity("v:d1", "image", image="d1.png", source="v", concept="v:dog")
        w.add_entity("v:d2", "image", image="d2.png", source="v", concept="v:dog")
        w.add_entity("v:dg", "text", text="a dog", source="v", concept="v:dog")
        a1 = w.add_entity("v:a1", "text", text="an animal", source="v", concept="v:animal")
        w.add_entity("v:a2", "image", image="a2.png", source="v", concept="v:animal")
        x = w.add_entity("o:x", "text", text="a bone", source="o")
        isa, near = w.add_relation("isa", "is a"), w.add_relation("near", "near")
        w.add_triplet(d1, isa, a1, source="v", split="train")
        w.add_triplet(x, near, d1, source="o", split="train")
        w.add_triplet(a1, near, x, source="o", split="train")
        w.add_triplet(d1, near, x, source="o", split="train")
    return KnowledgeStore(path)


def _stored(graph, keys):
    """Triplet index -> (stored head key, stored tail key)."""
    return {i: (keys[h], keys[t]) for i, (h, t) in enumerate(zip(graph.head.tolist(), graph.tail.tolist(), strict=True))}


def test_views_are_drawn_per_concept_and_batch(tmp_path):
    from kgclip.graph import KnowledgeGraph

    store = _concept_store(tmp_path / "s")
    graph = KnowledgeGraph.from_store(store)
    keys = store.entities["key"].tolist()
    stored = {v: k for k, v in _stored(graph, keys).items()}
    fact, x_d, a_x, d_x = stored["v:d1", "v:a1"], stored["o:x", "v:d1"], stored["v:a1", "o:x"], stored["v:d1", "o:x"]
    dog, animal = {"v:d1", "v:d2", "v:dg"}, {"v:a1", "v:a2"}
    loader = TripletLoader(graph, 4, fanouts=[-1], seed=0)
    heads, tails = set(), set()
    for _ in range(60):
        (b,) = list(loader)
        drawn = {int(t): (keys[h], keys[tl]) for t, h, tl in zip(b.triplet, b.head, b.tail, strict=True)}
        h0, t0 = drawn[fact]
        assert h0 in dog and t0 in animal
        # one view per concept and batch, wherever the concept appears
        assert drawn[x_d] == ("o:x", h0) and drawn[a_x] == (t0, "o:x") and drawn[d_x] == (h0, "o:x")
        assert torch.equal(b.modality, torch.from_numpy(graph.modality[b.entities.numpy()]).long())
        assert not _g2e_edges(b)  # every fact is in the batch: none passes messages
        heads.add(h0)
        tails.add(t0)
    assert heads == dog and tails == animal  # every view turns up

    fixed = TripletLoader(graph, 4, fanouts=[-1], seed=0, views="fixed")
    (b,) = list(fixed)
    assert {int(t): (keys[h], keys[tl]) for t, h, tl in zip(b.triplet, b.head, b.tail, strict=True)} == _stored(graph, keys)
    with pytest.raises(ConfigError, match="views"):
        TripletLoader(graph, 4, views="sometimes")
    with pytest.raises(ConfigError, match="views"):
        fixed.load_state_dict(loader.state_dict())


def test_store_without_concepts_gives_the_same_batches_in_both_view_modes(graph):
    assert graph.concept is None
    a = TripletLoader(graph, 16, fanouts=[2, 2], seed=1, views="random")
    b = TripletLoader(graph, 16, fanouts=[2, 2], seed=1, views="fixed")
    assert a.sampler.views is None
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.entities, y.entities) and torch.equal(x.g2e_edge_index, y.g2e_edge_index)
    b.load_state_dict(a.state_dict())  # no concepts: the view mode does not change the order


def test_views_g2e_neighbours_are_views_too(tmp_path):
    from kgclip.graph import KnowledgeGraph

    store = _concept_store(tmp_path / "s")
    graph = KnowledgeGraph.from_store(store)
    keys = store.entities["key"].tolist()
    loader = TripletLoader(graph, 1, fanouts=[-1, -1], seed=0)
    dog = {"v:d1", "v:d2", "v:dg"}
    neighbours = set()
    for epoch in range(40):
        b = loader.batch(epoch, loader.rank_triplets(epoch).tolist().index(2))  # (a1, near, x)
        edges = {(keys[s], r, keys[t], hop) for s, r, t, hop in _g2e_edges(b)}
        # x <- (d1, near, x) at hop 1 brings a dog view; d1 <- (x, near, d1) at hop 2 ends at that same view
        (hop1,) = [e for e in edges if e[3] == 1]
        (hop2,) = [e for e in edges if e[3] == 2]
        assert hop1[0] in dog and hop1[2] == "o:x" and hop2 == ("o:x", hop1[1], hop1[0], 2)
        neighbours.add(hop1[0])
    assert neighbours == dog


# -- source weights -------------------------------------------------------------------------------
def _two_source_graph(n_a=90, n_b=10):
    from kgclip.graph import KnowledgeGraph

    rng = np.random.default_rng(0)
    n = n_a + n_b
    modality = (np.arange(20) % 2).astype(np.int8)
    local = np.arange(20) // 2
    source = np.array([0] * n_a + [1] * n_b)[rng.permutation(n)]
    return KnowledgeGraph(_NoStore(), rng.integers(0, 20, n), rng.integers(0, 3, n), rng.integers(0, 20, n), modality, local,  # type: ignore[arg-type]
                          source=source, sources=("a", "b"))


def test_no_weights_is_one_shuffle_of_every_triplet():
    g = _two_source_graph()
    loader = TripletLoader(g, 8, seed=4)
    for epoch in (0, 3):
        assert torch.equal(loader.epoch_order(epoch), torch.randperm(100, generator=torch.Generator().manual_seed(4 * 1_000_003 + epoch)))


def test_weights_set_each_sources_share_of_an_epoch():
    g = _two_source_graph()
    loader = TripletLoader(g, 8, seed=0, source_weights={"a": 1, "b": 3})
    assert loader.source_weights == {"a": 0.25, "b": 0.75}
    orders = [loader.epoch_order(e) for e in range(3)]
    for order in orders:
        assert order.numel() == 100
        src = torch.from_numpy(g.source)[order]
        assert int((src == 0).sum()) == 25 and int((src == 1).sum()) == 75
        a_part, b_part = order[src == 0], order[src == 1]
        assert a_part.unique().numel() == 25  # a smaller share: a subset, no repeats
        reps = torch.bincount(b_part, minlength=100)[torch.from_numpy(g.source == 1)]
        assert set(reps.tolist()) <= {7, 8} and int(reps.sum()) == 75  # b cycles through fresh shuffles
    assert not torch.equal(orders[0], orders[1])
    again = TripletLoader(g, 8, seed=0, source_weights={"a": 0.25, "b": 0.75})
    assert torch.equal(again.epoch_order(2), orders[2])
    zero = TripletLoader(g, 8, seed=0, source_weights={"a": 1, "b": 0})
    order = zero.epoch_order(0)
    assert (torch.from_numpy(g.source)[order] == 0).all() and order.numel() == 100


def test_weights_shard_and_resume_exactly():
    g = _two_source_graph()
    w = {"a": 0.5, "b": 0.5}
    seen = torch.cat([torch.cat([b.triplet for b in TripletLoader(g, 7, seed=2, rank=r, world_size=2, source_weights=w)]) for r in range(2)])
    assert torch.equal(torch.sort(seen).values, torch.sort(TripletLoader(g, 7, seed=2, source_weights=w).epoch_order(0)).values)
    full = list(TripletLoader(g, 7, seed=2, source_weights=w))
    part = TripletLoader(g, 7, seed=2, source_weights=w)
    it = iter(part)
    for _ in range(4):
        next(it)
    resumed = TripletLoader(g, 7, seed=2, source_weights=w)
    resumed.load_state_dict(part.state_dict())
    assert [b.triplet.tolist() for b in resumed] == [b.triplet.tolist() for b in full[4:]]
    with pytest.raises(ConfigError, match="source_weights"):
        TripletLoader(g, 7, seed=2, source_weights={"a": 0.9, "b": 0.1}).load_state_dict(part.state_dict())
    with pytest.raises(ConfigError, match="source_weights"):
        TripletLoader(g, 7, seed=2).load_state_dict(part.state_dict())
    with pytest.raises(ConfigError, match="source_weights"):  # a state from before weights existed
        TripletLoader(g, 7, seed=2, source_weights=w).load_state_dict({"epoch": 0, "position": 1, "seed": 2, "rank": 0, "world_size": 1})


@pytest.mark.parametrize(("weights", "message"), [
    ({"a": 1, "c": 1, "b": 1}, "'c', which no training triplet has"),
    ({"a": 1}, "leaves out 'b'"),
    ({"a": 1, "b": -1}, r"source_weights\['b'\] must be a finite number >= 0"),
    ({"a": 1, "b": float("nan")}, "finite number"),
    ({"a": 1, "b": "x"}, "finite number"),
    ({"a": 0, "b": 0}, "all 0"),
    (["a", "b"], "must map each triplet source"),
])
def test_bad_weights(weights, message):
    with pytest.raises(ConfigError, match=message):
        TripletLoader(_two_source_graph(), 8, source_weights=weights)
