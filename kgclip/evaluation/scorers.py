"""How each model scores: the :class:`Scorer` protocol that every evaluation task uses, and its two
implementations, Knowledge-CLIP through its fusion encoder and plain CLIP through its towers.

Knowledge-CLIP: candidates Y(-,-,t), queries Y(h,r,-), relations by the E2R head on R(h,-,t).
CLIP: candidates are its entity embeddings e(t) (image or text tower); a query is the normalised
sum e(h) + e(r) of the head's embedding and the CLIP text embedding of the relation's text (two
embeddings added, not the embedding of one text "head relation"); relations are scored by the
same rule, cos(e(h) + e(r), e(t)) for every r of the vocabulary.

Only what ranking needs is kept in memory: one candidate vector per entity (``[N, D]``, computed
once, in chunks); entity tokens are encoded per chunk and dropped, never cached for the store.
"""

import os
from collections.abc import Callable, Iterator
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor

from kgclip.model.clip import ClipBundle, embed_dim
from kgclip.model.knowledge_clip import EncodedEntities, KnowledgeCLIP
from kgclip.progress import bar
from kgclip.sampling.content import EntityContent, EntityInputs
from kgclip.store.reader import KnowledgeStore
from kgclip.training.restore import load_trained, uses_fusion
from kgclip.vocabulary import check_relation_vocabulary


@runtime_checkable
class Scorer(Protocol):
    """What every evaluation task asks of a model (:mod:`kgclip.evaluation.link_prediction`,
    :mod:`kgclip.evaluation.tasks`). Ids are store entity / relation ids ([n] int64 tensors);
    vectors come back as float tensors, unit length unless said otherwise.

    Attributes:
        name: the model's name in results and reports.
        preprocess: PIL image -> image tensor, as the towers expect it (zero-shot, binding).
        tokenizer: list of texts -> token tensor [n, context] (zero-shot, binding).
    """

    name: str
    preprocess: Callable
    tokenizer: Callable

    def candidates(self, ids: Tensor) -> Tensor:
        """The tail side of a triplet, (-, -, t), for store entities: [n, D], unit length.

        Computed once per entity and kept (the candidate matrix); also the query side of head
        prediction (?, r, t)."""
        ...

    def queries(self, heads: Tensor, relations: Tensor) -> Tensor:
        """The (h, r, -) side for aligned heads and relation ids: [n, D], unit length; a score is
        ``queries(h, r) @ candidates(t)``. Also the candidate side of head prediction."""
        ...

    def relation_scores(self, heads: Tensor, tails: Tensor) -> Tensor:
        """A score per relation of the vocabulary for aligned (h, ?, t): [n, R] (higher: more likely)."""
        ...

    def embed(self, ids: Tensor) -> Tensor:
        """CLIP-space tower embeddings of store entities (image or text tower by modality): [n, d],
        unit length (retrieval)."""
        ...

    def encode_images(self, images: Tensor) -> Tensor:
        """Tower embeddings of preprocessed images [n, 3, H, W]: [n, d], unit length."""
        ...

    def encode_texts(self, tokens: Tensor) -> Tensor:
        """Tower embeddings of tokenised texts: [n, d], unit length."""
        ...

    def pair_scores(self, images: Tensor, tokens: Tensor, relation: int) -> Tensor:
        """Scores of (image_i, relation, text_i) for aligned new images and texts by the link-prediction
        rule (``queries`` of the image against ``candidates`` of the text): [n]."""
        ...


def _chunks(ids: Tensor, size: int, desc: str | None = None) -> Iterator[Tensor]:
    """Consecutive slices of ``ids``; with ``desc``, a progress bar over them (many entities)."""
    starts = range(0, ids.numel(), size)
    if desc is not None and len(starts) > 4:
        starts = bar(starts, desc=desc, unit="chunk", leave=False)
    for s in starts:
        yield ids[s : s + size]


