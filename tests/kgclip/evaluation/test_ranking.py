import json
from pathlib import Path

import pytest
import torch

from kgclip.errors import KgclipError
from kgclip.evaluation.link_prediction import link_prediction
from kgclip.evaluation.ranking import filtered_ranks, rank_metrics
from kgclip.store import KnowledgeStore, StoreWriter


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


@pytest.mark.parametrize("where", ["query", "candidate"])
def test_nan_scores_are_an_error_not_a_rank_better_than_first(where):
    q, c = _dot([[0.9, 0.5, 0.7], [0.1, 0.8, 0.3]])
    (q if where == "query" else c)[1, 1] = float("nan")  # before: query 1 ranked 0.5 (MRR above 1 possible)
    with pytest.raises(KgclipError, match=r"quer\(ies\) have NaN scores \(the model's vectors hold NaN\), e.g. query \d"):
        filtered_ranks(q, c, torch.tensor([0, 1]), normalize=False, chunk=1)


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


# -- parity with PyKEEN's RankBasedEvaluator (filtered, realistic, both sides) --------------------
# data/pykeen_reference.json: a score tensor S[h, r, t] (12 entities, 3 relations, integer scores so
# that ties are exact), 38 triplets with splits (15 test), and the metrics PyKEEN 1.11.1 reports for
# them: its FixedModel scoring by S, RankBasedEvaluator(filtered=True).evaluate over the test
# triplets with train + valid as additional filter triples. data/make_pykeen_reference.py made it
# (the commands are in its docstring).

REFERENCE = Path(__file__).parent / "data" / "pykeen_reference.json"


@pytest.fixture(scope="module")
def reference():
    return json.loads(REFERENCE.read_text())


class TensorScorer:
    """Scores S[h, r, t] exactly: a candidate t is the one-hot vector e_t, a query (h, r) the row S[h, r, :]."""

    name = "tensor"

    def __init__(self, scores):
        self.s = torch.tensor(scores, dtype=torch.float64)

    def candidates(self, ids):
        return torch.eye(self.s.shape[0], dtype=torch.float64)[ids]

    def queries(self, heads, relations):
        return self.s[heads, relations]


def _metrics(ranks):
    m = rank_metrics(ranks)
    return {"mrr": m["mrr"], **{f"hits@{k}": m[f"hits@{k}"] for k in (1, 3, 10)}}


def test_filtered_ranks_match_pykeen(reference):
    s = torch.tensor(reference["scores"], dtype=torch.float64)
    trip = reference["triplets"]
    known = {(h, r, t) for h, r, t, _ in trip}
    test = [(h, r, t) for h, r, t, split in trip if split == "test"]
    one_hot = torch.eye(s.shape[0], dtype=torch.float64)
    ranks = {}
    for side in ("tail", "head"):
        rows = torch.stack([s[h, r, :] if side == "tail" else s[:, r, t] for h, r, t in test])  # [Q, entities]
        true = torch.tensor([t if side == "tail" else h for h, r, t in test])
        fq, fc = zip(*[(i, e) for i, (h, r, t) in enumerate(test) for e in range(s.shape[0])
                       if ((h, r, e) if side == "tail" else (e, r, t)) in known], strict=True)
        ranks[side] = filtered_ranks(rows, one_hot, true, torch.tensor(fq), torch.tensor(fc), normalize=False, chunk=4)
    ranks["both"] = torch.cat([ranks["tail"], ranks["head"]])
    for side, r in ranks.items():
        for name, value in _metrics(r).items():
            assert value == pytest.approx(reference["reference"][f"{side}.realistic.{name}"], abs=1e-6), (side, name)


@pytest.mark.parametrize("max_candidate_bytes", [1, 2**30])  # head candidates one relation at a time, or all at once
def test_link_prediction_matches_pykeen(reference, tmp_path, max_candidate_bytes):
    n = len(reference["scores"])
    with StoreWriter(tmp_path / "s") as w:
        for i in range(n):
            w.add_entity(f"e{i}", "text", text=f"e{i}", source="x")
        for r in range(len(reference["scores"][0])):
            w.add_relation(f"r{r}", f"r{r}")
        for h, r, t, split in reference["triplets"]:
            w.add_triplet(h, r, t, source="x", split=split)
    res = link_prediction(TensorScorer(reference["scores"]), KnowledgeStore(tmp_path / "s"), chunk=4, max_candidate_bytes=max_candidate_bytes)
    for ours, theirs in (("overall", "both"), ("tail", "tail"), ("head", "head")):
        assert res[ours]["count"] == (30 if ours == "overall" else 15)
        for name in ("mrr", "hits@1", "hits@3", "hits@10"):
            assert res[ours][name] == pytest.approx(reference["reference"][f"{theirs}.realistic.{name}"], abs=1e-6), (ours, name)
