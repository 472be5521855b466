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
