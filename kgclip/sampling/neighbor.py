"""A heterogeneous neighbour sampler in pure torch that plugs into PyG's loaders.

pyg-lib is not on the package index and torch-sparse only builds from source, so PyG's own
``NeighborSampler`` cannot sample here; :class:`HeteroNeighborSampler` implements PyG's
``BaseSampler`` interface with the vectorised :class:`~kgclip.sampling.csr.CSR` and is accepted by
``torch_geometric.loader.NodeLoader`` and ``LinkLoader``. :func:`make_sampler` returns PyG's own
sampler instead when pyg-lib is importable.
"""

import importlib.util

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.sampler import BaseSampler, EdgeSamplerInput, HeteroSamplerOutput, NodeSamplerInput

from kgclip.sampling.csr import CSR
from kgclip.typing import EdgeType, NodeType


class HeteroNeighborSampler(BaseSampler):
    """Uniform in-edge sampling per hop and edge type, without replacement.

    Args:
        data: the graph; each edge type needs ``edge_index`` (local indices).
        num_neighbors: fan-out per hop (the same for every edge type), e.g. ``[10, 5]``.
        seed: seed of the sampler's generator (determinism: the same seed and the same calls give
            the same subgraphs).
    """

    def __init__(self, data: HeteroData, num_neighbors: list[int], seed: int = 0) -> None:
        self.num_neighbors = list(num_neighbors)
        self.num_nodes: dict[NodeType, int] = {nt: int(data[nt].num_nodes) for nt in data.node_types}
        self.csr: dict[EdgeType, CSR] = {}
        for et in data.edge_types:
            ei = data[et].edge_index
            self.csr[et] = CSR.from_edges(ei[0], ei[1], self.num_nodes[et[2]])
        self.generator = torch.Generator().manual_seed(seed)
        self._map = {nt: torch.full((n,), -1, dtype=torch.long) for nt, n in self.num_nodes.items()}

    def nbytes(self) -> int:
        """Memory of the CSR structures."""
        return sum(c.nbytes() for c in self.csr.values())

    # -- the sampling core --------------------------------------------------------------------
    def _add_nodes(self, nodes: dict[NodeType, list[Tensor]], nt: NodeType, new: Tensor) -> Tensor:
        """Give local indices to nodes of type ``nt`` not seen yet; return the local index of each."""
        m = self._map[nt]
        uniq = torch.unique(new)
        fresh = uniq[m[uniq] < 0]
        count = sum(int(t.numel()) for t in nodes[nt])
        m[fresh] = torch.arange(count, count + fresh.numel())
        nodes[nt].append(fresh)
        return m[new]

    def _sample(self, seeds: dict[NodeType, Tensor]) -> tuple[dict, dict, dict, dict, dict, dict[NodeType, Tensor]]:
        nodes: dict[NodeType, list[Tensor]] = {nt: [] for nt in self.num_nodes}
        rows: dict[EdgeType, list[Tensor]] = {et: [] for et in self.csr}
        cols: dict[EdgeType, list[Tensor]] = {et: [] for et in self.csr}
        edges: dict[EdgeType, list[Tensor]] = {et: [] for et in self.csr}
        n_nodes: dict[NodeType, list[int]] = {nt: [] for nt in self.num_nodes}
        n_edges: dict[EdgeType, list[int]] = {et: [] for et in self.csr}
        seed_local = {nt: self._add_nodes(nodes, nt, s) for nt, s in seeds.items()}
        for nt in self.num_nodes:
            n_nodes[nt].append(sum(int(t.numel()) for t in nodes[nt]))
        frontier = {nt: torch.cat(nodes[nt]) if nodes[nt] else torch.empty(0, dtype=torch.long) for nt in self.num_nodes}
        try:
            for fanout in self.num_neighbors:
                before = {nt: sum(int(t.numel()) for t in nodes[nt]) for nt in self.num_nodes}
                for et, csr in self.csr.items():
                    src_t, _, dst_t = et
                    dst_nodes = frontier[dst_t]
                    if dst_nodes.numel() == 0:
                        n_edges[et].append(0)
                        continue
                    seed_pos, pos = csr.sample(dst_nodes, fanout, self.generator)
                    rows[et].append(self._add_nodes(nodes, src_t, csr.src[pos]))
                    cols[et].append(self._map[dst_t][dst_nodes[seed_pos]])
                    edges[et].append(csr.eid[pos])
                    n_edges[et].append(int(pos.numel()))
                frontier = {}
                for nt in self.num_nodes:
                    all_nt = torch.cat(nodes[nt]) if nodes[nt] else torch.empty(0, dtype=torch.long)
                    frontier[nt] = all_nt[before[nt]:]
                    n_nodes[nt].append(int(frontier[nt].numel()))
            node = {nt: torch.cat(v) if v else torch.empty(0, dtype=torch.long) for nt, v in nodes.items()}
        finally:
            for nt, v in nodes.items():  # reset only the touched entries of the reusable maps
                for t in v:
                    self._map[nt][t] = -1
        cat = lambda d: {k: torch.cat(v) if v else torch.empty(0, dtype=torch.long) for k, v in d.items()}  # noqa: E731
        return node, cat(rows), cat(cols), cat(edges), {"nodes": n_nodes, "edges": n_edges}, seed_local

    # -- PyG's interface ----------------------------------------------------------------------
    def sample_from_nodes(self, index: NodeSamplerInput, **kwargs) -> HeteroSamplerOutput:
        if index.input_type is None:
            raise ValueError("HeteroNeighborSampler needs the seed node type (input_nodes=(type, ids))")
        node, row, col, edge, counts, _ = self._sample({index.input_type: index.node})
        return HeteroSamplerOutput(
            node=node, row=row, col=col, edge=edge, batch=None,
            num_sampled_nodes=counts["nodes"], num_sampled_edges=counts["edges"],
            metadata=(index.input_id, index.time),
        )

    def sample_from_edges(self, index: EdgeSamplerInput, neg_sampling=None) -> HeteroSamplerOutput:
        if neg_sampling is not None:
            raise ValueError("HeteroNeighborSampler does not do PyG's negative sampling; use TripletLoader(negatives=...)")
        src_t, _, dst_t = index.input_type
        seeds = {src_t: index.row} if src_t == dst_t else {src_t: index.row, dst_t: index.col}
        if src_t == dst_t:
            seeds = {src_t: torch.cat([index.row, index.col])}
        node, row, col, edge, counts, seed_local = self._sample(seeds)
        if src_t == dst_t:
            n = index.row.numel()
            label_index = torch.stack([seed_local[src_t][:n], seed_local[src_t][n:]])
        else:
            label_index = torch.stack([seed_local[src_t], seed_local[dst_t]])
        return HeteroSamplerOutput(
            node=node, row=row, col=col, edge=edge, batch=None,
            num_sampled_nodes=counts["nodes"], num_sampled_edges=counts["edges"],
            metadata=(index.input_id, label_index, index.label, index.time),
        )


def pyg_lib_available() -> bool:
    return importlib.util.find_spec("pyg_lib") is not None


def make_sampler(data: HeteroData, num_neighbors: list[int], seed: int = 0) -> BaseSampler:
    """PyG's ``NeighborSampler`` when pyg-lib is installed, else :class:`HeteroNeighborSampler`."""
    if pyg_lib_available():
        from torch_geometric.sampler import NeighborSampler

        return NeighborSampler(data, num_neighbors=num_neighbors)
    return HeteroNeighborSampler(data, num_neighbors, seed=seed)
