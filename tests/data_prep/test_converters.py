"""Each converter on fixture files in the source's own format, through the CLI."""

import gzip

import pytest

from experiments.cli import main
from kgclip.store import keys, open_valid, writer
from tests.data_prep import fixtures


def _triples(store):
    k, rk = store.entity_keys, store.relation_keys
    t = store.triplets
    return [(k[h], rk[r], k[tl]) for h, r, tl in zip(t.head_id, t.relation_id, t.tail_id, strict=True)]


# -- ConceptNet ----------------------------------------------------------------------------------

def test_conceptnet(tmp_path, capsys):
    f = fixtures.write_conceptnet(tmp_path / "assertions.csv.gz")
    assert main(["prepare", "conceptnet", str(f), "--out", str(tmp_path / "s"), "--split-ratios", "1,0,0"]) == 0
    s = open_valid(tmp_path / "s")
    got = set(_triples(s))
    assert got == {
        ("conceptnet:/c/en/dog/n/wn/animal", "/r/IsA", "conceptnet:/c/en/animal"),
        ("conceptnet:/c/en/café", "/r/UsedFor", "conceptnet:/c/en/drinking_coffee"),
        ("conceptnet:/c/en/cat", "/r/NotDesires", "conceptnet:/c/en/bath"),
        ("conceptnet:/c/en/metallica", "/r/dbpedia/genre", "conceptnet:/c/en/heavy_metal"),
        ("conceptnet:/c/en/loop", "/r/RelatedTo", "conceptnet:/c/en/loop"),
    }
    texts = dict(zip(s.entities.key, s.entities.text, strict=True))
    assert texts["conceptnet:/c/en/drinking_coffee"] == "drinking coffee" and texts["conceptnet:/c/en/café"] == "café"
    rel_text = dict(zip(s.relations.key, s.relations.text, strict=True))
    assert rel_text["/r/NotDesires"] == "does not desire" and rel_text["/r/dbpedia/genre"] == "has genre"
    w = s.triplets.set_index("relation_id")
    isa = s.relation_index["/r/IsA"]
    assert w.loc[isa, "weight"] == 2.0 and w.loc[isa, "dataset"] == "/d/wordnet/3.1"
    skipped = s.manifest["sources"]["conceptnet"]["skipped"]
    assert skipped["ExternalURL relation"] == 1 and skipped["language not selected"] == 2
    assert "self-loop kept" not in skipped and s.manifest["sources"]["conceptnet"]["noted"] == {"self-loop kept": 1}
    assert s.manifest["duplicates_removed"] == 1
    assert "read 9, kept 6" in capsys.readouterr().out


def test_conceptnet_language_and_relation_filters(tmp_path):
    f = fixtures.write_conceptnet(tmp_path / "a.csv")
    assert main(["prepare", "conceptnet", str(f), "--out", str(tmp_path / "s"), "--lang", "en", "de", "fr", "--relations", "IsA,Synonym"]) == 0
    rels = {r for _, r, _ in _triples(open_valid(tmp_path / "s"))}
    assert rels == {"/r/IsA", "/r/Synonym"}
    assert main(["prepare", "conceptnet", str(f), "--out", str(tmp_path / "w"), "--min-weight", "1.5"]) == 0
    assert len(open_valid(tmp_path / "w").triplets) == 1


def test_conceptnet_limit(tmp_path):
    f = fixtures.write_conceptnet(tmp_path / "a.csv")
    assert main(["prepare", "conceptnet", str(f), "--out", str(tmp_path / "s"), "--limit", "1"]) == 0
    assert open_valid(tmp_path / "s").manifest["sources"]["conceptnet"]["read"] == 1


def test_conceptnet_malformed_line_is_counted(tmp_path, capsys):
    rows = fixtures.CONCEPTNET_ROWS * 20
    f = fixtures.write_conceptnet(tmp_path / "a.csv", rows=rows, extra=b"only\ttwo\n")
    assert main(["prepare", "conceptnet", str(f), "--out", str(tmp_path / "s")]) == 0
    s = open_valid(tmp_path / "s")
    assert s.manifest["sources"]["conceptnet"]["skipped"]["2 columns instead of 5"] == 1
    assert "a.csv: record 'only\\ttwo'" in capsys.readouterr().err