class _RowCache:
    """One vector per store entity, computed on first use in chunks and kept in a dense tensor."""

    def __init__(self, n: int, compute: Callable[[Tensor], Tensor], desc: str, chunk: int) -> None:
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
    """What both scorers share: entity content from the store, tower embeddings, relation tokens."""

    name: str
    clip: torch.nn.Module
    chunk = 256

    def __init__(self, store: KnowledgeStore, preprocess, tokenizer, device: torch.device) -> None:
        self.store, self.preprocess, self.tokenizer, self.device = store, preprocess, tokenizer, device
        self.content = EntityContent(store, preprocess, tokenizer, cache_size=0)
        self._embed = _RowCache(store.num_entities, self._tower_embeddings, f"{type(self).__name__}: tower embeddings", self.chunk)
        self.relation_text = store.relations["text"].tolist()
        self.relation_tokens = tokenizer(self.relation_text).to(device)

    def inputs(self, ids: Tensor) -> EntityInputs:
        """Model inputs of store entities (an unreadable image: a black image stands in, so that every
        entity gets a score)."""
        inputs, bad = self.content.load(ids)
        if bad.any():
            fill = torch.zeros(int(bad.sum()), 3, *self.clip.visual.image_size)
            inputs = EntityInputs(torch.cat([inputs.images, fill]) if inputs.images.numel() else fill,
                                  torch.cat([inputs.image_pos, bad.nonzero().flatten()]), inputs.texts, inputs.text_pos)
        return inputs.to(self.device)

    def embed(self, ids: Tensor) -> Tensor:
        """Normalised tower embeddings of store entities, computed once per entity: [n, d]."""
        return self._embed(ids)

    @torch.no_grad()
    def encode_images(self, images: Tensor) -> Tensor:
        """Normalised CLIP image embeddings from the towers (``self.clip``)."""
        return F.normalize(self.clip.encode_image(images.to(self.device)).float(), dim=-1)

    @torch.no_grad()
    def encode_texts(self, tokens: Tensor) -> Tensor:
        """Normalised CLIP text embeddings from the towers."""
        return F.normalize(self.clip.encode_text(tokens.to(self.device)).float(), dim=-1)

    @torch.no_grad()
    def _tower_embeddings(self, part: Tensor) -> Tensor:
        inp = self.inputs(part)
        out = torch.zeros(part.numel(), embed_dim(self.clip), device=self.device)
        if inp.images.numel():
            out[inp.image_pos] = self.encode_images(inp.images)
        if inp.texts.numel():
            out[inp.text_pos] = self.encode_texts(inp.texts)
        return out


class ClipScorer(_StoreScorer):
    """A plain CLIP model scored with its own embeddings (see the module docstring for the rule)."""

    def __init__(self, bundle: ClipBundle, store: KnowledgeStore, name: str = "CLIP", device: str | torch.device = "cpu") -> None:
        super().__init__(store, bundle.preprocess_val, bundle.tokenizer, torch.device(device))
        self.clip = bundle.model.to(self.device).eval()
        self.name = name
        with torch.no_grad():
            self.rel_emb = F.normalize(self.clip.encode_text(self.relation_tokens).float(), dim=-1)

    def candidates(self, ids: Tensor) -> Tensor:
        """e(t): the entity's tower embedding (the same rows as :meth:`embed`)."""
        return self.embed(ids)

    def queries(self, heads: Tensor, relations: Tensor) -> Tensor:
        """normalise(e(h) + e(r))."""
        return F.normalize(self.embed(heads) + self.rel_emb[relations.to(self.device)], dim=-1)

    def relation_scores(self, heads: Tensor, tails: Tensor) -> Tensor:
        """cos(e(h) + e(r), e(t)) for every relation r: [n, R]."""
        h, t = self.embed(heads), self.embed(tails)
        q = F.normalize(h[:, None, :] + self.rel_emb[None, :, :], dim=-1)  # [n, R, d]
        return (q * t[:, None, :]).sum(-1)

    @torch.no_grad()
    def pair_scores(self, images: Tensor, tokens: Tensor, relation: int) -> Tensor:
        """cos(e(image) + e(relation), e(text)) for aligned rows: [n]."""
        q = F.normalize(self.encode_images(images) + self.rel_emb[relation], dim=-1)
        return (q * self.encode_texts(tokens)).sum(-1)


