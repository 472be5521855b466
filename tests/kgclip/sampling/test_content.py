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
