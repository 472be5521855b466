"""The knowledge graph in memory: PyG ``HeteroData``, k-hop neighbourhoods, networkx, statistics.

Entities keep one global id (the store's ``entity_id``); each also has a local index within its
node type (``image`` or ``text``). :class:`KnowledgeGraph` holds both maps, both ways.
"""

import itertools
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


_BLOCK = 1 << 16
"""Triplets packed or unpacked at once when the CSC order is built (their buffers stay in cache)."""


def _is_in(col: pa.ChunkedArray, values: tuple[str, ...]) -> np.ndarray:
    """Which rows of a dictionary column hold one of ``values`` (a null does not), decided once per distinct value of each chunk."""
    if not pa.types.is_dictionary(col.type):
        col = pc.dictionary_encode(col)
    out = np.empty(len(col), dtype=bool)
    at = 0
    for ch in col.chunks:
        hit = np.array([v in values for v in ch.dictionary.to_pylist()] + [False], dtype=bool)  # the last entry: a null
        out[at : at + len(ch)] = hit[(pc.fill_null(ch.indices, -1) if ch.null_count else ch.indices).to_numpy()]
        at += len(ch)
    return out


def _codes(col: pa.ChunkedArray) -> tuple[np.ndarray, tuple[str, ...]]:
    """A string (or dictionary) column as (int64 code of each row, -1 where null; the distinct values, by code).

    Codes number the values in order of first appearance among the rows.
    """
    if not pa.types.is_dictionary(col.type):
        col = pc.dictionary_encode(col)
    if col.num_chunks == 0:
        return np.empty(0, dtype=np.int64), ()
    col = col.unify_dictionaries()
    codes = np.empty(len(col), dtype=np.int64)
    at = 0
    for ch in col.chunks:  # straight into one int64 array
        codes[at : at + len(ch)] = (pc.fill_null(ch.indices, -1) if ch.null_count else ch.indices).to_numpy()
        at += len(ch)
    names = col.chunk(0).dictionary.to_pylist()
    used = _first_appearance(codes, len(names))  # a file's dictionary may hold values of rows left out, in another order
    if len(used) == len(names) and np.array_equal(used, np.arange(len(names))):
        return codes, tuple(names)
    renumber = np.full(len(names) + 1, -1, dtype=np.int64)  # the last entry: code -1 stays -1
    renumber[used] = np.arange(len(used))
    return renumber[codes], tuple(names[i] for i in used.tolist())


