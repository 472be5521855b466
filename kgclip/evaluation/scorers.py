"""How each model scores: Knowledge-CLIP through its fusion encoder, plain CLIP through its towers.

Both expose the same small interface, so every task gives every model a number:

- ``encode_images`` / ``encode_texts``: CLIP-space embeddings from the towers (zero-shot,
  retrieval, binding);
- ``candidates(entities)``: the tail side of a triplet, computed once per entity;
- ``queries(heads, relations)``: the (head, relation) side;
- ``relation_scores(heads, tails)``: a score per relation of the vocabulary.

Knowledge-CLIP: candidates Y(-,-,t), queries Y(h,r,-), relations by the E2R head on R(h,-,t).
CLIP: candidates are its entity embeddings; a query is the head's embedding plus the relation
text's embedding (text heads: the text "head relation"), relations scored by the same rule.
"""

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from kgclip.model.clip import ClipBundle, embed_dim
from kgclip.model.knowledge_clip import EncodedEntities, KnowledgeCLIP
from kgclip.progress import bar
from kgclip.sampling.content import EntityContent, EntityInputs
from kgclip.store.reader import KnowledgeStore


def _chunks(ids: Tensor, size: int, desc: str | None = None) -> Iterator[Tensor]:
    """Consecutive slices of ``ids``; with ``desc``, a progress bar over them (many entities)."""
    starts = range(0, ids.numel(), size)
    if desc is not None and len(starts) > 4:
        starts = bar(starts, desc=desc, unit="chunk", leave=False)
    for s in starts:
        yield ids[s : s + size]


class _RowCache:
    """One vector per store entity, computed on first use in chunks and kept in a dense tensor."""

    def __init__(self, n: int, compute, desc: str, chunk: int) -> None:
        self.n, self.compute, self.desc, self.chunk = n, compute, desc, chunk
        self.rows: Tensor | None = None
        self.have = torch.zeros(n, dtype=torch.bool)

    def __call__(self, ids: Tensor) -> Tensor:
        ids = ids.long().cpu()
        missing = torch.unique(ids[~self.have[ids]])
        for part in _chunks(missing, self.chunk, self.desc):
            v = self.compute(part)
            if self.rows is None:
                self.rows = torch.zeros(self.n, v.shape[1], dtype=v.dtype, device=v.device)
            self.rows[part.to(v.device)] = v
            self.have[part] = True
        if self.rows is None:  # nothing asked yet
            return torch.empty(0, 0)
        return self.rows[ids.to(self.rows.device)]


class _StoreScorer:
    name: str
    clip: torch.nn.Module
    chunk = 256

    def __init__(self, store: KnowledgeStore, preprocess, tokenizer, device: torch.device) -> None:
        self.store, self.preprocess, self.tokenizer, self.device = store, preprocess, tokenizer, device
        self.content = EntityContent(store, preprocess, tokenizer, cache_size=0)
        self.embed = _RowCache(store.num_entities, self._tower_embeddings, "tower embeddings", self.chunk)
        self.relation_text = store.relations["text"].tolist()
        self.relation_tokens = tokenizer(self.relation_text).to(device)

    def inputs(self, ids: Tensor) -> EntityInputs:
        inputs, bad = self.content.load(ids)
        if bad.any():  # an unreadable image: a black image stands in so that every entity gets a score
            fill = torch.zeros(int(bad.sum()), 3, *self.clip.visual.image_size)
            inputs = EntityInputs(torch.cat([inputs.images, fill]) if inputs.images.numel() else fill,
                                  torch.cat([inputs.image_pos, bad.nonzero().flatten()]), inputs.texts, inputs.text_pos)
        return inputs.to(self.device)

    def modality(self, ids: Tensor) -> Tensor:
        return torch.as_tensor(self.content.modality[ids.numpy()], device=self.device)

    @torch.no_grad()
    def encode_images(self, images: Tensor) -> Tensor:
        """Normalised CLIP image embeddings from the towers (``self.clip``)."""
        return F.normalize(self.clip.encode_image(images.to(self.device)).float(), dim=-1)

    @torch.no_grad()
    def encode_texts(self, tokens: Tensor) -> Tensor:
        return F.normalize(self.clip.encode_text(tokens.to(self.device)).float(), dim=-1)

    @torch.no_grad()
    def _tower_embeddings(self, part: Tensor) -> Tensor:
        """Normalised CLIP-space embeddings of store entities from the towers (via ``self.embed``, cached)."""
        inp = self.inputs(part)
        out = torch.zeros(part.numel(), embed_dim(self.clip), device=self.device)
        if inp.images.numel():
            out[inp.image_pos] = self.encode_images(inp.images)
        if inp.texts.numel():
            out[inp.text_pos] = self.encode_texts(inp.texts)
        return out


