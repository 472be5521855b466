"""Sampling benchmark.

A generated heterogeneous graph of 1M entities and 10M edges over the 4 modality edge types;
fan-out [10, 5]; seed batches of 1,024 nodes. Prints the CSR build time, sampled edges per
second, the CSR's memory against its int64 edge arrays (goal at most 2x), the ratio against PyG's
own sampler when pyg-lib or torch-sparse is importable, and the TripletLoader's batches per second
(ids only) on a graph of the same size.

    python benchmarks/sampling_bench.py [--entities N] [--edges M]
"""

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import HeteroData
from torch_geometric.sampler import NodeSamplerInput

sys.path.insert(0, str(Path(__file__).parent))
from _util import row

from kgclip.sampling import HeteroNeighborSampler, TripletLoader
from kgclip.typing import EDGE_TYPES


class _FakeStore:
    num_relations = 20


class _Graph:
    """Just what TripletLoader reads from a KnowledgeGraph."""

    def __init__(self, head, relation, tail, modality):
        self.head, self.relation, self.tail, self.modality = head, relation, tail, modality
        self.num_triplets, self.num_entities, self.store = len(head), len(modality), _FakeStore()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entities", type=int, default=1_000_000)
    ap.add_argument("--edges", type=int, default=10_000_000)
    ap.add_argument("--batches", type=int, default=50)
    a = ap.parse_args()
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    n_img = a.entities // 3
    n_txt = a.entities - n_img
    sizes = {"image": n_img, "text": n_txt}
    data = HeteroData()
    for nt, n in sizes.items():
        data[nt].num_nodes = n
    per = a.edges // 4
    for et in EDGE_TYPES:
        data[et].edge_index = torch.stack([torch.from_numpy(rng.integers(0, sizes[et[0]], per)), torch.from_numpy(rng.integers(0, sizes[et[2]], per))])
    print(f"sampling_bench: {a.entities:,} entities, {4 * per:,} edges over 4 edge types, fan-out [10, 5], seed batches of 1,024")

    t0 = time.perf_counter()
    sampler = HeteroNeighborSampler(data, [10, 5], seed=0)
    t_csr = time.perf_counter() - t0
    edge_bytes = sum(data[et].edge_index.numel() * 8 for et in EDGE_TYPES)
    row("CSR build (4 edge types)", f"{t_csr:.2f} s")
    row("CSR memory", f"{sampler.nbytes() / 2**20:,.0f} MiB", f"ratio {sampler.nbytes() / edge_bytes:.2f}x vs int64 edge_index arrays (goal <= 2x)")

    n_edges = 0
    t0 = time.perf_counter()
    for _ in range(a.batches):
        seeds = torch.from_numpy(rng.integers(0, n_txt, 1024))
        out = sampler.sample_from_nodes(NodeSamplerInput(input_id=None, node=seeds, input_type="text"))
        n_edges += sum(v.numel() for v in out.row.values())
    dt = time.perf_counter() - t0
    ours = n_edges / dt
    row("HeteroNeighborSampler (pure torch)", f"{ours:,.0f} edges/s", f"{a.batches / dt:.1f} batches/s")
    if importlib.util.find_spec("pyg_lib") or importlib.util.find_spec("torch_sparse"):
        from torch_geometric.sampler import NeighborSampler

        pyg = NeighborSampler(data, num_neighbors=[10, 5])
        n_edges, t0 = 0, time.perf_counter()
        for _ in range(a.batches):
            seeds = torch.from_numpy(rng.integers(0, n_txt, 1024))
            out = pyg.sample_from_nodes(NodeSamplerInput(input_id=None, node=seeds, input_type="text"))
            n_edges += sum(v.numel() for v in out.row.values())
        theirs = n_edges / (time.perf_counter() - t0)
        row("baseline: PyG NeighborSampler", f"{theirs:,.0f} edges/s", f"ratio {ours / theirs:.2f}x (goal >= 1.0x)")
    else:
        row("baseline: PyG NeighborSampler", "not available", "(neither pyg-lib nor torch-sparse is installed)")

    mod = np.concatenate([np.zeros(n_img, np.int8), np.ones(n_txt, np.int8)])
    head = rng.integers(0, a.entities, a.edges)
    tail = rng.integers(0, a.entities, a.edges)
    graph = _Graph(head, rng.integers(0, 20, a.edges), tail, mod)
    t0 = time.perf_counter()
    loader = TripletLoader(graph, 64, fanouts=[4], seed=0)  # the demo's batch and fan-out
    t_build = time.perf_counter() - t0
    it = iter(loader)
    t0 = time.perf_counter()
    for _ in range(200):
        next(it)
    bps = 200 / (time.perf_counter() - t0)
    row("TripletLoader build (CSR over 10M triplets)", f"{t_build:.2f} s")
    row("TripletLoader, batch 64, fan-out [4], ids only", f"{bps:,.0f} batches/s",
        "compare with the demo's training steps/s printed by benchmarks/train_bench.py (goal >= 20x)")


if __name__ == "__main__":
    main()
