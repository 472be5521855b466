"""What every converter shares: record accounting, bad-record policy, text cleaning, file opening."""

import ast
import gzip
import io
import math
import os
import reprlib
import sys
import unicodedata
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import ijson
import numpy as np

from kgclip.errors import SourceError
from kgclip.store import StoreWriter

MAX_TEXT_CHARS = 300
"""Longer entity texts are cut to this many characters (and counted as ``text cut``)."""
MAX_REPORTED = 5
BOM = "\ufeff"
"""A UTF-8 byte order mark, dropped from the start of a file."""
IMAGE_ESCAPES = "image path escapes its image root"
"""The skip reason of an image path that leads outside its image folder."""
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
        big file does not stop it. Bad entries of a source's other files (an image table, glosses)
        count against the records read too; ``max_bad_fraction`` 1 never stops.
        """
        n_bad = sum(self.bad.values())
        if not n_bad or (not final and self.read < 1000) or self.max_bad_fraction >= 1:
            return
        if n_bad > self.max_bad_fraction * max(self.read, 1):
            reasons = ", ".join(f"{r} {n}" for r, n in self.bad.most_common())
            raise SourceError(
                f"{self.source}: {n_bad} bad records of {self.read} read ({reasons}) is above the allowed "
                f"fraction {self.max_bad_fraction}; fix the input or raise --max-bad-fraction"
            )

    def check_kept(self) -> None:
        """Raise :class:`SourceError` when no record was kept: an empty store is never written."""
        if self.kept:
            return
        skipped = self.bad + self.filtered
        why = f" (skipped {', '.join(f'{r} {n}' for r, n in skipped.most_common())})" if skipped else ""
        raise SourceError(f"{self.source}: no record kept of {self.read} read{why}; no store written")

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


def quoted(value: object, limit: int = 200) -> str:
    """``repr(value)`` for a message: one line, at most about ``limit`` characters, nested values shown 3 deep."""
    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother, short.maxlist, short.maxdict = 3, limit, limit, 8, 8
    text = short.repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def as_int(value: object) -> int | None:
    """A JSON integer that fits 64 bits as an int (also ``3.0``); None for anything else (strings, booleans, null, NaN, lists, 1e308)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and -(2**63) <= value < 2**63:
        return value
    return None


def as_number(value: object) -> float | None:
    """A finite JSON number as a float; None for anything else (strings such as ``"NaN"``, booleans, null, infinities)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class ImageRoot:
    """A source's image folder: the image paths of its records must lead to files below it.

    Args:
        path: the folder (``--images``).
        check: the images are checked during conversion (the folder must exist, and a path is
            followed through symbolic links as it will be at load time); without it the path is
            checked as written (no ``..`` above the folder, not absolute) and the disk is not touched.

    Raises:
        SourceError: the folder is a file, or (with ``check``) does not exist.
    """

    def __init__(self, path: str | os.PathLike, *, check: bool = True) -> None:
        self.path, self.check = Path(path), check
        if self.path.exists() and not self.path.is_dir():
            raise SourceError(f"{self.path}: is a file, not an image folder")
        if check and not self.path.is_dir():
            raise SourceError(f"{self.path}: image folder not found")
        self._real = os.path.realpath(self.path)
        self._prefix = self._real.rstrip(os.sep) + os.sep

    def inside(self, relative: object) -> bool:
        """True when ``relative`` (a path as a record gives it) leads below the folder."""
        if not isinstance(relative, str) or not relative or "\x00" in relative or os.path.isabs(relative):
            return False
        joined = os.path.join(self._real, relative)
        try:
            full = os.path.realpath(joined) if self.check else os.path.normpath(joined)
        except (OSError, ValueError):
            return False
        return full.startswith(self._prefix)

    def is_file(self, relative: str) -> bool:
        """True when ``relative`` is a file (always, without ``check``); a name the system refuses (too long) is no file."""
        if not self.check:
            return True
        try:
            return (self.path / relative).is_file()
        except (OSError, ValueError):
            return False


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
            if lineno == 1:
                line = line.removeprefix(BOM)
            yield lineno, line.rstrip("\r\n")


MAX_JSON_DEPTH = 64
"""Deepest nesting of JSON lists and objects read (the published files nest 6 deep). ijson keeps
the path of every open level, so a small file nested 100,000 deep would take tens of GB."""

_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_OPEN = np.zeros(256, dtype=np.int8)
_OPEN[[ord("["), ord("{")]] = 1
_OPEN[[ord("]"), ord("}")]] = -1
_SPECIAL = _OPEN != 0
_SPECIAL[[_QUOTE, _BACKSLASH]] = True
_SPECIAL_TABLE = _SPECIAL.astype(np.uint8).tobytes()


class _Tracked:
    """A binary JSON file that remembers how far it was read and its last chunk (to place an error),
    and refuses nesting deeper than :data:`MAX_JSON_DEPTH` as it is read.

    The depth is counted per chunk with numpy: brackets inside strings do not count; a quote is a
    string's end unless an odd run of backslashes precedes it. The state (inside a string, the
    trailing run of backslashes, the depth) carries over from chunk to chunk.
    """

    def __init__(self, f: io.BufferedIOBase, path: Path) -> None:
        self.f, self.path, self.pos, self.chunk, self.chunk_start = f, path, 0, b"", 0
        self.in_string, self.backslashes, self.depth = False, 0, 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        if data:
            self.chunk, self.chunk_start = data, self.pos
            self.pos += len(data)
            self._count_depth(data)
        return data

    def _count_depth(self, data: bytes) -> None:
        b = np.frombuffer(data, dtype=np.uint8)
        pos = np.flatnonzero(np.frombuffer(data.translate(_SPECIAL_TABLE), dtype=np.bool_))  # only quotes, backslashes and brackets matter
        if not len(pos):
            self.backslashes = 0
            return
        c = b[pos]
        if not self.backslashes and b"\\" not in data:  # the common case: every quote opens or closes a string
            quotes, run = c == _QUOTE, None
        else:
            k = np.arange(len(pos))
            is_bs = c == _BACKSLASH
            after_bs = np.zeros(len(pos), dtype=bool)  # the element right before is a backslash at the byte right before
            after_bs[1:] = is_bs[:-1] & (pos[:-1] + 1 == pos[1:])
            start = np.maximum.accumulate(np.where(is_bs & after_bs, 0, k))  # first element of each backslash run
            run = k - start + 1 + np.where(is_bs & (pos[start] == 0), self.backslashes, 0)  # backslashes up to k in its run
            before = np.zeros(len(pos), dtype=np.int64)  # backslashes right before each element
            before[1:] = np.where(after_bs[1:], run[:-1], 0)
            if pos[0] == 0:
                before[0] = self.backslashes
            quotes = (c == _QUOTE) & (before % 2 == 0)
        q = quotes.view(np.uint8)
        outside = (np.bitwise_xor.accumulate(q) ^ q).view(np.bool_)  # an odd number of quotes before: inside a string
        if not self.in_string:
            outside = ~outside
        depth = self.depth + np.cumsum(_OPEN[c] * outside, dtype=np.int64)
        if int(depth.max()) > MAX_JSON_DEPTH:
            at = self.chunk_start + int(pos[np.argmax(depth > MAX_JSON_DEPTH)])
            raise SourceError(f"{self.path}: JSON nested deeper than {MAX_JSON_DEPTH} levels at byte offset {at} (not a source file of this kind?)")
        self.depth = int(depth[-1])
        self.in_string = bool(self.in_string ^ (int(quotes.sum()) % 2 == 1))
        self.backslashes = int(run[-1]) if run is not None and b[-1] == _BACKSLASH else 0


_YAJL_CARET = 40
"""The column of yajl's ``^`` under the text around an error (``yajl_get_error`` with ``verbose``)."""


