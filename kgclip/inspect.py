"""Looking at a knowledge graph: find entities, neighbourhoods as tables and drawings, histograms.

Meant for Jupyter (``notebooks/inspect_graph.ipynb``) and for ``kgclip inspect``.
"""

import base64
import difflib
import io
from dataclasses import dataclass

import matplotlib.pyplot as plt
import networkx as nx
import numpy as np
import pandas as pd
from PIL import Image

from kgclip.errors import KgclipError
from kgclip.graph import KnowledgeGraph, degree_stats, relation_stats
from kgclip.sampling.images import load_crop
from kgclip.store.reader import KnowledgeStore


class UnknownEntityError(KgclipError):
    """No entity matches; the message lists the nearest keys."""


def find_entities(store: KnowledgeStore, query: str, limit: int = 20) -> pd.DataFrame:
    """The entity whose key (or alias: a key joined into it by ``merge --link``) is ``query``, else
    those whose key or text contains it (case-insensitive)."""
    e = store.entities
    eid = store.entity_index.get(query)
    if eid is not None:
        return e.iloc[[eid]][["entity_id", "key", "modality", "text", "image"]]
    q = query.lower()
    hit = e["key"].str.lower().str.contains(q, regex=False) | e["text"].fillna("").str.lower().str.contains(q, regex=False)
    found = e[hit].copy()
    found["_exact_text"] = found["text"].fillna("").str.lower() == q
    found = found.sort_values(["_exact_text", "key"], ascending=[False, True], kind="stable")
    return found.head(limit)[["entity_id", "key", "modality", "text", "image"]]


def resolve_entity(store: KnowledgeStore, key_or_text: str) -> int:
    """The id of an entity given by key or text; unknown: an error naming the nearest keys."""
    found = find_entities(store, key_or_text, limit=1)
    if len(found):
        return int(found["entity_id"].iloc[0])
    keys = store.entities["key"].tolist()
    texts = store.entities["text"].fillna("").tolist()
    near = difflib.get_close_matches(key_or_text, keys, n=5, cutoff=0.4)
    near += [keys[texts.index(t)] for t in difflib.get_close_matches(key_or_text, texts, n=5, cutoff=0.4) if keys[texts.index(t)] not in near]
    hint = f"; nearest: {', '.join(near[:5])}" if near else ""
    raise UnknownEntityError(f"no entity matches {key_or_text!r} in {store.path}{hint}")


@dataclass
class Neighbourhood:
    """The triplets within some hops of an entity."""

    center: int
    triplets: pd.DataFrame
    graph: nx.MultiDiGraph
    truncated: bool
    total: int


def neighbourhood(store: KnowledgeStore, entity: int | str, hops: int = 2, max_triplets: int = 200, splits: tuple[str, ...] | None = None,
                  kg: KnowledgeGraph | None = None) -> Neighbourhood:
    """The k-hop neighbourhood (either direction), nearest hops first, cut to ``max_triplets``."""
    eid = resolve_entity(store, entity) if isinstance(entity, str) else int(entity)
    kg = kg or KnowledgeGraph.from_store(store, splits)
    idx = kg.k_hop([eid], hops=hops)
    total = len(idx)
    idx = idx[:max_triplets]
    return Neighbourhood(eid, kg.triplet_frame(idx), kg.to_networkx(idx), total > max_triplets, total)


def thumbnail(store: KnowledgeStore, entity_id: int, size: int = 48) -> Image.Image:
    """An image entity's picture (its region crop for a box), as a small RGB image."""
    im = load_crop(str(store.image_path(entity_id)), store.entities.iloc[int(entity_id)]["bbox"])  # the crop the model sees
    im.thumbnail((size, size))
    return im


