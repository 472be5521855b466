"""ConceptNet 5 assertion dump (conceptnet-assertions-5.7.0.csv.gz) -> knowledge store.

The dump is tab separated, 5 columns, no header and no quoting: assertion URI, relation URI,
start node URI, end node URI, and a JSON object (``weight``, ``dataset``, ``sources``, ...).
Node URIs are ``/c/<lang>/<term>[/<pos>[/<sense source>/<sense>]]``; the entity text is the term
with underscores as spaces and the key keeps the full URI (``conceptnet:/c/en/dog/n``).

The file is read with pyarrow's streaming CSV reader in large blocks and filtered with vectorised
compute functions: 34M lines never sit in memory at once, and Python only touches each distinct
node once (to add it to the store).
"""

import dataclasses
import math
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from data_prep.base import Converter, option
from data_prep.common import MAX_TEXT_CHARS, Conversion, open_binary, quoted, require_file
from kgclip import progress
from kgclip.errors import SourceError
from kgclip.store import StoreWriter

SOURCE = "conceptnet"
COLUMNS = ["assertion", "relation", "start", "end", "info"]

RELATION_TEXT = {
    "/r/RelatedTo": "related to", "/r/FormOf": "form of", "/r/IsA": "is a", "/r/PartOf": "part of",
    "/r/HasA": "has a", "/r/UsedFor": "used for", "/r/CapableOf": "capable of", "/r/AtLocation": "at location",
    "/r/Causes": "causes", "/r/HasSubevent": "has subevent", "/r/HasFirstSubevent": "has first subevent",
    "/r/HasLastSubevent": "has last subevent", "/r/HasPrerequisite": "has prerequisite",
    "/r/HasProperty": "has property", "/r/MotivatedByGoal": "motivated by goal", "/r/ObstructedBy": "obstructed by",
    "/r/Desires": "desires", "/r/CreatedBy": "created by", "/r/Synonym": "synonym of", "/r/Antonym": "antonym of",
    "/r/DistinctFrom": "distinct from", "/r/DerivedFrom": "derived from", "/r/SymbolOf": "symbol of",
    "/r/DefinedAs": "defined as", "/r/MannerOf": "manner of", "/r/LocatedNear": "located near",
    "/r/HasContext": "has context", "/r/SimilarTo": "similar to", "/r/EtymologicallyRelatedTo": "etymologically related to",
    "/r/EtymologicallyDerivedFrom": "etymologically derived from", "/r/CausesDesire": "causes desire",
    "/r/MadeOf": "made of", "/r/ReceivesAction": "receives action", "/r/InstanceOf": "instance of",
    "/r/Entails": "entails", "/r/NotDesires": "does not desire", "/r/NotUsedFor": "not used for",
    "/r/NotCapableOf": "not capable of", "/r/NotHasProperty": "does not have property",
    "/r/dbpedia/genre": "has genre", "/r/dbpedia/influencedBy": "influenced by", "/r/dbpedia/knownFor": "known for",
    "/r/dbpedia/occupation": "has occupation", "/r/dbpedia/language": "has language", "/r/dbpedia/field": "works in field",
    "/r/dbpedia/product": "makes product", "/r/dbpedia/capital": "has capital", "/r/dbpedia/leader": "has leader",
    "/r/dbpedia/genus": "in genus",
}
"""A readable text for every relation of ConceptNet 5.7 (``/r/ExternalURL`` is dropped)."""

_NODE = r"^/c/(?P<lang>[^/]+)/(?P<term>[^/]+)"
_WEIGHT = r'"weight":\s*(?P<w>-?[0-9][0-9.eE+-]*)'
_DATASET = r'"dataset":\s*"(?P<d>[^"]*)"'


def relation_key(name: str) -> str:
    """``IsA`` or ``/r/IsA`` -> ``/r/IsA``."""
    return name if name.startswith("/r/") else f"/r/{name}"


