"""Asking a trained model: top-k tails for (head, relation, ?) and top-k relations for (head, ?, tail).

Heads and tails may be an entity of the store (by key or text), a new image file, or a new text.
Candidate vectors Y(-,-,t) are computed once per checkpoint and kept on disk beside it.
"""

import hashlib
import logging
import os
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image

from kgclip.errors import KgclipError
from kgclip.evaluation.scorers import KnowledgeClipScorer
from kgclip.inspect import UnknownEntityError, resolve_entity
from kgclip.model.knowledge_clip import EncodedEntities
from kgclip.sampling.content import EntityInputs
from kgclip.store.placement import temp_path
from kgclip.store.reader import KnowledgeStore, one_line
from kgclip.store.validate import open_valid
from kgclip.training.checkpoint import resolve_checkpoint
from kgclip.training.restore import load_trained
from kgclip.vocabulary import check_relation_vocabulary, relation_id

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
log = logging.getLogger(__name__)


class QueryEngine:
    """Queries against one checkpoint and one store.

    Args:
        checkpoint: checkpoint file or run folder.
        store: the store (default: the one the checkpoint was trained on); it must pass
            :func:`kgclip.store.open_valid`.
        cache: keep candidate vectors in ``<checkpoint>.candidates.pt`` (reused while the
            checkpoint and the store are unchanged).
    """

    def __init__(self, checkpoint: str | os.PathLike, store: str | os.PathLike | KnowledgeStore | None = None, cache: bool = True) -> None:
        given = open_valid(store) if store is not None else None  # a broken store fails before the model loads
        self.path = resolve_checkpoint(checkpoint)
        model, config, ckpt = load_trained(self.path)
        self.store = given or open_valid(ckpt.get("store_path") or config.data.store)
        check_relation_vocabulary(ckpt.get("relation_keys"), self.store, self.path)
        self.scorer = KnowledgeClipScorer(model, self.store, name=config.name)
        self.model = model
        self.cache_path = self.path.with_name(self.path.name + ".candidates.pt") if cache else None
        self._candidates: torch.Tensor | None = None

    # -- candidates, once per checkpoint -------------------------------------------------------
    def _cache_key(self) -> str:
        st = self.path.stat()
        return hashlib.sha256(f"{st.st_size}-{st.st_mtime_ns}-{self.store.fingerprint()}".encode()).hexdigest()[:16]

    def candidates(self) -> torch.Tensor:
        """Y(-,-,t) of every entity of the store, [N, W] normalised."""
        if self._candidates is not None:
            return self._candidates
        key = self._cache_key()
        saved = self._load_cache()
        if saved is not None and saved.get("key") == key:
            self._candidates = saved["vectors"]
            return self._candidates
        self._candidates = self.scorer.candidates(torch.arange(self.store.num_entities))
        if self.cache_path is not None:
            tmp = temp_path(self.cache_path)  # a name of its own: two queries at once do not share a temporary
            try:
                torch.save({"key": key, "vectors": self._candidates}, tmp)
                os.replace(tmp, self.cache_path)
            except OSError as exc:  # a read-only run folder: answer anyway, uncached
                tmp.unlink(missing_ok=True)
                log.warning("%s: cannot write the candidate cache (%s); answering without it", self.cache_path, one_line(exc))
        return self._candidates

    def _load_cache(self) -> dict | None:
        """The cached candidates, or None when absent or unusable (a corrupt or foreign file is rebuilt, not an error)."""
        if self.cache_path is None or not self.cache_path.is_file():
            return None
        try:
            saved = torch.load(self.cache_path, weights_only=True)
        except Exception as exc:  # any unreadable cache is rebuilt, whatever torch raises
            log.warning("%s: unreadable candidate cache (%s); rebuilding it", self.cache_path, one_line(exc))
            return None
        n = self.store.num_entities
        vectors = saved.get("vectors") if isinstance(saved, dict) else None
        if not (isinstance(vectors, torch.Tensor) and vectors.ndim == 2 and vectors.shape[0] == n and vectors.is_floating_point()):
            log.warning("%s: not a candidate cache for %d entities; rebuilding it", self.cache_path, n)
            return None
        return saved

    # -- encoding heads and tails ---------------------------------------------------------------
    def encode(self, thing: str) -> EncodedEntities:
        """A store entity (key or text), an image file, or a new text, as fusion tokens."""
        p = Path(thing)
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
            try:
                with Image.open(p) as im:
                    img = self.scorer.preprocess(im.convert("RGB"))[None]
            except (OSError, ValueError, Image.DecompressionBombError) as exc:  # UnidentifiedImageError is an OSError
                raise KgclipError(f"{p}: not a readable image ({one_line(exc)})") from None
            inputs = EntityInputs(img, torch.tensor([0]), torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long))
            return self.model.encode_entities(inputs.to(self.scorer.device), 1)
        try:
            return self.scorer.encode(torch.tensor([resolve_entity(self.store, thing)]))
        except UnknownEntityError:
            tokens = self.tokenizer([thing])
            inputs = EntityInputs(torch.empty(0), torch.empty(0, dtype=torch.long), tokens, torch.tensor([0]))
            return self.model.encode_entities(inputs.to(self.scorer.device), 1)

    @property
    def tokenizer(self):
        return self.scorer.tokenizer

    def relation_id(self, relation: str) -> int:
        """The id of a relation named by key or text (see :func:`kgclip.vocabulary.relation_id`)."""
        return relation_id(self.store, relation)

    # -- the two questions ----------------------------------------------------------------------
    @torch.no_grad()
    def tails(self, head: str, relation: str, top: int = 10, modality: str | None = None) -> pd.DataFrame:
        """Top-k tails for (head, relation, ?) by cos(Y(h,r,-), Y(-,-,t)), optionally of one modality."""
        if modality not in (None, "image", "text"):
            raise KgclipError(f"modality must be image or text, got {modality!r}")
        _check_top(top)
        enc = self.encode(head)
        rid = self.relation_id(relation)
        y, _ = self.model.fuse(enc, self.scorer.rel[torch.tensor([rid])], None)
        scores = (F.normalize(y.float(), dim=-1) @ self.candidates().T)[0]
        e = self.store.entities
        if modality is not None:
            scores = torch.where(torch.from_numpy((e["modality"] == modality).to_numpy().copy()), scores, torch.tensor(float("-inf")))
        k = min(top, int(torch.isfinite(scores).sum()))
        val, idx = scores.topk(k)
        rows = e.iloc[idx.numpy()]
        return pd.DataFrame({"rank": range(1, k + 1), "score": val.numpy(), "entity_id": idx.numpy(), "key": rows["key"].to_numpy(),
                             "modality": rows["modality"].to_numpy(), "text": rows["text"].to_numpy()})

    @torch.no_grad()
    def relations(self, head: str, tail: str, top: int = 5) -> pd.DataFrame:
        """Top-k relations for (head, ?, tail) by the E2R head on R(h,-,t) (softmax probabilities)."""
        _check_top(top)
        _, r = self.model.fuse(self.encode(head), None, self.encode(tail))
        probs = self.model.relation_head(r).float().softmax(-1)[0]
        val, idx = probs.topk(min(top, probs.numel()))
        rel = self.store.relations.iloc[idx.numpy()]
        return pd.DataFrame({"rank": range(1, len(idx) + 1), "probability": val.numpy(), "relation": rel["text"].to_numpy(), "key": rel["key"].to_numpy()})


def _check_top(top: int) -> None:
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise KgclipError(f"top must be a whole number of at least 1, got {top!r}")
