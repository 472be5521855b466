"""The knowledge graph in memory: PyG ``HeteroData``, k-hop neighbourhoods, networkx, statistics.

Entities keep one global id (the store's ``entity_id``); each also has a local index within its
node type (``image`` or ``text``). :class:`KnowledgeGraph` holds both maps, both ways.
"""

from dataclasses import dataclass
from functools import cached_property

import networkx as nx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch_geometric.data import HeteroData

from kgclip.store.reader import KnowledgeStore
from kgclip.typing import EDGE_TYPES, IMAGE, MODALITIES, MODALITY_CODE, TEXT, NodeType


def _writable(col: pa.ChunkedArray) -> np.ndarray:
    """An int64 numpy array torch may share: pyarrow's zero-copy views are read-only, so those are
    copied once; several chunks are concatenated into a fresh array anyway."""
    arr = col.to_numpy()
    return arr if arr.flags.writeable else arr.copy()


def _codes(col: pa.ChunkedArray) -> tuple[np.ndarray, tuple[str, ...]]:
    """A string column as (int64 code of each row, -1 where null; the distinct values, by code)."""
    enc = pc.dictionary_encode(col)
    if enc.num_chunks == 0:
        return np.empty(0, dtype=np.int64), ()
    indices = pa.chunked_array([ch.indices for ch in enc.chunks], type=enc.type.index_type)
    codes = pc.fill_null(indices, -1).to_numpy().astype(np.int64)
    return codes, tuple(enc.chunk(0).dictionary.to_pylist())


