"""Entity content: entity ids -> model inputs (decoded, cropped, transformed images; tokenised texts).

Runs inside the DataLoader workers (through :meth:`EntityContent.attach`), with a bounded LRU
cache per worker for entities that come back often. When the store holds a valid pre-resized
image cache (:mod:`kgclip.sampling.image_cache`), image entities are read from it without
decoding, to the same values. An image that fails to load is reported by entity key, and the
batch's triplets that touch it are dropped and counted, never a crash.
"""

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from PIL import UnidentifiedImageError
from torch import Tensor

from kgclip.errors import ConfigError
from kgclip.sampling.image_cache import ImageCache, open_image_cache
from kgclip.sampling.images import entity_images, load_crop, split_transform
from kgclip.store.reader import KnowledgeStore

log = logging.getLogger(__name__)


@dataclass
class EntityInputs:
    """Model inputs of a batch's entities, split by modality.

    Attributes:
        images: [n_img, 3, H, W] transformed images (crops for regions).
        image_pos: [n_img] positions of those entities in ``TripletBatch.entities``.
        texts: [n_txt, context] token ids.
        text_pos: [n_txt] positions in ``TripletBatch.entities``.
    """

    images: Tensor
    image_pos: Tensor
    texts: Tensor
    text_pos: Tensor

    def to(self, device: torch.device | str) -> "EntityInputs":
        return EntityInputs(self.images.to(device), self.image_pos.to(device), self.texts.to(device), self.text_pos.to(device))


class EntityContent:
    """Loads entity content from a store.

    Args:
        store: the knowledge store (image roots, texts, boxes).
        image_transform: PIL image -> tensor (the model's preprocessing).
        tokenizer: list of texts -> [n, context] token ids (the model's tokenizer).
        cache_size: entities kept per process in the LRU cache.
        image_cache: ``auto`` reads image entities from the store's pre-resized cache when one
            fits this store and transform (else decodes, and logs why once); ``off`` always decodes.
    """

    def __init__(self, store: KnowledgeStore, image_transform: Callable, tokenizer: Callable, cache_size: int = 4096,
                 image_cache: str = "auto") -> None:
        if image_cache not in ("auto", "off"):
            raise ConfigError(f"image_cache must be 'auto' or 'off', got {image_cache!r}")
        e = store.entities
        self.keys = e["key"].to_numpy(dtype=object)
        self.texts = e["text"].to_numpy(dtype=object)
        self.modality = (e["modality"].to_numpy(dtype=object) == "text").astype(np.int64)
        self.paths, self.bbox = entity_images(store)
        self.image_transform = image_transform
        self.tokenizer = tokenizer
        self.failures: Counter[str] = Counter()
        self._image = lru_cache(maxsize=cache_size)(self._load_image)
        self._tokens = lru_cache(maxsize=cache_size)(self._load_tokens)
        self.stages = split_transform(image_transform)
        self.cache: ImageCache | None = None
        if image_cache == "auto" and bool((self.modality == 0).any()):
            self.cache, why = open_image_cache(store, self.stages)
            log.info("entity images: %s", why if self.cache is not None else f"decoded from their files ({why})")

    def _load_image(self, eid: int) -> Tensor | None:
        path = self.paths[eid]
        try:
            return self.image_transform(load_crop(path, self.bbox[eid]))
        except (OSError, UnidentifiedImageError, ValueError, TypeError) as exc:
            self.failures[self.keys[eid]] += 1
            log.warning("entity %s: cannot load image %s (%s); its triplets are skipped", self.keys[eid], path, exc)
            return None

    def _load_tokens(self, eid: int) -> Tensor:
        return self.tokenizer([self.texts[eid]])[0]

    def image(self, eid: int) -> Tensor | None:
        """The transformed image (or crop) of an image entity, decoded from its file; None when it cannot be loaded."""
        return self._image(int(eid))

    def _images(self, ids: list[int], img_pos: np.ndarray, bad: Tensor) -> tuple[Tensor, list[int]]:
        """Images at ``img_pos`` (cached rows in one read, the rest decoded) and the positions that loaded."""
        rows = self.cache.rows([ids[p] for p in img_pos.tolist()]) if self.cache is not None and img_pos.size else np.full(img_pos.size, -1)
        hit = rows >= 0
        cached = self.stages.to_tensors(self.cache.read(rows[hit])) if hit.any() else None
        if hit.all() and cached is not None:
            return cached, img_pos.tolist()
        imgs: list[Tensor] = []
        ok_pos: list[int] = []
        for p in img_pos[~hit].tolist():
            x = self.image(ids[p])
            if x is None:
                bad[p] = True
            else:
                imgs.append(x)
                ok_pos.append(p)
        images = torch.stack(imgs) if imgs else torch.empty(0)
        if cached is None:
            return images, ok_pos
        if not imgs:
            return cached, img_pos[hit].tolist()
        pos = np.concatenate([img_pos[hit], np.asarray(ok_pos, dtype=np.int64)])
        order = torch.from_numpy(np.argsort(pos, kind="stable"))
        return torch.cat([cached, images])[order], pos[order.numpy()].tolist()

    def load(self, entities: Tensor) -> tuple[EntityInputs, Tensor]:
        """Inputs for the given global ids, and a mask of the positions that failed to load."""
        ids = entities.tolist()
        is_text = self.modality[ids] == 1 if len(ids) else np.zeros(0, dtype=bool)
        txt_pos = np.flatnonzero(is_text)
        img_pos = np.flatnonzero(~is_text)
        bad = torch.zeros(len(ids), dtype=torch.bool)
        images, ok_pos = self._images(ids, img_pos, bad)
        texts = torch.stack([self._tokens(ids[p]) for p in txt_pos.tolist()]) if len(txt_pos) else torch.empty(0, dtype=torch.long)
        inputs = EntityInputs(images, torch.tensor(ok_pos, dtype=torch.long), texts, torch.from_numpy(txt_pos).long())
        return inputs, bad

    def attach(self, batch):
        """The batch with ``inputs`` loaded; triplets touching a failed image are dropped and named in ``skipped``."""
        inputs, bad = self.load(batch.entities)
        if bad.any():
            n = len(batch)
            batch = batch.drop_entities(bad)
            batch.dropped = n - len(batch)
            batch.skipped = [self.keys[int(batch.entities[p])] for p in bad.nonzero().flatten().tolist()]
        batch.inputs = inputs
        return batch
