import hashlib
import json

from data_prep.demo_world import HELD_OUT, convert_demo_world, write_demo_world
from kgclip.store import open_valid


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


def test_test_scenes_and_held_out_combinations(tmp_path):
    files = write_demo_world(tmp_path / "w", scenes=60, seed=0)
    stores = convert_demo_world(files)
    s = open_valid(stores["store"])
    t = s.triplets
    keys = s.entity_keys
    vg_test_images = {json.loads(files.vg_test["image_data"].read_text())[i]["image_id"] for i in range(files.counts["test_scenes"])}
    # every Visual Genome triplet touching a test scene's region is in the test split
    test_regions = {f"visual_genome:object/{o['object_id']}" for item in json.loads(files.vg_test["relationships"].read_text())
                    for r in item["relationships"] for o in (r["subject"], r["object"])}
    vg = t[t["source"] == "visual_genome"]
    heads_in_test = [keys[h] in test_regions for h in vg.head_id]
    assert (vg.loc[heads_in_test, "split"] == "test").all() and (vg.loc[[not x for x in heads_in_test], "split"] == "train").all()
    # held-out colour-shape combinations never appear in training captions
    train_caps = " | ".join(a["caption"] for a in json.loads(files.coco_train.read_text())["annotations"])
    for colour, shape in HELD_OUT:
        assert f"{colour} {shape}" not in train_caps
    assert len(vg_test_images) == files.counts["test_scenes"]
    binding = json.loads((files.eval_dir / "binding.json").read_text())["items"]
    assert binding and all((files.eval_dir / it["image"]).is_file() for it in binding)
    it = binding[0]
    assert sorted(it["caption"].split()) == sorted(it["relation_swap"].split()) != it["caption"].split()
