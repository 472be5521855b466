import torch
from PIL import Image

from kgclip.graph import KnowledgeGraph
from kgclip.sampling import EntityContent, TripletLoader
from tests.kgclip.sampling.conftest import random_store


def _transform(im):
    return torch.tensor([im.width, im.height, sum(im.getpixel((0, 0)))], dtype=torch.float32)


def _tokenizer(texts):
    return torch.tensor([[len(t), 1, 0] for t in texts])


def test_images_cropped_texts_tokenised(tmp_path):
    Image.new("RGB", (40, 30), (10, 20, 30)).save(tmp_path / "img0.png")
    from kgclip.store import StoreWriter

    with StoreWriter(tmp_path / "s", image_roots={"r": str(tmp_path)}) as w:
        a = w.add_entity("a", "image", image="img0.png", bbox=(5, 5, 10, 20), source="r")
        b = w.add_entity("b", "image", image="img0.png", source="r")
        c = w.add_entity("c", "text", text="hello", source="r")
        w.add_triplet(a, w.add_relation("r", "r"), c, source="r")
        w.add_triplet(b, 0, c, source="r")
    from kgclip.store import KnowledgeStore

    content = EntityContent(KnowledgeStore(tmp_path / "s"), _transform, _tokenizer)
    inputs, bad = content.load(torch.tensor([a, b, c]))
    assert not bad.any()
    assert inputs.images.tolist() == [[10, 20, 60], [40, 30, 60]]  # crop 10 x 20, full 40 x 30
    assert inputs.image_pos.tolist() == [0, 1] and inputs.text_pos.tolist() == [2]
    assert inputs.texts.tolist() == [[5, 1, 0]]


def test_decode_failure_is_counted_and_skipped(tmp_path):
    for i in range(3):
        Image.new("RGB", (8, 8)).save(tmp_path / f"img{i}.png")
    (tmp_path / "img1.png").write_bytes(b"not an image")
    store = random_store(tmp_path / "s", image_root=tmp_path)
    graph = KnowledgeGraph.from_store(store)
    content = EntityContent(store, _transform, _tokenizer)
    loader = TripletLoader(graph, 64, seed=0, content=content)
    total, dropped, skipped = 0, 0, set()
    bad_keys = {f"i{i}" for i in range(30) if i % 3 == 1}
    for b in loader:
        total += len(b)
        dropped += b.dropped
        skipped |= set(b.skipped)
        keys = store.entity_keys
        assert not {keys[int(e)] for e in torch.cat([b.head, b.tail])} & bad_keys
        assert b.inputs.images.shape[0] + b.inputs.texts.shape[0] <= b.entities.numel()
    assert skipped and skipped <= bad_keys
    assert set(content.failures) <= bad_keys
    assert total < graph.num_triplets and total + dropped == graph.num_triplets  # every triplet used or counted


def test_images_travel_as_uint8_and_equal_the_transform_per_image(tmp_path):
    import open_clip

    from tests.kgclip.sampling.test_image_cache import jpeg_store

    store, ids, t = jpeg_store(tmp_path)
    pre = open_clip.image_transform(32, is_train=False)
    content = EntityContent(store, pre, _tokenizer, image_cache="off")
    inputs, bad = content.load(torch.tensor([t, *ids[:5]]))
    assert not bad.any() and inputs.image_pos.tolist() == [1, 2, 3, 4, 5] and inputs.text_pos.tolist() == [0]
    assert inputs.pixels.dtype == torch.uint8 and inputs.pixels.shape == (5, 32, 32, 3)
    expected = []
    for eid in ids[:5]:  # by hand: open, RGB, crop to (int(x), int(y), round(x + w), round(y + h)), the whole transform
        row = store.entities.iloc[eid]
        with Image.open(tmp_path / "img" / row["image"]) as im:
            im = im.convert("RGB")
        if row["bbox"] is not None:
            x, y, w, h = row["bbox"]
            im = im.crop((int(x), int(y), round(x + w), round(y + h)))
        expected.append(pre(im))
    moved = inputs.to("cpu")
    assert moved.pixels is not None  # still uint8 after the move: converted where first read
    assert torch.equal(moved.images, torch.stack(expected))
    assert torch.equal(content.image(ids[1]), expected[1])
