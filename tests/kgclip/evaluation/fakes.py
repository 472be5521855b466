"""A scorer whose vectors the test sets by hand (a :class:`kgclip.evaluation.Scorer`).

Store-side vectors come from dictionaries; its towers are simple enough to compute by hand: an
image is its mean red and blue, a text the words of ``VOCAB`` among its first two words.
"""

import numpy as np
import torch
import torch.nn.functional as F


class FakeScorer:
    """Args:
    cand: entity id -> candidate vector (the (-, -, t) side).
    query: (head id, relation id) -> query vector (the (h, r, -) side).
    emb: entity id -> tower embedding (retrieval); default: ``cand``.
    rel_scores: (head id, tail id) -> a score per relation.
    rel_vec: relation id -> vector added to an image's embedding by ``pair_scores``; default zero.
    """

    name = "fake"
    VOCAB = ("red", "blue", "left", "circle", "dog", "cat", "animal")

    def __init__(self, cand=None, query=None, emb=None, rel_scores=None, rel_vec=None):
        self.cand, self.query, self.emb, self.rel_scores = cand or {}, query or {}, emb or cand or {}, rel_scores or {}
        self.rel_vec = rel_vec or {}

    # -- store side ---------------------------------------------------------------------------
    def candidates(self, ids):
        return F.normalize(torch.tensor([self.cand[i] for i in ids.tolist()], dtype=torch.float64), dim=-1)

    def queries(self, heads, rels):
        return F.normalize(torch.tensor([self.query[(h, r)] for h, r in zip(heads.tolist(), rels.tolist(), strict=True)], dtype=torch.float64), dim=-1)

    def embed(self, ids):
        return F.normalize(torch.tensor([self.emb[i] for i in ids.tolist()], dtype=torch.float64), dim=-1)

    def relation_scores(self, heads, tails):
        return torch.tensor([self.rel_scores[(h, t)] for h, t in zip(heads.tolist(), tails.tolist(), strict=True)])

    # -- towers -------------------------------------------------------------------------------
    def preprocess(self, im):
        mean = np.asarray(im.convert("RGB"), dtype="float32").mean((0, 1))
        return torch.tensor([float(mean[0]), float(mean[2])] + [0.0] * (len(self.VOCAB) - 2))

    def tokenizer(self, texts):
        return list(texts)

    def encode_images(self, x):
        return F.normalize(x.double(), dim=-1)

    def encode_texts(self, texts):
        v = torch.tensor([[1.0 if w in t.split()[:2] else 0.0 for w in self.VOCAB] for t in texts], dtype=torch.float64)
        return F.normalize(v + 1e-6, dim=-1)

    def pair_scores(self, images, tokens, relation):
        r = torch.tensor(self.rel_vec.get(relation, [0.0] * len(self.VOCAB)), dtype=torch.float64)
        return (F.normalize(self.encode_images(images) + r, dim=-1) * self.encode_texts(tokens)).sum(-1)
