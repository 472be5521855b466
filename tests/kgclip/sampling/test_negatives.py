import numpy as np
import pytest
import torch

from kgclip.errors import ConfigError
from kgclip.graph import KnowledgeGraph
from kgclip.sampling import TripletLoader, TripletSampler
from kgclip.sampling.negatives import reorder_groups
from kgclip.store import KnowledgeStore, StoreWriter


def test_reorder_groups_known_answer():
    texts = ["a red circle left of a blue square", "a blue square left of a red circle", "A  Red circle left of a blue square",
             None, "dog", "a blue circle left of a red square", "cat dog", "dog cat", "cat cat dog"]
    is_text = np.array([True, True, True, False, True, True, True, True, True])
    group, position, indptr, members = reorder_groups(texts, is_text)
    # distinct texts per bag of words, each by its lowest id, sorted by text within the bag
    assert indptr.tolist() == [0, 3, 5]
    assert members.tolist() == [5, 1, 0, 6, 7]  # "a blue circle ...", "a blue square ...", "a red circle ..."; "cat dog", "dog cat"
    assert group.tolist() == [0, 0, 0, -1, -1, 0, 1, 1, -1]  # "dog" has one word; "cat cat dog" has no other order in the store
    assert position[[0, 1, 2, 5, 6, 7]].tolist() == [2, 1, 2, 0, 0, 1]  # id 2 is id 0's text (case and spaces aside)


def _world(path):
    """Objects a, b (one scene), a caption scene s and a few texts; relation ids in the order added.

    Triplets (train): (a left of b), (b right of a), (a bigger than b), (a has attribute red),
    (b has attribute blue), (red antonym of blue), (s image of cap0), (s2 image of cap2),
    (dog related to s2)."""
    with StoreWriter(path, image_roots={"w": str(path.parent)}) as w:
        e = {k: w.add_entity(f"w:{k}", "image", image=f"{k}.png", source="w") for k in ("a", "b", "s", "s2")}
        for k, text in (("red", "red"), ("blue", "blue"), ("cap0", "a red circle left of a blue square"),
                        ("cap1", "a blue square left of a red circle"), ("cap2", "a blue circle left of a red square"), ("dog", "dog")):
            e[k] = w.add_entity(f"w:{k}", "text", text=text, source="w")
        rel = {k: w.add_relation(k, k) for k in ("left of", "right of", "bigger than", "has attribute", "image of", "antonym of", "related to")}
        for h, r, t in (("a", "left of", "b"), ("b", "right of", "a"), ("a", "bigger than", "b"), ("a", "has attribute", "red"),
                        ("b", "has attribute", "blue"), ("red", "antonym of", "blue"), ("s", "image of", "cap0"), ("s2", "image of", "cap2"),
                        ("dog", "related to", "s2")):
            w.add_triplet(e[h], rel[r], e[t], source="w", split="train")
    return KnowledgeStore(path), e, rel


def _negatives_by_triplet(sampler, seeds, n):
    """Triplet index -> every (h, r, t) drawn as its negative over the seeds (ids)."""
    out = {i: set() for i in range(n)}
    for seed in seeds:
        b = sampler.sample(torch.arange(n), torch.Generator().manual_seed(seed))
        h, t = b.entities[b.neg_head], b.entities[b.neg_tail]
        for i in range(n):
            out[i] |= set(zip(h[i].tolist(), b.neg_relation[i].tolist(), t[i].tolist(), strict=True))
    return out


