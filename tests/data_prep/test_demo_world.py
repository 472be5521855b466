import hashlib
import json

from data_prep.demo_world import HELD_OUT, convert_demo_world, write_demo_world
from kgclip.store import open_valid
from kgclip.store.connectivity import connectivity


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_deterministic_per_seed(tmp_path):
    a = write_demo_world(tmp_path / "a", scenes=30, seed=3)
    b = write_demo_world(tmp_path / "b", scenes=30, seed=3)
    c = write_demo_world(tmp_path / "c", scenes=30, seed=4)
    assert _digest(a.root) == _digest(b.root) != _digest(c.root)


def test_world_passes_the_converters_and_validation(tmp_path):
    files = write_demo_world(tmp_path / "w", scenes=40, seed=0)
    stores = convert_demo_world(files)
    s = open_valid(stores["store"])
    sources = set(s.manifest["sources"])
    assert {"visual_genome", "conceptnet", "visualsem", "coco"} <= sources
    mod = s.entities["modality"].to_numpy()
    pairs = {(mod[h], mod[t]) for h, t in zip(s.triplets.head_id, s.triplets.tail_id, strict=True)}
    assert pairs == {("image", "image"), ("image", "text"), ("text", "image"), ("text", "text")}
    assert s.manifest["sources"]["conceptnet"]["skipped"] == {"language not selected": 1}
    p = open_valid(stores["pairs_store"])
    assert set(p.relations["text"]) == {"image of", "caption of"}
    # every image entity's file is there
    for eid in s.entities.index[s.entities["modality"] == "image"][:50]:
        assert s.image_path(eid).is_file()
    # merged with --link text: the Visual Genome name and the ConceptNet term of a shape are one entity
    assert s.entity_index["conceptnet:/c/en/circle"] == s.entity_index["visual_genome:name/circle"]
    assert connectivity(s)["cross_source_triplets"] > 0


def test_test_scenes_and_held_out_combinations(tmp_path):
    files = write_demo_world(tmp_path / "w", scenes=60, seed=0)
    stores = convert_demo_world(files)
    s = open_valid(stores["store"])
    t = s.triplets
    keys = s.entity_keys
    vg_test_images = {json.loads(files.vg["test"]["image_data"].read_text())[i]["image_id"] for i in range(files.counts["test_scenes"])}
    # every Visual Genome triplet touching a scene's region is in that scene's split
    region_split = {f"visual_genome:object/{o['object_id']}": split for split in ("train", "valid", "test")
                    for item in json.loads(files.vg[split]["relationships"].read_text())
                    for r in item["relationships"] for o in (r["subject"], r["object"])}
    vg = t[t["source"] == "visual_genome"]
    head_split = [region_split.get(keys[h]) for h in vg.head_id]
    assert {"train", "valid", "test"} <= set(head_split)
    assert all(hs is None or hs == sp for hs, sp in zip(head_split, vg["split"], strict=True))
    # held-out colour-shape combinations never appear in training captions
    train_caps = " | ".join(a["caption"] for a in json.loads(files.coco["train"].read_text())["annotations"])
    for colour, shape in HELD_OUT:
        assert f"{colour} {shape}" not in train_caps
    assert len(vg_test_images) == files.counts["test_scenes"]
    # valid scenes: their regions and captions are all in the valid split, and exist
    vg_valid = {s.image_id for s in files.scenes if s.split == "valid"}
    assert vg_valid and files.counts["valid_scenes"] == len(vg_valid)
    coco = t[t["source"] == "coco"]
    cap_valid = {json.loads(files.coco["valid"].read_text())["annotations"][i]["caption"] for i in range(3)}
    texts = s.entities["text"]
    assert set(coco.loc[coco["split"] == "valid", "tail_id"].map(texts).dropna()) >= cap_valid
    # every image-caption triplet joins an image to one of its own captions (caption ids do not collide across splits)
    own = {}
    for split in ("train", "valid", "test"):
        for ann in json.loads(files.coco[split].read_text())["annotations"]:
            own.setdefault(f"VG_100K/{ann['image_id']}.jpg", set()).add(ann["caption"])
    image_of = s.relations.loc[s.relations["text"] == "image of", "relation_id"].item()
    pairs = coco[coco["relation_id"] == image_of]
    assert len(pairs) == sum(len(v) for v in own.values())
    assert all(texts[c] in own[s.entities["image"][i]] for i, c in zip(pairs.head_id, pairs.tail_id, strict=True))
    binding = json.loads((files.eval_dir / "binding.json").read_text())["items"]
    assert binding and all((files.eval_dir / it["image"]).is_file() for it in binding)
    it = binding[0]
    assert sorted(it["caption"].split()) == sorted(it["relation_swap"].split()) != it["caption"].split()


def test_square_scenes_and_the_pretraining_corpus(tmp_path):
    files = write_demo_world(tmp_path / "w", scenes=30, seed=0, pretrain_scenes=40, pretrain_captions=2)
    assert all(s.width == s.height for s in files.scenes)
    lines = files.pretrain.read_text().splitlines()
    assert len(lines) == 80
    held = [f"{c} {s}" for c, s in HELD_OUT]
    for line in lines:
        image, caption = line.split("\t")
        assert (files.pretrain.parent / image).is_file()
        assert not any(h in caption for h in held)
    stores = convert_demo_world(files)
    p = open_valid(stores["pretrain_store"])
    assert set(p.triplets["split"]) == {"train"}
    # identical captions are one text entity; each distinct (image, caption) pair gives two triplets
    pairs = {tuple(line.split("\t")) for line in lines}
    texts = p.entities.loc[p.entities["modality"] == "text", "text"]
    assert sorted(texts) == sorted({c for _, c in pairs})
    assert len(p.triplets) == 2 * len(pairs)
    # the pretraining images are not the world's scenes
    world_files = {f.read_bytes() for f in (files.images / "VG_100K").iterdir()}
    assert not any((files.pretrain.parent / line.split("\t")[0]).read_bytes() in world_files for line in lines[:10])