def _first_appearance(codes: np.ndarray, k: int, step: int = 1 << 16) -> np.ndarray:
    """The distinct codes >= 0 (of ``k`` possible) in order of first appearance.

    Few possible codes (sources, splits, modalities) are looked for a slice at a time, stopping
    once all have appeared: usually within the first slice, where one pass over all rows is dear.
    """
    if k > 256:
        return pd.unique(codes[codes >= 0])
    seen: dict[int, None] = {}
    for at in range(0, len(codes), step):
        seen.update(dict.fromkeys(c for c in pd.unique(codes[at : at + step]).tolist() if c >= 0))
        if len(seen) == k:
            break
    return np.fromiter(seen, dtype=np.int64, count=len(seen))


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
        t = store.triplet_table(cols, dictionary=["source", "split"])  # repeating strings: read as codes, never as strings
        if splits is not None:
            t = t.filter(pa.array(_is_in(t["split"], splits)))
        ent = store.entity_table(["modality", "concept"], dictionary=["modality"])
        text = _is_in(ent["modality"], (MODALITIES[TEXT],))
        modality = np.where(text, TEXT, IMAGE).astype(np.int8)
        local = np.cumsum(text, dtype=np.int64)  # text entities before and at each entity
        local -= text  # before it: a text entity's local index
        np.subtract(np.arange(len(text), dtype=np.int64), local, out=local, where=~text)  # an image's: the images before it
        concept = None
        if ent["concept"].null_count < len(ent):
            concept, _ = _codes(ent["concept"])
        del ent
        source, sources = _codes(t["source"])
        ids = {}
        for c in ("head_id", "relation_id", "tail_id"):  # each arrow column let go once it is in numpy
            ids[c] = _writable(t[c])
            t = t.drop_columns([c])
        del t
        pa.default_memory_pool().release_unused()  # the read's buffers back to the system, not kept for later
        return cls(
            store=store,
            head=ids["head_id"],
            relation=ids["relation_id"],
            tail=ids["tail_id"],
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
        for et, (edge_index, relation) in zip(EDGE_TYPES, self._csc_edges(), strict=True):
            data[et].edge_index = torch.from_numpy(edge_index)
            data[et].relation = torch.from_numpy(relation)
            if add_reverse:
                rev = (et[2], "rev_rel", et[0])
                data[rev].edge_index = data[et].edge_index.flip(0)
                data[rev].relation = data[et].relation
        return data

    def _csc_edges(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per edge type: ``edge_index`` (2 x E local indices, int64) and relation ids, sorted by
        destination's local index, ties in triplet order.

        Edge type, destination, triplet number and relation are packed into one int64 per
        triplet when they fit (they do unless a store has billions of triplets or entities):
        sorting those values (distinct, so no stable sort is needed; numpy sorts int64 with SIMD)
        gives the destination and relation without gathering them again, and the triplet
        number to gather the source with. Each end's modality and local index come from one
        gather of a per-entity table (int32 when the ids allow: half the memory traffic), and
        each key's top bits are the edge type's index in ``EDGE_TYPES`` (head modality, tail
        modality) above the destination: ``2 ** dst_bits`` per modality, so no multiply.
        """
        n, n_types = len(self.head), len(EDGE_TYPES)
        dst_bits = max(1, int(self.local.max()).bit_length()) if len(self.local) else 1
        pos_bits = max(1, (n - 1).bit_length())
        type_bits = (n_types - 1).bit_length()
        if not len(self.local) or int(self.local.min()) < 0 or type_bits + dst_bits + pos_bits > 63:
            return self._csc_edges_stable()  # too many to pack: a stable sort of the keys themselves
        rel_bits = max(1, int(self.relation.max()).bit_length()) if n and int(self.relation.min()) >= 0 else 64
        rel_bits = rel_bits if type_bits + dst_bits + pos_bits + rel_bits <= 63 else 0  # 0: the relation is gathered after
        shift, dst_mask = pos_bits + rel_bits, (1 << dst_bits) - 1
        table = self.modality.astype(np.int32 if dst_bits + 2 <= 31 else np.int64)  # modality above local index
        table <<= dst_bits
        table |= self.local
        # Packing and unpacking go a block of triplets at a time through a few small buffers: each
        # step then works in cache, and the only large arrays are the key, the sources and the outputs.
        step = min(n, _BLOCK) or 1
        src = np.empty(n, dtype=table.dtype)  # each triplet's source local index
        key = np.empty(n, dtype=np.int64)
        high, bit = np.empty(step, dtype=table.dtype), np.empty(step, dtype=table.dtype)
        low, count = np.empty(step, dtype=np.int64), np.arange(step, dtype=np.int64)
        for a in range(0, n, step):
            b = min(a + step, n)
            h, s, t, k, w = high[: b - a], src[a:b], bit[: b - a], key[a:b], low[: b - a]
            s[:] = np.take(table, self.head[a:b])  # (take's out= is slower: it buffers to check bounds)
            h[:] = np.take(table, self.tail[a:b])  # modality of the tail, destination
            np.bitwise_and(s, 1 << dst_bits, out=t)  # modality of the head ...
            t <<= 1
            h |= t  # ... above them: (edge type, destination)
            s &= dst_mask
            k[:] = h
            k <<= shift
            np.add(count[: b - a], a, out=w)  # the triplet numbers, and the relation below them
            if rel_bits:
                w <<= rel_bits
                w |= self.relation[a:b]
            k |= w
        del high, bit, count
        key.sort()
        bounds = [0, *np.searchsorted(key, [i << (dst_bits + shift) for i in range(1, n_types)]).tolist(), n]
        relation = np.empty(n, dtype=np.int64 if rel_bits else self.relation.dtype)
        out = []
        for i in range(n_types):
            lo, hi = bounds[i], bounds[i + 1]
            edge_index = np.empty((2, hi - lo), dtype=np.int64)
            for a in range(lo, hi, step):
                b = min(a + step, hi)
                k, order = key[a:b], low[: b - a]
                np.right_shift(k, rel_bits, out=order)
                order &= (1 << pos_bits) - 1
                if rel_bits:
                    np.bitwise_and(k, (1 << rel_bits) - 1, out=relation[a:b])
                else:
                    relation[a:b] = np.take(self.relation, order)
                edge_index[0, a - lo : b - lo] = np.take(src, order)
                d = edge_index[1, a - lo : b - lo]
                np.right_shift(k, shift, out=d)
                d &= dst_mask
            out.append((edge_index, relation[lo:hi]))
        return out

    def _csc_edges_stable(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """:meth:`_csc_edges` by a stable sort, for ids too large to pack."""
        code = self.modality[self.head].astype(np.int64) * len(MODALITIES) + self.modality[self.tail]
        bounds = np.concatenate([[0], np.cumsum(np.bincount(code, minlength=len(EDGE_TYPES)))])
        dst = self.local[self.tail]
        order = np.lexsort((dst, code))  # ties keep triplet order
        edge_index = np.stack([self.local[self.head[order]], dst[order]])
        relation = self.relation[order]
        return [(np.ascontiguousarray(edge_index[:, lo:hi]), relation[lo:hi]) for lo, hi in itertools.pairwise(bounds.tolist())]

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
