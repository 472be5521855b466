"""The neighbour sampler: a heterogeneous sampler in pure torch that plugs into PyG's loaders.

pyg-lib is not on the package index and torch-sparse only builds from source, so PyG's own
``NeighborSampler`` cannot sample here; :class:`HeteroNeighborSampler` implements PyG's
``BaseSampler`` interface with the vectorised :class:`~kgclip.sampling.csr.CSR` and is accepted by
``torch_geometric.loader.NodeLoader`` and ``LinkLoader``. :func:`make_sampler` returns PyG's own
sampler instead when pyg-lib is importable.

Both follow PyG's meaning of ``num_neighbors``: per hop, up to that many in-edges of every frontier
node *per edge type*; hop ``l + 1`` expands only the nodes first reached at hop ``l``.

Training reads samples through :func:`sample_edges`, which takes seeds of several node types and a
per-call ``torch.Generator`` (a batch is a pure function of its generator) and returns the sampled
edges as flat tensors (:class:`SampledEdges`) in one node and edge numbering over all types
(:class:`JointLayout`).
"""

import importlib.util
from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.sampler import BaseSampler, EdgeSamplerInput, HeteroSamplerOutput, NodeSamplerInput

from kgclip.sampling.csr import CSR, is_sorted, isin
from kgclip.typing import EdgeType, NodeType

_EMPTY = torch.empty(0, dtype=torch.long)


@dataclass(frozen=True)
class JointLayout:
    """One numbering of the nodes (and of the edges) of every type of a ``HeteroData``.

    Node ``v`` of type ``node_types[i]`` is joint node ``node_offset[i] + v``; edge ``e`` of type
    ``edge_types[j]`` is joint edge ``edge_offset[j] + e``.

    Attributes:
        node_types, edge_types: the graph's types, in the graph's order.
        node_offset: [T + 1] first joint id of each node type (last entry: the number of nodes).
        edge_offset: [E_T + 1] first joint id of each edge type (last entry: the number of edges).
    """

    node_types: tuple[NodeType, ...]
    edge_types: tuple[EdgeType, ...]
    node_offset: Tensor
    edge_offset: Tensor

    @classmethod
    def of(cls, data: HeteroData) -> "JointLayout":
        nts, ets = tuple(data.node_types), tuple(data.edge_types)
        nsize = torch.tensor([0] + [int(data[nt].num_nodes) for nt in nts])
        esize = torch.tensor([0] + [int(data[et].edge_index.shape[1]) for et in ets])
        return cls(nts, ets, torch.cumsum(nsize, 0), torch.cumsum(esize, 0))

    def node_type_index(self, nt: NodeType) -> int:
        return self.node_types.index(nt)

    def joint(self, nt: NodeType, local: Tensor) -> Tensor:
        """Joint ids of local node ids of type ``nt``."""
        return local.long() + self.node_offset[self.node_type_index(nt)]


@dataclass
class SampledEdges:
    """Sampled in-edges, flat, in the joint numbering of a :class:`JointLayout`.

    Attributes:
        src, dst: [E] joint node ids; ``dst`` is the node whose in-edge was sampled.
        edge: [E] joint edge ids (position in the layout's concatenation of edge types).
        edge_type: [E] index of each edge's type in ``layout.edge_types``.
        hop: [E] the hop (1-based) at which each edge was sampled.
    """

    src: Tensor
    dst: Tensor
    edge: Tensor
    edge_type: Tensor
    hop: Tensor


