"""One template test over every scorer (as PyKEEN's tests/cases.py): the fake, plain CLIP and Knowledge-CLIP.

Each case says how to build its scorer over the same small store (texts and images in all four
modality pairs); the test bodies in :class:`ScorerCases` state what every
:class:`~kgclip.evaluation.Scorer` must do.
"""

import copy

import pytest
import torch
from PIL import Image

from kgclip.evaluation import ClipScorer, KnowledgeClipScorer, Scorer, evaluate, link_prediction, scorer_for
from kgclip.model import KnowledgeCLIP
from kgclip.store import KnowledgeStore
from tests.conftest import write_toy_store
from tests.kgclip.evaluation.fakes import FakeScorer
from tests.model_fixtures import TINY

# the toy store (tests/conftest.py): 0 t:dog, 1 t:animal, 2 i:dog.jpg (a region), 3 i:cat.jpg, 4 t:cat;
# relations 0 "is a", 1 "image of", 2 "near"
IMAGE, TEXT = 3, 4


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("scorers")
    Image.new("RGB", (16, 16), (250, 20, 20)).save(root / "dog.jpg")
    Image.new("RGB", (16, 16), (20, 20, 250)).save(root / "cat.jpg")
    write_toy_store(root / "toy", image_root=root)
    return KnowledgeStore(root / "toy")


def _image(store: KnowledgeStore, eid: int) -> Image.Image:
    e = store.entities.iloc[eid]
    return Image.open(store.image_root(e["source"]) / e["image"]).convert("RGB")


class ScorerCases:
    """The template: a subclass sets :meth:`make`; every test below runs for it."""

    def make(self, store: KnowledgeStore, tiny_clip) -> Scorer:
        raise NotImplementedError

    @pytest.fixture
    def scorer(self, store, tiny_clip):
        torch.manual_seed(0)
        return self.make(store, tiny_clip)

    def test_is_a_scorer(self, scorer):
        assert isinstance(scorer, Scorer)
        assert isinstance(scorer.name, str) and scorer.name

    def test_candidates_are_unit_rows_independent_of_order(self, scorer, store):
        ids = torch.arange(store.num_entities)
        c = scorer.candidates(ids)
        assert c.shape[0] == store.num_entities and torch.allclose(c.norm(dim=-1), torch.ones(len(ids), dtype=c.dtype), atol=1e-5)
        assert torch.allclose(scorer.candidates(ids.flip(0)), c.flip(0))
        assert torch.allclose(scorer.candidates(torch.tensor([IMAGE, IMAGE])), c[[IMAGE, IMAGE]])

    def test_queries_live_in_the_candidates_space(self, scorer, store):
        heads, rels = torch.tensor([0, 2, 3, 4]), torch.tensor([0, 1, 2, 1])
        q = scorer.queries(heads, rels)
        assert q.shape == (4, scorer.candidates(heads).shape[1])
        assert torch.allclose(q.norm(dim=-1), torch.ones(4, dtype=q.dtype), atol=1e-5)
        # a query depends on its relation
        assert not torch.allclose(scorer.queries(heads[:1], torch.tensor([0])), scorer.queries(heads[:1], torch.tensor([2])))

    def test_relation_scores_cover_the_vocabulary(self, scorer, store):
        s = scorer.relation_scores(torch.tensor([0, 2, 3]), torch.tensor([1, 4, 2]))
        assert s.shape == (3, store.num_relations) and torch.isfinite(s).all()

    def test_embed_is_the_towers_on_the_entitys_content(self, scorer, store):
        e = scorer.embed(torch.tensor([IMAGE, TEXT]))
        img = scorer.encode_images(torch.stack([scorer.preprocess(_image(store, IMAGE))]))
        txt = scorer.encode_texts(scorer.tokenizer(["cat"]))
        assert torch.allclose(e[0], img[0].to(e.dtype), atol=1e-5) and torch.allclose(e[1], txt[0].to(e.dtype), atol=1e-5)
        assert torch.allclose(e.norm(dim=-1), torch.ones(2, dtype=e.dtype), atol=1e-5)

    def test_pair_scores_follow_the_link_prediction_rule(self, scorer, store):
        """score(new image, r, new text) is queries(image, r) . candidates(text) for the same content."""
        images = torch.stack([scorer.preprocess(_image(store, IMAGE))] * 2)
        tokens = scorer.tokenizer(["cat", "cat"])
        for r in (1, 2):
            got = scorer.pair_scores(images, tokens, r)
            want = (scorer.queries(torch.tensor([IMAGE]), torch.tensor([r])) * scorer.candidates(torch.tensor([TEXT]))).sum(-1)
            assert got.shape == (2,) and torch.allclose(got.to(want.dtype), want.expand(2), atol=1e-4), r

    def test_link_prediction_ranks_every_triplet_both_ways(self, scorer, store):
        res = link_prediction(scorer, store, split="train")
        n = len(store.triplets)
        assert res["overall"]["count"] == 2 * n and res["tail"]["count"] == n
        assert 0 < res["overall"]["mrr"] <= 1 and res["overall"]["hits@10"] == 1.0  # at most 3 candidates per modality
        assert set(res["per_modality_pair"]) == {"text-text", "image-text", "image-image", "text-image"}

    def test_evaluate_runs_the_store_tasks(self, scorer, store):
        out = evaluate(scorer, store, tasks=("link", "relation", "retrieval"))
        assert out["model"] == scorer.name and out["relation"]["count"] == 0  # no test split in the toy store
        assert out["retrieval"] == {}  # no test image-caption pairs either


