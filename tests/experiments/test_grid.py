import csv

import yaml

from experiments.cli import main
from tests.kgclip.training.test_loop import _config, _store


def test_grid_trains_and_collects_every_variant(tmp_path):
    store = _store(tmp_path)
    _, base = _config(tmp_path, store, **{"train.steps": 2})
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    grid = {"name": "abl", "base": "base.yaml", "overrides": ["train.log_every=1"],
            "variants": {"full": [], "no_g2e": ["loss.g2e=0"], "pairs_only": ["loss.e2e=0", "loss.e2r=0", "loss.g2e=0", "loss.kd=0"]},
            "eval": {"store": str(store), "max_queries": 20}}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
    assert main(["--quiet", "run", str(tmp_path / "grid.yaml")]) == 0
    runs = tmp_path / "runs"
    with open(runs / "abl.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["variant"] for r in rows] == ["full", "no_g2e", "pairs_only"]
    assert all(r["link_mrr"] not in ("", "nan") for r in rows)
    assert (runs / "abl.md").read_text().count("\n") == 5
    no_g2e = list(csv.DictReader(open(runs / "abl_no_g2e" / "metrics.csv")))
    assert all(r["g2e"] == "" for r in no_g2e) and all(r["e2e"] != "" for r in no_g2e)


def test_grid_unknown_variant(tmp_path, capsys):
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump({"name": "g", "base": "x.yaml", "variants": {"a": []}}))
    assert main(["run", str(tmp_path / "grid.yaml"), "--only", "b"]) == 2
    assert "unknown variant(s) ['b']" in capsys.readouterr().err