def _relation_text(key: str) -> str:
    if key in RELATION_TEXT:
        return RELATION_TEXT[key]
    last = key.rsplit("/", 1)[-1]
    return " ".join(re.sub(r"(?<!^)(?=[A-Z])", " ", last).lower().split())


def _check_first_line(path: Path) -> None:
    with open_binary(path) as f:
        first = f.readline()
    if not first:
        raise SourceError(f"{path}: empty file")
    n = first.rstrip(b"\r\n").count(b"\t") + 1
    if n != len(COLUMNS):
        raise SourceError(f"{path}:1: expected {len(COLUMNS)} tab-separated columns (ConceptNet assertions), found {n}")


def _as_utf8(batch: pa.RecordBatch, path: Path, conv: Conversion) -> pa.Table:
    """Cast the binary columns to strings; rows with bytes that are not UTF-8 are counted and dropped."""
    table = pa.Table.from_batches([batch])
    try:
        return pa.table({c: pc.cast(table[c], pa.string()) for c in COLUMNS})
    except pa.ArrowInvalid:
        pass
    good = np.ones(len(table), dtype=bool)
    for c in COLUMNS:
        for i, v in enumerate(table[c].to_pylist()):
            try:
                v.decode("utf-8")
            except UnicodeDecodeError:
                if good[i]:
                    conv.skip("not UTF-8", f"{path}: record {v[:60]!r}")
                good[i] = False
    table = table.filter(pa.array(good))
    return pa.table({c: pc.cast(table[c], pa.string()) for c in COLUMNS})


def _csv_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


@dataclasses.dataclass
class ConceptNet(Converter):
    """A ConceptNet 5 assertion dump; a *record* is one line."""

    name = "conceptnet"
    description = "ConceptNet 5 assertion dump"

    assertions: str = option(None, help="conceptnet-assertions-5.7.0.csv[.gz]", positional=True)
    lang: list[str] = option(["en"], help="languages both ends must have (default: en; 'all' for any)", nargs="+")
    relations: list[str] | None = option(None, help="comma-separated relations to keep, e.g. IsA,PartOf", type=_csv_list)
    min_weight: float | None = option(None, help="drop assertions lighter than this", type=float)
    block_size: int = 1 << 24
    """Bytes per parsed block (not an option)."""

    def check(self) -> None:
        if self.min_weight is not None and not math.isfinite(self.min_weight):
            raise SourceError(f"--min-weight must be a finite number, got {self.min_weight}")

    def convert(self, writer: StoreWriter, conv: Conversion) -> None:
        """Stream the dump in blocks; both ends must be in ``lang``, the relation in ``relations``."""
        path = require_file(self.assertions, "ConceptNet assertions file")
        _check_first_line(path)

        def on_invalid(row: pacsv.InvalidRow) -> str:
            conv.read_block(1)
            conv.skip(f"{row.actual_columns} columns instead of {row.expected_columns}", f"{path}: record {row.text[:80]!r}")
            return "skip"

        with _UndecodableRows() as undecodable:
            try:
                reader = pacsv.open_csv(
                    path,
                    read_options=pacsv.ReadOptions(column_names=COLUMNS, block_size=self.block_size),
                    parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False, escape_char=False, invalid_row_handler=on_invalid),
                    convert_options=pacsv.ConvertOptions(column_types={c: pa.binary() for c in COLUMNS}),
                )
            except (OSError, pa.ArrowInvalid) as exc:
                raise SourceError(f"{path}: cannot read ({undecodable.reason(exc)})") from None
            langs = None if not self.lang or self.lang == ["all"] else self.lang
            lang_set = pa.array(list(langs)) if langs else None
            rel_set = pa.array([relation_key(r) for r in self.relations]) if self.relations else None
            rel_ids: dict[str, int] = {}
            with progress.bar(desc="conceptnet", unit=" lines", unit_scale=True) as bar:
                while not conv.done():
                    try:
                        batch = reader.read_next_batch()
                    except StopIteration:
                        break
                    except (OSError, pa.ArrowInvalid, EOFError) as exc:
                        raise SourceError(f"{path}: truncated or corrupt after about {conv.read} records ({undecodable.reason(exc)})") from None
                    batch = batch.slice(0, conv.read_block(len(batch)))
                    bar.update(len(batch))
                    _convert_block(_as_utf8(batch, path, conv), writer, conv, lang_set, rel_set, self.min_weight, rel_ids)