def test_each_kind_gives_the_corruptions_worked_out_by_hand(tmp_path):
    store, e, rel = _world(tmp_path / "w")
    graph = KnowledgeGraph.from_store(store)
    sampler = TripletSampler(graph, [], negatives=3, negative_mode="hard")
    n = graph.num_triplets
    got = _negatives_by_triplet(sampler, range(40), n)
    key = {(int(h), int(r), int(t)): i for i, (h, r, t) in enumerate(zip(graph.head, graph.relation, graph.tail, strict=True))}
    a, b, red, blue, s, dog, s2 = e["a"], e["b"], e["red"], e["blue"], e["s"], e["dog"], e["s2"]
    lft, rgt, big, att, img, ant, rto = (rel[k] for k in ("left of", "right of", "bigger than", "has attribute", "image of", "antonym of", "related to"))
    want = {
        # relation: right of / bigger than share the pair {a, b} with left of; (a bigger than b) is known. exchange.
        (a, lft, b): {(a, rgt, b), (b, lft, a)},
        (b, rgt, a): {(b, lft, a), (b, big, a), (a, rgt, b)},
        (a, big, b): {(a, rgt, b), (b, big, a)},
        # move: the attribute to the other object, or the other colour (a neighbour of red) to the object
        (a, att, red): {(b, att, red), (a, att, blue)},
        (b, att, blue): {(a, att, blue), (b, att, red)},
        (red, ant, blue): {(blue, ant, red)},  # moves would give (blue, ant, blue): never
        # reorder: the caption's relation swap and attribute swap
        (s, img, e["cap0"]): {(s, img, e["cap1"]), (s, img, e["cap2"])},
        (s2, img, e["cap2"]): {(s2, img, e["cap0"]), (s2, img, e["cap1"])},
        (dog, rto, s2): {(dog, rto, s2)},  # nothing to offer: "none found" is the triplet itself
    }
    assert {triplet: got[key[triplet]] for triplet in want} == want


def test_hard_negatives_are_never_known_and_keep_the_slots(tmp_path):
    store, _, _ = _world(tmp_path / "w")
    graph = KnowledgeGraph.from_store(store)
    train = set(zip(graph.head.tolist(), graph.relation.tolist(), graph.tail.tolist(), strict=True))
    sampler = TripletSampler(graph, [], negatives=2, negative_mode="hard")
    b = sampler.sample(torch.arange(graph.num_triplets), torch.Generator().manual_seed(0))
    assert b.neg_head.shape == b.neg_tail.shape == b.neg_relation.shape == (graph.num_triplets, 2)
    h, t = b.entities[b.neg_head], b.entities[b.neg_tail]
    for i in range(graph.num_triplets):
        for k in range(2):
            neg = (int(h[i, k]), int(b.neg_relation[i, k]), int(t[i, k]))
            own = (int(b.head[i]), int(b.relation[i]), int(b.tail[i]))
            assert neg == own or neg not in train


def test_slots_try_the_kinds_in_a_random_order_per_triplet(tmp_path):
    """(x r1 y) offers exactly two kinds, each always successful: relation -> (x r3 y) (r3 shares the
    pair (p, q) with r1) and exchange -> (y r1 x) (r1 is seen from text to image in (z r1 w)).
    With K = 2 the slots start at different kinds: every draw holds both, in either order."""
    with StoreWriter(tmp_path / "k", image_roots={"w": str(tmp_path)}) as w:
        x, p, wi = (w.add_entity(f"w:{k}", "image", image=f"{k}.png", source="w") for k in ("x", "p", "w"))
        y, q, z = (w.add_entity(f"w:{k}", "text", text=k, source="w") for k in ("y", "q", "z"))
        r1, r3 = w.add_relation("r1", "r1"), w.add_relation("r3", "r3")
        for h, r, t in ((x, r1, y), (p, r1, q), (p, r3, q), (z, r1, wi)):
            w.add_triplet(h, r, t, source="w", split="train")
    graph = KnowledgeGraph.from_store(KnowledgeStore(tmp_path / "k"))
    sampler = TripletSampler(graph, [], negatives=2, negative_mode="hard")
    firsts = set()
    for seed in range(12):
        b = sampler.sample(torch.tensor([0]), torch.Generator().manual_seed(seed))
        negs = list(zip(b.entities[b.neg_head[0]].tolist(), b.neg_relation[0].tolist(), b.entities[b.neg_tail[0]].tolist(), strict=True))
        assert set(negs) == {(x, r3, y), (y, r1, x)}
        firsts.add(negs[0])
    assert len(firsts) == 2


