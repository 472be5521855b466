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
    """Nodes A (gloss ``gloss_a``), B (images ``ims_b``, a gloss) and C (a gloss); tuples A related-to B, C is-a B."""
    write_image(tmp / "images" / "bb" / "bb.jpg")
    (tmp / "nodes.v2.json").write_text(json.dumps({"bn:A": {"ims": []}, "bn:B": {"ims": list(ims_b)}, "bn:C": {}}))
    (tmp / "tuples.v2.json").write_text(json.dumps({"bn:B": [{"s": "bn:A", "r": "related-to"}, {"s": "bn:C", "r": "is-a"}]}))
    glosses = [{"available_languages": ["en"]}, {"bn:A": {"en": gloss_a if isinstance(gloss_a, str) else list(gloss_a)}},
               {"bn:B": {"en": ["a b node"]}, "bn:C": {"en": ["a c node"]}}]
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


def test_10_visual_genome_attributes_given_as_a_string_are_a_counted_skip_not_letters(tmp_path, capsys):
    man = _obj(10)
    attributes = [{"image_id": 1, "attributes": [dict(man, attributes="red"), dict(_obj(11), attributes=["tall", 7])]}]
    argv = _vg(tmp_path, [{"image_id": 1, "relationships": [_rel(1, man, _obj(11))]}], attributes=attributes)
    err, s = converted(capsys, tmp_path, *argv, "--max-bad-fraction", 1, "--out", tmp_path / "s")
    where = f"{tmp_path / 'attributes.json'}: image 1, object"
    assert err == [f"{where} 0: an object's 'attributes' is not a list", f"{where} 1: attribute is not a string"]
    assert sorted(s.entities.text.dropna()) == ["tall"]  # no attributes r, e, d
    assert skipped(s, "visual_genome") == {"an object's 'attributes' is not a list": 1, "attribute is not a string": 1}


def test_10_visualsem_gloss_given_as_a_string_is_a_counted_skip_not_one_gloss_per_character(tmp_path, capsys):
    argv = _visualsem(tmp_path, gloss_a="a pet")
    err, s = converted(capsys, tmp_path, *argv, "--max-bad-fraction", 1, "--out", tmp_path / "s")
    assert err == [f"{tmp_path / 'nodes.glosses.json'}: item 1, node bn:A: glosses of a node are not {{language: [gloss, ...]}}"]
    assert sorted(s.entities.text.dropna()) == ["a b node", "a c node"]  # node A has no view left: its tuple is a filtered skip
    assert skipped(s, "visualsem") == {"glosses of a node are not {language: [gloss, ...]}": 1, "node without image or gloss": 1}


def test_10_a_byte_order_mark_is_not_part_of_the_first_entity(tmp_path, capsys):
    (tmp_path / "t.tsv").write_bytes("\ufeffdog\t/r/IsA\tanimal\ndog\t/r/IsA\tpet\n".encode())
    err, s = converted(capsys, tmp_path, "triples", tmp_path / "t.tsv", "--out", tmp_path / "s")
    assert err == [] and sorted(s.entities.key) == ["triples:animal", "triples:dog", "triples:pet"]
    argv = _tsv(tmp_path / "p", "\ufeffa.jpg\ta red square\na.jpg\tred\n")
    err, s = converted(capsys, tmp_path, *argv, "--out", tmp_path / "s2")
    assert err == [] and _images(s) == ["a.jpg"]


def test_10_a_byte_order_mark_before_json_is_dropped(tmp_path, capsys):
    argv = _coco(tmp_path, [GOOD_IMAGE], GOOD_CAPTIONS)
    path = tmp_path / "captions.json"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    err, s = converted(capsys, tmp_path, *argv, "--out", tmp_path / "s")
    assert err == [] and len(s.triplets) == 4


@pytest.fixture
def triples(tmp_path):
    (tmp_path / "t.tsv").write_text("dog\t/r/IsA\tanimal\ncat\t/r/IsA\tanimal\n")
    return tmp_path / "t.tsv"


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--split-ratios", "nan,0,0", "--split-ratios: split ratios must be three non-negative numbers summing to 1, got (nan, 0.0, 0.0)"),
    ("--split-ratios", "inf,-inf,1", "--split-ratios: split ratios must be three non-negative numbers summing to 1, got (inf, -inf, 1.0)"),
    ("--split-seed", "-1", "--split-seed: split seed must be an integer from 0 to 2**64-1, got -1"),
    ("--limit", "-5", "--limit must be at least 1, got -5"),
    ("--limit", "0", "--limit must be at least 1, got 0"),
    ("--max-bad-fraction", "nan", "--max-bad-fraction must be a number from 0 to 1, got nan"),
    ("--max-bad-fraction", "2", "--max-bad-fraction must be a number from 0 to 1, got 2.0"),
    ("--delimiter", "", "--delimiter is empty; give the field separator (TAB for a tab)"),
])
def test_10_11_impossible_options_are_one_line_and_nothing_is_written(tmp_path, capsys, triples, flag, value, message):
    refused(capsys, tmp_path, "prepare", "triples", triples, flag, value, "--out", tmp_path / "s", match=f"kgclip prepare: error: {message}")


