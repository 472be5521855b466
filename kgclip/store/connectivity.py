"""How connected a store's graph is: connected components and the triplets joining two sources.

Merged without linking, sources stay islands (a Visual Genome region never reaches ConceptNet);
``kgclip prepare merge --link text`` joins them. ``kgclip info`` prints these figures.
"""

import numpy as np
import pandas as pd

from kgclip.store.reader import KnowledgeStore


def component_labels(num_nodes: int, heads: np.ndarray, tails: np.ndarray) -> np.ndarray:
    """The connected component of every node, as the smallest node id in it (edges undirected).

    Vectorised hooking and pointer jumping: each round links the roots of every edge's two ends
    to the smaller one, then flattens the trees; a few rounds suffice for real graphs.
    """
    labels = np.arange(num_nodes, dtype=np.int64)
    h, t = np.asarray(heads, dtype=np.int64), np.asarray(tails, dtype=np.int64)
    while True:
        lh, lt = labels[h], labels[t]
        differ = lh != lt
        if not differ.any():
            return labels
        lh, lt = lh[differ], lt[differ]
        low = np.minimum(lh, lt)
        np.minimum.at(labels, np.maximum(lh, lt), low)
        while True:
            jumped = labels[labels]
            if np.array_equal(jumped, labels):
                break
            labels = jumped


def connectivity(store: KnowledgeStore) -> dict[str, float | int]:
    """Connectivity figures of a store; the views of one concept count as joined (they are one node to the sampler).

    Returns:
        ``components``: connected components among entities in a triplet (or views of a concept
        that is); ``largest_component``: entities in the largest one; ``isolated_entities``: the
        other entities; ``cross_source_triplets``: triplets whose head and tail entities come from
        different sources (the links between sources), and their ``cross_source_share``.
    """
    t = store.triplet_table(["head_id", "tail_id"])
    h, tl = t.column("head_id").to_numpy(), t.column("tail_id").to_numpy()
    e = store.entities
    n = len(e)
    concept = e["concept"].to_numpy(dtype=object)
    views = np.flatnonzero(pd.notna(concept))
    codes = pd.factorize(concept[views])[0]
    first_view = views[np.unique(codes, return_index=True)[1][codes]]  # each view tied to its concept's first view
    labels = component_labels(n, np.concatenate([h, views]), np.concatenate([tl, first_view]))
    used = np.zeros(n, dtype=bool)
    used[h], used[tl] = True, True
    used = np.isin(labels, labels[used])
    sizes = np.bincount(labels[used], minlength=n) if used.any() else np.zeros(1, dtype=np.int64)
    source = e["source"].to_numpy(dtype=object)
    cross = int((source[h] != source[tl]).sum()) if len(h) else 0
    return {
        "components": int((sizes > 0).sum()),
        "largest_component": int(sizes.max()),
        "isolated_entities": int((~used).sum()),
        "cross_source_triplets": cross,
        "cross_source_share": round(cross / len(h), 4) if len(h) else 0.0,
    }
