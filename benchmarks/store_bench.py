"""Store benchmark: write then read a generated store of 1M entities and 5M triplets, build HeteroData.

Prints rows/s for write and read, the HeteroData build time as a ratio against pyarrow reading
the same id columns alone (goal at most 2x; wall-clock and CPU seconds, each the best of
``--repeat`` runs in fresh processes: on a shared machine single runs vary twofold), and the
build's peak memory as a ratio against the size of the int64 id arrays (goal at most 3x). Also
the fast validation every command runs first (``open_valid``) against the same baseline (goal at
most 3x), and the share of the write spent hashing the data files for the manifest's file table.

    python benchmarks/store_bench.py [--entities N] [--triplets M] [--repeat 3]
"""

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _util import measure, measure_cpu, row

from kgclip.graph import KnowledgeGraph
from kgclip.store import KnowledgeStore, SplitConfig, StoreWriter, open_valid
from kgclip.store.files import file_table


def write(path: Path, n_ent: int, n_tri: int) -> None:
    rng = np.random.default_rng(0)
    with StoreWriter(path, split=SplitConfig()) as w:
        for i in range(n_ent):
            if i % 3:
                w.add_entity(f"bench:t{i}", "text", text=f"entity {i}", source="bench")
            else:
                w.add_entity(f"bench:i{i}", "image", image=f"{i}.jpg", source="bench")
        for r in range(20):
            w.add_relation(f"r{r}", f"relation {r}")
        step = 1_000_000
        for s in range(0, n_tri, step):
            m = min(step, n_tri - s)
            w.add_triplets(rng.integers(0, n_ent, m), rng.integers(0, 20, m), rng.integers(0, n_ent, m), source="bench")


def read_ids(path: str) -> int:
    t = KnowledgeStore(path).triplet_table(["head_id", "relation_id", "tail_id"])
    m = KnowledgeStore(path).entity_table(["modality"])
    return t.num_rows + m.num_rows


def build(path: str) -> int:
    data = KnowledgeGraph.from_store(KnowledgeStore(path), splits=None).to_hetero_data()
    return sum(data[et].edge_index.shape[1] for et in data.edge_types)


def read_all(path: str) -> tuple[int, int, int]:
    s = KnowledgeStore(path)
    return len(s.entities) + len(s.triplets), s.num_entities, len(s.triplets)


def validate(path: str) -> int:
    return open_valid(path).num_entities


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entities", type=int, default=1_000_000)
    ap.add_argument("--triplets", type=int, default=5_000_000)
    ap.add_argument("--repeat", type=int, default=3, help="runs of the baseline and of the build (the best is kept)")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    path = tmp / "store"
    try:
        print(f"store_bench: {a.entities:,} entities, {a.triplets:,} triplets")
        # Every step in a process of its own, forked from this lean one: a child of a parent that holds
        # the whole store in memory pays for its allocations (copy-on-write) what a fresh command does not.
        t_write, _, _ = measure(write, path, a.entities, a.triplets)
        t_read, _, (n, n_entities, n_triplets) = measure(read_all, str(path))
        ids, builds = [], []
        for _ in range(max(1, a.repeat)):  # alternated, so that both meet the same load
            ids.append(measure_cpu(read_ids, str(path)))
            builds.append(measure_cpu(build, str(path)))
        t_ids, c_ids = min(r[0] for r in ids), min(r[3] for r in ids)
        t_build, c_build, mem_build, n_edges = min(r[0] for r in builds), min(r[3] for r in builds), min(r[1] for r in builds), builds[0][2]
        t_valid, _, _ = measure(validate, str(path))
        t_hash, _, _ = measure(file_table, path)
        id_bytes = n_entities * 8 + n_triplets * 3 * 8
        row("write (entities + triplets)", f"{(a.entities + a.triplets) / t_write:,.0f} rows/s", f"{t_write:.1f} s")
        row("read (all columns, pandas)", f"{n / t_read:,.0f} rows/s", f"{t_read:.1f} s")
        row("baseline: pyarrow read of the id columns alone", f"{t_ids:.2f} s", f"{c_ids:.2f} CPU s")
        row("HeteroData build (read + build)", f"{t_build:.2f} s",
            f"ratio {t_build / t_ids:.2f}x vs baseline (goal <= 2x); {c_build:.2f} CPU s, ratio {c_build / c_ids:.2f}x")
        row("HeteroData build peak memory", f"{mem_build / 2**20:,.0f} MiB",
            f"ratio {mem_build / id_bytes:.2f}x vs int64 id arrays {id_bytes / 2**20:,.0f} MiB (goal <= 3x)")
        row("fast validation (open_valid)", f"{t_valid:.2f} s", f"ratio {t_valid / t_ids:.2f}x vs baseline (goal <= 3x)")
        row("hashing the data files (in the write)", f"{t_hash:.2f} s", f"{t_hash / t_write:.1%} of the write")
        assert n_edges == n_triplets
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