def test_deterministic_in_seed_epoch_index_rank(tmp_path):
    store, _, _ = _world(tmp_path / "w")
    graph = KnowledgeGraph.from_store(store)

    def negs(loader, epoch, index):
        b = loader.batch(epoch, index)
        return torch.stack([b.entities[b.neg_head], b.neg_relation, b.entities[b.neg_tail]])

    one, two = (TripletLoader(graph, 4, seed=3, negatives=2, negative_mode="hard", world_size=2, rank=1) for _ in range(2))
    assert torch.equal(negs(one, 1, 0), negs(two, 1, 0))
    draws = {tuple(negs(TripletLoader(graph, 4, seed=s, negatives=2, negative_mode="hard"), 0, 0).flatten().tolist()) for s in range(6)}
    assert len(draws) > 1


def test_no_negatives_leaves_the_batches_as_they_were(tmp_path):
    """hard_negatives 0: the loader builds exactly today's batches (the invariant behind K=0 = the paper's loss)."""
    store, _, _ = _world(tmp_path / "w")
    graph = KnowledgeGraph.from_store(store)
    plain, hard0 = TripletLoader(graph, 4, fanouts=[2], seed=1), TripletLoader(graph, 4, fanouts=[2], seed=1, negatives=0, negative_mode="hard")
    for i in range(len(plain)):
        x, y = plain.batch(0, i), hard0.batch(0, i)
        assert y.neg_head is None and y.neg_relation is None and y.neg_tail is None
        for name in ("triplet", "head", "relation", "tail", "entities", "modality", "head_index", "tail_index", "g2e_edge_index", "g2e_relation"):
            assert torch.equal(getattr(x, name), getattr(y, name)), name
    # with negatives the positives and the G2E edges are drawn first and stay the same
    hard = TripletLoader(graph, 4, fanouts=[2], seed=1, negatives=2, negative_mode="hard").batch(0, 0)
    base = plain.batch(0, 0)
    assert torch.equal(hard.head, base.head) and torch.equal(hard.tail, base.tail)
    assert torch.equal(hard.entities[hard.g2e_edge_index], base.entities[base.g2e_edge_index])


def test_a_negative_touching_a_failed_entity_becomes_none(tmp_path):
    store, e, _ = _world(tmp_path / "w")
    graph = KnowledgeGraph.from_store(store)
    b = TripletSampler(graph, [], negatives=2, negative_mode="hard").sample(torch.arange(graph.num_triplets), torch.Generator().manual_seed(0))
    bad = b.entities == e["cap1"]
    kept = b.drop_entities(bad)
    assert len(kept) == len(b)  # cap1 is only ever a negative here
    gone = (b.neg_head == int(bad.nonzero())) | (b.neg_tail == int(bad.nonzero()))
    assert gone.any()
    assert torch.equal(kept.neg_tail[gone], b.tail_index[:, None].expand_as(gone)[gone])
    assert torch.equal(kept.neg_relation[gone], b.relation[:, None].expand_as(gone)[gone])
    assert torch.equal(kept.neg_tail[~gone], b.neg_tail[~gone])


def test_views_compare_concepts(tmp_path):
    """With views drawn, a fact holds for every view of a concept: no negative is a view-level copy of a known fact."""
    from tests.kgclip.sampling.test_triplets import _concept_store

    store = _concept_store(tmp_path / "c")
    graph = KnowledgeGraph.from_store(store)
    sampler = TripletSampler(graph, [], negatives=3, negative_mode="hard", views="random")
    canon = sampler.views.canonical
    known = set(zip(canon(torch.from_numpy(graph.head)).tolist(), graph.relation.tolist(), canon(torch.from_numpy(graph.tail)).tolist(), strict=True))
    for seed in range(20):
        b = sampler.sample(torch.arange(graph.num_triplets), torch.Generator().manual_seed(seed))
        h, t = canon(b.entities[b.neg_head]), canon(b.entities[b.neg_tail])
        own = (h == canon(b.head)[:, None]) & (b.neg_relation == b.relation[:, None]) & (t == canon(b.tail)[:, None])
        negs = set(zip(h[~own].tolist(), b.neg_relation[~own].tolist(), t[~own].tolist(), strict=True))
        assert not negs & known


def test_bad_negative_settings(graph):
    with pytest.raises(ConfigError, match="negative_mode"):
        TripletLoader(graph, 4, negatives=2, negative_mode="hardest")
    with pytest.raises(ConfigError, match="negatives"):
        TripletSampler(graph, [], negatives=-1)