class ClipScorer(_StoreScorer):
    """A plain CLIP model scored with its own embeddings."""

    def __init__(self, bundle: ClipBundle, store: KnowledgeStore, name: str = "CLIP", device: str | torch.device = "cpu") -> None:
        super().__init__(store, bundle.preprocess_val, bundle.tokenizer, torch.device(device))
        self.clip = bundle.model.to(self.device).eval()
        self.name = name
        with torch.no_grad():
            self.rel_emb = F.normalize(self.clip.encode_text(self.relation_tokens).float(), dim=-1)

    def candidates(self, ids: Tensor) -> Tensor:
        return self.embed(ids)

    def queries(self, heads: Tensor, relations: Tensor) -> Tensor:
        return F.normalize(self.embed(heads) + self.rel_emb[relations.to(self.device)], dim=-1)

    def relation_scores(self, heads: Tensor, tails: Tensor) -> Tensor:
        h, t = self.embed(heads), self.embed(tails)
        q = F.normalize(h[:, None, :] + self.rel_emb[None, :, :], dim=-1)  # [n, R, d]
        return (q * t[:, None, :]).sum(-1)

    @torch.no_grad()
    def pair_scores(self, images: Tensor, tokens: Tensor, relation: int) -> Tensor:
        """Score of (image_i, relation, text_i) by the link-prediction rule: [n]."""
        q = F.normalize(self.encode_images(images) + self.rel_emb[relation], dim=-1)
        return (q * self.encode_texts(tokens)).sum(-1)


class KnowledgeClipScorer(_StoreScorer):
    """A Knowledge-CLIP model: triplets scored through the fusion encoder."""

    def __init__(self, model: KnowledgeCLIP, store: KnowledgeStore, name: str = "Knowledge-CLIP", device: str | torch.device = "cpu") -> None:
        super().__init__(store, model.preprocess_val, model.tokenizer, torch.device(device))
        self.model = model.to(self.device).eval()
        self.clip = model.clip
        self.name = name
        self._enc: dict[int, tuple[Tensor, Tensor, Tensor]] = {}
        self.candidates = _RowCache(store.num_entities, self._candidates, "candidates Y(-,-,t)", self.chunk)
        with torch.no_grad():
            self.rel = model.encode_relations(self.relation_tokens)

    @torch.no_grad()
    def encoded(self, ids: Tensor) -> EncodedEntities:
        """Tokens of store entities at fusion width (cached per entity)."""
        missing = torch.unique(torch.tensor([i for i in ids.tolist() if i not in self._enc], dtype=torch.long))
        for part in _chunks(missing, self.chunk, f"{self.name}: entity tokens"):
            enc = self.model.encode_entities(self.inputs(part), self.modality(part))
            for k, i in enumerate(part.tolist()):
                self._enc[i] = (enc.tokens[k], enc.valid[k], enc.embedding[k])
        rows = [self._enc[i] for i in ids.tolist()]
        tok, val, emb = (torch.stack(x) for x in zip(*rows, strict=True))
        return EncodedEntities(tok, val, emb, torch.empty(0), torch.empty(0))

    @torch.no_grad()
    def _candidates(self, part: Tensor) -> Tensor:
        """Y(-,-,t), normalised (via ``self.candidates``: computed once per entity)."""
        y, _ = self.model.fuse(None, None, self.encoded(part))
        return F.normalize(y.float(), dim=-1)

    @torch.no_grad()
    def queries(self, heads: Tensor, relations: Tensor) -> Tensor:
        out = []
        for h, r in zip(_chunks(heads, self.chunk), _chunks(relations, self.chunk), strict=True):
            y, _ = self.model.fuse(self.encoded(h), self.rel[r.to(self.device)], None)
            out.append(F.normalize(y.float(), dim=-1))
        return torch.cat(out) if out else torch.empty(0, self.model.config.fusion_width)

    @torch.no_grad()
    def relation_scores(self, heads: Tensor, tails: Tensor) -> Tensor:
        out = []
        for h, t in zip(_chunks(heads, self.chunk), _chunks(tails, self.chunk), strict=True):
            _, r = self.model.fuse(self.encoded(h), None, self.encoded(t))
            out.append(self.model.relation_head(r).float())
        return torch.cat(out)

    @torch.no_grad()
    def pair_scores(self, images: Tensor, tokens: Tensor, relation: int) -> Tensor:
        """cos(Y(image, relation, -), Y(-, -, text)) for aligned rows: [n]."""
        n = images.shape[0]
        inputs = EntityInputs(images.to(self.device), torch.arange(n), tokens.to(self.device), torch.arange(n, 2 * n))
        enc = self.model.encode_entities(inputs, torch.cat([torch.zeros(n), torch.ones(n)]).long())
        img = EncodedEntities(enc.tokens[:n], enc.valid[:n], enc.embedding[:n], torch.empty(0), torch.empty(0))
        txt = EncodedEntities(enc.tokens[n:], enc.valid[n:], enc.embedding[n:], torch.empty(0), torch.empty(0))
        q, _ = self.model.fuse(img, self.rel[torch.full((n,), relation, device=self.device)], None)
        c, _ = self.model.fuse(None, None, txt)
        return (F.normalize(q.float(), dim=-1) * F.normalize(c.float(), dim=-1)).sum(-1)

