"""Hostile but plausible ``kgclip prepare`` input (issue 16, the converter parts of items 8, 10 and 11).

Each case runs the real command line and asserts the exit code, the message on stderr (one line;
a kept conversion prints one ``file:record: reason`` line per reported bad skip) and that nothing
outside the target store changed (a snapshot of the whole temporary tree before and after).
"""

import json

import pytest

from kgclip.store import open_valid
from tests.data_prep.fixtures import write_image
from tests.experiments.test_hostile_store import refused, run_cli, snapshot

ESCAPES = "image path escapes its image root"


def converted(capsys, root, *argv):
    """Run ``kgclip prepare ARGV`` (ending in ``--out OUT``) expecting rc 0 and nothing changed outside OUT.

    Returns (stderr lines, the store opened and validated)."""
    out = argv[argv.index("--out") + 1]
    before = snapshot(root, skip=[out])
    rc, err, _ = run_cli(capsys, "prepare", *argv)
    assert rc == 0, err
    assert snapshot(root, skip=[out]) == before
    return err, open_valid(out)


def skipped(store, source):
    return store.manifest["sources"][source]["skipped"]


@pytest.fixture
def outside(tmp_path):
    """A real image outside every image folder: ``tmp/outside/secret.jpg``."""
    return write_image(tmp_path / "outside" / "secret.jpg")


# -- small files in each source's format ---------------------------------------------------------------

def _coco(tmp, images, annotations):
    write_image(tmp / "images" / "a.jpg")
    (tmp / "captions.json").write_text(json.dumps({"images": images, "annotations": annotations}))
    return ["pairs", "--coco", tmp / "captions.json", "--images", tmp / "images"]


GOOD_IMAGE = {"id": 1, "file_name": "a.jpg"}
GOOD_CAPTIONS = [{"id": 1, "image_id": 1, "caption": "a red square"}, {"id": 2, "image_id": 1, "caption": "red"}]


def _tsv(folder, text):
    """A TSV in ``folder`` beside the image a.jpg."""
    write_image(folder / "a.jpg")
    (folder / "pairs.tsv").write_text(text)
    return ["pairs", "--tsv", folder / "pairs.tsv"]


def _karpathy(tmp, filepath, filename):
    write_image(tmp / "images" / "a.jpg")
    recs = [{"filename": "a.jpg", "split": "train", "sentences": [{"raw": "a square", "sentid": 1}, {"raw": "red", "sentid": 2}]},
            {"filepath": filepath, "filename": filename, "split": "train", "sentences": [{"raw": "the secret", "sentid": 3}]}]
    (tmp / "dataset_coco.json").write_text(json.dumps({"images": recs}))
    return ["pairs", "--karpathy", tmp / "dataset_coco.json", "--images", tmp / "images"]


def _obj(oid, x=1, y=1, w=5, h=5, **extra):
    return {"object_id": oid, "x": x, "y": y, "w": w, "h": h, "names": [f"thing{oid}"], **extra}


def _vg(tmp, relationships, image_data=None, attributes=None):
    """Visual Genome files: image 1 (40 x 30) in VG_100K unless ``image_data`` says otherwise."""
    write_image(tmp / "images" / "VG_100K" / "1.jpg")
    data = image_data if image_data is not None else [{"image_id": 1, "width": 40, "height": 30, "url": "https://x/VG_100K/1.jpg"}]
    (tmp / "image_data.json").write_text(json.dumps(data))
    (tmp / "relationships.json").write_text(json.dumps(relationships))
    argv = ["visual-genome", "--image-data", tmp / "image_data.json", "--relationships", tmp / "relationships.json", "--images", tmp / "images"]
    if attributes is not None:
        (tmp / "attributes.json").write_text(json.dumps(attributes))
        argv += ["--attributes", tmp / "attributes.json"]
    return argv


def _rel(i, s, o, pred="near"):
    return {"relationship_id": i, "predicate": pred, "subject": s, "object": o}


