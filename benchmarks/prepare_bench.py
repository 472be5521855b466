"""Converter benchmark.

ConceptNet: a generated file in the real assertion format; lines per second of
``ConceptNet.convert`` (the whole store write) and the ratio against pyarrow's CSV reader alone
parsing the same file (goal at least 0.5), in wall-clock seconds and in CPU seconds (steadier on
a shared machine; the reader uses every core); the baseline is the best of ``--repeat`` runs, its
file read once before (in the page cache, as the conversion finds it); peak memory at 0.5M and
at 2M lines (goal: flat).
Visual Genome: generated relationships.json files of 5k and 20k images; peak memory as a
fraction of the file size, and the marginal memory per byte of file (goal under 0.25): the
larger of the growths of the peak and of the peak before the triplets are finished (a larger
file's peak is the larger of the two phases: at this size the fixed cost of finishing hides the
growth of reading). The writer finishes triplets in partitions of ``--vg-partition-rows`` (32k:
the files' 60k and 240k triplets are finished out of core, as a full Visual Genome is at the
default of 1M).

    python benchmarks/prepare_bench.py [--lines 2000000] [--vg-images 20000] [--repeat 3]
"""

import argparse
import json
import resource
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).parent))
from _util import _rss_kib, measure, measure_cpu, row

from data_prep.common import Conversion
from data_prep.conceptnet import COLUMNS, ConceptNet
from data_prep.visual_genome import VisualGenome
from kgclip.store import StoreWriter

RELS = ["/r/IsA", "/r/PartOf", "/r/UsedFor", "/r/RelatedTo", "/r/HasProperty", "/r/AtLocation", "/r/Synonym"]


def gen_conceptnet(path: Path, n: int, n_terms: int = 300_000) -> None:
    rng = np.random.default_rng(0)
    langs = np.array(["en"] * 8 + ["de", "fr"])
    with open(path, "w", encoding="utf-8") as f:
        for s in range(0, n, 100_000):
            m = min(100_000, n - s)
            a, b = rng.integers(0, n_terms, m), rng.integers(0, n_terms, m)
            r, la, lb = rng.integers(0, len(RELS), m), rng.choice(langs, m), rng.choice(langs, m)
            w = rng.random(m) * 3
            lines = []
            for i in range(m):
                rel, st, en = RELS[r[i]], f"/c/{la[i]}/term_{a[i]}/n", f"/c/{lb[i]}/term_{b[i]}"
                info = f'{{"dataset": "/d/conceptnet/4/en", "license": "cc:by/4.0", "sources": [{{"contributor": "/s/contributor/omcs/bench"}}], "weight": {w[i]:.3f}}}'
                lines.append(f"/a/[{rel}/,{st}/,{en}/]\t{rel}\t{st}\t{en}\t{info}\n")
            f.write("".join(lines))


def pyarrow_only(path: str) -> int:
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=COLUMNS, block_size=1 << 24),
        parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False, escape_char=False),
        convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in COLUMNS}),
    )
    return sum(len(b) for b in reader)


def convert_cn(path: str, out: str, limit: int | None) -> int:
    with StoreWriter(out, overwrite=True, shard_rows=500_000) as w:
        conv = Conversion("conceptnet", w, limit=limit)
        ConceptNet(assertions=path).convert(w, conv)
    return conv.read


def gen_vg(root: Path, n_images: int) -> Path:
    rng = np.random.default_rng(0)
    data, oid = [], 0
    with open(root / "relationships.json", "w") as f:
        f.write("[")
        for i in range(1, n_images + 1):
            data.append({"image_id": i, "width": 800, "height": 600, "url": f"https://x/VG_100K/{i}.jpg", "coco_id": None, "flickr_id": None})
            objs = []
            for _ in range(12):
                oid += 1
                x, y = int(rng.integers(0, 700)), int(rng.integers(0, 500))
                objs.append({"object_id": oid, "x": x, "y": y, "w": 50, "h": 40, "names": ["thing"], "synsets": ["thing.n.01"]})
            rels = [{"relationship_id": oid * 100 + k, "predicate": ["on", "has", "near", "wearing"][k % 4], "synsets": [],
                     "subject": objs[k], "object": objs[(k + 1) % 12]} for k in range(20 if len(objs) > 12 else 12)]
            f.write(("," if i > 1 else "") + json.dumps({"image_id": i, "relationships": rels}))
        f.write("]")
    (root / "image_data.json").write_text(json.dumps(data))
    return root / "relationships.json"