def draw_neighbourhood(store: KnowledgeStore, nb: Neighbourhood, png: str | None = None, max_nodes: int = 40, seed: int = 0):
    """Draw a neighbourhood: images as thumbnails, texts as labels, relation texts on the edges.

    Returns (figure, number of nodes drawn). More than ``max_nodes`` nodes: the nearest are kept.
    """
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    g = nb.graph
    order = [nb.center] + [n for n in nx.single_source_shortest_path_length(g.to_undirected(), nb.center) if n != nb.center]
    keep = order[:max_nodes]
    g = g.subgraph(keep).copy()
    pos = nx.spring_layout(g, seed=seed, k=1.2 / max(1, np.sqrt(len(g))))
    fig, ax = plt.subplots(figsize=(9, 7))
    nx.draw_networkx_edges(g, pos, ax=ax, edge_color="#999", arrows=True, arrowsize=10, node_size=900)
    labels = {}
    for (u, v, d) in g.edges(data=True):
        labels.setdefault((u, v), d["relation_text"])
    nx.draw_networkx_edge_labels(g, pos, edge_labels=labels, font_size=7, ax=ax)
    for n, d in g.nodes(data=True):
        x, y = pos[n]
        if d["modality"] == "image":
            try:
                ab = AnnotationBbox(OffsetImage(np.asarray(thumbnail(store, n)), zoom=0.9), (x, y), frameon=n == nb.center, pad=0.1)
                ax.add_artist(ab)
                continue
            except OSError:
                pass
        text = (d["text"] or d["key"])[:28]
        ax.text(x, y, text, ha="center", va="center", fontsize=8,
                bbox={"boxstyle": "round", "fc": "#ffe9a8" if n == nb.center else "#e8f0fe", "ec": "#888"})
    title = f"{store.entities.iloc[nb.center]['key']}: {g.number_of_nodes()} nodes, {g.number_of_edges()} edges"
    if nb.truncated or len(order) > max_nodes:
        title += f" (cut from {nb.total} triplets / {len(order)} nodes)"
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    if png:
        fig.savefig(png, dpi=100)
    return fig, g.number_of_nodes()


def relation_histogram(store: KnowledgeStore, top: int = 30):
    stats = relation_stats(store).head(top)
    fig, ax = plt.subplots(figsize=(8, 0.25 * len(stats) + 1))
    ax.barh(stats["text"][::-1], stats["total"][::-1])
    ax.set_xlabel("triplets")
    fig.tight_layout()
    return fig


def degree_histogram(store: KnowledgeStore):
    d = degree_stats(store)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.loglog(d["degree"] + 1, d["in"], "o", ms=3, label="in-degree")
    ax.loglog(d["degree"] + 1, d["out"], "s", ms=3, label="out-degree")
    ax.set_xlabel("degree + 1")
    ax.set_ylabel("entities")
    ax.legend()
    fig.tight_layout()
    return fig


def _img_tag(store: KnowledgeStore, eid: int) -> str:
    buf = io.BytesIO()
    thumbnail(store, eid, 40).save(buf, format="PNG")
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}"/>'


def triplet_sample_html(store: KnowledgeStore, n: int = 10, seed: int = 0) -> str:
    """A random sample of triplets as an HTML table, images shown as thumbnails."""
    t = store.triplets.sample(n=min(n, len(store.triplets)), random_state=seed)
    e, r = store.entities, store.relations

    def cell(eid: int) -> str:
        row = e.iloc[int(eid)]
        if row["modality"] == "image":
            try:
                return _img_tag(store, eid)
            except OSError:
                return f"[image missing: {row['image']}]"
        return str(row["text"])

    rows = "".join(f"<tr><td>{cell(h)}</td><td>{r['text'].iloc[int(rel)]}</td><td>{cell(tl)}</td><td>{s}</td></tr>"
                   for h, rel, tl, s in zip(t["head_id"], t["relation_id"], t["tail_id"], t["split"], strict=True))
    return f"<table><tr><th>head</th><th>relation</th><th>tail</th><th>split</th></tr>{rows}</table>"