class _UndecodableRows:
    """Catches pyarrow's report of a malformed row that is not UTF-8.

    pyarrow decodes a malformed row's text before it calls ``invalid_row_handler``; for a row that
    is not UTF-8 this fails inside pyarrow, is printed as an ignored exception (a traceback on
    stderr), and the reader then stops with a parse error. Within this context the report is kept
    instead, and :meth:`reason` says what happened in one line.
    """

    def __enter__(self) -> "_UndecodableRows":
        self.seen: BaseException | None = None
        self._previous = sys.unraisablehook
        sys.unraisablehook = self._hook
        return self

    def _hook(self, report: Any) -> None:
        if isinstance(report.exc_value, UnicodeDecodeError):
            self.seen = report.exc_value
        else:
            self._previous(report)

    def __exit__(self, *exc: object) -> None:
        sys.unraisablehook = self._previous

    def reason(self, exc: BaseException) -> str:
        first = quoted(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, 160)
        return f"a line with the wrong number of columns is not UTF-8 either: {first}" if self.seen is not None else first


class _Rows:
    """The rows of a block still kept, and the counting of the ones each check drops."""

    def __init__(self, n: int, conv: Conversion) -> None:
        self.alive = np.ones(n, dtype=bool)
        self.conv = conv

    def keep(self, ok: np.ndarray | pa.Array | pa.ChunkedArray, reason: str, bad: bool) -> None:
        """Drop the kept rows where ``ok`` is false (or null), counting them under ``reason``."""
        if not isinstance(ok, np.ndarray):
            ok = pc.fill_null(ok, False).to_numpy(zero_copy_only=False)
        lost = int(np.count_nonzero(self.alive & ~ok))
        if lost:
            self.conv.skip(reason, None, bad=bad, n=lost)
            self.alive &= ok


