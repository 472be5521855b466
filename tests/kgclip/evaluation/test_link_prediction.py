"""Link and relation prediction against ranks computed by hand, with a scorer whose vectors the test sets."""

import math

import pytest

from kgclip.evaluation import link_prediction, relation_prediction
from kgclip.evaluation.link_prediction import concept_groups
from kgclip.store import KnowledgeStore, StoreWriter
from tests.kgclip.evaluation.fakes import FakeScorer


def _store(tmp_path, triplets):
    """Text entities t0..t3, relations r0 r1; triplets (h, r, t, split)."""
    with StoreWriter(tmp_path / "s") as w:
        for i in range(4):
            w.add_entity(f"t{i}", "text", text=f"t{i}", source="x")
        w.add_relation("r0", "r0")
        w.add_relation("r1", "r1")
        for h, r, t, split in triplets:
            w.add_triplet(h, r, t, source="x", split=split)
    return KnowledgeStore(tmp_path / "s")


def test_link_prediction_both_sides_filtered_realistic(tmp_path):
    s = _store(tmp_path, [(0, 0, 1, "train"), (0, 0, 2, "test")])
    cand = {0: (0, 1), 1: (1, 0), 2: (0.8, 0.6), 3: (0.6, 0.8)}
    query = {(0, 0): (1, 0), (1, 0): (0.8, 0.6), (2, 0): (0, 1), (3, 0): (1, 0)}
    res = link_prediction(FakeScorer(cand, query), s)
    # (t0, r0, ?): scores t0 0, t1 1, t2 .8, t3 .6; t1 is a known answer -> filtered -> rank 1
    assert res["tail"]["mrr"] == pytest.approx(1.0)
    # (?, r0, t2): t1 scores 1.0 > true t0 0.8 = t3 0.8 (tie) -> rank 2.5
    assert res["head"]["mrr"] == pytest.approx(1 / 2.5)
    assert res["overall"]["mrr"] == pytest.approx((1 + 0.4) / 2)
    assert res["overall"]["hits@1"] == 0.5 and res["overall"]["hits@3"] == 1.0
    assert res["per_relation"]["r0"]["mrr"] == pytest.approx(0.7)
    assert res["per_modality_pair"]["text-text"]["count"] == 2


def test_link_prediction_without_filter_counts_known_answers(tmp_path):
    s = _store(tmp_path, [(0, 1, 1, "train"), (0, 0, 2, "test")])  # (t0, r1, t1) does not match (t0, r0, ?)
    cand = {0: (0, 1), 1: (1, 0), 2: (0.8, 0.6), 3: (0.6, 0.8)}
    query = {(0, 0): (1, 0), (1, 0): (0.8, 0.6), (2, 0): (0, 1), (3, 0): (1, 0)}
    res = link_prediction(FakeScorer(cand, query), s)
    assert res["tail"]["mrr"] == pytest.approx(0.5)  # t1 now outranks t2


def test_relation_prediction(tmp_path):
    s = _store(tmp_path, [(0, 0, 1, "test"), (2, 1, 3, "test")])
    scores = {(0, 1): [0.9, 0.1], (2, 3): [0.8, 0.2]}
    assert relation_prediction(FakeScorer({}, {}, rel_scores=scores), s) == {"accuracy": 0.5, "count": 2}




def _at(base, other, s):
    """A unit vector whose cosine with ``base`` is ``s`` (``other`` is a unit vector orthogonal to ``base``)."""
    return tuple(s * b + math.sqrt(1 - s * s) * o for b, o in zip(base, other, strict=True))


def _concept_store(tmp_path, concepts=True):
    """Text entities: 0 x (concept C), 1 A1 (A), 2 A2 (A), 3 B (B), 4 y (none), 5 x2 (C).
    Triplets: (0 r0 1) test, (4 r0 2) train, (5 r0 3) train."""
    names = [("x", "C"), ("A1", "A"), ("A2", "A"), ("B", "B"), ("y", None), ("x2", "C")]
    with StoreWriter(tmp_path / "c") as w:
        for key, concept in names:
            w.add_entity(key, "text", text=key, source="x", concept=concept if concepts else None)
        w.add_relation("r0", "r0")
        for h, t, split in ((0, 1, "test"), (4, 2, "train"), (5, 3, "train")):
            w.add_triplet(h, 0, t, source="x", split=split)
    return KnowledgeStore(tmp_path / "c")


def _concept_scorer():
    e0, e1, e2 = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)
    # the tail query (x, r0, ?) is e0; candidate t scores tail_score[t] against it
    tail_score = {0: 0.1, 1: 0.5, 2: 0.9, 3: 0.8, 4: 0.7, 5: 0.2}
    cand = {t: _at(e0, e1, s) for t, s in tail_score.items()}
    # the head query (?, r0, A1) is cand[1]; head candidate Y(h, r0, -) scores head_score[h] against it
    head_score = {1: 0.1, 2: 0.2, 3: 0.7, 4: 0.9, 5: 0.8}
    query = {(h, 0): _at(cand[1], e2, s) for h, s in head_score.items()}
    query[(0, 0)] = e0  # x's Y(x, r0, -) is the tail query and a head candidate: cos(e0, cand[1]) = 0.5
    return FakeScorer(cand, query)


def test_views_of_a_concept_share_their_facts_in_the_filter(tmp_path):
    res = link_prediction(_concept_scorer(), _concept_store(tmp_path))
    # (x, r0, ?) true A1 (0.5): A2 (0.9) is A1's sibling -> filtered; B (0.8) answers (x2, r0, ?) and x2 is x's
    # sibling -> filtered; y (0.7) counts -> rank 2
    assert res["tail"]["mrr"] == pytest.approx(1 / 2)
    # (?, r0, A1) true x (0.5): y (0.9) answers (?, r0, A2), A2 a sibling of A1 -> filtered; x2 (0.8) is x's sibling
    # -> filtered; B (0.7) counts -> rank 2
    assert res["head"]["mrr"] == pytest.approx(1 / 2)


def test_without_concepts_every_entity_stands_alone(tmp_path):
    scorer = _concept_scorer()
    res = link_prediction(scorer, _concept_store(tmp_path, concepts=False))
    assert res["tail"]["mrr"] == pytest.approx(1 / 4) and res["head"]["mrr"] == pytest.approx(1 / 4)  # 3 others outrank
    # a store read without the column at all (older format, or a table that lacks it) ranks the same
    store = _concept_store(tmp_path / "again")
    store.__dict__["entities"] = store.entities.drop(columns="concept")
    assert link_prediction(scorer, store)["overall"]["mrr"] == pytest.approx(1 / 4)


def test_concept_groups():
    import pandas as pd

    g = concept_groups(pd.DataFrame({"concept": ["a", None, "b", "a", None]}))
    assert g[0] == g[3] and len({g[0], g[1], g[2], g[4]}) == 4
    assert concept_groups(pd.DataFrame({"key": ["p", "q"]})).tolist() == [0, 1]
