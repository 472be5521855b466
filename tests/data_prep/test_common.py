"""Record accounting, value checks, image folders and JSON streaming shared by the converters."""

import gzip
import io
import json
import math
import random

import pytest

from data_prep import common
from data_prep.common import Conversion, ImageRoot, as_int, as_number, iter_json, quoted
from kgclip.errors import SourceError
from kgclip.store import StoreWriter


def test_records_and_blocks_count_reads_up_to_the_limit(tmp_path):
    with StoreWriter(tmp_path / "s") as w:
        conv = Conversion("x", w, limit=5)
        assert list(conv.records("abc")) == ["a", "b", "c"] and conv.read == 3
        assert conv.read_block(10) == 2 and conv.read == 5 and conv.done()
        assert list(conv.records("def")) == [] and conv.read_block(4) == 0 and conv.read == 5
        free = Conversion("y", w)
        assert free.read_block(7) == 7 and list(free.records(range(3))) == [0, 1, 2] and free.read == 10


def test_notes_are_not_skips(tmp_path):
    with StoreWriter(tmp_path / "s") as w:
        conv = Conversion("x", w, echo=lambda m: None)
        conv.note("text cut", 2)
        conv.skip("bad line", "f:1")
        m = w.close()
    assert m["sources"]["x"]["noted"] == {"text cut": 2} and m["sources"]["x"]["skipped"] == {"bad line": 1}
    assert "kept but noted text cut 2" in conv.summary() and "skipped bad line 1" in conv.summary()


def test_as_int_and_as_number_take_only_json_numbers():
    assert [as_int(v) for v in (3, 3.0, -2, 2**63 - 1, -(2**63))] == [3, 3, -2, 2**63 - 1, -(2**63)]
    assert [as_int(v) for v in ("3", None, True, 3.5, math.nan, math.inf, [3], {"a": 3}, 2**63, 1e308)] == [None] * 10  # stored as int64
    assert [as_number(v) for v in (3, 2.5, -1e308)] == [3.0, 2.5, -1e308]
    assert [as_number(v) for v in ("NaN", "2", None, False, math.nan, -math.inf, [1])] == [None] * 7


def test_quoted_is_one_short_line_even_for_deep_or_long_values():
    deep = []
    node = deep
    for _ in range(100_000):
        node.append([])
        node = node[0]
    assert quoted(deep) == "[[[[...]]]]"
    assert quoted("a\nb") == "'a\\nb'" and len(quoted("x" * 5000, 40)) <= 45 and quoted(7) == "7"


def test_image_root_keeps_paths_below_it_with_links_followed(tmp_path):
    root, outside = tmp_path / "images", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "sub" / "a.jpg").write_bytes(b"x")
    (outside / "s.jpg").write_bytes(b"x")
    (root / "out").symlink_to(outside)
    (root / "same").symlink_to(root / "sub")
    r = ImageRoot(root)
    assert [r.inside(p) for p in ("sub/a.jpg", "same/a.jpg", "sub/../sub/a.jpg", "new/x.jpg")] == [True] * 4
    bad = ["../outside/s.jpg", str(outside / "s.jpg"), "out/s.jpg", "sub/../../outside/s.jpg", "", ".", "a\x00b", 5, None]
    assert [r.inside(p) for p in bad] == [False] * len(bad)
    unchecked = ImageRoot(root, check=False)  # as written: a link is not followed
    assert unchecked.inside("out/s.jpg") and not unchecked.inside("../outside/s.jpg") and unchecked.is_file("missing.jpg")
    assert r.is_file("sub/a.jpg") and not r.is_file("sub/b.jpg") and not r.is_file("x" * 5000)  # a name too long is no file


