"""`kgclip demo`: the demo world, three models, one report.

(1) CLIP trained on the world's image-caption pairs: the starting "pretrained CLIP" and teacher;
(2) CLIP continued on the pairs for as many steps as (3);
(3) Knowledge-CLIP started from (1) with all four losses (and the pairs' CLIP loss).
All three are evaluated on the same tasks and written to ``<out>/report.md``.
"""

import argparse
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from kgclip.config import apply_overrides, from_dict, load_yaml, to_dict
from kgclip.evaluation import evaluate, flat_metrics
from kgclip.model import export_open_clip
from kgclip.store import KnowledgeStore
from kgclip.training import RunConfig, train_loop
from kgclip.training.restore import load_trained

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "demo.yaml"


@dataclass
class DemoConfig:
    """The demo pipeline (see experiments/configs/demo.yaml)."""

    out: str = "runs/demo"
    scenes: int = 600
    seed: int = 0
    pretrain_steps: int = 500
    pretrain_tower_lr: float = 5e-4
    steps: int = 300
    eval_max_queries: int | None = 1000
    run: RunConfig = field(default_factory=RunConfig)


def stage_configs(cfg: DemoConfig, stores: dict[str, Path], pretrained: Path) -> dict[str, RunConfig]:
    out = Path(cfg.out)
    base = replace(cfg.run, run_dir=str(out / "runs"), seed=cfg.seed)
    clip_loss = replace(base.loss, e2e=0.0, e2r=0.0, g2e=0.0, kd=0.0, clip=1.0)
    pairs_data = replace(base.data, store=str(stores["pairs_store"]), fanouts=[])
    return {
        "clip_pretrain": replace(base, name="clip_pretrain", loss=clip_loss, data=pairs_data,
                                 model=replace(base.model, pretrained=None),
                                 optim=replace(base.optim, tower_lr=cfg.pretrain_tower_lr, new_lr=cfg.pretrain_tower_lr),
                                 train=replace(base.train, steps=cfg.pretrain_steps)),
        "clip_continued": replace(base, name="clip_continued", loss=clip_loss, data=pairs_data,
                                  model=replace(base.model, pretrained=str(pretrained)), train=replace(base.train, steps=cfg.steps)),
        "knowledge_clip": replace(base, name="knowledge_clip", data=replace(base.data, store=str(stores["store"])),
                                  model=replace(base.model, pretrained=str(pretrained)), train=replace(base.train, steps=cfg.steps)),
    }


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the embedded demo: world, CLIP vs Knowledge-CLIP, report")
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="demo YAML (default: experiments/configs/demo.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. steps=50 scenes=100 run.data.batch_size=32")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = from_dict(DemoConfig, apply_overrides(load_yaml(args.config), args.overrides))
    run_demo(cfg, quiet=args.quiet)
    return 0


def run_demo(cfg: DemoConfig, quiet: bool = False) -> Path:
    from data_prep.demo_world import convert_demo_world, write_demo_world
    from experiments.evaluate import scorer_for
    from experiments.report import write_report

    t0 = time.time()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    say = print
    say(f"[demo] 1/5 rendering the world ({cfg.scenes} scenes) and converting it through the real converters")
    files = write_demo_world(out / "world", scenes=cfg.scenes, seed=cfg.seed)
    stores = convert_demo_world(files, seed=cfg.seed)
    pretrained = out / "clip_pretrain.pt"
    stages = stage_configs(cfg, stores, pretrained)
    timings = {}
    for i, (name, stage) in enumerate(stages.items(), start=2):
        say(f"[demo] {i}/5 training {name} ({stage.train.steps} steps)")
        ts = time.time()
        res = train_loop(stage, force=True, quiet=quiet)  # a demo run again moves its earlier runs aside
        timings[name] = time.time() - ts
        say(f"        {res.steps} steps, {res.examples_per_second:.0f} triplets/s, data wait {100 * res.data_wait_share:.1f}%")
        if name == "clip_pretrain":
            model, _, _ = load_trained(res.last_checkpoint)
            export_open_clip(model, pretrained)
    say("[demo] 5/5 evaluating the three models")
    store = KnowledgeStore(stores["store"])
    labels = {"clip_pretrain": "(1) CLIP (pairs)", "clip_continued": "(2) CLIP continued (pairs)", "knowledge_clip": "(3) Knowledge-CLIP"}
    rows, details = {}, {}
    for name, stage in stages.items():
        scorer = scorer_for(str(Path(stage.run_dir) / stage.name), store, name=labels[name])
        result = evaluate(scorer, store, assets=files.eval_dir, max_queries=cfg.eval_max_queries)
        rows[labels[name]] = flat_metrics(result)
        details[labels[name]] = result
    (out / "metrics.json").write_text(json.dumps({"metrics": rows, "detail": details, "config": to_dict(cfg)}, indent=1, default=float))
    report = write_report(out, rows, {labels[k]: Path(s.run_dir) / s.name / "metrics.csv" for k, s in stages.items()},
                          world=files.counts, config=cfg, elapsed=time.time() - t0, timings=timings)
    say(f"[demo] report: {report}")
    return report
