"""Content benchmark: how fast the training loader turns image entities into model inputs, against
how fast the model consumes them.

Generates real-size JPEGs (500x375, as Visual Genome) with region boxes, writes a store over them,
samples training batches (the paper's fan-out) and loads the content of each batch's image
entities through the loader's content path (``EntityContent``): first by decoding, cropping and
resizing each JPEG (the baseline), then from the pre-resized image cache
(``kgclip prepare cache-images``), checking that both give the same tensors. Rates are images per
second of CPU time of one thread (per core), and the ratio of the cached path to the JPEG path is
measured in the same run. Next to them: the rate at which the image tower's forward + backward
consumes the same images (CPU here; bf16 on a GPU when one is present), and how many cores each
path needs to keep it fed.

    python benchmarks/content_bench.py [--images 48] [--regions 8] [--batch 32] [--fanout 10] [--batches 3]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).parent))
from _util import row

from kgclip.graph import KnowledgeGraph
from kgclip.model.clip import create_clip
from kgclip.sampling import EntityContent, EntityInputs, TripletLoader
from kgclip.sampling.image_cache import human_bytes, plan_image_cache, write_image_cache
from kgclip.sampling.images import split_transform
from kgclip.store import KnowledgeStore, StoreWriter
from kgclip.typing import IMAGE

W, H = 500, 375


def make_photo(path: Path, rng: np.random.Generator) -> None:
    """A 500x375 JPEG with photo-like statistics: smooth shading, shapes, sensor noise."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    base = rng.uniform(40, 200, 3) + np.stack([x / W * rng.uniform(-60, 60), y / H * rng.uniform(-60, 60), (x + y) / (W + H) * 40], -1)
    im = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    for _ in range(12):
        x0, y0 = rng.integers(0, W - 40), rng.integers(0, H - 40)
        box = (int(x0), int(y0), int(x0 + rng.integers(20, 200)), int(y0 + rng.integers(20, 150)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)(box, fill=colour)
    pix = np.asarray(im, dtype=np.float32) + rng.normal(0, 6, (H, W, 3))
    Image.fromarray(np.clip(pix, 0, 255).astype(np.uint8)).save(path, quality=90)


def make_store(folder: Path, images: int, regions: int, seed: int = 0) -> KnowledgeStore:
    """Visual Genome-like store: region entities with boxes, (Img, Rel, Img) and (Img, is a, Text) triplets."""
    rng = np.random.default_rng(seed)
    root = folder / "images"
    root.mkdir(parents=True)
    names = [f"object {i}" for i in range(50)]
    with StoreWriter(folder / "store", image_roots={"vg": str(root)}) as w:
        rels = [w.add_relation(f"rel{i}", f"relation {i}") for i in range(10)]
        is_a = w.add_relation("is a", "is a")
        name_ids = [w.add_entity(f"name:{n}", "text", text=n, source="vg") for n in names]
        for i in range(images):
            make_photo(root / f"{i}.jpg", rng)
            ids = []
            for j in range(regions):
                bw, bh = rng.uniform(0.1, 0.8) * W, rng.uniform(0.1, 0.8) * H
                bx, by = rng.uniform(0, W - bw), rng.uniform(0, H - bh)
                ids.append(w.add_entity(f"vg:{i}/{j}", "image", image=f"{i}.jpg", bbox=(bx, by, bw, bh), image_size=(W, H), source="vg"))
                w.add_triplet(ids[-1], is_a, name_ids[int(rng.integers(len(names)))], source="vg")
            for _ in range(regions * 2):
                a, b = rng.choice(len(ids), 2, replace=False)
                w.add_triplet(ids[a], rels[int(rng.integers(len(rels)))], ids[b], source="vg")
    return KnowledgeStore(folder / "store")


def time_loads(content: EntityContent, batches: list[torch.Tensor], repeats: int = 1) -> tuple[float, float, list[EntityInputs]]:
    """(CPU seconds, wall seconds, inputs) per pass of loading every batch's image entities on one thread."""
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(repeats):
        out = []
        for ids in batches:
            inputs, bad = content.load(ids)
            assert not bad.any()
            out.append(inputs)
    return (time.process_time() - c0) / repeats, (time.perf_counter() - w0) / repeats, out


def time_convert(inputs: list[EntityInputs]) -> float:
    """CPU seconds of turning uint8 pixels into normalised float images (ToTensor + Normalize), one thread."""
    c0 = time.process_time()
    for x in inputs:
        x.images  # noqa: B018 - the conversion happens on first read
    return time.process_time() - c0


def model_rate(clip, images: torch.Tensor, device: str, repeats: int) -> float:
    """Images per second through the image tower's forward + backward (bf16 autocast on a GPU)."""
    clip = clip.to(device).train()
    x = images.to(device)

    def step() -> None:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = clip.encode_image(x).float().pow(2).mean()
        loss.backward()

    step()
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return repeats * x.shape[0] / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=48, help="500x375 JPEGs to generate")
    ap.add_argument("--regions", type=int, default=8, help="region entities per image")
    ap.add_argument("--batch", type=int, default=32, help="triplets per batch")
    ap.add_argument("--fanout", type=int, default=10, help="G2E fan-out (paper: 10)")
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--model-images", type=int, default=8, help="images per forward+backward on CPU")
    a = ap.parse_args()
    threads = torch.get_num_threads()
    tmp = Path(tempfile.mkdtemp())
    t0 = time.perf_counter()
    store = make_store(tmp, a.images, a.regions)
    jpeg_kib = np.mean([p.stat().st_size for p in (tmp / "images").glob("*.jpg")]) / 1024
    bundle = create_clip(a.model)
    pre = bundle.preprocess_val
    graph = KnowledgeGraph.from_store(store, ("train",))
    loader = TripletLoader(graph, a.batch, fanouts=[a.fanout], seed=0)
    batches = []
    for i, b in enumerate(loader):
        if i == a.batches:
            break
        batches.append(b.entities[b.modality == IMAGE])
    n_img = sum(int(b.numel()) for b in batches)
    print(f"content_bench: {a.images} JPEGs of {W}x{H} (mean {jpeg_kib:.0f} KiB), {a.regions} regions each; {a.batches} batches of "
          f"{a.batch} triplets with fan-out [{a.fanout}]: {n_img} image entities to load; {a.model} preprocessing "
          f"({pre.transforms[0]!r}); made in {time.perf_counter() - t0:.1f} s")

    torch.set_num_threads(1)  # per-core rates: one thread, CPU time of this process
    before = EntityContent(store, lambda im: pre(im), bundle.tokenizer, cache_size=0, image_cache="off")  # whole transform per image
    b_cpu, b_wall, b_out = time_loads(before, batches)
    b_rate = n_img / b_cpu
    row("JPEG path, float tensors in the worker (before)", f"{b_rate:,.0f} img/s/core", f"{n_img / b_wall:,.0f} img/s wall, 1 thread")
    jpeg = EntityContent(store, pre, bundle.tokenizer, cache_size=0, image_cache="off")
    j_cpu, j_wall, j_out = time_loads(jpeg, batches)
    j_rate = n_img / j_cpu
    row("JPEG path (baseline): decode + crop + resize -> uint8", f"{j_rate:,.0f} img/s/core", f"{n_img / j_wall:,.0f} img/s wall")

    stages = split_transform(pre)
    plan = plan_image_cache(store, stages)
    print(f"  writing the image cache: {plan.rows:,} crops at {plan.size[1]}x{plan.size[0]}, {human_bytes(plan.bytes)}")
    c0 = time.process_time()
    write_image_cache(store, stages, plan, workers=1)
    row("  cache write (each JPEG decoded once for its regions)", f"{plan.rows / (time.process_time() - c0):,.0f} img/s/core")

    cached = EntityContent(store, pre, bundle.tokenizer, cache_size=0)
    assert cached.cache is not None, "the cache written for the model's transform is not used"
    time_loads(cached, batches[:1])  # map the shards
    c_cpu, _, c_out = time_loads(cached, batches, repeats=20)  # a pass takes milliseconds: time many
    c_rate = n_img / c_cpu
    row("cached path: memory-mapped uint8 crops", f"{c_rate:,.0f} img/s/core",
        f"{c_rate / j_rate:.1f}x the JPEG path (goal >= 10x), {c_rate / b_rate:.1f}x before")
    conv = time_convert(c_out)
    time_convert(j_out)
    time_convert(b_out)
    same = all(torch.equal(x.images, y.images) and torch.equal(x.images, z.images) for x, y, z in zip(b_out, j_out, c_out, strict=True))
    row("ToTensor + Normalize of uint8 crops, on the CPU", f"{n_img / conv:,.0f} img/s/core",
        "where the batch is read: on the device when training on a GPU")
    cpu_only = n_img / (c_cpu + conv)
    row("cached path + conversion on the CPU (a CPU-only run)", f"{cpu_only:,.0f} img/s/core", f"{cpu_only / b_rate:.1f}x before")
    print(f"  the three paths give identical model inputs: {same}")
    torch.set_num_threads(threads)

    sample = torch.cat([x.images for x in c_out])[: a.model_images]
    m_cpu = model_rate(bundle.model, sample, "cpu", 2)
    row(f"{a.model} image tower forward+backward, CPU", f"{m_cpu:,.1f} img/s", f"{threads} threads, {sample.shape[0]} images")
    rates = [("CPU", m_cpu)]
    if torch.cuda.is_available():
        gpu_imgs = torch.cat([x.images for x in c_out]).repeat(-(-256 // n_img), 1, 1, 1)[:256]
        m_gpu = model_rate(bundle.model, gpu_imgs, "cuda", 5)
        row(f"{a.model} image tower forward+backward, GPU bf16", f"{m_gpu:,.0f} img/s", f"{torch.cuda.get_device_name()}, 256 images")
        rates.append(("GPU", m_gpu))
    else:
        print("  (no GPU here: the GPU consumption rate is printed where CUDA is present)")
    for where, r in rates:
        row(f"cores to feed the {where} model: JPEG / cached", f"{r / j_rate:.3g} / {r / c_rate:.3g}")


if __name__ == "__main__":
    main()
