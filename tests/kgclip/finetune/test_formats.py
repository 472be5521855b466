import json

import pytest

from kgclip.errors import KgclipError
from kgclip.finetune.formats.glue import read_glue
from kgclip.finetune.formats.image_folder import read_image_folder
from kgclip.finetune.formats.karpathy import read_karpathy
from kgclip.finetune.formats.snli_ve import read_snli_ve
from kgclip.finetune.formats.vqa import answer_vocabulary, read_vqa, soft_targets
from kgclip.finetune.images import coco_index, index_by_name
from kgclip.skips import Skips
from tests.kgclip.finetune.fixtures import glue_file, image, image_folder, karpathy_file, snli_ve_file, vqa_files


def test_coco_index_reads_both_name_styles(tmp_path):
    image(tmp_path / "train2014" / "COCO_train2014_000000000042.jpg", "red")
    image(tmp_path / "val2017" / "000000000007.jpg", "blue")
    image(tmp_path / "val2017" / "notcoco.jpg", "blue")
    idx = coco_index(tmp_path)
    assert set(idx) == {42, 7} and idx[42].name == "COCO_train2014_000000000042.jpg"


def test_vqa_examples_vocabulary_and_soft_targets(tmp_path):
    q, a = vqa_files(tmp_path, "train2014", [1, 2, 3])
    skips = Skips(echo=None)
    ex = read_vqa(q, a, tmp_path / "images", skips)
    assert len(ex) == 6 and not len(skips)
    vocab = answer_vocabulary(ex, 10)
    # counts: no 2 (green, blue), red 1, yes 1, green 1, blue 1: most frequent first, ties alphabetical
    assert vocab == ["no", "blue", "green", "red", "yes"]
    assert answer_vocabulary(ex, 2) == ["no", "blue"]
    colour_q = next(e for e in ex if e.question_id == 10)  # red, answered red x8, "dark red", "unsure"
    index = {v: i for i, v in enumerate(vocab)}
    assert soft_targets(colour_q.annotation, index) == {index["red"]: 1.0}
    # "dark red" (1 of 10) would score 0.3 if it were in the vocabulary
    assert soft_targets(colour_q.annotation, {"dark red": 0, "red": 1}) == {0: pytest.approx(0.3), 1: 1.0}


def test_vqa_bad_records_are_counted(tmp_path):
    q, a = vqa_files(tmp_path, "val2014", [1, 2])
    qs = json.loads(q.read_text())
    qs["questions"].append({"image_id": 99, "question": "where is it?", "question_id": 990})  # no annotation
    q.write_text(json.dumps(qs))
    ann = json.loads(a.read_text())
    del ann["annotations"][0]["answer_type"]
    a.write_text(json.dumps(ann))
    (tmp_path / "images" / "val2014" / "COCO_val2014_000000000002.jpg").unlink()  # image missing
    skips = Skips(echo=None)
    ex = read_vqa(q, a, tmp_path / "images", skips)
    assert [e.question_id for e in ex] == [11]
    assert skips.counts == {"answer_type missing": 1, "no annotation for this question": 2, "image 2 not found under " + str(tmp_path / "images"): 2}
    assert f"{a}:question_id=10: answer_type missing" in skips.named


def test_vqa_nothing_usable_is_an_error(tmp_path):
    q, a = vqa_files(tmp_path, "val2014", [1])
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(KgclipError, match="no usable question"):
        read_vqa(q, a, tmp_path / "elsewhere", Skips(echo=None))


def test_snli_ve_reader_and_bad_lines(tmp_path):
    path = snli_ve_file(tmp_path, "train", [10, 11])
    with open(path, "a") as f:
        f.write("{not json\n")
        f.write(json.dumps({"Flikr30kID": "10.jpg", "sentence2": "x", "gold_label": "-"}) + "\n")
        f.write(json.dumps({"Flikr30kID": "404", "sentence2": "x", "gold_label": "neutral"}) + "\n")
        f.write(json.dumps({"Flikr30kID": "11", "sentence2": "a bare id", "gold_label": "neutral"}) + "\n")
    skips = Skips(echo=None)
    ex = read_snli_ve(path, index_by_name(tmp_path / "flickr30k-images"), skips)
    assert len(ex) == 7 and [e.label for e in ex[:3]] == [0, 1, 2]
    assert ex[-1].image.endswith("11.jpg") and ex[0].pair_id == "10.jpg#0r0"
    assert skips.named[0].startswith(f"{path}:7: not JSON")
    assert skips.counts["gold_label '-' is not one of entailment, neutral, contradiction"] == 1
    assert skips.counts["image 404.jpg not found"] == 1