def test_10_impossible_converter_options(tmp_path, capsys):
    from tests.data_prep.fixtures import write_conceptnet

    f = write_conceptnet(tmp_path / "a.csv")
    refused(capsys, tmp_path, "prepare", "conceptnet", f, "--min-weight", "nan", "--out", tmp_path / "s",
            match="kgclip prepare: error: --min-weight must be a finite number, got nan")
    argv = _vg(tmp_path / "vg", [{"image_id": 1, "relationships": [_rel(1, _obj(10), _obj(11))]}])
    refused(capsys, tmp_path, "prepare", *argv, "--min-predicate-count", "0", "--out", tmp_path / "s",
            match="kgclip prepare: error: --min-predicate-count must be at least 1, got 0")


def test_10_empty_inputs_are_one_line_and_no_store(tmp_path, capsys):
    (tmp_path / "empty.tsv").write_text("")
    refused(capsys, tmp_path, "prepare", "triples", tmp_path / "empty.tsv", "--out", tmp_path / "s",
            match=f"kgclip prepare: error: {tmp_path / 'empty.tsv'}: empty file (no triple lines)")
    (tmp_path / "blank.tsv").write_text("\n\n  \n")
    refused(capsys, tmp_path, "prepare", "triples", "--train", tmp_path / "blank.tsv", "--out", tmp_path / "s",
            match=f"kgclip prepare: error: {tmp_path / 'blank.tsv'}: empty file (no triple lines)")
    argv = _tsv(tmp_path / "p", "")
    refused(capsys, tmp_path, "prepare", *argv, "--out", tmp_path / "s", match="kgclip prepare: error: pairs: no record kept of 0 read; no store written")


def test_10_a_conversion_that_keeps_nothing_is_one_line_and_no_store(tmp_path, capsys):
    # every image file missing (a filtered skip, not a bad one): nothing to write
    argv = _tsv(tmp_path / "p", "x.jpg\ta caption\ny.jpg\tanother\n")
    refused(capsys, tmp_path, "prepare", *argv, "--out", tmp_path / "s",
            match="kgclip prepare: error: pairs: no record kept of 2 read (skipped image file missing 2); no store written")
    from tests.data_prep.fixtures import write_conceptnet

    f = write_conceptnet(tmp_path / "a.csv")
    refused(capsys, tmp_path, "prepare", "conceptnet", f, "--lang", "xx", "--out", tmp_path / "s",
            match="kgclip prepare: error: conceptnet: no record kept of 9 read (skipped language not selected 8, ExternalURL relation 1)")


@pytest.mark.parametrize("annotations", [{"id": 1, "image_id": 1, "caption": "x"}, "captions", None, []])
def test_10_coco_annotations_that_are_not_a_list(tmp_path, capsys, annotations):
    argv = _coco(tmp_path, [GOOD_IMAGE], annotations)
    refused(capsys, tmp_path, "prepare", *argv, "--out", tmp_path / "s",
            match=f"kgclip prepare: error: {tmp_path / 'captions.json'}: no 'annotations' list, or an empty one (not a COCO captions file?)")


def test_10_images_that_is_a_file(tmp_path, capsys):
    a_file = write_image(tmp_path / "a.jpg")
    cases = {
        "coco": _coco(tmp_path / "c", [GOOD_IMAGE], GOOD_CAPTIONS),
        "karpathy": _karpathy(tmp_path / "k", "", "a.jpg"),
        "vg": _vg(tmp_path / "vg", [{"image_id": 1, "relationships": [_rel(1, _obj(10), _obj(11))]}]),
        "visualsem": _visualsem(tmp_path / "vs"),
    }
    for argv in cases.values():
        argv[argv.index("--images") + 1] = a_file
        for check in ([], ["--no-check-images"]):
            refused(capsys, tmp_path, "prepare", *argv, *check, "--out", tmp_path / "s",
                    match=f"kgclip prepare: error: {a_file}: is a file, not an image folder")


