"""The byte scans of data_prep.conceptnet give exactly what its regular expressions give."""

import random

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data_prep import conceptnet as cn
from experiments.cli import main
from kgclip.store import open_valid
from tests.data_prep import fixtures

JSON_TOKENS = ['"weight":', '"dataset":', '"weight"', '"dataset" :', " ", "\t", "\v", "\f", "-", "0", "7", ".", "e", "E", "+", '"', "x",
               "é", "{", "}", ",", ":", "/d/x", "\u2003", "w"]
NODE_TOKENS = ["/c/", "/", "c", "en", "é", "_", "x", "/c", "c/", "\u00a0"]


def _strings(rnd: random.Random, tokens: list[str], n: int, longest: int) -> list[str | None]:
    out: list[str | None] = []
    for _ in range(n):
        r = rnd.random()
        if r < 0.03:
            out.append(None)
        elif r < 0.06:  # runs longer than the scan's steps: the regular expression decides those rows
            out.append('"weight":' + " " * 70 + "1" + '"dataset": "' + "y" * 80 + '"' if rnd.random() < 0.5 else '"weight": ' + "9" * 80)
        else:
            out.append("".join(rnd.choice(tokens) for _ in range(rnd.randint(0, longest))))
    return out


def _regex(arr: pa.Array, pattern: str, group: str) -> list:
    return pc.struct_field(pc.extract_regex(arr, pattern), group).to_pylist()


def test_weight_and_dataset_scans_equal_the_regular_expressions():
    rnd = random.Random(0)
    values = _strings(rnd, JSON_TOKENS, 3000, 14)
    arr = pa.array(values, type=pa.string())
    for a in (arr, arr.slice(7, 2000), arr.take(pa.array(np.arange(len(arr))[::3]))):  # offsets, and a fresh buffer
        assert cn._weight_text(a).to_pylist() == _regex(a, cn._WEIGHT, "w")
        assert cn._dataset_text(a).to_pylist() == _regex(a, cn._DATASET, "d")
    typical = pa.array(['{"dataset": "/d/conceptnet/4/en", "weight": 1.5}', '{"weight":-2e3, "dataset":"/d/é"}', '{"weight": "1"}'])
    assert cn._weight_text(typical).to_pylist() == ["1.5", "-2e3", None]
    assert cn._dataset_text(typical).to_pylist() == ["/d/conceptnet/4/en", "/d/é", None]
    empty = pa.array([], type=pa.string())
    assert cn._weight_text(empty).to_pylist() == [] and cn._dataset_text(empty).to_pylist() == []


def test_node_scan_equals_the_regular_expression():
    rnd = random.Random(1)
    values = [v if v is not None else "" for v in _strings(rnd, NODE_TOKENS, 3000, 8)]
    values += ["/c/en/dog", "/c/en/dog/n/wn/animal", "/c//dog", "/c/en/", "/c/en", "c/en/dog", "/c/é/ça_va", ""]
    arr = pa.array(values, type=pa.string())
    for a in (arr, arr.slice(5, 2500)):
        nodes = cn._Nodes(a)
        want = pc.extract_regex(a, cn._NODE)
        assert nodes.ok.tolist() == pc.is_valid(want).to_pylist()
        assert nodes.lang.to_pylist() == pc.struct_field(want, "lang").to_pylist()
        assert nodes.terms(np.flatnonzero(nodes.ok)).to_pylist() == [x for x in pc.struct_field(want, "term").to_pylist() if x is not None]
    empty = cn._Nodes(pa.array([], pa.string()))
    assert len(empty.ok) == len(empty.lang) == len(empty.terms(np.array([], dtype=np.int64))) == 0


def test_weight_that_is_not_a_number_is_a_counted_bad_line(tmp_path, capsys):
    rows = fixtures.CONCEPTNET_ROWS * 40 + [("/r/IsA", "/c/en/a", "/c/en/b", {"dataset": "/d/x"})]
    f = fixtures.write_conceptnet(tmp_path / "a.csv", rows=rows, extra=b'/a/x\t/r/IsA\t/c/en/a\t/c/en/b\t{"dataset": "/d/x", "weight": 1-2}\n')
    assert main(["prepare", "conceptnet", str(f), "--out", str(tmp_path / "s")]) == 0
    skipped = open_valid(tmp_path / "s").manifest["sources"]["conceptnet"]["skipped"]
    assert skipped["weight is not a number"] == 1 and skipped["no weight in the JSON column"] == 1
    assert "Traceback" not in capsys.readouterr().err


def test_numbers_read_as_pyarrow_reads_them():
    w, ok = cn._numbers(pa.array(["1.5", None, "1-2", "1e", "-0.5e1", "1.", "1e999"]))
    assert ok.tolist() == [True, False, False, False, True, True, True]
    assert w[0] == 1.5 and w[4] == -5.0 and w[5] == 1.0 and np.isinf(w[6]) and np.isnan(w[[1, 2, 3]]).all()
