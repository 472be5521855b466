import torch

from kgclip.sampling.csr import CSR


def _graph():
    # node 0: 2 in-edges, node 1: 10, node 2: 100, node 3: none
    dst = torch.cat([torch.zeros(2), torch.ones(10), torch.full((100,), 2)]).long()
    src = torch.arange(dst.numel())
    perm = torch.randperm(dst.numel(), generator=torch.Generator().manual_seed(1))
    return CSR.from_edges(src[perm], dst[perm], 4), src[perm], dst[perm]


def test_csr_groups_in_edges():
    csr, src, dst = _graph()
    assert csr.indptr.tolist() == [0, 2, 12, 112, 112]
    assert torch.equal(dst[csr.eid], torch.sort(dst, stable=True).values)
    assert torch.equal(src[csr.eid], csr.src)


def test_fanout_respected_no_duplicates_edges_exist():
    csr, _, dst = _graph()
    seeds = torch.tensor([0, 1, 2, 3, 2])
    seed_pos, pos = csr.sample(seeds, 3, torch.Generator().manual_seed(0))
    counts = torch.bincount(seed_pos, minlength=5).tolist()
    assert counts == [2, 3, 3, 0, 3]
    assert torch.equal(dst[csr.eid[pos]], seeds[seed_pos])  # each sampled edge ends at its seed
    for i in range(5):
        e = csr.eid[pos[seed_pos == i]]
        assert e.unique().numel() == e.numel()


def test_negative_fanout_takes_all():
    csr, _, _ = _graph()
    seed_pos, _ = csr.sample(torch.tensor([1, 2]), -1)
    assert torch.bincount(seed_pos).tolist() == [10, 100]


def test_deterministic_per_seed():
    csr, _, _ = _graph()
    a = csr.sample(torch.tensor([1, 2]), 4, torch.Generator().manual_seed(7))
    b = csr.sample(torch.tensor([1, 2]), 4, torch.Generator().manual_seed(7))
    c = csr.sample(torch.tensor([1, 2]), 4, torch.Generator().manual_seed(8))
    assert torch.equal(a[1], b[1]) and not torch.equal(a[1], c[1])


def test_uniform_for_moderate_and_high_degree():
    csr, _, _ = _graph()
    g = torch.Generator().manual_seed(0)
    trials = 4000
    seeds = torch.tensor([1, 2]).repeat(trials)
    seed_pos, pos = csr.sample(seeds, 3, g)
    mid = torch.bincount(pos[seeds[seed_pos] == 1] - 2, minlength=10).double() / trials  # expected 3/10 each
    high = torch.bincount(pos[seeds[seed_pos] == 2] - 12, minlength=100).double() / trials  # expected 3/100 each
    assert (mid - 0.3).abs().max() < 0.04
    assert (high - 0.03).abs().max() < 0.015


def test_isin_matches_torch():
    from kgclip.sampling.csr import isin

    g = torch.Generator().manual_seed(0)
    for n, m in ((50, 7), (3, 200), (0, 5), (6, 0)):
        a, b = torch.randint(0, 40, (n,), generator=g), torch.randint(0, 40, (m,), generator=g)
        assert torch.equal(isin(a, b), torch.isin(a, b))
    assert isin(torch.tensor([5, 1, 9]), torch.tensor([9, 5])).tolist() == [True, False, True]


def test_sorted_input_needs_no_edge_map():
    dst = torch.tensor([0, 0, 2, 2, 2])
    csr = CSR.from_edges(torch.tensor([4, 3, 2, 1, 0]), dst, 3)
    assert csr.eid is None and csr.indptr.tolist() == [0, 2, 2, 5]
    seed_pos, pos = csr.sample(torch.tensor([2, 0]), -1)
    assert torch.equal(dst[csr.edge_ids(pos)], torch.tensor([2, 0])[seed_pos])
    assert sorted(csr.src[pos].tolist()) == [0, 1, 2, 3, 4]