def _visualsem(tmp, ims_b=("bb",), gloss_a=("a pet",)):
    """Nodes A (gloss) and B (images ``ims_b``); tuple A related-to B."""
    write_image(tmp / "images" / "bb" / "bb.jpg")
    (tmp / "nodes.v2.json").write_text(json.dumps({"bn:A": {"ims": []}, "bn:B": {"ims": list(ims_b)}}))
    (tmp / "tuples.v2.json").write_text(json.dumps({"bn:B": [{"s": "bn:A", "r": "related-to"}]}))
    glosses = [{"available_languages": ["en"]}, {"bn:A": {"en": gloss_a if isinstance(gloss_a, str) else list(gloss_a)}},
               {"bn:B": {"en": ["a b node"]}}]
    (tmp / "nodes.glosses.json").write_text(json.dumps(glosses))
    return ["visualsem", "--nodes", tmp / "nodes.v2.json", "--tuples", tmp / "tuples.v2.json", "--glosses", tmp / "nodes.glosses.json",
            "--images", tmp / "images"]


def _images(store):
    return sorted(x for x in store.entities["image"] if x is not None)


# -- 8. image paths never leave their image root (conversion) ---------------------------------------------

@pytest.mark.parametrize("name", ["../../../../etc/passwd", "../outside/secret.jpg", "{outside}"])
def test_8_coco_file_name_outside_the_image_folder_is_a_counted_bad_skip(tmp_path, capsys, outside, name):
    name = name.format(outside=outside)
    argv = _coco(tmp_path, [GOOD_IMAGE, {"id": 2, "file_name": name}], [*GOOD_CAPTIONS, {"id": 3, "image_id": 2, "caption": "the secret"}])
    err, s = converted(capsys, tmp_path, *argv, "--max-bad-fraction", 0.5, "--out", tmp_path / "s")
    assert err == [f"{tmp_path / 'captions.json'}: annotation 2 (image 2, file_name {name!r}): {ESCAPES}"]
    assert skipped(s, "coco") == {ESCAPES: 1} and _images(s) == ["a.jpg"]


def test_8_coco_outside_image_with_the_default_fraction_is_refused(tmp_path, capsys, outside):
    argv = _coco(tmp_path, [GOOD_IMAGE, {"id": 2, "file_name": "../outside/secret.jpg"}],
                 [*GOOD_CAPTIONS, {"id": 3, "image_id": 2, "caption": "the secret"}])
    before = snapshot(tmp_path)
    rc, err, _ = run_cli(capsys, "prepare", *argv, "--out", tmp_path / "s")
    assert rc == 2 and len(err) == 2 and err[0].endswith(ESCAPES)  # the reported record, then the one-line error
    assert err[1] == f"kgclip prepare: error: coco: 1 bad records of 3 read ({ESCAPES} 1) is above the allowed fraction 0.01; " \
                     "fix the input or raise --max-bad-fraction"
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("path", ["../../../../etc/passwd", "{outside}", "link/secret.jpg"])
def test_8_tsv_path_outside_its_folder_is_a_counted_bad_skip(tmp_path, capsys, outside, path):
    (tmp_path / "img" / "link").parent.mkdir(parents=True)
    (tmp_path / "img" / "link").symlink_to(outside.parent)  # a link inside the folder that leads out
    path = path.format(outside=outside)
    argv = _tsv(tmp_path / "img", f"a.jpg\ta red square\nb.jpg\tmissing\n{path}\tthe secret\n")
    err, s = converted(capsys, tmp_path, *argv, "--max-bad-fraction", 0.5, "--out", tmp_path / "s")
    assert err == [f"{tmp_path / 'img' / 'pairs.tsv'}:3 ({path!r}): {ESCAPES}"]
    assert skipped(s, "pairs") == {ESCAPES: 1, "image file missing": 1} and _images(s) == ["a.jpg"]


def test_8_tsv_link_to_a_folder_inside_the_root_is_kept(tmp_path, capsys):
    write_image(tmp_path / "img" / "real" / "b.jpg")
    (tmp_path / "img" / "alias").symlink_to(tmp_path / "img" / "real")
    argv = _tsv(tmp_path / "img", "a.jpg\ta red square\nalias/b.jpg\tthe same folder\n")
    err, s = converted(capsys, tmp_path, *argv, "--out", tmp_path / "s")
    assert err == [] and _images(s) == ["a.jpg", "alias/b.jpg"]


