"""Sampling benchmark.

A generated heterogeneous graph of 1M entities and 10M edges over the 4 modality edge types;
fan-out [10, 5]; seed batches of 1,024 nodes. Prints the sampler build time, sampled edges per
second, the sampler's memory against its int64 edge arrays (goal at most 2x), the ratio against
PyG's own sampler when pyg-lib or torch-sparse is importable, and the TripletLoader (ids only) on
a knowledge graph of the same size: build time, the first batch (which draws the epoch's order),
then batches per second at the demo's batch 64 / fan-out [4] and at batch 1,024 / fan-out [10, 5],
with the torch threads of the main process (2) and of a DataLoader worker (1); with views drawn
at random on a graph whose entities are views of concepts (3 views each), against the stored views
(``views="fixed"``, the baseline).

The script runs against older kgclip versions too (rows they cannot measure are left out), so the
same file gives the before / after figures of a change.

    python benchmarks/sampling_bench.py [--entities N] [--edges M] [--batches B]
"""

import argparse
import importlib.util
import inspect
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import HeteroData
from torch_geometric.sampler import NodeSamplerInput

sys.path.insert(0, str(Path(__file__).parent))
from _util import row

from kgclip.graph import KnowledgeGraph
from kgclip.sampling import HeteroNeighborSampler, TripletLoader
from kgclip.typing import EDGE_TYPES

try:
    from kgclip.typing import IMAGE, TEXT
except ImportError:  # kgclip before the named modality codes (this script also measures older versions)
    IMAGE, TEXT = 0, 1


class _FakeStore:
    num_relations = 20


def _graph(rng: np.random.Generator, entities: int, edges: int, views: int = 0) -> KnowledgeGraph:
    """A random knowledge graph, a third of the entities images; with ``views``, every entity is one of
    ``views`` views of a concept (an image and texts; the triplets join the first view of each)."""
    is_text = (np.arange(entities) % views != 0) if views else (np.arange(entities) >= entities // 3)
    mod = np.where(is_text, TEXT, IMAGE).astype(np.int8)
    local = np.empty(entities, dtype=np.int64)
    for c in (IMAGE, TEXT):
        local[mod == c] = np.arange(int((mod == c).sum()))
    ends = entities if not views else entities // views
    head = rng.integers(0, ends, edges) * (views or 1)
    tail = rng.integers(0, ends, edges) * (views or 1)
    kw = {}
    if views:
        kw["concept"] = np.arange(entities) // views
    return KnowledgeGraph(_FakeStore(), head, rng.integers(0, 20, edges), tail, mod, local, **kw)  # type: ignore[arg-type]


def _loader_rows(graph: KnowledgeGraph, batch: int, fanouts: list[int], n_batches: int, label: str, **kw) -> float:
    t0 = time.perf_counter()
    loader = TripletLoader(graph, batch, fanouts=fanouts, seed=0, **kw)
    t_build = time.perf_counter() - t0
    it = iter(loader)
    t0 = time.perf_counter()
    next(it)
    t_first = time.perf_counter() - t0
    rates = {}
    for threads in (2, 1):
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        for _ in range(n_batches):
            next(it)
        rates[threads] = n_batches / (time.perf_counter() - t0)
    torch.set_num_threads(2)
    row(f"TripletLoader build, {label}", f"{t_build:.2f} s", f"first batch {t_first:.2f} s (draws the epoch's order)")
    row(f"TripletLoader, {label}", f"{rates[2]:,.1f} batches/s", f"{rates[1]:,.1f} batches/s with 1 thread (a DataLoader worker)")
    return rates[1]


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
    row("sampler build (CSR, 4 edge types)", f"{t_csr:.2f} s")
    row("sampler memory", f"{sampler.nbytes() / 2**20:,.0f} MiB", f"ratio {sampler.nbytes() / edge_bytes:.2f}x vs int64 edge_index arrays (goal <= 2x)")

    n_edges = 0
    t0 = time.perf_counter()
    for _ in range(a.batches):
        seeds = torch.from_numpy(rng.integers(0, n_txt, 1024))
        out = sampler.sample_from_nodes(NodeSamplerInput(input_id=None, node=seeds, input_type="text"))
        n_edges += sum(v.numel() for v in out.row.values())
    dt = time.perf_counter() - t0
    ours = n_edges / dt
    row("HeteroNeighborSampler.sample_from_nodes (PyG output)", f"{ours:,.0f} edges/s", f"{a.batches / dt:.1f} batches/s")
    if hasattr(sampler, "sample_edges"):
        g = torch.Generator().manual_seed(0)
        n_edges, t0 = 0, time.perf_counter()
        for _ in range(a.batches):
            seeds = torch.from_numpy(rng.integers(0, n_txt, 1024))
            n_edges += sampler.sample_edges({"text": seeds}, g).src.numel()
        dt = time.perf_counter() - t0
        row("HeteroNeighborSampler.sample_edges (flat, training)", f"{n_edges / dt:,.0f} edges/s", f"{a.batches / dt:.1f} batches/s")
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
    del data, sampler

    graph = _graph(rng, a.entities, a.edges)
    _loader_rows(graph, 64, [4], 200, "batch 64, fan-out [4], ids only")
    print("  (compare with the demo's training steps/s printed by benchmarks/train_bench.py: goal >= 20x)")
    _loader_rows(graph, 1024, [10, 5], 20, "batch 1,024, fan-out [10, 5], ids only")
    del graph
    if "views" in inspect.signature(TripletLoader).parameters:
        with_views = _graph(rng, a.entities, a.edges, views=3)
        fixed = _loader_rows(with_views, 64, [4], 200, "batch 64, fan-out [4], concepts, views fixed", views="fixed")
        rand = _loader_rows(with_views, 64, [4], 200, "batch 64, fan-out [4], concepts, views random", views="random")
        row("views random vs fixed (baseline)", f"{rand / fixed:.2f}x", "batches/s with 1 thread")


if __name__ == "__main__":
    main()