def test_conceptnet_non_utf8_is_counted(tmp_path):
    rows = fixtures.CONCEPTNET_ROWS * 20
    bad = b"/a/x\t/r/IsA\t/c/en/caf\xe9\t/c/en/place\t{\"weight\": 1.0}\n"
    f = fixtures.write_conceptnet(tmp_path / "a.csv", rows=rows, extra=bad)
    assert main(["prepare", "conceptnet", str(f), "--out", str(tmp_path / "s")]) == 0
    assert open_valid(tmp_path / "s").manifest["sources"]["conceptnet"]["skipped"]["not UTF-8"] == 1


def test_conceptnet_wrong_first_line(tmp_path, capsys):
    f = tmp_path / "a.csv"
    f.write_text("a,b,c\n")
    assert main(["prepare", "conceptnet", str(f), "--out", str(tmp_path / "s")]) == 2
    assert "a.csv:1: expected 5 tab-separated columns" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_conceptnet_truncated_gzip(tmp_path, capsys):
    f = fixtures.write_conceptnet(tmp_path / "a.csv.gz", rows=fixtures.CONCEPTNET_ROWS * 200)
    f.write_bytes(f.read_bytes()[:-40])
    assert main(["prepare", "conceptnet", str(f), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a.csv.gz" in err[0] and ("truncated" in err[0] or "corrupt" in err[0])
    assert list(tmp_path.iterdir()) == [f]


def test_conceptnet_too_many_bad_lines_stops(tmp_path, capsys):
    f = fixtures.write_conceptnet(tmp_path / "a.csv", extra=b"x\ty\n" * 5)
    assert main(["prepare", "conceptnet", str(f), "--out", str(tmp_path / "s")]) == 2
    assert "above the allowed fraction 0.01" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_unreadable_file(tmp_path, capsys):
    assert main(["prepare", "conceptnet", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "s")]) == 2
    assert "nope.csv: ConceptNet assertions file not found" in capsys.readouterr().err


# -- Visual Genome -------------------------------------------------------------------------------

def _vg_args(files, out, *extra):
    return ["prepare", "visual-genome", "--image-data", str(files["image_data"]), "--relationships", str(files["relationships"]),
            "--images", str(files["images"]), "--out", str(out), "--split-ratios", "1,0,0", *extra]


def test_visual_genome(tmp_path):
    files = fixtures.write_visual_genome(tmp_path / "vg", n_images=4)
    assert main(_vg_args(files, tmp_path / "s", "--max-bad-fraction", "0.5")) == 0
    s = open_valid(tmp_path / "s")
    got = _triples(s)
    assert ("visual_genome:object/10", "visual_genome:riding", "visual_genome:object/11") in got
    assert ("visual_genome:object/11", "visual_genome:next to", "visual_genome:object/12") in got
    assert ("visual_genome:object/40", "visual_genome:near", "visual_genome:object/41") in got
    assert len(got) == 5  # image 4's file is missing; object 13 has zero area; one duplicate
    e = s.entities.set_index("key")
    assert list(e.loc["visual_genome:object/12", "bbox"]) == [30, 20, 10, 10]  # clamped to 40 x 30
    assert e.loc["visual_genome:object/10", "image"] == "VG_100K/1.jpg"
    assert e.loc["visual_genome:object/40", "image"] == "VG_100K_2/2.jpg"
    assert s.image_path(s.entity_index["visual_genome:object/10"]).is_file()
    sk = s.manifest["sources"]["visual_genome"]["skipped"]
    assert sk["box of non-positive area after clamping"] == 1 and sk["image file missing"] >= 1
    assert s.manifest["duplicates_removed"] == 1


def test_visual_genome_names_and_attributes(tmp_path):
    files = fixtures.write_visual_genome(tmp_path / "vg")
    assert main(_vg_args(files, tmp_path / "s", "--with-names", "--attributes", str(files["attributes"]), "--max-bad-fraction", "0.5")) == 0
    got = set(_triples(open_valid(tmp_path / "s")))
    assert ("visual_genome:object/10", "/r/IsA", "visual_genome:name/man") in got
    assert ("visual_genome:object/11", "/r/IsA", "visual_genome:name/horse") in got
    assert ("visual_genome:object/10", "/r/HasProperty", "visual_genome:attribute/smiling") in got
    assert ("visual_genome:object/10", "/r/HasProperty", "visual_genome:attribute/tall") in got
    s = open_valid(tmp_path / "s")
    assert not any(h == "visual_genome:object/14" and r == "/r/IsA" for h, r, _ in got)  # blank name: region kept, no name triplet
    assert ("visual_genome:object/14", "visual_genome:near", "visual_genome:object/10") in got
    assert s.manifest["sources"]["visual_genome"]["noted"]["object without a name: no name triplet"] == 1
    concept = dict(zip(s.entities.key, s.entities.concept, strict=True))  # a name's synset is its concept, when the file has one
    assert concept["visual_genome:name/man"] == "wordnet:man.n.01" and concept["visual_genome:name/horse"] == "wordnet:horse.n.01"
    assert concept["visual_genome:object/10"] is None and concept["visual_genome:name/field"] is None


def test_visual_genome_min_predicate_count(tmp_path):
    files = fixtures.write_visual_genome(tmp_path / "vg", n_images=5)
    assert main(_vg_args(files, tmp_path / "s", "--min-predicate-count", "2", "--max-bad-fraction", "0.5")) == 0
    rels = {r for _, r, _ in _triples(open_valid(tmp_path / "s"))}
    assert rels == {"visual_genome:riding", "visual_genome:near"}


def test_visual_genome_invalid_json(tmp_path, capsys):
    files = fixtures.write_visual_genome(tmp_path / "vg")
    files["relationships"].write_text(files["relationships"].read_text()[:-30])
    assert main(_vg_args(files, tmp_path / "s", "--max-bad-fraction", "0.5")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    size = files["relationships"].stat().st_size
    assert len(err) == 1 and f"relationships.json: invalid JSON at byte offset {size}, after 2 items (parse error: premature EOF near " in err[0]
    assert not (tmp_path / "s").exists()


def test_visual_genome_streams_many_images(tmp_path):
    files = fixtures.write_visual_genome(tmp_path / "vg", n_images=300)
    assert main(_vg_args(files, tmp_path / "s", "--max-bad-fraction", "0.5", "--no-check-images")) == 0
    assert len(open_valid(tmp_path / "s").triplets) == 3 + 299  # 3 of image 1 (dup, zero area) + one per other image


# -- VisualSem -----------------------------------------------------------------------------------

def _vs_args(files, out, *extra):
    return ["prepare", "visualsem", "--nodes", str(files["nodes"]), "--tuples", str(files["tuples"]), "--glosses", str(files["glosses"]),
            "--images", str(files["images"]), "--out", str(out), "--split-ratios", "1,0,0", *extra]


def test_visualsem_views_share_their_concept_and_tuples_join_canonical_views(tmp_path):
    files = fixtures.write_visualsem(tmp_path / "vs")
    assert main(_vs_args(files, tmp_path / "s")) == 0
    s = open_valid(tmp_path / "s")
    concept = dict(zip(s.entities.key, s.entities.concept, strict=True))
    # every view of a used node, glosses first; D (no view) adds nothing
    assert concept == {
        "visualsem:bn:A/gloss/en/0": "visualsem:bn:A", "visualsem:bn:A/gloss/en/1": "visualsem:bn:A",
        "visualsem:bn:A/image/aa11": "visualsem:bn:A", "visualsem:bn:A/image/ab22": "visualsem:bn:A",
        "visualsem:bn:B/image/bb33": "visualsem:bn:B", "visualsem:bn:C/gloss/en/0": "visualsem:bn:C",
        "visualsem:bn:E/image/ee44": "visualsem:bn:E",
    }
    a, b, c, e = "visualsem:bn:A/gloss/en/0", "visualsem:bn:B/image/bb33", "visualsem:bn:C/gloss/en/0", "visualsem:bn:E/image/ee44"
    # each tuple once, between canonical views (first gloss, else first image)
    assert sorted(_triples(s)) == sorted([
        (a, "visualsem:is-a", b), (c, "visualsem:has-part", b), (a, "visualsem:related-to", c),
        (b, "visualsem:similar-to", e), (b, "visualsem:part-of", a),
    ])
    assert s.manifest["sources"]["visualsem"]["skipped"]["node without image or gloss"] == 1
    text = dict(zip(s.relations.key, s.relations.text, strict=True))
    assert text["visualsem:has-part"] == "has part"
    assert s.image_path(s.entity_index[b]).is_file()


def test_visualsem_is_deterministic(tmp_path):
    files = fixtures.write_visualsem(tmp_path / "vs")
    for name in ("a", "b"):
        assert main(_vs_args(files, tmp_path / name)) == 0
    a, b = open_valid(tmp_path / "a"), open_valid(tmp_path / "b")
    assert _triples(a) == _triples(b) and a.entities.key.tolist() == b.entities.key.tolist()


def test_visualsem_bad_glosses_header(tmp_path, capsys):
    files = fixtures.write_visualsem(tmp_path / "vs")
    files["glosses"].write_text('[{"bn:A": {"en": ["x"]}}]')
    assert main(_vs_args(files, tmp_path / "s")) == 2
    assert "first item must be" in capsys.readouterr().err


# -- pairs and plain triples --------------------------------------------------------------------

def test_coco_pairs(tmp_path):
    files = fixtures.write_coco(tmp_path / "coco")
    assert main(["prepare", "pairs", "--coco", str(files["coco"]), "--images", str(files["images"]), "--out", str(tmp_path / "s"),
                 "--max-bad-fraction", "0.5", "--split-ratios", "1,0,0"]) == 0
    s = open_valid(tmp_path / "s")
    got = _triples(s)
    assert ("coco:000000000001.jpg", "image of", "coco:caption/11") in got
    assert ("coco:caption/11", "caption of", "coco:000000000001.jpg") in got
    assert len(got) == 6  # 3 good captions x 2 directions
    assert dict(zip(s.entities.key, s.entities.text, strict=True))["coco:caption/11"] == "A red square."
    sk = s.manifest["sources"]["coco"]["skipped"]
    assert sk == {"image file missing": 1, "empty caption": 1}


def test_tsv_pairs(tmp_path):
    fixtures.write_image(tmp_path / "img" / "a.jpg")
    f = tmp_path / "pairs.tsv"
    f.write_text("img/a.jpg\ta red square\nimg/missing.jpg\tlost\n")
    assert main(["prepare", "pairs", "--tsv", str(f), "--out", str(tmp_path / "s"), "--split-ratios", "1,0,0"]) == 0
    s = open_valid(tmp_path / "s")
    assert len(s.triplets) == 2 and s.image_path(s.entity_index["pairs:img/a.jpg"]) == tmp_path / "img" / "a.jpg"


def test_merged_store_has_four_modality_pairs(tmp_path, capsys):
    vs = fixtures.write_visualsem(tmp_path / "vs")
    assert main(_vs_args(vs, tmp_path / "vs_s")) == 0
    cn = fixtures.write_conceptnet(tmp_path / "cn.csv")
    assert main(["prepare", "conceptnet", str(cn), "--out", str(tmp_path / "cn_s")]) == 0
    assert main(["prepare", "merge", str(tmp_path / "vs_s"), str(tmp_path / "cn_s"), "--out", str(tmp_path / "m")]) == 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    for pair in ("image +image", "image +text", "text +image", "text +text"):
        assert __import__("re").search(pair, out), pair
    assert "conceptnet" in out and "visualsem" in out


@pytest.mark.parametrize("delim,arg", [("\t", "TAB"), (",", ",")])
def test_triples_delimiters(tmp_path, delim, arg):
    f = tmp_path / "t.txt"
    f.write_text(delim.join(["/m/dog", "/people/x/y", "/m/animal"]) + "\n")
    assert main(["prepare", "triples", str(f), "--out", str(tmp_path / "s"), "--delimiter", arg]) == 0
    s = open_valid(tmp_path / "s")
    assert _triples(s) == [("triples:/m/dog", "/people/x/y", "triples:/m/animal")]
    assert s.relations.text.tolist() == ["y"]


def test_gzip_plain_text_reader(tmp_path):
    f = tmp_path / "t.txt.gz"
    with gzip.open(f, "wt") as g:
        g.write("a\tr\tb\n")
    assert main(["prepare", "triples", str(f), "--out", str(tmp_path / "s")]) == 0


def test_long_texts_cut_and_counted(tmp_path, capsys):
    f = tmp_path / "t.txt"
    f.write_text("x" * 500 + "\tr\ty\n")
    assert main(["prepare", "triples", str(f), "--out", str(tmp_path / "s")]) == 0
    s = open_valid(tmp_path / "s")
    assert len(s.entities.loc[0, "text"]) == 300
    assert s.manifest["sources"]["triples"]["noted"] == {"text cut": 1} and s.manifest["sources"]["triples"]["skipped"] == {}
    assert "kept but noted text cut 1" in capsys.readouterr().out


def test_conceptnet_malformed_line_that_is_not_utf8_is_one_line(tmp_path, capsys):
    # pyarrow decodes a malformed row before the handler sees it; for bytes that are not UTF-8 it
    # used to print an ignored exception with its traceback, then stop with a parse error
    rows = "".join(fixtures.conceptnet_line(*r) for r in fixtures.CONCEPTNET_ROWS).encode()
    f = tmp_path / "a.csv"
    f.write_bytes(rows + b"/a/2\t/r/IsA\t/c/en/caf\xc3\n" + rows)
    assert main(["--quiet", "prepare", "conceptnet", str(f), "--out", str(tmp_path / "s"), "--max-bad-fraction", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    # pyarrow names the row only with some read options (a serial reader does, the block reader not)
    assert len(err) == 1 and err[0].startswith(f"kgclip prepare: error: {f}: cannot read (a line with the wrong number of columns is not UTF-8 either: ")
    assert err[0].endswith("Expected 5 columns, got 3: /a/2\\t/r/IsA\\t/c/en/caf\ufffd')")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]


# -- out of core: the same store ------------------------------------------------------------------

def _content(path):
    s = open_valid(path)
    m = {k: v for k, v in s.manifest.items() if k not in ("created", "files", "image_roots", "settings")}
    return s.entity_table(), s.triplet_table(), s.relations, m


@pytest.mark.parametrize("source", ["visual-genome", "conceptnet"])
def test_out_of_core_conversion_writes_the_same_store(tmp_path, monkeypatch, source):
    """Keys folded into the hash arrays at once and triplets finished in one-row partitions: the store is the same."""
    if source == "visual-genome":
        files = fixtures.write_visual_genome(tmp_path / "vg", n_images=40)
        args = ["prepare", "visual-genome", "--image-data", str(files["image_data"]), "--relationships", str(files["relationships"]),
                "--images", str(files["images"]), "--with-names", "--attributes", str(files["attributes"]), "--max-bad-fraction", "0.5",
                "--split-ratios", "0.4,0.3,0.3"]
    else:
        rows = [(rel, f"/c/en/t{i % 23}/n", f"/c/{'en' if i % 5 else 'de'}/u{i % 17}", {"dataset": "/d/x", "weight": i % 3})
                for i, rel in enumerate(["/r/IsA", "/r/PartOf", "/r/RelatedTo"] * 40)] * 2  # each line twice
        args = ["prepare", "conceptnet", str(fixtures.write_conceptnet(tmp_path / "a.csv", rows=rows)), "--split-ratios", "0.4,0.3,0.3"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    monkeypatch.setitem(writer.StoreWriter.__init__.__kwdefaults__, "partition_rows", 1)
    monkeypatch.setattr(keys.KeyIndex.__init__, "__defaults__", (1, 0.125))
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    a, b = _content(tmp_path / "a"), _content(tmp_path / "b")
    assert a[0].equals(b[0]) and a[1].equals(b[1]) and a[2].equals(b[2]) and a[3] == b[3]
    assert a[3]["duplicates_removed"] > 0 and len(set(a[1]["split"].to_pylist())) == 3