class TestFakeScorer(ScorerCases):
    def make(self, store, tiny_clip):
        """The fake's vectors follow a CLIP-like rule over its own towers, so every template property holds."""
        fake = FakeScorer()
        e = store.entities
        vec = {}
        for eid, row in e.iterrows():
            if row["modality"] == "text":
                vec[eid] = fake.encode_texts([row["text"]])[0]
            else:
                vec[eid] = fake.encode_images(fake.preprocess(_image(store, eid))[None])[0]
        g = torch.Generator().manual_seed(0)
        rel = {r: torch.randn(len(FakeScorer.VOCAB), generator=g, dtype=torch.float64) for r in range(store.num_relations)}
        q = {(h, r): torch.nn.functional.normalize(vec[h] + rel[r], dim=0) for h in vec for r in rel}
        fake.cand = fake.emb = {i: v.tolist() for i, v in vec.items()}
        fake.query = {k: v.tolist() for k, v in q.items()}
        fake.rel_scores = {(h, t): [float(q[(h, r)] @ vec[t]) for r in rel] for h in vec for t in vec}
        fake.rel_vec = {r: v.tolist() for r, v in rel.items()}
        return fake


class TestClipScorer(ScorerCases):
    def make(self, store, tiny_clip):
        return ClipScorer(copy.deepcopy(tiny_clip), store)

    def test_relation_scores_are_the_query_rule(self, scorer):
        h, t = torch.tensor([0, 3]), torch.tensor([1, 4])
        s = scorer.relation_scores(h, t)
        for r in range(s.shape[1]):
            want = (scorer.queries(h, torch.full((2,), r)) * scorer.candidates(t)).sum(-1)
            assert torch.allclose(s[:, r], want, atol=1e-6)


class TestKnowledgeClipScorer(ScorerCases):
    def make(self, store, tiny_clip):
        return KnowledgeClipScorer(KnowledgeCLIP(TINY, num_relations=3, clip=copy.deepcopy(tiny_clip)), store)

    def test_queries_encode_each_head_once(self, scorer, store, monkeypatch):
        heads, rels = torch.tensor([4, 0, 3, 0, 4, 2]), torch.tensor([0, 1, 2, 2, 1, 0])
        one_by_one = torch.cat([scorer.queries(h[None], r[None]) for h, r in zip(heads, rels, strict=True)])
        encoded, encode = [], scorer.encode
        monkeypatch.setattr(scorer, "encode", lambda ids: encoded.extend(ids.tolist()) or encode(ids))
        monkeypatch.setattr(scorer, "chunk", 2)  # several chunks of heads and of pairs
        together = scorer.queries(heads, rels)
        assert sorted(encoded) == [0, 2, 3, 4]
        assert torch.allclose(together, one_by_one, atol=1e-5)

    def test_keeps_vectors_not_entity_tokens(self, scorer, store):
        n = store.num_entities
        scorer.candidates(torch.arange(n))
        scorer.queries(torch.arange(n), torch.zeros(n, dtype=torch.long))
        scorer.embed(torch.arange(n))
        held = _tensor_bytes(scorer)
        vectors = n * (TINY.fusion_width + 128) * 4 + 2 * n  # candidate and tower vectors ([N, D] each), their masks
        tokens = n * scorer.model.entity_tokens * TINY.fusion_width * 4  # what a token cache would hold
        assert held - _tensor_bytes(scorer, only=("rel", "relation_tokens")) <= vectors < tokens / 2


def _tensor_bytes(obj, only: tuple[str, ...] | None = None, seen: set | None = None) -> int:
    """Bytes of the tensors an object holds (through dicts, lists and plain objects; not modules or loaded content)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or isinstance(obj, (torch.nn.Module, KnowledgeStore)) or type(obj).__name__ == "EntityContent":
        return 0
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v, None, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v, None, seen) for v in obj)
    if hasattr(obj, "__dict__"):
        return sum(_tensor_bytes(v, None, seen) for k, v in vars(obj).items() if only is None or k in only)
    return 0


def test_scorer_for_picks_fusion_or_towers_and_checks_the_vocabulary(tmp_path):
    from kgclip.errors import KgclipError
    from kgclip.training import train_loop
    from tests.kgclip.training.test_loop import _config, _store

    store_path = _store(tmp_path)
    cfg, _ = _config(tmp_path, store_path, **{"train.steps": 1})
    ckpt = train_loop(cfg, quiet=True).last_checkpoint
    store = KnowledgeStore(store_path)
    assert isinstance(scorer_for(ckpt, store), KnowledgeClipScorer)
    assert isinstance(scorer_for(ckpt, store, as_clip=True), ClipScorer)
    write_toy_store(tmp_path / "other")
    with pytest.raises(KgclipError, match="relations do not match the store"):
        scorer_for(ckpt, KnowledgeStore(tmp_path / "other"))
    assert isinstance(scorer_for(ckpt, KnowledgeStore(tmp_path / "other"), as_clip=True), ClipScorer)  # towers need no vocabulary
