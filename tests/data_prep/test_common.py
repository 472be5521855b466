"""Record accounting shared by the converters."""

from data_prep.common import Conversion
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
