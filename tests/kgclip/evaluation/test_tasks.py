"""Tower tasks (retrieval, zero-shot, binding) against answers computed by hand, with a scorer whose vectors the test sets."""

import json

import pytest
from PIL import Image

from kgclip.evaluation import binding, retrieval, zero_shot
from kgclip.store import KnowledgeStore, StoreWriter
from tests.kgclip.evaluation.fakes import FakeScorer


def test_retrieval_several_captions_per_image(tmp_path):
    with StoreWriter(tmp_path / "p") as w:
        a = w.add_entity("A", "image", image="a.jpg", source="x")
        b = w.add_entity("B", "image", image="b.jpg", source="x")
        c = [w.add_entity(f"c{i}", "text", text=f"c{i}", source="x") for i in range(3)]
        of = w.add_relation("image of", "image of")
        for img, cap in ((a, c[0]), (a, c[1]), (b, c[2])):
            w.add_triplet(img, of, cap, source="x", split="test")
    s = KnowledgeStore(tmp_path / "p")
    emb = {a: (1, 0), b: (0, 1), c[0]: (0, 1), c[1]: (1, 0.1), c[2]: (0.1, 1)}
    m = retrieval(FakeScorer({}, {}, emb=emb), s)
    # image A: top text c1 (its own) -> found; image B: top text c0 (A's) -> not at 1, found at 5
    assert m["txt_r1"] == 0.5 and m["txt_r5"] == 1.0
    # captions: c0 -> B (wrong), c1 -> A (right), c2 -> B (right)
    assert m["img_r1"] == pytest.approx(2 / 3) and m["img_r5"] == 1.0
    assert m["r_mean"] == pytest.approx(((0.5 + 1 + 1) / 3 + (2 / 3 + 1 + 1) / 3) / 2)


def test_retrieval_a_caption_shared_by_two_images(tmp_path):
    # a text entity linked to two images (prepare merge --link text) is a true caption of both
    with StoreWriter(tmp_path / "p") as w:
        a, b, c = (w.add_entity(k, "image", image=f"{k}.jpg", source="x") for k in "ABC")
        shared, own_b, own_c = (w.add_entity(k, "text", text=k, source="x") for k in ("s", "tb", "tc"))
        of = w.add_relation("image of", "image of")
        for img, cap in ((a, shared), (b, shared), (b, own_b), (c, own_c)):
            w.add_triplet(img, of, cap, source="x", split="test")
    s = KnowledgeStore(tmp_path / "p")
    emb = {a: (1, 0, 0), b: (0, 1, 0), c: (0, 0, 1), shared: (0.1, 1, 0), own_b: (1, 0.2, 0), own_c: (0, 0, 1)}
    m = retrieval(FakeScorer({}, {}, emb=emb), s)
    # texts ranked per image: A -> tb (wrong), s; B -> s (its own); C -> tc (its own)
    assert m["txt_r1"] == pytest.approx(2 / 3) and m["txt_r5"] == 1.0
    # images ranked per text: s -> B (one of its two images), tb -> A (wrong), tc -> C
    assert m["img_r1"] == pytest.approx(2 / 3) and m["img_r5"] == 1.0


def test_zero_shot_and_binding(tmp_path):
    for name, colour in (("r.png", (255, 0, 0)), ("b.png", (0, 0, 255))):
        Image.new("RGB", (4, 4), colour).save(tmp_path / name)
    zs = {"tasks": {"colour": {"classes": ["red", "blue"], "templates": ["{} thing", "a {}"]}},
          "items": [{"image": "r.png", "labels": {"colour": "red"}}, {"image": "b.png", "labels": {"colour": "red"}}]}
    (tmp_path / "zero_shot.json").write_text(json.dumps(zs))
    m = zero_shot(FakeScorer(), tmp_path / "zero_shot.json")
    assert m["zs_colour_top1"] == 0.5 and m["zs_colour_top5"] == 1.0 and m["zs_colour_mean_recall"] == 0.5
    items = {"items": [{"image": "r.png", "caption": "red circle", "relation_swap": "blue circle", "attribute_swap": "left red"}]}
    (tmp_path / "binding.json").write_text(json.dumps(items))
    m = binding(FakeScorer(), tmp_path / "binding.json", pair_relation=0)
    # towers: "red circle" matches the red image better than "blue circle"; "left red" (first two words) ties "red circle"
    assert m["aro_relation"] == 1.0 and m["aro_attribute"] == 0.5
    # the triplet rule with a zero relation vector is the towers' rule
    assert m["aro_relation_kg"] == 1.0 and m["aro_attribute_kg"] == 0.5
