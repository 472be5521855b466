"""Evaluation benchmark: ranking speed, and the memory of link prediction as the store grows.

1. Filtered ranking of 10k queries against 100k candidates of dimension 512: time and peak memory
   of ``filtered_ranks`` (one filtered answer per query on average) and the ratio against the bare
   matrix product of the same sizes (the baseline; goal at most 2x).
2. Link prediction with a Knowledge-CLIP scorer (kgclip-tiny towers, fusion width 256, entities of
   32 tokens) on stores of growing size with the same test triplets: peak memory (growth of the
   process's RSS during the evaluation) against the candidate matrix, entities x fusion width x
   4 bytes (the baseline: what ranking needs to keep). The goal: the memory that each further
   entity adds is a small multiple of its candidate vector, not of its tokens
   (32 x 256 x 4 bytes = 32 KiB per entity, 32x its vector).

    python benchmarks/eval_bench.py [--queries 10000] [--candidates 100000] [--dim 512] [--entities 1000,4000]
"""

import argparse
import ctypes
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _util import measure, row

from kgclip.evaluation import KnowledgeClipScorer, link_prediction
from kgclip.evaluation.ranking import filtered_ranks
from kgclip.model import KnowledgeCLIP, ModelConfig
from kgclip.model.clip import create_clip
from kgclip.progress import set_enabled
from kgclip.store import KnowledgeStore, StoreWriter

EVAL_MODEL = ModelConfig(fusion_width=256, fusion_layers=1, fusion_heads=4, drop_path=0.0, max_text_tokens=32)
WORDS = ("red", "blue", "green", "circle", "square", "left", "right", "above", "small", "large", "dog", "cat")


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


def eval_store(folder: Path, entities: int, queries: int = 200) -> KnowledgeStore:
    """Text entities of a few words; two relations; ``queries`` test and as many train triplets among
    the first 2 x ``queries`` entities (the same for every size: only the candidates grow)."""
    g = torch.Generator().manual_seed(0)
    with StoreWriter(folder) as w:
        for i in range(entities):
            words = torch.randint(0, len(WORDS), (6,), generator=g).tolist()
            w.add_entity(f"e{i}", "text", text=" ".join(WORDS[k] for k in words) + f" {i}", source="bench")
        w.add_relation("r0", "near")
        w.add_relation("r1", "part of")
        pairs = torch.randint(0, 2 * queries, (2 * queries, 3), generator=g).tolist()
        for k, (h, r, t) in enumerate(pairs):
            w.add_triplet(h, r % 2, t, source="bench", split="test" if k < queries else "train")
    return KnowledgeStore(folder)


def evaluated(model: KnowledgeCLIP, store: KnowledgeStore) -> float:
    torch.set_num_threads(1)
    # Every allocation of 64 KiB or more gets its own mapping, returned to the system when freed, so
    # that the peak RSS follows the peak of live tensors (glibc's default raises this threshold
    # after the first large free, and freed tensors then stay resident).
    ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 16)  # M_MMAP_THRESHOLD
    return link_prediction(KnowledgeClipScorer(model, store), store)["overall"]["mrr"]


def link_memory(sizes: list[int]) -> None:
    set_enabled(False)
    torch.manual_seed(0)
    model = KnowledgeCLIP(EVAL_MODEL, num_relations=2, clip=create_clip("kgclip-tiny")).eval()
    width = EVAL_MODEL.fusion_width
    print(f"link prediction, Knowledge-CLIP scorer: fusion width {width}, {model.entity_tokens} tokens per entity, 200 test triplets, 2 relations;\n"
          f"  the peak holds a fixed part (one chunk of {KnowledgeClipScorer.chunk} entities through towers and fusion) and a part per entity")
    peaks = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            store = eval_store(Path(tmp) / f"s{n}", n)
            _ = store.entities, store.triplets  # loaded before the measurement (not the evaluation's memory)
            t, peak, _ = measure(evaluated, model, store)
            base = n * width * 4
            peaks.append(peak)
            row(f"{n:,} entities", f"{t:.1f} s", f"peak {peak / 2**20:,.1f} MiB = {peak / base:.1f}x the candidate matrix "
                f"({base / 2**20:,.1f} MiB = entities x {width} x 4 B)")
    for n0, n1, p0, p1 in zip(sizes, sizes[1:], peaks, peaks[1:], strict=False):
        per = (p1 - p0) / (n1 - n0)
        row(f"memory per further entity ({n0:,} -> {n1:,})", f"{per / 1024:,.2f} KiB",
            f"ratio {per / (width * 4):.1f}x its candidate vector ({width * 4 / 1024:.0f} KiB); its tokens would be "
            f"{model.entity_tokens * width * 4 / 1024:.0f} KiB ({model.entity_tokens}x)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--candidates", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--entities", default="1000,4000", help="store sizes of the link-prediction memory figure (comma-separated)")
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
    link_memory([int(x) for x in a.entities.split(",")])


if __name__ == "__main__":
    main()
