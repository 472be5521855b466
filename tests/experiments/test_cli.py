import re

import pytest

from experiments.cli import main


def test_info_reports_counts_and_validation(toy_store, capsys):
    assert main(["info", str(toy_store)]) == 0
    out = capsys.readouterr().out
    assert "entities 5  relations 3  triplets 6" in out
    assert "validation: ok" in out
    assert re.search(r"image +image +1", out)  # the modality-pair table


def test_info_refuses_broken_store_in_one_line(toy_store, capsys):
    (toy_store / "manifest.json").write_text("{not json")
    assert main(["info", str(toy_store)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "manifest.json: unreadable manifest" in err[0]


def test_cli_typo_is_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["inf"])
    assert exc.value.code == 2
    assert "invalid choice: 'inf'" in capsys.readouterr().err


def test_prepare_triples_and_bad_fraction(tmp_path, capsys):
    f = tmp_path / "t.tsv"
    f.write_text("dog\t/r/IsA\tanimal\ncat\t/r/IsA\tanimal\nbroken line\n")
    assert main(["prepare", "triples", str(f), "--out", str(tmp_path / "s")]) == 2
    assert "1 bad records of 3 read" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
    assert main(["prepare", "triples", str(f), "--out", str(tmp_path / "s"), "--max-bad-fraction", "0.5"]) == 0
    out = capsys.readouterr()
    assert "read 3, kept 2" in out.out and "t.tsv:3: 1 fields instead of 3" in out.err
