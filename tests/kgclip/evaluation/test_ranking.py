import pytest
import torch

from kgclip.evaluation.ranking import filtered_ranks, rank_metrics


def _dot(scores_rows):
    """Queries as one-hot rows against candidates whose vectors are the score columns."""
    s = torch.tensor(scores_rows, dtype=torch.float64)
    return torch.eye(s.shape[0], dtype=torch.float64), s.T.contiguous()


def test_rank_by_hand_with_ties_and_filtering():
    # query 0: scores [0.9, 0.5, 0.7, 0.7]; true = 2 -> one greater (0.9), one tie (3): realistic 2.5
    # query 1: scores [0.1, 0.8, 0.8, 0.9]; true = 1 -> 0.9 greater, tie with 2; filter out 3 -> rank 1.5
    q, c = _dot([[0.9, 0.5, 0.7, 0.7], [0.1, 0.8, 0.8, 0.9]])
    r = filtered_ranks(q, c, torch.tensor([2, 1]), normalize=False)
    assert r.tolist() == [2.5, 2.5]
    r = filtered_ranks(q, c, torch.tensor([2, 1]), torch.tensor([1, 0, 0]), torch.tensor([3, 0, 2]), normalize=False)
    # query 1 filters 3; query 0 filters 0 and 2 (2 is its own true answer: never filtered) -> query 0: tie with 3 -> 1.5
    assert r.tolist() == [1.5, 1.5]


def test_chunks_do_not_change_ranks():
    g = torch.Generator().manual_seed(0)
    q, c = torch.randn(50, 8, generator=g), torch.randn(30, 8, generator=g)
    true = torch.randint(0, 30, (50,), generator=g)
    fq, fc = torch.randint(0, 50, (40,), generator=g), torch.randint(0, 30, (40,), generator=g)
    a = filtered_ranks(q, c, true, fq, fc, chunk=7)
    b = filtered_ranks(q, c, true, fq, fc, chunk=1000)
    assert torch.equal(a, b)
    # brute force
    qn, cn = torch.nn.functional.normalize(q, dim=-1), torch.nn.functional.normalize(c, dim=-1)
    for i in range(50):
        s = (qn[i] @ cn.T).tolist()
        others = {int(x) for x, y in zip(fc.tolist(), fq.tolist(), strict=True) if y == i} - {int(true[i])}
        t = s[true[i]]
        greater = sum(1 for j, v in enumerate(s) if j not in others and v > t)
        ties = sum(1 for j, v in enumerate(s) if j not in others and v == t and j != true[i])
        assert a[i].item() == pytest.approx(1 + greater + 0.5 * ties)


def test_metrics():
    m = rank_metrics(torch.tensor([1.0, 2.0, 4.0, 20.0], dtype=torch.float64))
    assert m["mrr"] == pytest.approx((1 + 0.5 + 0.25 + 0.05) / 4)
    assert m["hits@1"] == 0.25 and m["hits@3"] == 0.5 and m["hits@10"] == 0.75 and m["count"] == 4
