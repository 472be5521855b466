"""data_prep.conceptnet: weights that are not numbers (the rest is tested through the command line in test_converters)."""

import numpy as np
import pyarrow as pa

from data_prep import conceptnet as cn
from experiments.cli import main
from kgclip.store import open_valid
from tests.data_prep import fixtures


def test_weight_that_is_not_a_number_is_a_counted_bad_line(tmp_path, capsys):
    rows = fixtures.CONCEPTNET_ROWS * 40 + [("/r/IsA", "/c/en/a", "/c/en/b", {"dataset": "/d/x"})]
    extra = b'/a/x\t/r/IsA\t/c/en/a\t/c/en/b\t{"dataset": "/d/x", "weight": 1-2}\n'  # pyarrow's cast refused it: a traceback before
    f = fixtures.write_conceptnet(tmp_path / "a.csv", rows=rows, extra=extra)
    assert main(["prepare", "conceptnet", str(f), "--out", str(tmp_path / "s")]) == 0
    source = open_valid(tmp_path / "s").manifest["sources"]["conceptnet"]
    assert source["skipped"]["weight is not a number"] == 1 and source["skipped"]["no weight in the JSON column"] == 1
    assert source["kept"] == len(fixtures.CONCEPTNET_ROWS) * 40 - 3 * 40  # the ExternalURL row and the two not in English dropped
    assert "Traceback" not in capsys.readouterr().err


def test_numbers_read_as_pyarrow_reads_them():
    w, ok = cn._numbers(pa.array(["1.5", None, "1-2", "1e", "-0.5e1", "1.", "1e999"]))
    assert ok.tolist() == [True, True, False, False, True, True, True]  # null: no weight, counted elsewhere
    assert w[0] == 1.5 and w[4] == -5.0 and w[5] == 1.0 and np.isinf(w[6]) and np.isnan(w[[1, 2, 3]]).all()
    w, ok = cn._numbers(pa.chunked_array([["2", None], ["3"]]))
    assert ok.all() and w[0] == 2.0 and np.isnan(w[1]) and w[2] == 3.0