class KnowledgeClipScorer(_StoreScorer):
    """A Knowledge-CLIP model: triplets scored through the fusion encoder.

    Keeps one candidate vector Y(-,-,t) per entity (``[N, fusion_width]``); entity tokens are
    encoded per chunk of ``chunk`` entities and dropped after use.
    """

    def __init__(self, model: KnowledgeCLIP, store: KnowledgeStore, name: str = "Knowledge-CLIP", device: str | torch.device = "cpu") -> None:
        super().__init__(store, model.preprocess_val, model.tokenizer, torch.device(device))
        self.model = model.to(self.device).eval()
        self.clip = model.clip
        self.name = name
        self._candidates = _RowCache(store.num_entities, self._fused_tails, f"{name}: candidates Y(-,-,t)", self.chunk)
        with torch.no_grad():
            self.rel = model.encode_relations(self.relation_tokens)

    @torch.no_grad()
    def encode(self, ids: Tensor) -> EncodedEntities:
        """Tokens at fusion width of store entities (not cached: one chunk's worth at a time)."""
        return self.model.encode_entities(self.inputs(ids), len(ids))

    def candidates(self, ids: Tensor) -> Tensor:
        """Y(-,-,t), normalised, computed once per entity."""
        return self._candidates(ids)

    @torch.no_grad()
    def _fused_tails(self, part: Tensor) -> Tensor:
        y, _ = self.model.fuse(None, None, self.encode(part))
        return F.normalize(y.float(), dim=-1)

    @torch.no_grad()
    def queries(self, heads: Tensor, relations: Tensor) -> Tensor:
        """Y(h, r, -), normalised. Each distinct head is encoded once per call, however many relations
        it is asked with (a chunk of heads at a time), so asking for all entities under several
        relations in one call costs one tower pass."""
        heads, relations = heads.long().cpu(), relations.long().cpu()
        out = torch.empty(heads.numel(), self.model.config.fusion_width, device=self.device)
        uniq, inv = torch.unique(heads, return_inverse=True)
        order = torch.argsort(inv, stable=True)  # the pairs grouped by head, heads in ``uniq`` order
        bounds = torch.cat([torch.zeros(1, dtype=torch.long), torch.bincount(inv, minlength=uniq.numel()).cumsum(0)]).tolist()
        starts = range(0, uniq.numel(), self.chunk)
        for start in bar(starts, desc=f"{self.name}: queries Y(h,r,-)", unit="chunk", leave=False) if len(starts) > 4 else starts:
            stop = min(start + self.chunk, uniq.numel())
            enc = self.encode(uniq[start:stop])
            pairs = order[bounds[start] : bounds[stop]]
            for part in _chunks(pairs, self.chunk):
                rows = (inv[part] - start).to(self.device)
                head = EncodedEntities(enc.tokens[rows], enc.valid[rows], enc.embedding[rows], torch.empty(0), torch.empty(0))
                y, _ = self.model.fuse(head, self.rel[relations[part].to(self.device)], None)
                out[part.to(self.device)] = F.normalize(y.float(), dim=-1)
        return out

    @torch.no_grad()
    def relation_scores(self, heads: Tensor, tails: Tensor) -> Tensor:
        """The E2R head's logits on R(h, -, t): [n, R]."""
        out = []
        for h, t in zip(_chunks(heads, self.chunk), _chunks(tails, self.chunk), strict=True):
            _, r = self.model.fuse(self.encode(h), None, self.encode(t))
            out.append(self.model.relation_head(r).float())
        return torch.cat(out) if out else torch.empty(0, self.model.num_relations, device=self.device)

    @torch.no_grad()
    def pair_scores(self, images: Tensor, tokens: Tensor, relation: int) -> Tensor:
        """cos(Y(image, relation, -), Y(-, -, text)) for aligned rows: [n]."""
        n = images.shape[0]
        inputs = EntityInputs(images.to(self.device), torch.arange(n), tokens.to(self.device), torch.arange(n, 2 * n))
        enc = self.model.encode_entities(inputs.to(self.device), 2 * n)
        img = EncodedEntities(enc.tokens[:n], enc.valid[:n], enc.embedding[:n], torch.empty(0), torch.empty(0))
        txt = EncodedEntities(enc.tokens[n:], enc.valid[n:], enc.embedding[n:], torch.empty(0), torch.empty(0))
        q, _ = self.model.fuse(img, self.rel[torch.full((n,), relation, device=self.device)], None)
        c, _ = self.model.fuse(None, None, txt)
        return (F.normalize(q.float(), dim=-1) * F.normalize(c.float(), dim=-1)).sum(-1)


def scorer_for(path: str | os.PathLike, store: KnowledgeStore, name: str | None = None, as_clip: bool | None = None,
               device: str | torch.device = "cpu") -> Scorer:
    """The scorer of a trained run: Knowledge-CLIP scoring when the run trained the fusion encoder,
    CLIP scoring of its towers otherwise (or when ``as_clip``).

    Args:
        path: a checkpoint file or a run folder (its latest checkpoint).
        store: the store to score (for Knowledge-CLIP: the same relation vocabulary as training's).
        name: the name in results (default: the run's name).
        as_clip: force tower (True) or fusion (False) scoring; None: by the run's losses.
        device: where to score.

    Raises:
        KgclipError: an unreadable checkpoint, or a relation vocabulary other than the store's.
    """
    model, config, ckpt = load_trained(path)
    clip = not uses_fusion(config) if as_clip is None else as_clip
    if clip:
        bundle = ClipBundle(model.clip, model.preprocess_train, model.preprocess_val, model.tokenizer, config.model.clip_model)
        return ClipScorer(bundle, store, name or config.name, device=device)
    check_relation_vocabulary(ckpt.get("relation_keys"), store, path)
    return KnowledgeClipScorer(model, store, name or config.name, device=device)