def test_image_root_that_is_a_file_or_missing(tmp_path):
    (tmp_path / "f").write_text("x")
    for check in (True, False):
        with pytest.raises(SourceError, match=f"^{tmp_path / 'f'}: is a file, not an image folder$"):
            ImageRoot(tmp_path / "f", check=check)
    with pytest.raises(SourceError, match="image folder not found"):
        ImageRoot(tmp_path / "nope")
    assert not ImageRoot(tmp_path / "nope", check=False).inside("../x")


def _depths(data: bytes) -> list[int]:
    """Reference: nesting depth after each byte; a quote after an odd run of backslashes does not open or close a string."""
    depth, inside, escaped, out = 0, False, False, []
    for c in data:
        if escaped and c in b'"\\':
            escaped = False
        elif c == ord("\\"):
            escaped = True
        else:
            escaped = False
            if c == ord('"'):
                inside = not inside
            elif not inside and c in b"[{":
                depth += 1
            elif not inside and c in b"]}":
                depth -= 1
        out.append(depth)
    return out


def test_json_depth_is_counted_outside_strings_across_chunks(monkeypatch):
    rnd = random.Random(0)
    for _ in range(2000):
        data = bytes(rnd.choice(b'[]{}"\\\\ab') for _ in range(rnd.randint(1, 60)))
        limit = rnd.randint(0, 6)
        monkeypatch.setattr(common, "MAX_JSON_DEPTH", limit)
        reader = common._Tracked(io.BytesIO(data), "x.json")
        want = next((i for i, d in enumerate(_depths(data)) if d > limit), None)
        try:
            while reader.read(rnd.randint(1, 7)):
                pass
            got = None
        except SourceError as exc:
            got = int(str(exc).split("byte offset ")[1].split(" ")[0])
        assert got == want, (data, limit)
        assert got is not None or reader.depth == _depths(data)[-1]


def test_deeply_nested_json_is_refused_before_it_takes_memory(tmp_path):
    deep = 100_000  # ijson keeps the path of every open level: this 200 KB file would take about 25 GB
    path = tmp_path / "a.json"
    text = '[{"ok": "[[[[ in a string", "id": 1}, {"id": ' + "[" * deep + "]" * deep + "}]"
    path.write_text(text)
    first = text.index('"id": [') + len('"id": ')  # at depth 2: the 63rd bracket from here is level 65
    with pytest.raises(SourceError, match=f"^{path}: JSON nested deeper than 64 levels at byte offset {first + 62} "):
        list(iter_json(path))
    path.write_text(json.dumps([{"a": "[" * 100, "b": {"c": [[["\\\"[[[["]]]}}]))  # brackets in strings do not count
    assert len(list(iter_json(path))) == 1


def test_json_with_a_byte_order_mark_and_gzipped(tmp_path):
    data = json.dumps([{"a": 1}, {"b": 2}]).encode()
    (tmp_path / "a.json").write_bytes(b"\xef\xbb\xbf" + data)
    (tmp_path / "a.json.gz").write_bytes(gzip.compress(b"\xef\xbb\xbf" + data))
    assert list(iter_json(tmp_path / "a.json")) == list(iter_json(tmp_path / "a.json.gz")) == [{"a": 1}, {"b": 2}]
    (tmp_path / "b.json.gz").write_bytes(gzip.compress(data[:-3]))
    with pytest.raises(SourceError, match=r"b.json.gz: invalid JSON at byte offset 17 \(uncompressed\), after 1 items \(parse error: premature EOF"):
        list(iter_json(tmp_path / "b.json.gz"))


def test_check_kept_refuses_an_empty_conversion(tmp_path):
    with StoreWriter(tmp_path / "s") as w:
        conv = Conversion("x", w, echo=lambda m: None)
        conv.read = 3
        conv.skip("bad line", "f:1")
        conv.skip("filtered", bad=False, n=2)
        with pytest.raises(SourceError, match=r"^x: no record kept of 3 read \(skipped filtered 2, bad line 1\); no store written$"):
            conv.check_kept()
        conv.kept = 1
        conv.check_kept()
        w.abort()