def _convert_block(table, writer, conv, lang_set, rel_set, min_weight, rel_ids) -> None:
    n = len(table)
    rows = _Rows(n, conv)
    relation = table["relation"]
    rows.keep(pc.not_equal(relation, "/r/ExternalURL"), "ExternalURL relation", bad=False)
    if rel_set is not None:
        rows.keep(pc.is_in(relation, value_set=rel_set), "relation not selected", bad=False)
    # Each distinct node URI of the block is parsed once; rows refer to it by its dictionary index.
    nodes = pc.dictionary_encode(pa.concat_arrays(table["start"].chunks + table["end"].chunks))
    node_index = nodes.indices.to_numpy()
    start, end = node_index[:n], node_index[n:]
    parsed = pc.extract_regex(nodes.dictionary, _NODE)
    node_ok = pc.is_valid(parsed).to_numpy(zero_copy_only=False)
    rows.keep(node_ok[start] & node_ok[end], "node is not /c/<lang>/<term>", bad=True)
    if lang_set is not None:
        lang_ok = pc.fill_null(pc.is_in(pc.struct_field(parsed, "lang"), value_set=lang_set), False).to_numpy(zero_copy_only=False)
        rows.keep(lang_ok[start] & lang_ok[end], "language not selected", bad=False)
    kept = np.flatnonzero(rows.alive)
    info = table["info"].take(pa.array(kept))
    text = pc.struct_field(pc.extract_regex(info, _WEIGHT), "w")
    ok = pc.is_valid(text).to_numpy(zero_copy_only=False)
    rows.keep(_widen(ok, kept, n), "no weight in the JSON column", bad=True)
    weight, number = _numbers(text)
    rows.keep(_widen(number, kept, n), "weight is not a number", bad=True)
    ok &= number
    if min_weight is not None:
        heavy = weight >= min_weight  # NaN (no weight) is not
        rows.keep(_widen(heavy, kept, n), "below --min-weight", bad=False)
        ok &= heavy
    if not ok.any():
        return
    kept, info, weight = kept[ok], info.filter(pa.array(ok)), weight[ok]
    dataset = pc.struct_field(pc.extract_regex(info, _DATASET), "d")

    # The block's nodes, in order of first appearance (starts, then ends), each looked up or added once.
    start, end = start[kept], end[kept]
    used = pd.unique(np.concatenate([start, end]))
    uri = nodes.dictionary.take(pa.array(used))
    terms = pc.struct_field(parsed, "term").take(pa.array(used))
    texts = pc.utf8_trim_whitespace(pc.utf8_normalize(pc.replace_substring(terms, "_", " "), "NFC"))
    long = pc.greater(pc.utf8_length(texts), MAX_TEXT_CHARS).to_numpy(zero_copy_only=False)
    if long.any():
        texts = pc.utf8_slice_codeunits(texts, 0, MAX_TEXT_CHARS)
    before = writer.num_entities
    ids = writer.add_entities(pc.binary_join_element_wise(f"{SOURCE}:", uri, ""), "text", source=SOURCE, texts=texts)
    n_long = int((long & (ids >= before)).sum())  # count each cut text once, when its entity is new
    if n_long:
        conv.note("text cut", n_long)
    node_id = np.empty(len(nodes.dictionary), dtype=np.int64)
    node_id[used] = ids
    h, t = node_id[start], node_id[end]

    rel = pc.dictionary_encode(relation.take(pa.array(kept))).combine_chunks()
    names = rel.dictionary.to_pylist()
    for r in names:
        if r not in rel_ids:
            rel_ids[r] = writer.add_relation(r, _relation_text(r))
    rel_lookup = np.array([rel_ids[r] for r in names], dtype=np.int64)
    loops = int((h == t).sum())
    if loops:
        conv.note("self-loop kept", loops)
    writer.add_triplets(h, rel_lookup[rel.indices.to_numpy()], t, source=SOURCE, weight=weight, dataset=dataset)
    conv.kept += len(kept)


_FLOAT = r"^-?[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]+)?$"
"""Of the texts ``_WEIGHT`` finds, those pyarrow's cast to float64 reads (``1-2`` or ``1e`` it refuses)."""


def _numbers(text: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Each string as a float64 (NaN where null or not a number), and where it is a number (or null)."""
    try:
        values = pc.cast(text, pa.float64(), safe=False)
        return pc.fill_null(values, np.nan).to_numpy(zero_copy_only=False), np.ones(len(text), dtype=bool)
    except pa.ArrowInvalid:  # a weight such as 1-2: cast only what reads as a number
        pass
    readable = pc.fill_null(pc.match_substring_regex(text, _FLOAT), False).to_numpy(zero_copy_only=False)
    out = np.full(len(text), np.nan)
    at = np.flatnonzero(readable)
    try:
        out[at] = pc.cast(text.take(pa.array(at)), pa.float64(), safe=False).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:  # never seen: one at a time then
        for i, v in zip(at.tolist(), text.take(pa.array(at)).to_pylist(), strict=True):
            try:
                out[i] = pc.cast(pa.array([v], pa.string()), pa.float64(), safe=False)[0].as_py()
            except pa.ArrowInvalid:
                readable[i] = False
    return out, readable | pc.is_null(text).to_numpy(zero_copy_only=False)


def _widen(ok: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """A mask over the ``rows`` of a block as a mask over all ``n`` rows (True elsewhere)."""
    out = np.ones(n, dtype=bool)
    out[rows] = ok
    return out
