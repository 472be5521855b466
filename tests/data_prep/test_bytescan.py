import numpy as np
import pyarrow as pa
import pytest

from data_prep.bytescan import SCAN_STEPS, StringBytes, byte_class, first_matches


def test_find_keeps_occurrences_inside_a_row():
    arr = pa.array(['x"weight":1', '"weigh', 't":2 "weight": "weight":', "", None, '"weight":'])
    b = StringBytes(arr.slice(0))
    row, after = b.find(b'"weight":', 1)
    assert row.tolist() == [0, 2, 2, 5]  # row 1 ends with half of it: not an occurrence across rows
    assert [b.data[a - 1] for a in after] == [ord(":")] * 4 and after[0] == b.offsets[0] + 10
    with pytest.raises(ValueError):
        b.find(b'"w":', 1)


def test_skip_stops_at_the_class_end_the_row_end_or_the_step_limit():
    arr = pa.array(["  x", "   ", " " * (SCAN_STEPS + 5) + "y", "a"])
    b = StringBytes(arr)
    pos, long = b.skip(b.offsets[:-1].copy(), b.offsets[1:], byte_class(b" "))
    assert (pos - b.offsets[:-1]).tolist() == [2, 3, SCAN_STEPS, 0]  # the second row: stopped by its end, not by row 3's spaces
    assert long.tolist() == [False, False, True, False]


def test_strings_tails_and_first_matches():
    arr = pa.array(["ab=1;ab=22", "zz", "ab=x ab=3", "ab=" + "9" * 3])
    b = StringBytes(arr)
    lo = b.offsets[:-1]
    assert b.strings(lo + 1, lo + 2, np.array([True, False, True, True])).to_pylist() == ["b", None, "b", "b"]
    assert b.tails(lo[[0, 2]] + 3).to_pylist() == ["1;ab=22zzab=", "x ab=3ab=999"]  # each to the next start
    # occurrences of "ab=" with a digit after: row 0 twice (the first decides), row 2 fails then matches, row 3 undecided
    row = np.array([0, 0, 2, 2, 3])
    start = np.array([lo[0] + 3, lo[0] + 8, lo[2] + 3, lo[2] + 8, lo[3] + 3])
    stop = start + np.array([1, 2, 0, 1, 3])
    got = first_matches(b, row, np.array([1, 1, 0, 1, 2], dtype=np.int8), start, stop, r"ab=(?P<d>[0-9]+)", "d")
    assert got.to_pylist() == ["1", None, "3", "999"]