def test_10_an_all_invalid_visual_genome_file(tmp_path, capsys):
    rels = [{"image_id": 1, "relationships": [{"predicate": 5}, _rel(2, "man", "horse"), _rel(3, _obj("x"), _obj(11))]}, "junk", {"image_id": "1"}]
    argv = _vg(tmp_path, rels)
    before = snapshot(tmp_path)
    rc, err, _ = run_cli(capsys, "prepare", *argv, "--out", tmp_path / "s")
    path = tmp_path / "relationships.json"
    assert rc == 2 and err == [
        f"{path}: image 1, relationship 0: relationship without a predicate",
        f"{path}: image 1, relationship 1: object is not a JSON object",
        f"{path}: image 1, relationship 2: object lacks an integer object_id",
        f"{path}: entry 1: image entry lacks an integer image_id/id",
        f"{path}: entry 2: image entry lacks an integer image_id/id",
        "kgclip prepare: error: visual_genome: 5 bad records of 5 read (image entry lacks an integer image_id/id 2, relationship without "
        "a predicate 1, object is not a JSON object 1, object lacks an integer object_id 1) is above the allowed fraction 0.01; "
        "fix the input or raise --max-bad-fraction",
    ]
    assert snapshot(tmp_path) == before
    rc, err2, _ = run_cli(capsys, "prepare", *argv, "--max-bad-fraction", 1, "--out", tmp_path / "s")
    assert rc == 2 and err2[:5] == err[:5] and err2[5:] == [
        "kgclip prepare: error: visual_genome: no record kept of 5 read (skipped image entry lacks an integer image_id/id 2, "
        "relationship without a predicate 1, object is not a JSON object 1, object lacks an integer object_id 1); no store written"]
    assert snapshot(tmp_path) == before


# -- 11. wrong types in converters: counted skips, never a traceback ------------------------------------------

@pytest.mark.parametrize("image_id", ["1", None, [1], 1.5, True, {"id": 1}])
def test_11_coco_image_id_of_a_wrong_type_is_a_counted_skip(tmp_path, capsys, image_id):
    argv = _coco(tmp_path, [GOOD_IMAGE], [*GOOD_CAPTIONS, {"id": 3, "image_id": image_id, "caption": "odd"}])
    err, s = converted(capsys, tmp_path, *argv, "--max-bad-fraction", 0.5, "--out", tmp_path / "s")
    assert err == [f"{tmp_path / 'captions.json'}: annotation 2 (image_id {image_id!r}): image_id is not an integer"]
    assert skipped(s, "coco") == {"image_id is not an integer": 1} and len(s.triplets) == 4


def test_11_coco_image_records_of_wrong_types_are_counted_skips(tmp_path, capsys):
    images = [GOOD_IMAGE, {"id": "2", "file_name": "b.jpg"}, {"id": 3, "file_name": ["c.jpg"]}, "d.jpg"]
    argv = _coco(tmp_path, images, [*GOOD_CAPTIONS, *({"id": 10 + i, "image_id": i, "caption": "odd"} for i in (2, 3))])
    err, s = converted(capsys, tmp_path, *argv, "--max-bad-fraction", 1, "--out", tmp_path / "s")
    path = tmp_path / "captions.json"
    assert err == [f"{path}: image {k}: image record lacks an integer id or a file_name" for k in (1, 2, 3)] + \
                  [f"{path}: annotation {k}: image_id not in images" for k in (2, 3)]
    assert skipped(s, "coco") == {"image record lacks an integer id or a file_name": 3, "image_id not in images": 2}


def test_11_visual_genome_ids_and_widths_of_wrong_types_are_counted_skips(tmp_path, capsys):
    image_data = [{"image_id": 1, "width": 40, "height": 30, "url": "https://x/VG_100K/1.jpg"}, {"image_id": "2", "width": 40, "height": 30},
                  {"id": 3, "width": "40", "height": 30}, {"id": 4, "width": 40.5, "height": 30}, {"id": [5], "width": 40, "height": 30},
                  {"id": 6, "width": 0, "height": 30}, {"id": 7, "width": 40, "height": None}, 8]
    rels = [{"image_id": 1, "relationships": [_rel(1, _obj(10), _obj(11)), _rel(2, _obj(True), _obj(12))]}, {"image_id": [1]},
            {"image_id": 1.0, "relationships": "near"}]
    argv = _vg(tmp_path, rels, image_data=image_data)
    err, s = converted(capsys, tmp_path, *argv, "--max-bad-fraction", 1, "--out", tmp_path / "s")
    bad_image = "image record lacks an integer image_id/id or a positive integer width and height"
    assert err[:5] == [f"{tmp_path / 'image_data.json'}: record {k}: {bad_image}" for k in range(1, 6)]
    assert skipped(s, "visual_genome") == {bad_image: 7, "object lacks an integer object_id": 1, "image entry lacks an integer image_id/id": 1,
                                           "'relationships' is not a list": 1}
    assert len(s.triplets) == 1


