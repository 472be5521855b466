import csv
from pathlib import Path

import pytest
import yaml

from experiments.cli import main
from experiments.grid import variant_configs
from kgclip.config import from_dict, load_yaml, to_dict
from kgclip.training import RunConfig
from tests.kgclip.training.test_loop import _config, _store


def test_grid_trains_and_collects_every_variant(tmp_path):
    store = _store(tmp_path)
    _, base = _config(tmp_path, store, **{"train.steps": 2})
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    grid = {"name": "abl", "base": "base.yaml", "overrides": ["train.log_every=1"],
            "variants": {"full": [], "no_g2e": ["loss.g2e=0"], "clip_continual": ["loss.e2e=0", "loss.e2r=0", "loss.g2e=0", "loss.kd=0"]},
            "eval": {"store": str(store), "max_queries": 20}}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid, sort_keys=False))
    assert main(["--quiet", "run", str(tmp_path / "grid.yaml")]) == 0
    runs = tmp_path / "runs"
    with open(runs / "abl.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["variant"] for r in rows] == ["full", "no_g2e", "clip_continual"]
    assert all(r["link_mrr"] not in ("", "nan") for r in rows)
    assert (runs / "abl.md").read_text().count("\n") == 5
    no_g2e = list(csv.DictReader(open(runs / "abl_no_g2e" / "metrics.csv")))
    assert all(r["g2e"] == "" for r in no_g2e) and all(r["e2e"] != "" for r in no_g2e)


def test_grid_unknown_variant(tmp_path, capsys):
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump({"name": "g", "base": "x.yaml", "variants": {"a": []}}))
    assert main(["run", str(tmp_path / "grid.yaml"), "--only", "b"]) == 2
    assert "unknown variant(s) ['b']" in capsys.readouterr().err


CONFIGS = Path(__file__).resolve().parents[2] / "experiments" / "configs"
PAPER_LOSS = {"e2e": 1.0, "e2r": 1.0, "g2e": 1.0, "kd": 1.0, "clip": 0.0}


@pytest.mark.parametrize("name", ["paper_vitb32.yaml", "paper_vitl14.yaml"])
def test_paper_configs_use_the_papers_four_losses(name):
    config = from_dict(RunConfig, load_yaml(CONFIGS / name))
    assert {k: getattr(config.loss, k) for k in PAPER_LOSS} == PAPER_LOSS


def test_ablation_rows_share_the_data_and_differ_only_in_losses():
    _, configs = variant_configs(CONFIGS / "ablation.yaml")
    assert list(configs) == ["full", "no_e2e", "no_e2r", "no_g2e", "no_kd", "clip_continual"]
    weights = {name: {k: getattr(c.loss, k) for k in PAPER_LOSS} for name, c in configs.items()}
    assert weights["full"] == PAPER_LOSS
    for part in ("e2e", "e2r", "g2e", "kd"):
        assert weights[f"no_{part}"] == {**PAPER_LOSS, part: 0.0}
    assert weights["clip_continual"] == {"e2e": 0, "e2r": 0, "g2e": 0, "kd": 0, "clip": 1}  # CLIP's loss alone
    full = configs["full"]
    for name, c in configs.items():  # the same store, batches, sampling, steps, seed and model for every row
        assert to_dict(c)["data"] == to_dict(full)["data"], name
        assert (c.train.steps, c.seed, c.model) == (full.train.steps, full.seed, full.model), name