def _json_error(path: Path, exc: Exception, f: _Tracked, n: int) -> SourceError:
    """One line for invalid JSON: the file, the byte offset where the parser stopped (when it can be told), its reason, the text there."""
    msg = str(exc)
    raw = msg.encode("utf-8", "replace")
    if msg.startswith(("b'", 'b"')):  # yajl's message as a bytes repr when the text around is not UTF-8
        try:
            raw = ast.literal_eval(msg)
        except (ValueError, SyntaxError):
            pass
    lines = raw.splitlines() if isinstance(raw, bytes) else []
    reason = lines[0].decode("utf-8", "replace").strip() if lines else type(exc).__name__
    offset = f.pos if "premature EOF" in reason else None
    if offset is None and len(lines) >= 2 and lines[1].strip() and reason.startswith(("parse error", "lexical error")):
        # yajl prints the bytes before the place it stopped (30, or fewer padded with spaces at the
        # start of a chunk, so that this place is at column 40; newlines and tabs shown as spaces).
        context = lines[1]
        chunk = f.chunk.replace(b"\n", b" ").replace(b"\t", b" ")
        lead = len(context) - len(context.lstrip(b" "))
        if lead > 10 and chunk[:_YAJL_CARET - lead] == context[lead:_YAJL_CARET]:  # within the chunk's first 30 bytes
            offset = f.chunk_start + _YAJL_CARET - lead
        else:
            before = context[10:_YAJL_CARET]
            at = chunk.find(before)
            if len(before) == 30 and at >= 0 and chunk.find(before, at + 1) < 0:
                offset = f.chunk_start + at + len(before)
    if offset is None:
        return SourceError(f"{path}: invalid JSON in bytes {f.chunk_start}-{f.pos}, after {n} items ({reason})")
    k = offset - f.chunk_start
    around = f.chunk[max(0, k - 20): max(0, k + 10)]
    near = f" near {around.decode('utf-8', 'backslashreplace')!r}" if around.strip() else ""
    gz = " (uncompressed)" if path.suffix == ".gz" else ""
    return SourceError(f"{path}: invalid JSON at byte offset {offset}{gz}, after {n} items ({reason}{near})")


def iter_json(path: Path, prefix: str = "item", *, pairs: bool = False) -> Iterator[Any]:
    """Stream a large JSON file with ijson: the items under ``prefix`` (``"item"``: a top-level
    list's elements), or with ``pairs`` the (key, value) pairs of the object at ``prefix``.

    A byte order mark at the start is dropped. Invalid JSON is one line naming the file, the
    byte where it stops (when it can be told, else the range read last), the items read before
    and the parser's reason."""
    n = 0
    with open_binary(path) as raw:
        if raw.read(len(BOM.encode())) != BOM.encode():
            raw.seek(0)
        f = _Tracked(raw, path)
        f.pos = f.chunk_start = raw.tell()
        try:
            it = ijson.kvitems(f, prefix, use_float=True) if pairs else ijson.items(f, prefix, use_float=True)
            for n, item in enumerate(it, start=1):  # noqa: B007
                yield item
        except ijson.JSONError as exc:
            raise _json_error(path, exc, f, n) from None