@pytest.mark.parametrize(("content", "marker", "reason"), [
    # the byte offset is where the parser stopped: at the unexpected token, just after a bad byte, at the end
    (b'{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"id": 1, "image_id": 1 "caption": "x"}]}', b'"caption"',
     "parse error: after key and value, inside map, I expect ',' or '}'"),
    (b'{"images": [{"id": 1, "file_name": "a\xff.jpg"}]}', b'.jpg', "lexical error: invalid bytes in UTF8 string."),
    (b'{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"id": 1', None, "parse error: premature EOF"),
    (b'{"images": [{"id": 1, "file_name": "a.jpg", "w": 1e999}]}', b"1e999", "parse error: numeric (floating point) overflow"),
])
def test_11_invalid_json_is_one_line_naming_the_file_and_byte(tmp_path, capsys, content, marker, reason):
    _coco(tmp_path, [], [])
    (tmp_path / "captions.json").write_bytes(content)
    argv = ["prepare", "pairs", "--coco", tmp_path / "captions.json", "--images", tmp_path / "images", "--out", tmp_path / "s"]
    refused(capsys, tmp_path, *argv, match=f"kgclip prepare: error: {tmp_path / 'captions.json'}: invalid JSON at byte offset ")
    _, (line,), _ = run_cli(capsys, *argv)
    offset = int(line.split("at byte offset ")[1].split(",")[0])
    first = content.find(marker) if marker else len(content)
    assert first <= offset <= first + len(marker or b""), (offset, first)  # within the offending token
    assert f"({reason} near '" in line and line.endswith("')")


def test_11_json_nested_100000_deep_is_one_line_not_25_gb(tmp_path, capsys):
    argv = _coco(tmp_path, [GOOD_IMAGE], GOOD_CAPTIONS)
    deep = 100_000
    text = '{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"id": 1, "image_id": ' + "[" * deep + "]" * deep + "}]}"
    (tmp_path / "captions.json").write_text(text)
    first = text.index('"image_id": [') + len('"image_id": ')  # at depth 3
    refused(capsys, tmp_path, "prepare", *argv, "--out", tmp_path / "s",
            match=f"kgclip prepare: error: {tmp_path / 'captions.json'}: JSON nested deeper than 64 levels at byte offset {first + 61} ")


def test_10_coco_ids_seen_twice_are_counted_not_silently_merged(tmp_path, capsys):
    images = [GOOD_IMAGE, {"id": 1, "file_name": "other.jpg"}]
    argv = _coco(tmp_path, images, [*GOOD_CAPTIONS, {"id": 2, "image_id": 1, "caption": "a second caption with id 2"}])
    err, s = converted(capsys, tmp_path, *argv, "--max-bad-fraction", 1, "--out", tmp_path / "s")
    path = tmp_path / "captions.json"
    assert err == [f"{path}: image 1 (id 1): image id seen before", f"{path}: annotation 2 (id 2): annotation id seen before"]
    assert sorted(s.entities.text.dropna()) == ["a red square", "red"] and _images(s) == ["a.jpg"]


def test_11_visual_genome_numbers_beyond_64_bits_are_counted_skips(tmp_path, capsys):
    # found by the fuzz test: width 1e308 became an int too large for the store's int64 column (a traceback)
    image_data = [{"image_id": 1, "width": 40, "height": 30, "url": "https://x/VG_100K/1.jpg"}, {"image_id": 2, "width": 1e308, "height": 30},
                  {"image_id": 1e30, "width": 40, "height": 30}]
    rels = [{"image_id": 1, "relationships": [_rel(1, _obj(10), _obj(11)), _rel(2, _obj(10), _obj(1e20))]}]
    argv = _vg(tmp_path, rels, image_data=image_data)
    err, s = converted(capsys, tmp_path, *argv, "--max-bad-fraction", 1, "--out", tmp_path / "s")
    bad_image = "image record lacks an integer image_id/id or a positive integer width and height"
    assert err == [f"{tmp_path / 'image_data.json'}: record {k}: {bad_image}" for k in (1, 2)] + \
                  [f"{tmp_path / 'relationships.json'}: image 1, relationship 1: object lacks an integer object_id"]
    assert len(s.triplets) == 1


def test_10_a_failed_conversion_removes_the_folders_it_made_above_out(tmp_path, capsys):
    (tmp_path / "empty.tsv").write_text("")
    refused(capsys, tmp_path, "prepare", "triples", tmp_path / "empty.tsv", "--out", tmp_path / "new" / "deeper" / "s",
            match=f"kgclip prepare: error: {tmp_path / 'empty.tsv'}: empty file (no triple lines)")
    (tmp_path / "t.tsv").write_text("dog\tIsA\tanimal\n")
    rc, err, _ = run_cli(capsys, "prepare", "triples", tmp_path / "t.tsv", "--out", tmp_path / "new" / "deeper" / "s")
    assert rc == 0 and err == [] and sorted(p.name for p in (tmp_path / "new" / "deeper").iterdir()) == ["s"]  # a success keeps them
