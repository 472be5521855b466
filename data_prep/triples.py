"""Plain head / relation / tail text triples (FB15k-237, WN18RR and PyKEEN's files look like this).

Each line holds three fields separated by ``delimiter`` (a tab by default). Every entity is a
text entity whose key is ``<source>:<field>`` and whose text is the field with underscores as
spaces; the relation key is the field as written.

One file is split by kgclip (by unordered entity pair); a benchmark's ``train`` / ``valid`` /
``test`` files keep their lines in their split, and the leakage between them is counted.
"""

import dataclasses
from pathlib import Path

from data_prep.base import Converter, option
from data_prep.common import Conversion, clean_text, iter_lines, require_file
from kgclip.errors import SourceError
from kgclip.store import StoreWriter


def relation_text(key: str) -> str:
    """A readable text for a relation field: the last path part, underscores and slashes as spaces."""
    last = key.strip("/").split("/")[-1] if "/" in key else key
    return " ".join(last.replace("_", " ").split()) or key


def _convert_file(
    path: str | Path,
    writer: StoreWriter,
    conv: Conversion,
    *,
    delimiter: str = "\t",
    source: str = "triples",
    split: str | None = None,
) -> None:
    """Read ``path`` into ``writer``; lines with a wrong number of fields are counted bad skips.

    ``split`` (``train``/``valid``/``test``) puts every line of the file in that split (a
    benchmark's given split); None lets the store split by entity pair. A file without a triple
    line, or whose first line has the wrong number of fields, is an error naming it.
    """
    path = require_file(path, "triples file")
    lines = 0
    for lineno, line in iter_lines(path, conv):
        if not line.strip():
            conv.skip("empty line", bad=False)
            continue
        lines += 1
        fields = line.split(delimiter)
        if len(fields) != 3:
            if lineno == 1:
                raise SourceError(f"{path}:1: expected 3 fields separated by {delimiter!r}, found {len(fields)}")
            conv.skip(f"{len(fields)} fields instead of 3", f"{path}:{lineno}")
            continue
        h, r, t = (f.strip() for f in fields)
        h_text, t_text = clean_text(h.replace("_", " "), conv), clean_text(t.replace("_", " "), conv)
        if not h_text or not t_text or not r:
            conv.skip("empty field", f"{path}:{lineno}")
            continue
        hid = writer.add_entity(f"{source}:{h}", "text", text=h_text, source=source)
        tid = writer.add_entity(f"{source}:{t}", "text", text=t_text, source=source)
        rid = writer.add_relation(r, relation_text(r))
        if hid == tid:
            conv.note("self-loop kept")
        writer.add_triplet(hid, rid, tid, source=source, split=split)
        conv.kept += 1
    if lines == 0 and not conv.done():
        raise SourceError(f"{path}: empty file (no triple lines)")


@dataclasses.dataclass
class Triples(Converter):
    """Plain head / relation / tail text triples: one file, or given train/valid/test files."""

    name = "triples"
    description = "plain head/relation/tail text triples (one file, or given --train/--valid/--test files)"

    file: str | None = option(None, help="text file of head / relation / tail lines, split by entity pair", positional=True, nargs="?")
    train: str | None = option(None, help="a given train file (its lines stay in train; with --valid/--test)")
    valid: str | None = option(None, help="a given valid file")
    test: str | None = option(None, help="a given test file")
    delimiter: str = option("\t", help="field separator (default: tab; 'TAB' also accepted)")

    def check(self) -> None:
        given = self.train or self.valid or self.test
        if bool(self.file) == bool(given):
            raise SourceError("give either one triples FILE (split by kgclip) or --train [--valid] [--test] (splits kept as given)")
        if given and not self.train:
            raise SourceError("--valid/--test need --train")
        if not self.delimiter:
            raise SourceError("--delimiter is empty; give the field separator (TAB for a tab)")

    def files(self) -> list[tuple[str, str | None]]:
        """(path, split) per file to read; the split is None for a file kgclip splits."""
        if self.file:
            return [(self.file, None)]
        return [(f, s) for f, s in ((self.train, "train"), (self.valid, "valid"), (self.test, "test")) if f]

    def convert(self, writer: StoreWriter, conv: Conversion) -> None:
        delimiter = "\t" if self.delimiter.upper() == "TAB" else self.delimiter
        for path, split in self.files():
            _convert_file(path, writer, conv, delimiter=delimiter, source=self.source, split=split)