class HeteroNeighborSampler(BaseSampler):
    """Uniform in-edge sampling per hop and edge type, without replacement.

    All edge types live in one :class:`CSR` whose rows are (edge type, destination node) slots,
    edge type after edge type, so a hop over every edge type is one vectorised call. When each
    edge type's ``edge_index`` is sorted by destination (as ``KnowledgeGraph.to_hetero_data``
    gives it) the build needs no sort.

    Args:
        data: the graph; each edge type needs ``edge_index`` (local indices).
        num_neighbors: fan-out per hop and edge type, e.g. ``[10, 5]`` (a negative value takes all).
        seed: seed of the generator used when a call passes none (PyG's loaders).
    """

    def __init__(self, data: HeteroData, num_neighbors: list[int], seed: int = 0) -> None:
        self.num_neighbors = list(num_neighbors)
        self.layout = JointLayout.of(data)
        lay = self.layout
        self.num_nodes: dict[NodeType, int] = {nt: int(data[nt].num_nodes) for nt in lay.node_types}
        # slots: edge type i's in-edges of its local destination v sit in slot slot_base[i] + v;
        # the last slot stays empty (it stands for "no such edge type" below)
        sizes = torch.tensor([0] + [self.num_nodes[et[2]] for et in lay.edge_types])
        slot_base = torch.cumsum(sizes, 0)
        self._empty_slot = int(slot_base[-1])
        into = {nt: [i for i, et in enumerate(lay.edge_types) if et[2] == nt] for nt in lay.node_types}
        self._k = max([len(v) for v in into.values()] + [1])
        # per node type t and j < K: the j-th edge type into t (-1: none) and its first slot
        self._slot_type = torch.full((len(lay.node_types), self._k), -1, dtype=torch.long)
        for t, nt in enumerate(lay.node_types):
            self._slot_type[t, : len(into[nt])] = torch.tensor(into[nt], dtype=torch.long)
        self._slot_base = torch.where(self._slot_type >= 0, slot_base[self._slot_type.clamp(min=0)], -1)
        srcs, dsts = [], []
        for et in lay.edge_types:
            ei = data[et].edge_index
            srcs.append(ei[0].long() + lay.node_offset[lay.node_type_index(et[0])])
            dsts.append(ei[1].long())
        if all(is_sorted(d) for d in dsts):  # slots already in order: counts per slot, no sort
            counts = torch.cat([torch.bincount(d, minlength=self.num_nodes[et[2]]) for d, et in zip(dsts, lay.edge_types, strict=True)]
                               + [torch.zeros(1, dtype=torch.long)])
            indptr = torch.zeros(counts.numel() + 1, dtype=torch.long)
            torch.cumsum(counts, 0, out=indptr[1:])
            self.csr = CSR(indptr=indptr, src=torch.cat([_EMPTY, *srcs]), eid=None)
        else:
            slots = torch.cat([_EMPTY] + [d + slot_base[i] for i, d in enumerate(dsts)])
            self.csr = CSR.from_edges(torch.cat([_EMPTY, *srcs]), slots, self._empty_slot + 1)
        self.generator = torch.Generator().manual_seed(seed)
        self._position: Tensor | None = None  # scratch map of _output, made on first use

    def nbytes(self) -> int:
        """Memory of the CSR structure."""
        return self.csr.nbytes()

    # -- the sampling core --------------------------------------------------------------------
    def sample_edges(self, seeds: dict[NodeType, Tensor] | Tensor, generator: torch.Generator | None = None) -> SampledEdges:
        """Sample the in-edge neighbourhood of seed nodes of any types.

        Args:
            seeds: node type -> local ids of the seed nodes, or the seeds' joint ids
                (``self.layout``).
            generator: the random generator of this call (the sampler's own when None).

        Returns:
            The sampled edges, hop by hop.
        """
        if isinstance(seeds, dict):
            seeds = torch.cat([_EMPTY] + [self.layout.joint(nt, s) for nt, s in seeds.items()])
        return self._sample(seeds.long().unique(), generator)[0]

    def _sample(self, frontier: Tensor, generator: torch.Generator | None, want_nodes: bool = False) -> tuple[SampledEdges, list[Tensor]]:
        """Edges from distinct joint seeds, and (with ``want_nodes``) the joint ids each hop reached
        first, ascending."""
        g = self.generator if generator is None else generator
        lay = self.layout
        seen = frontier
        parts: list[tuple[Tensor, ...]] = []
        firsts: list[Tensor] = []
        for hop, fanout in enumerate(self.num_neighbors, start=1):
            if frontier.numel() == 0:
                firsts.append(_EMPTY)
                continue
            ntype = torch.bucketize(frontier, lay.node_offset[1:], right=True)
            base = self._slot_base[ntype]  # [n, K]
            slots = torch.where(base >= 0, base + (frontier - lay.node_offset[ntype]).unsqueeze(1), self._empty_slot)
            seed_pos, pos = self.csr.sample(slots.flatten(), fanout, g)
            src = self.csr.src[pos]
            parts.append((src, frontier[seed_pos // self._k], self.csr.edge_ids(pos), self._slot_type[ntype].flatten()[seed_pos], hop))
            if want_nodes or hop < len(self.num_neighbors):  # the nodes reached first at this hop are the next frontier
                new = src.unique()
                frontier = new[~isin(new, seen)]
                seen = torch.cat([seen, frontier])
                firsts.append(frontier)
        if not parts:
            return SampledEdges(_EMPTY, _EMPTY, _EMPTY, _EMPTY, _EMPTY), firsts
        if len(parts) == 1:
            src, dst, edge, et, hop = parts[0]
            return SampledEdges(src, dst, edge, et, torch.full_like(src, hop)), firsts
        return SampledEdges(
            src=torch.cat([p[0] for p in parts]),
            dst=torch.cat([p[1] for p in parts]),
            edge=torch.cat([p[2] for p in parts]),
            edge_type=torch.cat([p[3] for p in parts]),
            hop=torch.cat([torch.full_like(p[0], p[4]) for p in parts]),
        ), firsts

    def _output(self, seeds: dict[NodeType, Tensor], generator: torch.Generator | None = None) -> tuple[HeteroSamplerOutput, dict[NodeType, Tensor]]:
        """PyG's output for ``seeds``, and the position of each seed in its type's ``node``."""
        lay = self.layout
        num_hops = len(self.num_neighbors)
        # each type's nodes: its seeds in the given order (first occurrences), then the nodes each hop reached first
        ordered: dict[NodeType, Tensor] = {}
        seed_local: dict[NodeType, Tensor] = {}
        for nt in lay.node_types:
            given = seeds.get(nt, _EMPTY).long()
            uniq, inv = torch.unique(given, return_inverse=True)
            first_at = torch.full((uniq.numel(),), given.numel(), dtype=torch.long).scatter_reduce(0, inv, torch.arange(given.numel()), "amin")
            rank = torch.argsort(first_at)
            ordered[nt] = uniq[rank]
            seed_local[nt] = torch.argsort(rank)[inv]
        start = torch.cat([_EMPTY] + [lay.joint(nt, x) for nt, x in ordered.items()]).unique()
        s, firsts = self._sample(start, generator, want_nodes=True)
        node: dict[NodeType, Tensor] = {}
        n_nodes: dict[NodeType, list[int]] = {}
        # position of each joint node in its type's `node` list, through a scratch map (only the touched entries are written)
        if self._position is None:
            self._position = torch.empty(int(lay.node_offset[-1]), dtype=torch.long)
        cuts = [torch.searchsorted(f, lay.node_offset) for f in firsts]  # firsts are ascending: types are runs
        for t, nt in enumerate(lay.node_types):
            per_hop = [ordered[nt]] + [f[c[t] : c[t + 1]] - lay.node_offset[t] for f, c in zip(firsts, cuts, strict=True)]
            node[nt] = torch.cat(per_hop)
            n_nodes[nt] = [int(x.numel()) for x in per_hop]
            self._position[node[nt] + lay.node_offset[t]] = torch.arange(node[nt].numel())
        row_all, col_all = self._position[s.src], self._position[s.dst]
        order = torch.argsort(s.edge_type, stable=True)  # by type; within a type hop-major as sampled
        bounds = [0, *torch.cumsum(torch.bincount(s.edge_type, minlength=len(lay.edge_types)), 0).tolist()]
        row: dict[EdgeType, Tensor] = {}
        col: dict[EdgeType, Tensor] = {}
        edge: dict[EdgeType, Tensor] = {}
        n_edges: dict[EdgeType, list[int]] = {}
        for i, et in enumerate(lay.edge_types):
            sel = order[bounds[i] : bounds[i + 1]]
            row[et], col[et], edge[et] = row_all[sel], col_all[sel], s.edge[sel] - lay.edge_offset[i]
            n_edges[et] = torch.bincount(s.hop[sel] - 1, minlength=num_hops).tolist() if num_hops else []
        return HeteroSamplerOutput(node=node, row=row, col=col, edge=edge, batch=None,
                                   num_sampled_nodes=n_nodes, num_sampled_edges=n_edges), seed_local

    # -- PyG's interface ----------------------------------------------------------------------
    def sample_from_nodes(self, index: NodeSamplerInput, **kwargs) -> HeteroSamplerOutput:
        if index.input_type is None:
            raise ValueError("HeteroNeighborSampler needs the seed node type (input_nodes=(type, ids))")
        out, _ = self._output({index.input_type: index.node})
        out.metadata = (index.input_id, index.time)
        return out

    def sample_from_edges(self, index: EdgeSamplerInput, neg_sampling=None) -> HeteroSamplerOutput:
        if neg_sampling is not None:
            raise ValueError("HeteroNeighborSampler does not do PyG's negative sampling; use TripletLoader(negatives=...)")
        src_t, _, dst_t = index.input_type
        n = index.row.numel()
        if src_t == dst_t:
            out, seed_local = self._output({src_t: torch.cat([index.row, index.col])})
            label_index = torch.stack([seed_local[src_t][:n], seed_local[src_t][n:]])
        else:
            out, seed_local = self._output({src_t: index.row, dst_t: index.col})
            label_index = torch.stack([seed_local[src_t], seed_local[dst_t]])
        out.metadata = (index.input_id, label_index, index.label, index.time)
        return out


def pyg_lib_available() -> bool:
    return importlib.util.find_spec("pyg_lib") is not None


def make_sampler(data: HeteroData, num_neighbors: list[int], seed: int = 0) -> BaseSampler:
    """PyG's ``NeighborSampler`` when pyg-lib is installed, else :class:`HeteroNeighborSampler`."""
    if pyg_lib_available():
        from torch_geometric.sampler import NeighborSampler

        in_csc_order = all(is_sorted(data[et].edge_index[1]) for et in data.edge_types)  # to_hetero_data's order: PyG need not sort
        return NeighborSampler(data, num_neighbors=num_neighbors, is_sorted=in_csc_order)
    return HeteroNeighborSampler(data, num_neighbors, seed=seed)


def sample_edges(sampler: BaseSampler, layout: JointLayout, seeds: Tensor, generator: torch.Generator) -> SampledEdges:
    """The in-edge neighbourhood of ``seeds`` from either sampler that :func:`make_sampler` returns.

    Args:
        sampler: a :class:`HeteroNeighborSampler`, or PyG's ``NeighborSampler`` built on the graph
            that ``layout`` describes.
        layout: the joint numbering of that graph.
        seeds: joint ids of the seed nodes (distinct).
        generator: this call's random generator. PyG's sampler draws from torch's global generator:
            that is seeded from ``generator`` for the call and restored afterwards.
    """
    if isinstance(sampler, HeteroNeighborSampler):
        return sampler.sample_edges(seeds, generator)
    ntype = torch.bucketize(seeds, layout.node_offset[1:], right=True)
    local = {nt: seeds[ntype == t] - layout.node_offset[t] for t, nt in enumerate(layout.node_types)}
    call_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(call_seed)
        # PyG's entry for seeds of several types (its node_sample / edge_sample call it)
        out = sampler._sample({nt: x for nt, x in local.items() if x.numel()})
    if out.num_sampled_edges is None:
        raise RuntimeError("PyG's NeighborSampler did not report edges per hop (pyg-lib older than 0.2?)")
    return flatten_output(out, layout, getattr(sampler, "edge_permutation", None))


def flatten_output(out: HeteroSamplerOutput, layout: JointLayout, edge_permutation: dict | None = None) -> SampledEdges:
    """PyG's sampler output as :class:`SampledEdges` (``edge_permutation`` maps PyG's edge ids back
    to the graph's, as PyG's loaders do)."""
    parts = []
    for i, et in enumerate(layout.edge_types):
        e = out.edge.get(et) if out.edge is not None else None
        if e is None or e.numel() == 0:
            continue
        perm = edge_permutation.get(et) if isinstance(edge_permutation, dict) else None
        if perm is not None:
            e = perm[e]
        s_t, d_t = layout.node_type_index(et[0]), layout.node_type_index(et[2])
        counts = torch.tensor(out.num_sampled_edges[et], dtype=torch.long)
        hop = torch.repeat_interleave(torch.arange(1, counts.numel() + 1), counts)
        parts.append((out.node[et[0]][out.row[et]] + layout.node_offset[s_t], out.node[et[2]][out.col[et]] + layout.node_offset[d_t],
                      e.long() + layout.edge_offset[i], torch.full_like(hop, i), hop))
    if not parts:
        return SampledEdges(_EMPTY, _EMPTY, _EMPTY, _EMPTY, _EMPTY)
    cat = [torch.cat([p[k] for p in parts]) for k in range(5)]
    order = torch.argsort(cat[4], stable=True)
    return SampledEdges(*(c[order] for c in cat))
