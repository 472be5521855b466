"""`kgclip run GRID.yaml`: train each variant of a grid, evaluate it, collect one CSV and one table."""

import argparse
import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from kgclip.config import apply_overrides, from_dict, load_yaml, load_yaml_section
from kgclip.errors import ConfigError
from kgclip.evaluation import evaluate, flat_metrics, scorer_for
from kgclip.store import open_valid
from kgclip.training import RunConfig, train_loop


@dataclass
class EvalSpec:
    store: str = ""
    assets: str | None = None
    max_queries: int | None = None


@dataclass
class GridConfig:
    name: str = "grid"
    base: str = ""
    overrides: list[str] = field(default_factory=list)
    variants: dict = field(default_factory=dict)
    eval: EvalSpec = field(default_factory=EvalSpec)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="train and evaluate every variant of a grid (e.g. the ablation)")
    p.add_argument("grid", help="grid YAML (see experiments/configs/ablation.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value applied to every variant (after the grid's own)")
    p.add_argument("--only", nargs="+", default=None, help="run only these variants")
    p.add_argument("--force", action="store_true", help="move earlier runs of the same variants aside (to <name>.old-<time>) and train again")
    p.set_defaults(func=run)


def variant_configs(grid_path: str | Path, only: list[str] | None = None, overrides: list[str] | None = None) -> tuple[GridConfig, dict[str, RunConfig]]:
    """The grid and the resolved training config of each (selected) variant, in the grid's order.

    A variant's config is the base config with the grid's overrides, the variant's own, then
    ``overrides`` (the command line), named ``<grid>_<variant>``.
    """
    grid_path = Path(grid_path)
    grid = from_dict(GridConfig, load_yaml(grid_path))
    if not grid.variants:
        raise ConfigError(f"{grid_path}: no variants")
    unknown = set(only or []) - set(grid.variants)
    if unknown:
        raise ConfigError(f"unknown variant(s) {sorted(unknown)}; the grid has {', '.join(grid.variants)}")
    base = load_yaml_section(grid.base, relative_to=grid_path)
    configs = {}
    for name, extra in grid.variants.items():
        if only and name not in only:
            continue
        data = apply_overrides(base, [*grid.overrides, *(extra or []), *(overrides or []), f"name={grid.name}_{name}"])
        configs[name] = from_dict(RunConfig, data)
    return grid, configs


def run(args: argparse.Namespace) -> int:
    grid, configs = variant_configs(args.grid, args.only, args.overrides)
    rows: dict[str, dict[str, float]] = {}
    out_dir = None
    for name, config in configs.items():
        out_dir = Path(config.run_dir)
        print(f"[grid] {name}: training {config.train.steps} steps")
        train_loop(config, force=args.force, quiet=args.quiet)
        if grid.eval.store:
            store = open_valid(grid.eval.store)
            scorer = scorer_for(str(out_dir / config.name), store, name=name)
            rows[name] = flat_metrics(evaluate(scorer, store, assets=grid.eval.assets, max_queries=grid.eval.max_queries))
    if rows and out_dir is not None:
        columns: list[str] = []
        for r in rows.values():
            columns += [k for k in r if k not in columns]
        with open(out_dir / f"{grid.name}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["variant", *columns])
            for name, r in rows.items():
                w.writerow([name, *(r.get(c, "") for c in columns)])
        fmt = lambda v: "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"  # noqa: E731
        lines = ["| variant | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
        lines += [f"| {name} | " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for name, r in rows.items()]
        (out_dir / f"{grid.name}.md").write_text("\n".join(lines) + "\n")
        print(f"[grid] results: {out_dir / grid.name}.csv and .md")
    return 0