@pytest.mark.parametrize(("filepath", "filename"), [("../../outside", "secret.jpg"), ("", "../outside/secret.jpg"), ("", "{outside}")])
def test_8_karpathy_filepath_or_filename_outside_the_image_folder(tmp_path, capsys, outside, filepath, filename):
    filename = filename.format(outside=outside)
    argv = _karpathy(tmp_path, filepath, filename)
    name = f"{filepath}/{filename}" if filepath else filename
    err, s = converted(capsys, tmp_path, *argv, "--max-bad-fraction", 0.5, "--out", tmp_path / "s")
    assert err == [f"{tmp_path / 'dataset_coco.json'}: image 1 ({name!r}), sentence 0: {ESCAPES}"]
    assert skipped(s, "coco") == {ESCAPES: 1} and _images(s) == ["a.jpg"]


def test_8_visualsem_ims_outside_the_image_folder(tmp_path, capsys, outside):
    # "../outside/secret" is stored as "<first two characters>/<hash>.jpg" = "../../outside/secret.jpg": tmp/outside/secret.jpg
    argv = _visualsem(tmp_path / "vs", ims_b=("bb", "../outside/secret"))
    (tmp_path / "vs" / "outside").mkdir()
    write_image(tmp_path / "vs" / "outside" / "secret.jpg")
    err, s = converted(capsys, tmp_path, *argv, "--max-bad-fraction", 1, "--out", tmp_path / "s")
    assert err == [f"{tmp_path / 'vs' / 'nodes.v2.json'}: node bn:B, image '../outside/secret': {ESCAPES}"]
    assert skipped(s, "visualsem") == {ESCAPES: 1} and _images(s) == ["bb/bb.jpg"]


def test_8_visual_genome_image_linked_outside_the_image_folder(tmp_path, capsys, outside):
    argv = _vg(tmp_path, [{"image_id": 1, "relationships": [_rel(1, _obj(10), _obj(11))]},
                          {"image_id": 2, "relationships": [_rel(2, _obj(20), _obj(21)), _rel(3, _obj(22), _obj(23))]}],
               image_data=[{"image_id": i, "width": 40, "height": 30, "url": f"https://x/VG_100K/{i}.jpg"} for i in (1, 2)])
    (tmp_path / "images" / "VG_100K" / "2.jpg").symlink_to(outside)
    err, s = converted(capsys, tmp_path, *argv, "--max-bad-fraction", 1, "--out", tmp_path / "s")
    where = f"{tmp_path / 'relationships.json'}: image 2, relationship"
    link = f"({tmp_path / 'images'}: link of image 2 leads outside)"
    assert err == [f"{where} 0 {link}: {ESCAPES}", f"{where} 1 {link}: {ESCAPES}"]
    assert skipped(s, "visual_genome") == {ESCAPES: 2} and _images(s) == ["VG_100K/1.jpg"] * 2


# -- 10. bad values are not taken as good -------------------------------------------------------------------

def test_10_visual_genome_nan_box_is_a_counted_skip_not_a_full_width_box(tmp_path, capsys):
    rels = [{"image_id": 1, "relationships": [_rel(1, _obj(10), _obj(11)), _rel(2, _obj(10), _obj(12, x="NaN")),
                                              _rel(3, _obj(10), _obj(13, w="12")), _rel(4, _obj(10), _obj(14, h=None))]}]
    argv = _vg(tmp_path, rels)
    path = tmp_path / "relationships.json"
    err, s = converted(capsys, tmp_path, *argv, "--max-bad-fraction", 1, "--out", tmp_path / "s")
    reason = "object lacks a box of four finite numbers x, y, w, h"
    assert err == [f"{path}: image 1, relationship {j}: {reason}" for j in (1, 2, 3)]
    assert skipped(s, "visual_genome") == {reason: 3}
    boxes = {k: list(b) for k, b in zip(s.entities.key, s.entities.bbox, strict=True)}
    assert boxes == {"visual_genome:object/10": [1, 1, 5, 5], "visual_genome:object/11": [1, 1, 5, 5]}