def convert_vg(root: str, out: str, partition_rows: int) -> tuple[int, int]:
    """Kept relationships, and the peak memory growth (bytes) before the triplets are finished."""
    r = Path(root)
    start = _rss_kib()
    with StoreWriter(out, overwrite=True, partition_rows=partition_rows) as w:
        conv = Conversion("visual_genome", w)
        VisualGenome(image_data=str(r / "image_data.json"), relationships=str(r / "relationships.json"), images=str(r),
                     check_images=False).convert(w, conv)
        reading = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start) * 1024
    return conv.kept, reading


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=2_000_000)
    ap.add_argument("--vg-images", type=int, default=20_000)
    ap.add_argument("--vg-partition-rows", type=int, default=1 << 15)
    ap.add_argument("--repeat", type=int, default=3, help="runs of the baseline (the best is kept)")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    try:
        cn = tmp / "assertions.csv"
        gen_conceptnet(cn, a.lines)
        size = cn.stat().st_size
        print(f"prepare_bench: ConceptNet, {a.lines:,} lines ({size / 2**20:,.0f} MiB)")
        cn.read_bytes()  # into the page cache: the baseline reads it first, the conversion after
        base = [measure_cpu(pyarrow_only, str(cn)) for _ in range(max(1, a.repeat))]
        t_base, c_base, n_base = min(b[0] for b in base), min(b[3] for b in base), base[0][2]
        t_conv, mem_full, n_read, c_conv = measure_cpu(convert_cn, str(cn), str(tmp / "cn_store"), None)
        _, mem_quarter, _ = measure(convert_cn, str(cn), str(tmp / "cn_store_q"), a.lines // 4)
        assert n_base == n_read == a.lines
        row("baseline: pyarrow CSV reader alone", f"{a.lines / t_base:,.0f} lines/s", f"{t_base:.1f} s, {c_base:.1f} CPU s (best of {len(base)})")
        row("convert_conceptnet", f"{a.lines / t_conv:,.0f} lines/s",
            f"ratio {t_base / t_conv:.2f} of baseline speed (goal >= 0.5); {c_conv:.1f} CPU s, ratio {c_base / c_conv:.2f}")
        row(f"peak memory at {a.lines // 4:,} lines", f"{mem_quarter / 2**20:,.0f} MiB")
        row(f"peak memory at {a.lines:,} lines", f"{mem_full / 2**20:,.0f} MiB", f"ratio {mem_full / max(mem_quarter, 1):.2f}x for 4x the lines (goal: flat)")

        sizes, mems, reads = [], [], []
        for n in (a.vg_images // 4, a.vg_images):
            vg = tmp / f"vg{n}"
            vg.mkdir()
            rel = gen_vg(vg, n)
            t_vg, mem_vg, (kept, read_vg) = measure(convert_vg, str(vg), str(tmp / f"vg_store{n}"), a.vg_partition_rows)
            sizes.append(rel.stat().st_size)
            mems.append(mem_vg)
            reads.append(read_vg)
        print(f"prepare_bench: Visual Genome, relationships.json of {a.vg_images // 4:,} and {a.vg_images:,} images "
              f"(triplets finished in partitions of {a.vg_partition_rows:,})")
        row("convert_visual_genome", f"{kept / t_vg:,.0f} relationships/s", f"{t_vg:.1f} s for {a.vg_images:,} images")
        row(f"peak memory, {a.vg_images:,} images ({sizes[1] / 2**20:,.0f} MiB file)", f"{mems[1] / 2**20:,.0f} MiB",
            f"fraction {mems[1] / sizes[1]:.2f} of the file size (goal < 0.25)")
        d_size = sizes[1] - sizes[0]
        row("  of which reading (before finishing the triplets)", f"{reads[1] / 2**20:,.0f} MiB",
            f"marginal {(reads[1] - reads[0]) / d_size:.2f} per byte of file")
        marginal = max(mems[1] - mems[0], reads[1] - reads[0]) / d_size
        row("marginal memory per byte of file (4x the images)", f"{marginal:.2f}",
            "the fraction a much larger file tends to; the rest is fixed start-up cost")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
