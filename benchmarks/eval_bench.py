"""Evaluation benchmark: filtered ranking of 10k queries against 100k candidates of dimension 512.

Prints time and peak memory of ``filtered_ranks`` (with one filtered answer per query on
average) and the ratio against the bare matrix product of the same sizes (the baseline; goal at
most 2x).

    python benchmarks/eval_bench.py [--queries 10000] [--candidates 100000] [--dim 512]
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _util import measure, row

from kgclip.evaluation.ranking import filtered_ranks


def data(q: int, c: int, d: int):
    g = torch.Generator().manual_seed(0)
    query = torch.nn.functional.normalize(torch.randn(q, d, generator=g), dim=-1)
    cand = torch.nn.functional.normalize(torch.randn(c, d, generator=g), dim=-1)
    true = torch.randint(0, c, (q,), generator=g)
    fq = torch.randint(0, q, (q,), generator=g)
    fc = torch.randint(0, c, (q,), generator=g)
    return query, cand, true, fq, fc


def inputs_only(q: int, c: int, d: int) -> int:
    return len(data(q, c, d))


def bare(q: int, c: int, d: int, chunk: int) -> int:
    query, cand, *_ = data(q, c, d)
    best = 0
    for s in range(0, q, chunk):  # the same chunking, without ranking or filtering
        best += int((query[s : s + chunk] @ cand.T).argmax(1).sum() > -1)
    return best


def ranked(q: int, c: int, d: int, chunk: int) -> float:
    query, cand, true, fq, fc = data(q, c, d)
    return float(filtered_ranks(query, cand, true, fq, fc, normalize=False, chunk=chunk).mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--candidates", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--chunk", type=int, default=1024)
    a = ap.parse_args()
    args = (a.queries, a.candidates, a.dim, a.chunk)
    print(f"eval_bench: {a.queries:,} queries x {a.candidates:,} candidates, dim {a.dim}, chunks of {a.chunk}, {torch.get_num_threads()} threads")
    _, mem_data, _ = measure(inputs_only, a.queries, a.candidates, a.dim)
    t_bare, mem_bare, _ = measure(bare, *args)
    t_rank, mem_rank, mean_rank = measure(ranked, *args)
    row("baseline: bare matrix product (chunked)", f"{t_bare:.2f} s", f"peak {(mem_bare - mem_data) / 2**20:,.0f} MiB above the inputs")
    row("filtered realistic ranks", f"{t_rank:.2f} s", f"ratio {t_rank / t_bare:.2f}x vs baseline (goal <= 2x)")
    row("filtered realistic ranks, peak memory", f"{(mem_rank - mem_data) / 2**20:,.0f} MiB above the inputs",
        f"scores of one chunk: {a.chunk * a.candidates * 4 / 2**20:,.0f} MiB; mean rank {mean_rank:,.0f} (random data)")


if __name__ == "__main__":
    main()