@dataclass
class KnowledgeGraph:
    """Triplets of one or more splits with the entity and relation tables they refer to.

    Attributes:
        store: the store it was read from.
        head, relation, tail: int64 arrays of global ids, one entry per triplet.
        modality: int8 array, the modality code of each global entity (kgclip.typing.IMAGE / TEXT).
        local: int64 array, each global entity's index within its node type.
        concept: int64 array, each entity's concept code (views of one concept share it; -1 for an
            entity that is no view), or None when no entity has a concept.
        source: int64 array, each triplet's source as an index into ``sources`` (None if unknown).
        sources: the distinct ``source`` values of the triplets.
    """

    store: KnowledgeStore
    head: np.ndarray
    relation: np.ndarray
    tail: np.ndarray
    modality: np.ndarray
    local: np.ndarray
    concept: np.ndarray | None = None
    source: np.ndarray | None = None
    sources: tuple[str, ...] = ()

    @classmethod
    def from_store(cls, store: KnowledgeStore, splits: tuple[str, ...] | None = ("train",)) -> "KnowledgeGraph":
        """Build from a store, keeping the triplets of ``splits`` (all when None)."""
        cols = ["head_id", "relation_id", "tail_id", "source"] + (["split"] if splits is not None else [])
        t = store.triplet_table(cols)
        if splits is not None:
            t = t.filter(pc.is_in(t["split"], value_set=pa.array(list(splits))))
        ent = store.entity_table(["modality", "concept"])
        is_text = pc.equal(ent["modality"], MODALITIES[TEXT])
        modality = np.where(is_text.to_numpy(zero_copy_only=False), TEXT, IMAGE).astype(np.int8)
        local = np.empty(len(modality), dtype=np.int64)
        for code in MODALITY_CODE.values():
            sel = modality == code
            local[sel] = np.arange(int(sel.sum()))
        concept = None
        if ent["concept"].null_count < len(ent):
            concept, _ = _codes(ent["concept"])
        source, sources = _codes(t["source"])
        return cls(
            store=store,
            head=_writable(t["head_id"]),
            relation=_writable(t["relation_id"]),
            tail=_writable(t["tail_id"]),
            modality=modality,
            local=local,
            concept=concept,
            source=source,
            sources=sources,
        )

    @property
    def num_entities(self) -> int:
        return len(self.modality)

    @property
    def num_triplets(self) -> int:
        return len(self.head)

    @cached_property
    def global_ids(self) -> dict[NodeType, np.ndarray]:
        """node type -> global ids in local order (local -> global map)."""
        return {m: np.flatnonzero(self.modality == c) for m, c in MODALITY_CODE.items()}

    def to_hetero_data(self, add_reverse: bool = False) -> HeteroData:
        """A PyG ``HeteroData``: node types ``image`` and ``text`` (with ``global_id``), edge types
        per modality pair with ``edge_index`` (local indices) and ``relation`` (relation ids).

        Each edge type's edges are sorted by destination (PyG's CSC order; ties in triplet order),
        so a neighbour sampler groups in-edges without sorting again. With ``add_reverse``, each
        edge type (s, "rel", d) gets a mirror (d, "rev_rel", s).
        """
        data = HeteroData()
        for m in MODALITIES:
            gid = self.global_ids[m]
            data[m].num_nodes = len(gid)
            data[m].global_id = torch.from_numpy(gid)
        # torch gathers (multi-threaded on big arrays) over the numpy arrays, without copies
        head, tail, modality, local = (torch.from_numpy(a) for a in (self.head, self.tail, self.modality, self.local))
        code = modality[head] * len(MODALITIES) + modality[tail]  # int8: the index into EDGE_TYPES
        tail_local = local[tail]
        width = int(local.max()) + 1 if local.numel() else 1
        key = code.to(torch.int64 if len(EDGE_TYPES) * width >= 2**31 else torch.int32)  # int32 keys sort faster
        key = key.mul_(width).add_(tail_local)  # (edge type, destination)
        order = torch.sort(key, stable=True).indices
        del key
        bounds = [0, *torch.cumsum(torch.bincount(code, minlength=len(EDGE_TYPES)), 0).tolist()]
        del code
        relation = torch.from_numpy(self.relation)[order]
        for i, et in enumerate(EDGE_TYPES):
            lo, hi = bounds[i], bounds[i + 1]
            sel = order[lo:hi]
            data[et].edge_index = torch.stack([local[head[sel]], tail_local[sel]])
            data[et].relation = relation[lo:hi]
            if add_reverse:
                rev = (et[2], "rev_rel", et[0])
                data[rev].edge_index = data[et].edge_index.flip(0)
                data[rev].relation = data[et].relation
        return data

    def k_hop(self, entities: list[int] | np.ndarray, hops: int = 1, max_triplets: int | None = None) -> np.ndarray:
        """Indices of the triplets within ``hops`` of the given global entity ids (either direction).

        Breadth first; ``max_triplets`` cuts the result (nearest hops first).
        """
        frontier = np.unique(np.asarray(entities, dtype=np.int64))
        seen_nodes = frontier
        chosen = np.zeros(self.num_triplets, dtype=bool)
        order: list[np.ndarray] = []
        for _ in range(hops):
            touch = (np.isin(self.head, frontier) | np.isin(self.tail, frontier)) & ~chosen
            new = np.flatnonzero(touch)
            chosen[new] = True
            order.append(new)
            nodes = np.unique(np.concatenate([self.head[new], self.tail[new]]))
            frontier = np.setdiff1d(nodes, seen_nodes)
            seen_nodes = np.union1d(seen_nodes, nodes)
            if frontier.size == 0:
                break
        idx = np.concatenate(order) if order else np.empty(0, dtype=np.int64)
        return idx if max_triplets is None else idx[:max_triplets]

    def triplet_frame(self, index: np.ndarray | None = None) -> pd.DataFrame:
        """Triplets (all, or ``index``) with keys, texts and modalities, readable."""
        idx = np.arange(self.num_triplets) if index is None else np.asarray(index)
        e, r = self.store.entities, self.store.relations
        h, rel, t = self.head[idx], self.relation[idx], self.tail[idx]
        return pd.DataFrame(
            {
                "head_id": h,
                "head": e["key"].to_numpy(dtype=object)[h],
                "head_modality": e["modality"].to_numpy(dtype=object)[h],
                "relation": r["text"].to_numpy(dtype=object)[rel],
                "tail_id": t,
                "tail": e["key"].to_numpy(dtype=object)[t],
                "tail_modality": e["modality"].to_numpy(dtype=object)[t],
            }
        )

    def to_networkx(self, index: np.ndarray | None = None) -> nx.MultiDiGraph:
        """A networkx ``MultiDiGraph`` of the triplets (all, or ``index``).

        Nodes are global ids with ``key``, ``modality``, ``text``, ``image`` (full path) and
        ``bbox``; edges carry ``relation`` (id), ``relation_key`` and ``relation_text``.
        """
        idx = np.arange(self.num_triplets) if index is None else np.asarray(index)
        e, r = self.store.entities, self.store.relations
        g = nx.MultiDiGraph()
        nodes = np.unique(np.concatenate([self.head[idx], self.tail[idx]]))
        for n in nodes.tolist():
            row = e.iloc[n]
            image = str(self.store.image_path(n)) if row["image"] is not None else None
            bbox = None if row["bbox"] is None else [float(v) for v in row["bbox"]]
            g.add_node(n, key=row["key"], modality=row["modality"], text=row["text"], image=image, bbox=bbox)
        rkeys, rtext = r["key"].tolist(), r["text"].tolist()
        for h, rel, t in zip(self.head[idx].tolist(), self.relation[idx].tolist(), self.tail[idx].tolist(), strict=True):
            g.add_edge(h, t, key=rkeys[rel], relation=rel, relation_key=rkeys[rel], relation_text=rtext[rel])
        return g


