"""Merging several stores into one: entity keys dedupe, relation vocabularies unify by key."""

import os
from collections.abc import Sequence

import numpy as np

from kgclip.errors import StoreError
from kgclip.store.splits import SplitConfig
from kgclip.store.validate import open_valid
from kgclip.store.writer import StoreWriter


def merge_stores(
    paths: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    split: SplitConfig | None = None,
    overwrite: bool = False,
) -> dict:
    """Merge stores into ``out`` and return its manifest.

    The first store that names an entity key gives its attributes; triplets keep their source and
    split (given splits: leakage across them is counted in the manifest, not removed); identical
    triplets of one split are deduplicated. Sources' image roots are united (one root per source).
    """
    stores = [open_valid(p) for p in paths]  # a broken input is one line, before anything is written
    roots: dict[str, str] = {}
    for s in stores:
        for src in s.manifest.get("image_roots", {}):
            root = str(s.image_root(src).resolve())
            if roots.setdefault(src, root) != root:
                raise StoreError(f"{s.path}: source {src!r} has image root {root}, another store has {roots[src]}")
    settings = {"merged_from": [str(s.path) for s in stores]}
    with StoreWriter(out, image_roots=roots, split=split, settings=settings, overwrite=overwrite, inputs=paths) as w:
        for s in stores:
            e = s.entities
            new_ids = np.empty(len(e), dtype=np.int64)
            bboxes = e["bbox"].tolist()
            widths = e["image_width"].tolist()
            heights = e["image_height"].tolist()
            for i, (key, mod, text, image, src, concept) in enumerate(
                zip(e["key"], e["modality"], e["text"], e["image"], e["source"], e["concept"], strict=True)
            ):
                size = None if widths[i] is None or heights[i] is None or widths[i] != widths[i] else (widths[i], heights[i])
                new_ids[i] = w.add_entity(key, mod, source=src, text=text, image=image, bbox=bboxes[i], image_size=size, concept=concept)
            r = s.relations
            new_rel = np.array([w.add_relation(k, t) for k, t in zip(r["key"], r["text"], strict=True)], dtype=np.int64)
            t = s.triplets
            for src, part in t.groupby("source", sort=False):
                w.add_triplets(
                    new_ids[part["head_id"].to_numpy()],
                    new_rel[part["relation_id"].to_numpy()],
                    new_ids[part["tail_id"].to_numpy()],
                    source=str(src),
                    split=part["split"].tolist(),
                    weight=part["weight"].tolist(),
                    dataset=part["dataset"].tolist(),
                )
            for src, info in s.manifest.get("sources", {}).items():
                for reason, n in info.get("skipped", {}).items():
                    w.count_skip(src, reason, n)
                for reason, n in info.get("noted", {}).items():
                    w.count_note(src, reason, n)
        return w.close()
