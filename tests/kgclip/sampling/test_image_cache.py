import json

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from experiments.cli import main as cli
from kgclip.errors import SourceError
from kgclip.sampling import EntityContent
from kgclip.sampling.image_cache import CACHE_DIR, INDEX, META, open_image_cache, plan_image_cache, write_image_cache
from kgclip.sampling.images import split_transform
from kgclip.store import KnowledgeStore, StoreWriter

SIZE = 32


def _tokenizer(texts):
    return torch.tensor([[len(t), 1, 0] for t in texts])


def photo(path, w, h, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    pix = np.stack([x * 255 // w, y * 255 // h, (x + y) % 256], -1) + rng.integers(0, 40, (h, w, 3))
    Image.fromarray(np.clip(pix, 0, 255).astype(np.uint8)).save(path, quality=90)


def jpeg_store(tmp_path, name="s", broken=False):
    """Two JPEGs with region boxes (fractional ones too), a whole image, a text, and a broken file."""
    root = tmp_path / "img"
    root.mkdir(exist_ok=True)
    photo(root / "a.jpg", 50, 40, 0)
    photo(root / "b.jpg", 61, 45, 1)
    (root / "bad.jpg").write_bytes(b"not a jpeg" if broken else (root / "a.jpg").read_bytes())
    boxes = [("a.jpg", (0, 0, 20, 10)), ("a.jpg", (3.4, 5.6, 30.2, 20.7)), ("a.jpg", (10, 2, 7, 35)), ("b.jpg", None),
             ("b.jpg", (40, 30, 21, 15)), ("bad.jpg", (1, 1, 10, 10))]
    with StoreWriter(tmp_path / name, image_roots={"r": str(root)}, overwrite=True) as w:
        ids = [w.add_entity(f"i{k}", "image", image=img, bbox=box, source="r") for k, (img, box) in enumerate(boxes)]
        t = w.add_entity("t", "text", text="a thing", source="r")
        rel = w.add_relation("r", "r")
        for i in ids:
            w.add_triplet(i, rel, t, source="r")
    return KnowledgeStore(tmp_path / name), ids, t


def _transform(size=SIZE, **kw):
    return open_clip.image_transform(size, is_train=False, **kw)


@pytest.mark.parametrize("workers", [1, 2])
def test_cached_tensors_equal_the_jpeg_path(tmp_path, workers):
    store, ids, t = jpeg_store(tmp_path, broken=True)
    stages = split_transform(_transform())
    summary = write_image_cache(store, stages, workers=workers, max_bad_fraction=0.5)
    assert summary.written == 5 and list(summary.failures) == ["i5"]
    jpeg = EntityContent(store, _transform(), _tokenizer, cache_size=0, image_cache="off")
    fast = EntityContent(store, _transform(), _tokenizer, cache_size=0)
    assert jpeg.cache is None and fast.cache is not None
    order = torch.tensor([ids[3], t, ids[0], ids[5], ids[1], ids[4], ids[2], ids[0]])
    (a, bad_a), (b, bad_b) = jpeg.load(order), fast.load(order)
    assert a.images.shape == (6, 3, SIZE, SIZE) and a.images.dtype == torch.float32
    assert torch.equal(a.images, b.images)  # same bits, after the same normalisation
    assert torch.equal(a.image_pos, b.image_pos) and a.image_pos.tolist() == [0, 2, 4, 5, 6, 7]
    assert torch.equal(bad_a, bad_b) and bad_b.nonzero().flatten().tolist() == [3]  # the broken file, still reported
    assert fast.failures == jpeg.failures == {"i5": 1}
    # all from the cache (no decode at all): same values again
    (c, _), (d, _) = jpeg.load(torch.tensor(ids[:5])), fast.load(torch.tensor(ids[:5]))
    assert torch.equal(c.images, d.images)
    assert fast.cache.rows(ids).tolist() == [0, 1, 2, 3, 4, -1]


def test_model_transform_uses_the_cache_the_command_writes(tmp_path, capsys):
    from kgclip.model.clip import create_clip

    store, ids, _ = jpeg_store(tmp_path)
    assert cli(["prepare", "cache-images", str(store.path), "--size", "64", "--workers", "1", "--dry-run"]) == 0
    n_bytes = 6 * 64 * 64 * 3 + 8 * 7
    assert f"6 image entities at 64x64 px, {n_bytes / 1024:,.1f} KiB in 1 shard(s)" in capsys.readouterr().out
    assert not (store.path / CACHE_DIR / "64x64").exists()  # dry run: nothing written
    assert cli(["prepare", "cache-images", str(store.path), "--size", "64", "--workers", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("image cache") and out[1].startswith("wrote") and "6 crops" in out[1]
    pre = create_clip("kgclip-tiny").preprocess_val
    fast = EntityContent(store, pre, _tokenizer)
    assert fast.cache is not None
    slow = EntityContent(store, pre, _tokenizer, image_cache="off")
    assert torch.equal(fast.load(torch.tensor(ids))[0].images, slow.load(torch.tensor(ids))[0].images)
    assert [p.name for p in (store.path / CACHE_DIR).iterdir()] == ["64x64"]  # no temporary left


def test_cache_not_used_when_store_or_transform_changed(tmp_path):
    store, _, _ = jpeg_store(tmp_path)
    write_image_cache(store, split_transform(_transform()))
    assert open_image_cache(store, split_transform(_transform()))[0] is not None
    cache, why = open_image_cache(store, split_transform(_transform(interpolation="bilinear")))
    assert cache is None and "image steps" in why
    assert EntityContent(store, _transform(interpolation="bilinear"), _tokenizer).cache is None
    assert open_image_cache(store, split_transform(lambda im: im))[0] is None
    folder = store.path / CACHE_DIR / f"{SIZE}x{SIZE}"
    # the store is rewritten (another manifest): the old cache is stale
    with StoreWriter(tmp_path / "s2", image_roots={"r": str(tmp_path / "img")}) as w:
        a = w.add_entity("x", "image", image="a.jpg", source="r")
        w.add_triplet(a, w.add_relation("r", "r"), a, source="r")
    import shutil

    shutil.copy(tmp_path / "s2" / "manifest.json", store.path / "manifest.json")
    cache, why = open_image_cache(KnowledgeStore(store.path), split_transform(_transform()))
    assert cache is None and "fingerprint" in why
    # a truncated shard is refused, not read
    store, _, _ = jpeg_store(tmp_path, name="s3")
    write_image_cache(store, split_transform(_transform()))
    folder = store.path / CACHE_DIR / f"{SIZE}x{SIZE}"
    np.save(folder / "shard-00000.npy", np.zeros((2, SIZE, SIZE, 3), np.uint8))
    cache, why = open_image_cache(store, split_transform(_transform()))
    assert cache is None and "rows" in why


def test_failed_write_leaves_the_old_cache_and_no_temporary(tmp_path):
    store, _, _ = jpeg_store(tmp_path)
    stages = split_transform(_transform())
    write_image_cache(store, stages)
    folder = store.path / CACHE_DIR / f"{SIZE}x{SIZE}"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    (tmp_path / "img" / "bad.jpg").write_bytes(b"broken")
    with pytest.raises(SourceError, match=r"1 of 6 images could not be loaded \(first: i5: cannot load image"):
        write_image_cache(store, stages, max_bad_fraction=0.1)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in (store.path / CACHE_DIR).iterdir()] == [folder.name]
    meta = json.loads((folder / META).read_text())
    assert meta["rows"] == 6 and meta["failed"] == 0 and np.load(folder / INDEX).tolist() == [0, 1, 2, 3, 4, 5, -1]


def test_plan_counts_image_entities_and_shards(tmp_path):
    store, _, _ = jpeg_store(tmp_path)
    stages = split_transform(_transform())
    plan = plan_image_cache(store, stages, shard_bytes=2 * SIZE * SIZE * 3 + 5)
    assert plan.rows == 6 and plan.rows_per_shard == 2 and plan.shards == 3 and plan.bytes == 6 * SIZE * SIZE * 3
    write_image_cache(store, stages, plan)
    fast = EntityContent(store, _transform(), _tokenizer)
    slow = EntityContent(store, _transform(), _tokenizer, image_cache="off")
    ids = torch.tensor([5, 0, 3, 1, 4, 2])  # rows spread over the three shards, out of order
    assert torch.equal(fast.load(ids)[0].images, slow.load(ids)[0].images)


def test_split_transform_batched_equals_per_image():
    stages = split_transform(_transform())
    assert stages.mean is not None and stages.size == (SIZE, SIZE)
    assert stages.spec.startswith("Resize(size=32, interpolation=bicubic")
    pixels = np.random.default_rng(0).integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
    assert torch.equal(stages.to_tensors(pixels), torch.stack([stages.tensor(p) for p in pixels]))
    assert split_transform(lambda im: im) is None
    assert split_transform(T.Compose([T.Resize(16), T.ToTensor()])) is None  # no fixed size


def test_loader_workers_read_the_cache(tmp_path):
    import shutil

    from kgclip.graph import KnowledgeGraph
    from kgclip.sampling import TripletLoader

    store, _, _ = jpeg_store(tmp_path)
    graph = KnowledgeGraph.from_store(store)
    off = list(TripletLoader(graph, 2, seed=0, content=EntityContent(store, _transform(), _tokenizer, image_cache="off")))
    write_image_cache(store, split_transform(_transform()))
    shutil.rmtree(tmp_path / "img")  # from now on only the cache has the pixels
    content = EntityContent(store, _transform(), _tokenizer)
    auto = list(TripletLoader(graph, 2, seed=0, content=content, num_workers=1))
    assert len(off) == len(auto) > 1 and not content.failures
    for a, b in zip(off, auto, strict=True):
        assert b.inputs.pixels.dtype == torch.uint8 and not b.skipped  # crossed the process boundary as uint8
        assert torch.equal(a.entities, b.entities) and torch.equal(a.inputs.images, b.inputs.images)
