"""`kgclip train CONFIG.yaml [key=value ...]`: train one run into runs/<name>/."""

import argparse

from kgclip.config import apply_overrides, from_dict, load_yaml_section
from kgclip.training import RunConfig, train_loop


def load_run_config(path: str, overrides: list[str]) -> RunConfig:
    return from_dict(RunConfig, apply_overrides(load_yaml_section(path), overrides))


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train Knowledge-CLIP from a YAML config")
    p.add_argument("config", help="YAML config (see experiments/configs/), or FILE.yaml#section for a section of it")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.steps=100 data.batch_size=32")
    p.add_argument("--force", action="store_true",
                   help="a run of this name exists: move it aside to <name>.old-<time> and start afresh; with train.resume: "
                        "resume even if the store changed since the checkpoint")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_run_config(args.config, args.overrides)
    result = train_loop(config, force=args.force, quiet=args.quiet)
    parts = ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
    print(f"trained {result.steps} steps into {result.run_dir} ({result.examples_per_second:.1f} triplets/s, "
          f"data wait {100 * result.data_wait_share:.1f}%); last losses: {parts}; checkpoint {result.last_checkpoint}")
    return 0
