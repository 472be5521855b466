"""What every converter shares: record accounting, bad-record policy, text cleaning, file opening."""

import gzip
import io
import os
import sys
import unicodedata
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import ijson

from kgclip.errors import SourceError
from kgclip.store import StoreWriter

MAX_TEXT_CHARS = 300
"""Longer entity texts are cut to this many characters (and counted as ``text cut``)."""
MAX_REPORTED = 5
T = TypeVar("T")


class Conversion:
    """Counts for one converted file: read, kept, skipped by reason.

    A *bad* skip is a malformed record; a *filtered* skip (another language, a dropped relation)
    is a record the options excluded. Bad skips are reported as ``file:line: reason`` (the first
    few) and, above ``max_bad_fraction`` of the records read, stop the conversion.

    Args:
        source: the source name (as in the store).
        writer: the store being written; skips are recorded in its manifest.
        max_bad_fraction: the largest tolerated share of bad records.
        limit: read only this many records (None: all).
        echo: where the first bad records are reported (stderr by default).
    """

    def __init__(
        self,
        source: str,
        writer: StoreWriter,
        *,
        max_bad_fraction: float = 0.01,
        limit: int | None = None,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.source = source
        self.writer = writer
        self.max_bad_fraction = max_bad_fraction
        self.limit = limit
        self.echo = echo or (lambda msg: print(msg, file=sys.stderr))
        self.read = 0
        self.kept = 0
        self.bad = Counter()
        self.filtered = Counter()
        self.notes = Counter()
        self.reported = 0

    def done(self) -> bool:
        """True once ``limit`` records have been read."""
        return self.limit is not None and self.read >= self.limit

    def records(self, items: Iterable[T]) -> Iterator[T]:
        """Yield the records of ``items``, each counted as read, and stop at ``limit``."""
        for item in items:
            if self.done():
                return
            self.read += 1
            yield item

    def read_block(self, n: int) -> int:
        """Count up to ``n`` records of a block as read (fewer once ``limit`` is near); returns how many."""
        n = n if self.limit is None else max(0, min(n, self.limit - self.read))
        self.read += n
        return n

    def skip(self, reason: str, where: str | None = None, *, bad: bool = True, n: int = 1) -> None:
        """Count ``n`` skipped records; bad ones are reported (first few) and checked against the limit."""
        (self.bad if bad else self.filtered)[reason] += n
        self.writer.count_skip(self.source, reason, n)
        if bad and where is not None and self.reported < MAX_REPORTED:
            self.echo(f"{where}: {reason}")
            self.reported += 1
        if bad:
            self.check(final=False)

    def note(self, reason: str, n: int = 1) -> None:
        """Count something kept but changed (texts cut, self-loops): recorded, not a skip."""
        self.notes[reason] += n
        self.writer.count_note(self.source, reason, n)

    def check(self, final: bool = True) -> None:
        """Raise :class:`SourceError` when bad records exceed the allowed share.

        Before the end (``final=False``) it waits for 1,000 records, so one early bad line in a
        big file does not stop it.
        """
        n_bad = sum(self.bad.values())
        if not n_bad or (not final and self.read < 1000):
            return
        if n_bad > self.max_bad_fraction * max(self.read, 1):
            reasons = ", ".join(f"{r} {n}" for r, n in self.bad.most_common())
            raise SourceError(
                f"{self.source}: {n_bad} bad records of {self.read} read ({reasons}) is above the allowed "
                f"fraction {self.max_bad_fraction}; fix the input or raise --max-bad-fraction"
            )

    def summary(self) -> str:
        parts = [f"{self.source}: read {self.read}, kept {self.kept}"]
        skipped = self.bad + self.filtered
        if skipped:
            parts.append("skipped " + ", ".join(f"{r} {n}" for r, n in skipped.most_common()))
        if self.notes:
            parts.append("kept but noted " + ", ".join(f"{r} {n}" for r, n in self.notes.most_common()))
        return "; ".join(parts)


def clean_text(text: object, conv: Conversion | None = None, max_chars: int = MAX_TEXT_CHARS) -> str | None:
    """Normalise a text (NFC, collapsed white space); None when empty; cut (and counted) when long."""
    if not isinstance(text, str):
        return None
    text = " ".join(unicodedata.normalize("NFC", text).split())
    if not text:
        return None
    if len(text) > max_chars:
        text = text[:max_chars]
        if conv is not None:
            conv.note("text cut")
    return text


def require_file(path: str | os.PathLike, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise SourceError(f"{p}: {what} not found")
    if not os.access(p, os.R_OK):
        raise SourceError(f"{p}: {what} is not readable")
    return p


@contextmanager
def open_binary(path: Path) -> Iterator[io.BufferedIOBase]:
    """Open a file, transparently gunzipped by its ``.gz`` ending; errors name the file."""
    try:
        f = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
    except OSError as exc:
        raise SourceError(f"{path}: cannot open ({exc.strerror or exc})") from None
    try:
        yield f
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise SourceError(f"{path}: truncated or corrupt gzip ({exc})") from None
    finally:
        f.close()


def iter_lines(path: Path, conv: Conversion) -> Iterator[tuple[int, str]]:
    """Yield (line number, decoded line without newline); a line that is not UTF-8 is a counted bad skip."""
    with open_binary(path) as f:
        for lineno, raw in conv.records(enumerate(f, start=1)):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                conv.skip("not UTF-8", f"{path}:{lineno}")
                continue
            yield lineno, line.rstrip("\r\n")


def iter_json(path: Path, prefix: str = "item", *, pairs: bool = False) -> Iterator[Any]:
    """Stream a large JSON file with ijson: the items under ``prefix`` (``"item"``: a top-level
    list's elements), or with ``pairs`` the (key, value) pairs of the object at ``prefix``.
    Invalid JSON is one error naming the file and how far it got."""
    n = 0
    with open_binary(path) as f:
        try:
            it = ijson.kvitems(f, prefix, use_float=True) if pairs else ijson.items(f, prefix, use_float=True)
            for n, item in enumerate(it, start=1):  # noqa: B007
                yield item
        except ijson.JSONError as exc:
            raise SourceError(f"{path}: invalid JSON after item {n} ({exc})") from None
