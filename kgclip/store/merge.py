"""Merging several stores into one: entity keys dedupe, relation vocabularies unify by key, and
(with ``link="text"``) entities of different keys that name the same thing become one.

Linking joins text entities whose normalised text matches (casefolded, underscores as spaces,
white space collapsed: ``visual_genome:name/circle`` and ``conceptnet:/c/en/circle``), and an
entity whose concept is a WordNet synset (Visual Genome names carry ``wordnet:circle.n.01``) with
the text of the synset's lemma. ConceptNet's WordNet sense nodes (``/c/en/dog/n/wn/animal``) name
their lemma in their term, so they join through their text. Views of two different concepts are
never joined (a VisualSem gloss of one synset and an equal gloss of another stay apart). The
joined entity keeps the first key (in the order of the stores) and its attributes, takes the
concept of the group, and records every other key as an alias (``aliases.parquet``).
"""

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kgclip.errors import ConfigError, StoreError
from kgclip.progress import bar
from kgclip.store.validate import open_valid
from kgclip.store.writer import StoreWriter

LINK_MODES = ("text",)
WORDNET = "wordnet:"
"""Prefix of a concept that is a WordNet synset (``wordnet:dog.n.01``)."""


def normalise_text(text: str) -> str:
    """The text as linking compares it: casefolded, underscores as spaces, white space collapsed and stripped."""
    return " ".join(text.replace("_", " ").casefold().split())


def synset_lemma(concept: str) -> str | None:
    """``wordnet:hot_dog.n.01`` -> ``hot dog`` (normalised); None for another concept."""
    if not concept.startswith(WORDNET):
        return None
    parts = concept[len(WORDNET):].rsplit(".", 2)
    return normalise_text(parts[0]) if len(parts) == 3 and parts[0] else None


@dataclass
class LinkReport:
    """What linking did.

    Attributes:
        entities_joined: entities merged into another one (each leaves an alias).
        groups: entities that absorbed at least one other.
        refused: links not made because they would join views of two different concepts.
    """

    entities_joined: int = 0
    groups: int = 0
    refused: int = 0


def link_entities(modality: np.ndarray, text: np.ndarray, concept: np.ndarray) -> tuple[np.ndarray, np.ndarray, LinkReport]:
    """Group entities that name the same thing (see the module docstring).

    Args:
        modality, text, concept: per entity (object arrays; text and concept may be None).

    Returns:
        The representative of each entity (the first of its group, by position), the concept of
        each group (indexed by representative), and a report.
    """
    n = len(modality)
    parent = np.arange(n)
    group_concept = np.asarray(concept, dtype=object).copy()
    report = LinkReport()

    def find(i: int) -> int:
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return root

    first: dict[str, int] = {}
    for i in bar(range(n), desc="linking entities", unit=" entities"):
        keys = []
        if modality[i] == "text" and isinstance(text[i], str):
            keys.append(normalise_text(text[i]))
        c = concept[i]
        if isinstance(c, str) and (lemma := synset_lemma(c)):
            keys.append(lemma)
        for k in keys:
            j = first.setdefault(k, i)
            a, b = find(i), find(j)
            if a == b:
                continue
            ca, cb = group_concept[a], group_concept[b]
            if ca is not None and cb is not None and ca != cb:
                report.refused += 1
                continue
            root, other = min(a, b), max(a, b)
            parent[other] = root
            group_concept[root] = ca if ca is not None else cb
    rep = np.fromiter((find(i) for i in range(n)), dtype=np.int64, count=n)
    joined = rep != np.arange(n)
    report.entities_joined = int(joined.sum())
    report.groups = len(np.unique(rep[joined]))
    return rep, group_concept, report


def merge_stores(
    paths: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    link: str | None = None,
    overwrite: bool = False,
) -> dict:
    """Merge stores into ``out`` and return its manifest.

    The first store that names an entity key gives its attributes; triplets keep their source and
    split (given splits: leakage across them is counted in the manifest, not removed); identical
    triplets of one split are deduplicated. Sources' image roots are united (one root per source).
    Aliases of the stores are kept.

    Args:
        paths: the stores, in order of precedence.
        out: the merged store's folder.
        link: ``"text"`` joins entities that name the same thing (module docstring); None: keys only.
        overwrite: replace an existing store at ``out``.
    """
    if link is not None and link not in LINK_MODES:
        raise ConfigError(f"link must be one of {LINK_MODES} or None, got {link!r}")
    stores = [open_valid(p) for p in paths]  # a broken input is one line, before anything is written
    roots: dict[str, str] = {}
    for s in stores:
        for src in s.manifest.get("image_roots", {}):
            root = str(s.image_root(src).resolve())
            if roots.setdefault(src, root) != root:
                raise StoreError(f"{s.path}: source {src!r} has image root {root}, another store has {roots[src]}")

    # All entities, the first of each key kept, in the order of the stores.
    allent = pd.concat([s.entities for s in stores], ignore_index=True)
    unique = allent[~allent["key"].duplicated()].reset_index(drop=True)  # the first row of each key
    if link:
        rep, group_concept, report = link_entities(unique["modality"].to_numpy(object), unique["text"].to_numpy(object),
                                                   unique["concept"].to_numpy(object))
    else:
        rep, group_concept, report = np.arange(len(unique)), unique["concept"].to_numpy(object), LinkReport()

    settings = {"merged_from": [str(s.path) for s in stores], "link": link,
                "link_report": {"entities_joined": report.entities_joined, "groups": report.groups, "refused": report.refused}}
    with StoreWriter(out, image_roots=roots, settings=settings, overwrite=overwrite, inputs=paths) as w:
        new_id = np.empty(len(unique), dtype=np.int64)
        cols = [unique[c].tolist() for c in ("key", "modality", "text", "image", "source", "bbox", "image_width", "image_height")]
        for i, (key, mod, text, image, src, bbox, width, height) in enumerate(zip(*cols, strict=True)):
            if rep[i] != i:
                new_id[i] = new_id[rep[i]]
                continue
            size = None if width is None or height is None or width != width else (width, height)
            new_id[i] = w.add_entity(key, mod, source=src, text=text, image=image, bbox=bbox, image_size=size, concept=group_concept[i])
        for i in np.flatnonzero(rep != np.arange(len(unique))):
            w.add_alias(cols[0][i], int(new_id[i]))
        key_to_new = dict(zip(cols[0], new_id.tolist(), strict=True))
        for s in stores:
            for key, eid in zip(s.aliases["key"], s.aliases["entity_id"], strict=True):
                if key not in key_to_new:
                    key_to_new[key] = key_to_new[s.entity_keys[eid]]
                    w.add_alias(key, key_to_new[key])
        for s in stores:
            ids = np.array([key_to_new[k] for k in s.entity_keys], dtype=np.int64)
            r = s.relations
            new_rel = np.array([w.add_relation(k, t) for k, t in zip(r["key"], r["text"], strict=True)], dtype=np.int64)
            t = s.triplets
            for src, part in t.groupby("source", sort=False):
                w.add_triplets(
                    ids[part["head_id"].to_numpy()],
                    new_rel[part["relation_id"].to_numpy()],
                    ids[part["tail_id"].to_numpy()],
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
