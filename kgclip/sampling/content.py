"""Entity content: entity ids -> model inputs (decoded, cropped, transformed images; tokenised texts).

Runs inside the DataLoader workers (through :meth:`EntityContent.attach`), with a bounded LRU
cache per worker for entities that come back often. An image that fails to load is reported by
entity key, and the batch's triplets that touch it are dropped and counted, never a crash.
"""

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

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
    """

    def __init__(self, store: KnowledgeStore, image_transform: Callable, tokenizer: Callable, cache_size: int = 4096) -> None:
        e = store.entities
        self.keys = e["key"].to_numpy(dtype=object)
        self.texts = e["text"].to_numpy(dtype=object)
        self.modality = (e["modality"].to_numpy(dtype=object) == "text").astype(np.int64)
        self.bbox = e["bbox"].to_numpy(dtype=object)
        self.paths = np.array([None if img is None else str(store.image_root(src) / img) for img, src in zip(e["image"], e["source"], strict=True)], dtype=object)
        self.image_transform = image_transform
        self.tokenizer = tokenizer
        self.failures: Counter[str] = Counter()
        self._image = lru_cache(maxsize=cache_size)(self._load_image)
        self._tokens = lru_cache(maxsize=cache_size)(self._load_tokens)

    def _load_image(self, eid: int) -> Tensor | None:
        path = self.paths[eid]
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                box = self.bbox[eid]
                if box is not None:
                    x, y, w, h = (float(v) for v in box)
                    im = im.crop((int(x), int(y), round(x + w), round(y + h)))
                return self.image_transform(im)
        except (OSError, UnidentifiedImageError, ValueError, TypeError) as exc:
            self.failures[self.keys[eid]] += 1
            log.warning("entity %s: cannot load image %s (%s); its triplets are skipped", self.keys[eid], path, exc)
            return None

    def _load_tokens(self, eid: int) -> Tensor:
        return self.tokenizer([self.texts[eid]])[0]

    def image(self, eid: int) -> Tensor | None:
        """The transformed image (or crop) of an image entity; None when it cannot be loaded."""
        return self._image(int(eid))

    def load(self, entities: Tensor) -> tuple[EntityInputs, Tensor]:
        """Inputs for the given global ids, and a mask of the positions that failed to load."""
        ids = entities.tolist()
        is_text = self.modality[ids] == 1 if len(ids) else np.zeros(0, dtype=bool)
        txt_pos = np.flatnonzero(is_text)
        img_pos = np.flatnonzero(~is_text)
        bad = torch.zeros(len(ids), dtype=torch.bool)
        imgs: list[Tensor] = []
        ok_pos: list[int] = []
        for p in img_pos.tolist():
            x = self.image(ids[p])
            if x is None:
                bad[p] = True
            else:
                imgs.append(x)
                ok_pos.append(p)
        images = torch.stack(imgs) if imgs else torch.empty(0)
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
