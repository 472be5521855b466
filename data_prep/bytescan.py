"""Byte-level scans of pyarrow string arrays in numpy: literal occurrences, runs of a byte class,
the strings between positions, a regular expression's leftmost match assembled from them.

A converter that pulls a few fields out of millions of rows with regular expressions spends most
of its time in the regular expression engine's per-row work. Here a row's bytes are looked at
only where a rare byte of the literal occurs, a step at a time for all rows at once. Every
pattern must be ASCII: in valid UTF-8 an ASCII byte is always that character, so matching bytes
matches characters (``data_prep.conceptnet`` checks its scans against its regular expressions).
"""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SCAN_STEPS = 64
"""Bytes of a class (whitespace, a number) followed a step at a time for all rows at once; a row
with a longer run is decided by the regular expression instead."""


def byte_class(chars: bytes) -> np.ndarray:
    """A 256-entry table: which byte values are in ``chars``."""
    table = np.zeros(256, dtype=bool)
    table[list(chars)] = True
    return table


class StringBytes:
    """The UTF-8 bytes of a string array's rows, for byte-level scans in numpy.

    Positions are byte positions in the array's value buffer; ``offsets[i]:offsets[i + 1]`` is row
    ``i``. Scans take each position's row end (``end``) and never read past it.

    Args:
        arr: a pyarrow ``string`` or ``large_string`` array (one chunk; a slice is fine).
    """

    def __init__(self, arr: pa.Array) -> None:
        self.arr = arr
        n = len(arr)
        width = 8 if pa.types.is_large_string(arr.type) else 4
        offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64 if width == 8 else np.int32, count=n + 1, offset=arr.offset * width)
        self.offsets = offsets.astype(np.int64)
        values = arr.buffers()[2]
        self.values = values if values is not None and len(values) >= 8 else pa.py_buffer(bytes(values or b"").ljust(8, b"\0"))
        self.data = np.frombuffer(self.values, dtype=np.uint8)
        self.last = len(self.data) - 1
        # the 8 bytes from each position as one little-endian word (the last 7 positions have none)
        self.words = np.ndarray(shape=(len(self.data) - 7,), dtype="<u8", buffer=self.data, strides=(1,))

    def byte(self, pos: np.ndarray) -> np.ndarray:
        """The byte at each position (any byte past the buffer's end: the caller checks ``end``)."""
        return self.data[np.minimum(pos, self.last)]

    def find(self, literal: bytes, anchor: int) -> tuple[np.ndarray, np.ndarray]:
        """Every occurrence of ``literal`` inside a row, in order.

        Args:
            literal: 8 bytes or more (occurrences must not overlap: true of JSON keys).
            anchor: the index of a rare byte of it; its positions are the candidates, checked a
                word of 8 bytes at a time.

        Returns:
            The row of each occurrence and the position just after it.
        """
        lo, hi, k = int(self.offsets[0]), int(self.offsets[-1]), len(literal)
        if k < 8:
            raise ValueError(f"find: a literal of 8 bytes or more, not {literal!r}")
        start = np.flatnonzero(self.data[lo:hi] == literal[anchor]) + (lo - anchor)
        start = start[(start >= lo) & (start + k <= hi)]
        for j in range(0, k, 8):  # the last word overlaps the one before it when k is not a multiple of 8
            j = min(j, k - 8)
            start = start[self.words[start + j] == int.from_bytes(literal[j : j + 8], "little")]
        row = np.searchsorted(self.offsets, start, side="right") - 1
        inside = start + k <= self.offsets[row + 1]
        return row[inside], start[inside] + k

    def skip(self, pos: np.ndarray, end: np.ndarray, cls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each position moved past the bytes of class ``cls`` that follow it (within its row);
        and where that run was longer than ``SCAN_STEPS`` (the position is then not final)."""
        pos = pos.copy()
        active = np.flatnonzero(cls[self.byte(pos)] & (pos < end))
        for _ in range(SCAN_STEPS):
            if not len(active):
                break
            p = pos[active] + 1
            pos[active] = p
            active = active[cls[self.byte(p)] & (p < end[active])]
        long = np.zeros(len(pos), dtype=bool)
        long[active] = True
        return pos, long

    def strings(self, start: np.ndarray, stop: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
        """The strings of bytes ``start[i]:stop[i]`` (each within one row, on character
        boundaries); null where ``valid`` is false (its start and stop equal)."""
        n = len(start)
        lengths = stop - start
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        idx = np.repeat(start - offsets[:-1], lengths)
        idx += np.arange(len(idx), dtype=np.int64)
        bitmap = None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little"))
        nulls = 0 if valid is None else int(n - np.count_nonzero(valid))
        return pa.StringArray.from_buffers(n, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(self.data[idx]), bitmap, nulls)

    def tails(self, start: np.ndarray) -> pa.Array:
        """Strings from each of the ascending positions ``start`` to the next one (the last: to the
        end of the last row), without copying: they cross rows, so only their beginnings are used."""
        offsets = np.append(start, self.offsets[-1]).astype(np.int32)
        return pa.StringArray.from_buffers(len(start), pa.py_buffer(offsets), self.values)


def first_matches(b: StringBytes, row: np.ndarray, status: np.ndarray, start: np.ndarray, stop: np.ndarray, pattern: str, group: str) -> pa.Array:
    """A regular expression's group for every row, from the outcomes at its literal's occurrences.

    The first occurrence of a row that does not fail decides the row: that is the leftmost match,
    the one the expression finds. Rows the scan could not decide are run through the expression.

    Args:
        b: the rows.
        row, status, start, stop: per occurrence of the pattern's literal, in order (row,
            position): its row; 1 where the pattern matches there, with the group at
            ``start:stop``; 0 where it does not; 2 where the scan could not tell.
        pattern, group: the regular expression and the group, for the undecided rows.

    Returns:
        A string array with the group of each row, null where the pattern does not match.
    """
    n = len(b.arr)
    live = np.flatnonzero(status)
    row = row[live]
    first = np.ones(len(row), dtype=bool)
    first[1:] = row[1:] != row[:-1]
    live, row = live[first], row[first]
    begin, finish = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    found = np.zeros(n, dtype=bool)
    matched = status[live] == 1
    found[row[matched]] = True
    begin[row[matched]] = start[live[matched]]
    finish[row[matched]] = stop[live[matched]]
    result = b.strings(begin, finish, found)
    unsure = row[~matched]
    if len(unsure):  # a run longer than the scan follows: the expression decides these rows
        exact = pc.struct_field(pc.extract_regex(b.arr.take(pa.array(unsure)), pattern), group).cast(pa.string())
        pick = np.arange(n)
        pick[unsure] = n + np.arange(len(unsure))
        result = pa.concat_arrays([result, exact]).take(pa.array(pick))
    return result
