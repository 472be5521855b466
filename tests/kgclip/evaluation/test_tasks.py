"""Metrics against rankings computed by hand, with a scorer whose vectors are set by the test."""

import json

import pytest
import torch
from PIL import Image

from kgclip.evaluation import binding, link_prediction, relation_prediction, retrieval, zero_shot
from kgclip.store import KnowledgeStore, StoreWriter


class FakeScorer:
    name = "fake"

    def __init__(self, cand, query, emb=None, rel_scores=None):
        self.cand, self.query, self.emb, self.rel_scores = cand, query, emb or {}, rel_scores

    def candidates(self, ids):
        return torch.tensor([self.cand[i] for i in ids.tolist()], dtype=torch.float64)

    def queries(self, heads, rels):
        return torch.tensor([self.query[(h, r)] for h, r in zip(heads.tolist(), rels.tolist(), strict=True)], dtype=torch.float64)

    def embed(self, ids):
        return torch.nn.functional.normalize(torch.tensor([self.emb[i] for i in ids.tolist()], dtype=torch.float64), dim=-1)

    def relation_scores(self, heads, tails):
        return torch.tensor([self.rel_scores[(h, t)] for h, t in zip(heads.tolist(), tails.tolist(), strict=True)])


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


def test_retrieval_several_captions_per_image(tmp_path):
    with StoreWriter(tmp_path / "p") as w:
        a = w.add_entity("A", "image", image="a.jpg", source="x")
        b = w.add_entity("B", "image", image="b.jpg", source="x")
        c = [w.add_entity(f"c{i}", "text", text=f"c{i}", source="x") for i in range(3)]
        of = w.add_relation("image of", "image of")
        for img, cap in ((a, c[0]), (a, c[1]), (b, c[2])):
            w.add_triplet(img, of, cap, source="x", split="test")
    s = KnowledgeStore(tmp_path / "p")
    emb = {a: (1, 0), b: (0, 1), c[0]: (0, 1), c[1]: (1, 0.1), c[2]: (0.1, 1)}
    m = retrieval(FakeScorer({}, {}, emb=emb), s)
    # image A: top text c1 (its own) -> found; image B: top text c0 (A's) -> not at 1, found at 5
    assert m["txt_r1"] == 0.5 and m["txt_r5"] == 1.0
    # captions: c0 -> B (wrong), c1 -> A (right), c2 -> B (right)
    assert m["img_r1"] == pytest.approx(2 / 3) and m["img_r5"] == 1.0
    assert m["r_mean"] == pytest.approx(((0.5 + 1 + 1) / 3 + (2 / 3 + 1 + 1) / 3) / 2)


class TowerScorer:
    """Images are encoded by their mean colour; texts by the word in a fixed vocabulary."""

    name = "towers"
    VOCAB = ("red", "blue", "left", "circle")

    def preprocess(self, im):
        mean = torch.from_numpy(__import__("numpy").asarray(im, dtype="float32")).mean((0, 1))
        return torch.tensor([float(mean[0]), float(mean[2]), 0.0, 0.0])

    def tokenizer(self, texts):
        return texts

    def encode_images(self, x):
        return torch.nn.functional.normalize(x.float(), dim=-1)

    def encode_texts(self, texts):
        v = torch.tensor([[1.0 if w in t.split()[:2] else 0.0 for w in self.VOCAB] for t in texts])
        return torch.nn.functional.normalize(v + 1e-6, dim=-1)

    def pair_scores(self, images, tokens, relation):
        return (self.encode_images(images) * self.encode_texts(tokens)).sum(-1) * 0  # all ties


def test_zero_shot_and_binding(tmp_path):
    for name, colour in (("r.png", (255, 0, 0)), ("b.png", (0, 0, 255))):
        Image.new("RGB", (4, 4), colour).save(tmp_path / name)
    zs = {"tasks": {"colour": {"classes": ["red", "blue"], "templates": ["{} thing", "a {}"]}},
          "items": [{"image": "r.png", "labels": {"colour": "red"}}, {"image": "b.png", "labels": {"colour": "red"}}]}
    (tmp_path / "zero_shot.json").write_text(json.dumps(zs))
    m = zero_shot(TowerScorer(), tmp_path / "zero_shot.json")
    assert m["zs_colour_top1"] == 0.5 and m["zs_colour_top5"] == 1.0 and m["zs_colour_mean_recall"] == 0.5
    items = {"items": [{"image": "r.png", "caption": "red circle", "relation_swap": "blue circle", "attribute_swap": "left red"}]}
    (tmp_path / "binding.json").write_text(json.dumps(items))
    m = binding(TowerScorer(), tmp_path / "binding.json", pair_relation=0)
    # towers: "red circle" matches the red image better than "blue circle"; "left red" (first two words) ties "red circle"
    assert m["aro_relation"] == 1.0 and m["aro_attribute"] == 0.5
    assert m["aro_relation_kg"] == 0.5  # all ties count half