def relation_stats(store: KnowledgeStore) -> pd.DataFrame:
    """Triplets per relation and split (columns: relation key, text, train, valid, test, total)."""
    t, r = store.triplets, store.relations
    table = pd.crosstab(t["relation_id"], t["split"]).reindex(columns=["train", "valid", "test"], fill_value=0)
    table = table.reindex(r["relation_id"], fill_value=0)
    table.insert(0, "text", r["text"].to_numpy())
    table.insert(0, "relation", r["key"].to_numpy())
    table["total"] = table[["train", "valid", "test"]].sum(axis=1)
    return table.reset_index(drop=True).sort_values("total", ascending=False, kind="stable")


def modality_pair_stats(store: KnowledgeStore) -> pd.DataFrame:
    """Triplets per (head modality, tail modality) and split."""
    t = store.triplets
    mod = store.entities["modality"].to_numpy(dtype=object)
    frame = pd.DataFrame({"head": mod[t["head_id"].to_numpy()], "tail": mod[t["tail_id"].to_numpy()], "split": t["split"]})
    table = pd.crosstab([frame["head"], frame["tail"]], frame["split"]).reindex(columns=["train", "valid", "test"], fill_value=0)
    table["total"] = table.sum(axis=1)
    return table.reset_index()


def source_stats(store: KnowledgeStore) -> pd.DataFrame:
    """Entities and triplets per source."""
    e, t = store.entities, store.triplets
    ent = e["source"].value_counts().rename("entities")
    tri = t["source"].value_counts().rename("triplets")
    return pd.concat([ent, tri], axis=1).fillna(0).astype(int).rename_axis("source").reset_index()


def degree_stats(store: KnowledgeStore) -> pd.DataFrame:
    """Distribution of in- and out-degrees: for each degree, how many entities have it."""
    t = store.triplets
    n = len(store.entities)
    out_deg = np.bincount(t["head_id"].to_numpy(), minlength=n)
    in_deg = np.bincount(t["tail_id"].to_numpy(), minlength=n)
    out_c = pd.Series(out_deg).value_counts().rename("out")
    in_c = pd.Series(in_deg).value_counts().rename("in")
    return pd.concat([out_c, in_c], axis=1).fillna(0).astype(int).rename_axis("degree").sort_index().reset_index()