def test_karpathy_reader(tmp_path):
    path = karpathy_file(tmp_path, {"train": 2, "restval": 1, "val": 1, "test": 2})
    data = json.loads(path.read_text())
    del data["images"][0]["split"]
    data["images"][1]["filename"] = "COCO_val2014_000000099999.jpg"
    path.write_text(json.dumps(data))
    skips = Skips(echo=None)
    s = read_karpathy(path, tmp_path / "coco", skips)
    assert (len(s.train), len(s.val), len(s.test)) == (1, 1, 2)  # restval trains; two train images skipped
    assert s.test[0].captions == ["a red square", "something red"]
    assert skips.counts == {"split missing": 1, f"image not found under {tmp_path / 'coco'}": 1}


def test_karpathy_paths_that_leave_the_images_folder_are_skipped(tmp_path):
    path = karpathy_file(tmp_path, {"train": 4, "test": 1})
    data = json.loads(path.read_text())
    outside = image(tmp_path / "secret.jpg", "red")  # an image beside --images, not under it
    data["images"][0]["filename"] = "../../secret.jpg"  # val2014/../../secret.jpg
    data["images"][1]["filename"] = str(outside)  # absolute
    data["images"][2]["filepath"] = ".."
    data["images"][2]["filename"] = "secret.jpg"
    path.write_text(json.dumps(data))
    skips = Skips(echo=None)
    s = read_karpathy(path, tmp_path / "coco", skips)
    assert [im.name for im in s.train] == [data["images"][3]["filename"]]  # before: the secret was read three times
    assert sum(skips.counts.values()) == 3 and all("leaves the images folder" in r for r in skips.counts)


def test_karpathy_without_any_split_is_an_error(tmp_path):
    path = karpathy_file(tmp_path, {"train": 1, "test": 1})
    data = json.loads(path.read_text())
    for im in data["images"]:
        del im["split"]
    path.write_text(json.dumps(data))
    with pytest.raises(KgclipError, match="no image has a 'split' field"):
        read_karpathy(path, tmp_path / "coco", Skips(echo=None))


def test_image_folder_classes_and_eval_subset(tmp_path):
    train = image_folder(tmp_path / "train", per_class=2)
    (train / "red" / "notes.txt").write_text("not an image")
    skips = Skips(echo=None)
    ex, classes = read_image_folder(train, skips)
    assert classes == ["blue", "green", "red"] and sorted(e.label for e in ex) == [0, 0, 1, 1, 2, 2]
    assert skips.counts == {"not an image file name": 1}
    ev = tmp_path / "eval"
    image(ev / "red" / "x.png", "red")
    ev_ex, _ = read_image_folder(ev, skips, classes)
    assert [e.label for e in ev_ex] == [2]
    image(ev / "purple" / "y.png", "red")
    with pytest.raises(KgclipError, match="purple have no training folder"):
        read_image_folder(ev, skips, classes)


@pytest.mark.parametrize(("task", "labels"), [("sst2", [1, 0, 1, 0]), ("cola", [1, 0, 1, 0]), ("mrpc", [1, 0, 1, 0]),
                                              ("stsb", [5.0, 0.5, 4.2, 0.0]), ("rte", [0, 1, 0, 1])])
def test_glue_readers(tmp_path, task, labels):
    ex = read_glue(task, glue_file(tmp_path, task), Skips(echo=None))
    assert [e.label for e in ex] == labels
    if task == "mrpc":
        assert (ex[0].text_a, ex[0].text_b) == ("He left.", "He went away.")
    if task == "cola":
        assert ex[1].text_a == "Dog the barked." and ex[1].text_b is None


def test_glue_bad_header_bad_rows_and_bom(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("sentence\tlabel\ngood\t1\nno label field\nodd\t7\n\"quoted\t0\n")
    skips = Skips(echo=None)
    ex = read_glue("sst2", path, skips)
    assert [(e.text_a, e.label) for e in ex] == [("good", 1.0), ('"quoted', 0.0)]  # no quoting, as GLUE files are read
    assert skips.named == [f"{path}:3: 1 fields instead of 2", f"{path}:4: label '7' is not one of negative, positive (or its index)"]
    mrpc = tmp_path / "mrpc.tsv"
    mrpc.write_bytes("\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\ta\tb\n".encode())
    assert read_glue("mrpc", mrpc, skips)[0].label == 1.0
    with pytest.raises(KgclipError, match=r"header has no column\(s\) 'sentence1', 'sentence2'"):
        read_glue("rte", path, skips)
    test_file = tmp_path / "test.tsv"
    test_file.write_text("index\tsentence\n0\tsomething\n")
    with pytest.raises(KgclipError, match="a GLUE test file has no labels"):
        read_glue("sst2", test_file, skips)
    with pytest.raises(KgclipError, match="CoLA test file"):
        read_glue("cola", test_file, skips)
    with pytest.raises(KgclipError, match="unknown GLUE task 'wnli'"):
        read_glue("wnli", path, skips)
