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


def test_a_shadowing_data_prep_package_is_refused_in_one_line(tmp_path):
    """A user's own ``data_prep`` earlier on the path must not be imported in place of kgclip's."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    (tmp_path / "data_prep").mkdir()
    (tmp_path / "data_prep" / "__init__.py").write_text("")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{repo}"}
    r = subprocess.run([sys.executable, "-m", "experiments.cli", "info", "nowhere"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "another package shadows kgclip's own (data_prep from " in r.stderr
    assert str(tmp_path / "data_prep") in r.stderr
    ok = subprocess.run([sys.executable, "-m", "experiments.cli", "info", "nowhere"], cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)},
                        capture_output=True, text=True)
    assert ok.returncode == 2 and "shadows" not in ok.stderr  # the store is missing, nothing is shadowed
