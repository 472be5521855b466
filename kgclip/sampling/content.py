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
from functools import lru_cache

import numpy as np
import torch
from PIL import UnidentifiedImageError
from torch import Tensor

from kgclip.errors import ConfigError
from kgclip.sampling.image_cache import ImageCache, open_image_cache
from kgclip.sampling.images import entity_images, load_crop, normalize_pixels, split_transform
from kgclip.store.reader import KnowledgeStore
from kgclip.typing import IMAGE, MODALITIES, TEXT

log = logging.getLogger(__name__)


class EntityInputs:
    """Model inputs of a batch's entities, split by modality.

    Images may travel as uint8 pixels (4x fewer bytes between processes and to the GPU) and
    become float tensors where they are first read, on the device they are on then, with the
    same operations (and so the same values) as the model's ``ToTensor`` + ``Normalize``.

    Attributes:
        images: [n_img, 3, H, W] transformed images (crops for regions).
        image_pos: [n_img] positions of those entities in ``TripletBatch.entities``.
        texts: [n_txt, context] token ids.
        text_pos: [n_txt] positions in ``TripletBatch.entities``.
        pixels: [n_img, H, W, 3] uint8 images before ``ToTensor`` when ``images`` is made from
            them (with ``normalize`` = (mean, std)), else None.
    """

    def __init__(self, images: Tensor | None, image_pos: Tensor, texts: Tensor, text_pos: Tensor, *,
                 pixels: Tensor | None = None, normalize: tuple[tuple[float, ...], tuple[float, ...]] | None = None) -> None:
        if images is None and (pixels is None or normalize is None):
            raise ValueError("EntityInputs needs images, or pixels with their normalisation")
        self._images, self.pixels, self.normalize = images, pixels, normalize
        self.image_pos, self.texts, self.text_pos = image_pos, texts, text_pos

    @property
    def images(self) -> Tensor:
        if self._images is None:
            self._images = normalize_pixels(self.pixels, *self.normalize) if self.pixels.numel() else torch.empty(0, device=self.pixels.device)
        return self._images

    def to(self, device: torch.device | str) -> "EntityInputs":
        moved = (self.image_pos.to(device), self.texts.to(device), self.text_pos.to(device))
        if self._images is None:
            return EntityInputs(None, *moved, pixels=self.pixels.to(device), normalize=self.normalize)
        return EntityInputs(self._images.to(device), *moved)

    def __repr__(self) -> str:
        what = f"images={tuple(self._images.shape)}" if self._images is not None else f"pixels={tuple(self.pixels.shape)}"
        return f"EntityInputs({what}, texts={tuple(self.texts.shape)})"


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
        self.modality = np.where(e["modality"].to_numpy(dtype=object) == MODALITIES[TEXT], TEXT, IMAGE)
        self.paths, self.bbox = entity_images(store)
        self.image_transform = image_transform
        self.tokenizer = tokenizer
        self.failures: Counter[str] = Counter()
        self._image = lru_cache(maxsize=cache_size)(self._load_image)
        self._tokens = lru_cache(maxsize=cache_size)(self._load_tokens)
        self.stages = split_transform(image_transform)
        # ToTensor + Normalize left to where the batch is read (the GPU in training): uint8 travels.
        self._deferred = self.stages is not None and self.stages.mean is not None
        self.cache: ImageCache | None = None
        if image_cache == "auto" and bool((self.modality == IMAGE).any()):
            self.cache, why = open_image_cache(store, self.stages)
            log.info("entity images: %s", why if self.cache is not None else f"decoded from their files ({why})")

    def _load_image(self, eid: int) -> Tensor | None:
        """Decoded and cropped; then [H, W, 3] uint8 after the PIL steps when conversion is deferred, else transformed."""
        path = self.paths[eid]
        try:
            crop = load_crop(path, self.bbox[eid])
            return torch.from_numpy(np.array(self.stages.pil(crop), dtype=np.uint8)) if self._deferred else self.image_transform(crop)
        except (OSError, UnidentifiedImageError, ValueError, TypeError) as exc:
            self.failures[self.keys[eid]] += 1
            log.warning("entity %s: cannot load image %s (%s); its triplets are skipped", self.keys[eid], path, exc)
            return None

    def _load_tokens(self, eid: int) -> Tensor:
        return self.tokenizer([self.texts[eid]])[0]

    def image(self, eid: int) -> Tensor | None:
        """The transformed image (or crop) of an image entity, decoded from its file; None when it cannot be loaded."""
        x = self._image(int(eid))
        return x if x is None or not self._deferred else normalize_pixels(x[None], self.stages.mean, self.stages.std)[0]

    def _images(self, ids: list[int], img_pos: np.ndarray, bad: Tensor) -> tuple[Tensor, list[int]]:
        """Images at ``img_pos`` (cached rows in one read, the others decoded) and the positions that loaded.

        They are [n, H, W, 3] uint8 pixels when conversion is deferred, else [n, 3, H, W] model inputs.
        """
        rows = self.cache.rows([ids[p] for p in img_pos.tolist()]) if self.cache is not None and img_pos.size else np.full(img_pos.size, -1)
        hit = rows >= 0
        cached = None
        if hit.any():
            px = self.cache.read(rows[hit])
            cached = torch.from_numpy(px) if self._deferred else self.stages.to_tensors(px)
            if hit.all():
                return cached, img_pos.tolist()
        imgs: list[Tensor] = []
        ok_pos: list[int] = []
        for p in img_pos[~hit].tolist():
            x = self._image(ids[p])
            if x is None:
                bad[p] = True
            else:
                imgs.append(x)
                ok_pos.append(p)
        if not imgs:
            if cached is not None:
                return cached, img_pos[hit].tolist()
            h, w = self.stages.size if self._deferred else (0, 0)
            return (torch.empty(0, h, w, 3, dtype=torch.uint8) if self._deferred else torch.empty(0)), []
        images = torch.stack(imgs)
        if cached is None:
            return images, ok_pos
        pos = np.concatenate([img_pos[hit], np.asarray(ok_pos, dtype=np.int64)])
        order = torch.from_numpy(np.argsort(pos, kind="stable"))
        return torch.cat([cached, images])[order], pos[order.numpy()].tolist()

    def load(self, entities: Tensor) -> tuple[EntityInputs, Tensor]:
        """Inputs for the given global ids, and a mask of the positions that failed to load."""
        ids = entities.tolist()
        is_text = self.modality[ids] == TEXT if len(ids) else np.zeros(0, dtype=bool)
        txt_pos = np.flatnonzero(is_text)
        img_pos = np.flatnonzero(~is_text)
        bad = torch.zeros(len(ids), dtype=torch.bool)
        images, ok_pos = self._images(ids, img_pos, bad)
        texts = torch.stack([self._tokens(ids[p]) for p in txt_pos.tolist()]) if len(txt_pos) else torch.empty(0, dtype=torch.long)
        pos, tpos = torch.tensor(ok_pos, dtype=torch.long), torch.from_numpy(txt_pos).long()
        if self._deferred:
            return EntityInputs(None, pos, texts, tpos, pixels=images, normalize=(self.stages.mean, self.stages.std)), bad
        return EntityInputs(images, pos, texts, tpos), bad

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
