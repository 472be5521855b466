"""Image-caption pairs: split by image, Karpathy splits kept as published."""

import json

import pandas as pd
import pytest

from experiments.cli import main
from kgclip.store import open_valid
from tests.data_prep import fixtures


def _by_image(store):
    """image key -> set of splits of the triplets touching it, and the number of those triplets."""
    e, t = store.entities, store.triplets
    img = e["modality"].to_numpy() == "image"
    keys = store.entity_keys
    image_of = [keys[h] if img[h] else keys[tl] for h, tl in zip(t.head_id, t.tail_id, strict=True)]
    frame = pd.DataFrame({"image": image_of, "split": t.split})
    return frame.groupby("image")["split"].agg(lambda s: set(s)), frame.groupby("image").size()


def test_pairs_split_by_image_keeps_every_caption_in_both_directions(tmp_path):
    # 60 images x 4 captions: the old per-caption split put most images in several splits
    lines = "".join(f"img/{k}.jpg\tcaption {j} of picture {k}\n" for k in range(60) for j in range(4))
    f = tmp_path / "pairs.tsv"
    f.write_text(lines)
    assert main(["prepare", "pairs", "--tsv", str(f), "--no-check-images", "--out", str(tmp_path / "s"), "--split-ratios", "0.5,0.25,0.25"]) == 0
    s = open_valid(tmp_path / "s")
    assert len(s.triplets) == 60 * 4 * 2
    splits, sizes = _by_image(s)
    assert (splits.map(len) == 1).all() and (sizes == 8).all()
    assert {next(iter(x)) for x in splits} == {"train", "valid", "test"}
    assert s.manifest["leakage"] == {"train": 0, "valid": 0, "test": 0}


def test_coco_pairs_are_split_by_image(tmp_path):
    files = fixtures.write_coco(tmp_path / "coco")
    for seed in range(8):
        out = tmp_path / f"s{seed}"
        assert main(["prepare", "pairs", "--coco", str(files["coco"]), "--images", str(files["images"]), "--out", str(out),
                     "--max-bad-fraction", "0.5", "--split-ratios", "0.4,0.3,0.3", "--split-seed", str(seed)]) == 0
        s = open_valid(out)
        splits, sizes = _by_image(s)
        assert len(s.triplets) == 6 and (splits.map(len) == 1).all()
        assert sizes.to_dict() == {"coco:000000000001.jpg": 4, "coco:000000000002.jpg": 2}


@pytest.mark.parametrize("dataset,with_filepath", [("coco", True), ("flickr30k", False)])
def test_karpathy_split_is_kept(tmp_path, dataset, with_filepath, capsys):
    files = fixtures.write_karpathy(tmp_path / "k", dataset=dataset, with_filepath=with_filepath)
    assert main(["prepare", "pairs", "--karpathy", str(files["karpathy"]), "--images", str(files["images"]), "--out", str(tmp_path / "s"),
                 "--max-bad-fraction", "0.5"]) == 0
    s = open_valid(tmp_path / "s")
    assert set(s.manifest["sources"]) == {dataset}
    # train: image 0 (3 sentences) + restval image 1 (1 of 2: one blank); valid: image 2 (3); test: image 3's file is missing
    assert s.manifest["counts"]["splits"] == {"train": 8, "valid": 6, "test": 0}
    splits, _ = _by_image(s)
    first = f"{dataset}:train2014/COCO_train2014_000000000001.jpg" if with_filepath else f"{dataset}:COCO_x_000000000001.jpg"
    assert splits[first] == {"train"}
    assert s.image_path(s.entity_index[first]).is_file()
    texts = dict(zip(s.entities.key, s.entities.text, strict=True))
    assert texts[f"{dataset}:caption/0"] == "A shape 0 0." and texts[f"{dataset}:caption/1"] == "a shape 0 1"  # tokens when raw is absent
    assert s.manifest["sources"][dataset]["skipped"] == {"empty caption": 1, "image file missing": 2}
    assert "read 10, kept 7" in capsys.readouterr().out


def test_karpathy_without_split_field_is_one_error(tmp_path, capsys):
    files = fixtures.write_karpathy(tmp_path / "k")
    data = json.loads(files["karpathy"].read_text())
    for rec in data["images"]:
        del rec["split"]
    files["karpathy"].write_text(json.dumps(data))
    assert main(["prepare", "pairs", "--karpathy", str(files["karpathy"]), "--images", str(files["images"]), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dataset_coco.json: image 0" in err[0] and "no 'split' field" in err[0]
    assert not (tmp_path / "s").exists() and [p.name for p in tmp_path.iterdir()] == ["k"]


@pytest.mark.parametrize("content,message", [('{"images": [{"filename": "a.jpg", "split": "dev", "sentences": []}]}', "unknown split 'dev'"),
                                             ('{"annotations": []}', "no 'images' list"),
                                             ('{"images": [', "invalid JSON")])
def test_karpathy_bad_files(tmp_path, capsys, content, message):
    f = tmp_path / "dataset_coco.json"
    f.write_text(content)
    (tmp_path / "imgs").mkdir()
    assert main(["prepare", "pairs", "--karpathy", str(f), "--images", str(tmp_path / "imgs"), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert message in err and str(f) in err and not (tmp_path / "s").exists()


def test_pairs_needs_exactly_one_input(tmp_path, capsys):
    assert main(["prepare", "pairs", "--out", str(tmp_path / "s")]) == 2
    assert "exactly one of --coco" in capsys.readouterr().err
