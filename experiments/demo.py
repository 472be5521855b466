"""`kgclip demo`: the demo world, four models (three with ``hard_negatives=0``), one report.

(1) CLIP trained on the world's separate pretraining corpus (web-style pairs): the starting
"pretrained CLIP" and the teacher;
(2) CLIP continued from (1) on the knowledge store with only the image-text CLIP loss, for as many
steps as (3) (the paper's "CLIP + continual learning");
(3) Knowledge-CLIP started from (1) on the same store with the knowledge losses (the paper's recipe);
(4) the same with knowledge-derived hard negatives (``loss.hard_negatives``, beyond the paper), when
``hard_negatives`` is above 0.
All are evaluated on the same tasks and written to ``<out>/report.md``; the teacher is also
scored on the valid scenes, where its settings were chosen.
"""

import argparse
import json
import math
import resource
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated

from data_prep.demo_vqa import QUESTION_TYPES
from kgclip.config import Range, apply_overrides, from_dict, load_yaml, to_dict
from kgclip.errors import ConfigError
from kgclip.evaluation import evaluate, flat_metrics
from kgclip.evaluation.tasks import retrieval, zero_shot
from kgclip.model import export_open_clip
from kgclip.store import KnowledgeStore
from kgclip.training import RunConfig, train_loop
from kgclip.training.restore import load_trained
from kgclip.training.rundir import check_not_in_store

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "demo.yaml"


@dataclass
class PretrainConfig:
    """Stage (1): CLIP from scratch on the pretraining corpus (image-text CLIP loss only).

    Attributes:
        scenes: scenes of the pretraining corpus (apart from the knowledge world's).
        captions: captions per scene.
        simple_scenes, simple_steps: the simple scenes it starts with (single objects in one colour,
            captions without colour) and the steps on them before the corpus (0: no such start).
        steps, batch_size, lr, warmup_steps, min_lr_ratio: its optimisation (one rate for both
            towers; each part has its own warm-up and cosine).
    """

    scenes: int = 4000
    captions: int = 2
    simple_scenes: int = 0
    simple_steps: int = 0
    steps: int = 500
    batch_size: int = 64
    lr: float = 5e-4
    warmup_steps: int = 30
    min_lr_ratio: float = 0.0


@dataclass
class VqaStageConfig:
    """Each compared model fine-tuned on the demo VQA with the same budget (``kgclip finetune vqa``).

    Attributes:
        per_type: questions of each type per scene in the VQA files.
        steps, batch_size: the fine-tuning budget (the same for every model).
        lr: the fusion encoder's and answer head's rate; tower_lr: the towers'.
        warmup_steps, weight_decay: as in training.
        eval_split: the questions scored in the report (``test``; ``valid`` when choosing settings).
    """

    per_type: int = 3
    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    tower_lr: float = 1e-4
    warmup_steps: int = 30
    weight_decay: float = 0.05
    eval_split: str = "test"


@dataclass
class DemoConfig:
    """The demo pipeline (see experiments/configs/demo.yaml).

    Attributes:
        steps: the steps of (2), (3) and (4) on the knowledge store (the same for each).
        hard_negatives: K of row (4), Knowledge-CLIP with K hard negatives per triplet (0: no row 4).
    """

    out: str = "runs/demo"
    scenes: int = 720
    valid_fraction: float = 1 / 6
    test_fraction: float = 1 / 6
    seed: int = 0
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    vqa: VqaStageConfig = field(default_factory=VqaStageConfig)
    steps: int = 300
    hard_negatives: Annotated[int, Range(ge=0)] = 4
    eval_max_queries: int | None = 1000
    run: RunConfig = field(default_factory=RunConfig)


def stage_configs(cfg: DemoConfig, stores: dict[str, Path], out: Path) -> dict[str, RunConfig]:
    """The trainings, in order: (1) CLIP on the pretraining corpus (after the simple scenes when asked),
    (2) CLIP continued, (3) Knowledge-CLIP and (4) Knowledge-CLIP with hard negatives on the store,
    all from (1). A stage's towers are exported as ``<out>/<stage>.pt`` for the next ones. The
    CLIP-loss stages sample no G2E neighbourhood: their loss never looks at one."""
    base = replace(cfg.run, run_dir=str(out / "runs"), seed=cfg.seed)
    clip_loss = replace(base.loss, e2e=0.0, e2r=0.0, g2e=0.0, kd=0.0, clip=1.0)
    knowledge = replace(base.data, store=str(stores["store"]))
    pretrained = out / "clip_pretrain.pt"
    p = cfg.pretrain

    def pretraining(name: str, store: str, steps: int, start: Path | None) -> RunConfig:
        return replace(base, name=name, loss=clip_loss, data=replace(base.data, store=store, fanouts=[], batch_size=p.batch_size),
                       model=replace(base.model, pretrained=str(start) if start else None),
                       optim=replace(base.optim, tower_lr=p.lr, new_lr=p.lr, warmup_steps=p.warmup_steps, min_lr_ratio=p.min_lr_ratio),
                       train=replace(base.train, steps=steps))

    stages = {}
    if p.simple_steps:
        stages["clip_simple"] = pretraining("clip_simple", str(stores["pretrain_simple_store"]), p.simple_steps, None)
    stages["clip_pretrain"] = pretraining("clip_pretrain", str(stores["pretrain_store"]), p.steps, out / "clip_simple.pt" if p.simple_steps else None)
    start, steps = replace(base.model, pretrained=str(pretrained)), replace(base.train, steps=cfg.steps)
    stages["clip_continued"] = replace(base, name="clip_continued", loss=clip_loss, data=replace(knowledge, fanouts=[]), model=start, train=steps)
    stages["knowledge_clip"] = replace(base, name="knowledge_clip", data=knowledge, model=start, train=steps)
    if cfg.hard_negatives:
        stages["knowledge_clip_hn"] = replace(base, name="knowledge_clip_hn", data=knowledge, model=start, train=steps,
                                              loss=replace(base.loss, hard_negatives=cfg.hard_negatives))
    return stages


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

    if cfg.pretrain.scenes < 1:
        raise ConfigError(f"pretrain.scenes must be at least 1 (the teacher is trained on them), got {cfg.pretrain.scenes}")
    out = Path(cfg.out)
    check_not_in_store(out)  # its world and runs would be written into the store
    out.mkdir(parents=True, exist_ok=True)
    say = print
    clock = _Clock()
    say(f"[demo] 1/6 rendering the world ({cfg.scenes} scenes, {cfg.pretrain.scenes} pretraining scenes) and converting it through the real converters")
    files = write_demo_world(out / "world", scenes=cfg.scenes, seed=cfg.seed, valid_fraction=cfg.valid_fraction, test_fraction=cfg.test_fraction,
                             pretrain_scenes=cfg.pretrain.scenes, pretrain_captions=cfg.pretrain.captions,
                             simple_scenes=cfg.pretrain.simple_scenes if cfg.pretrain.simple_steps else 0, vqa_per_type=cfg.vqa.per_type)
    stores = convert_demo_world(files, seed=cfg.seed)
    clock.lap("world")
    store = KnowledgeStore(stores["store"])
    trainings = stage_configs(cfg, stores, out)
    teacher: dict[str, float] = {}
    for name, stage in trainings.items():
        say(f"[demo] {STEP_OF.get(name, 2)}/6 training {name} ({stage.train.steps} steps)")
        res = train_loop(stage, force=True, quiet=quiet)  # a demo run again moves its earlier runs aside
        clock.lap(name)
        say(f"        {res.steps} steps, {res.examples_per_second:.0f} triplets/s, data wait {100 * res.data_wait_share:.1f}%")
        if name in ("clip_simple", "clip_pretrain"):  # the starting towers of the next stages
            model, _, _ = load_trained(res.last_checkpoint)
            export_open_clip(model, out / f"{name}.pt")
        if name == "clip_pretrain":
            teacher = teacher_check(scorer_for(str(res.run_dir), store), store, files.eval_dir)
            say("        teacher: " + ", ".join(f"{k} {v:.3f}" for k, v in teacher.items()))
    stages = {k: v for k, v in trainings.items() if k in LABELS}  # the compared models
    say(f"[demo] 5/6 fine-tuning each model on the demo VQA ({cfg.vqa.steps} steps, {cfg.vqa.eval_split} questions scored)")
    vqa = {name: finetune_vqa(Path(stage.run_dir) / stage.name, out / "vqa" / name, files.vqa, cfg, quiet) for name, stage in stages.items()}
    clock.lap("vqa")
    say(f"[demo] 6/6 evaluating the {len(stages)} models")
    rows, details = {}, {}
    for name, stage in stages.items():
        scorer = scorer_for(str(Path(stage.run_dir) / stage.name), store, name=LABELS[name])
        result = evaluate(scorer, store, assets=files.eval_dir, max_queries=cfg.eval_max_queries)
        rows[LABELS[name]] = {**flat_metrics(result), **vqa[name]}
        details[LABELS[name]] = result
    clock.lap("evaluation")
    (out / "metrics.json").write_text(json.dumps({"metrics": rows, "teacher": teacher, "detail": details, "config": to_dict(cfg)},
                                                 indent=1, default=float))
    report = write_report(out, rows, {k: Path(s.run_dir) / s.name / "metrics.csv" for k, s in trainings.items()},
                          world=files.counts, config=cfg, timings=clock.laps, teacher=teacher, sizes=item_counts(files, cfg.vqa.eval_split))
    say(f"[demo] report: {report}")
    return report


LABELS = {"clip_pretrain": "(1) CLIP (pretrained)", "clip_continued": "(2) CLIP continued (image-text loss)",
          "knowledge_clip": "(3) Knowledge-CLIP", "knowledge_clip_hn": "(4) Knowledge-CLIP + hard negatives"}
STEP_OF = {"clip_continued": 3, "knowledge_clip": 4, "knowledge_clip_hn": 4}


class _Clock:
    """Wall and CPU seconds (user + system, this process and its finished children) of each stage."""

    def __init__(self) -> None:
        self.laps: dict[str, dict[str, float]] = {}
        self._last = self._now()

    @staticmethod
    def _now() -> tuple[float, float]:
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.time(), me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    def lap(self, name: str) -> None:
        now = self._now()
        self.laps[name] = {"wall_s": now[0] - self._last[0], "cpu_s": now[1] - self._last[1]}
        self._last = now


def finetune_vqa(init: Path, out: Path, files: dict[str, dict[str, Path]], cfg: DemoConfig, quiet: bool) -> dict[str, float]:
    """Fine-tune one trained model on the demo VQA through ``kgclip finetune vqa``; its accuracies as fractions.

    Returns ``vqa_overall`` and ``vqa_<question type>`` (color, position, size, count, shape, negation).
    """
    from kgclip.finetune import run as finetune

    v = cfg.vqa
    train, ev = files["train"], files[v.eval_split]
    settings = {
        "seed": cfg.seed, "batch_size": v.batch_size, "eval_batch_size": 256, "num_workers": 0,
        "data": {"train_questions": str(train["questions"]), "train_annotations": str(train["annotations"]),
                 "eval_questions": str(ev["questions"]), "eval_annotations": str(ev["annotations"]), "images": str(train["images"])},
        "optim": {"new_lr": v.lr, "tower_lr": v.tower_lr, "warmup_steps": v.warmup_steps, "weight_decay": v.weight_decay},
        "train": {"steps": v.steps, "checkpoint_every": v.steps, "keep_last": 1, "log_every": 10},
    }
    res = finetune("vqa", str(init), out, settings, force=True, quiet=quiet)
    per_type = res.evaluation.details.get("per_question_type", {})
    return {"vqa_overall": res.metrics["vqa_overall"] / 100, **{f"vqa_{t}": per_type.get(t, math.nan) / 100 for t in QUESTION_TYPES}}


def item_counts(files, vqa_split: str) -> dict[str, int]:
    """How many test items stand behind each accuracy column (for the verdicts' standard errors)."""
    ann = json.loads(files.vqa[vqa_split]["annotations"].read_text())["annotations"]
    sizes = {f"vqa_{t}": sum(a["question_type"] == t for a in ann) for t in QUESTION_TYPES}
    n_bind = files.counts.get("binding_items", 0)
    return {"vqa_overall": len(ann), **sizes, **{f"aro_{k}": n_bind for k in ("relation", "relation_kg", "attribute", "attribute_kg")}}


def teacher_check(scorer, store: KnowledgeStore, eval_dir: Path) -> dict[str, float]:
    """The teacher's image-text retrieval and zero-shot top-1 on the valid scenes (where its settings were chosen) and the test scenes."""
    out = {}
    for split, zs in (("valid", "zero_shot_valid.json"), ("test", "zero_shot.json")):
        r = retrieval(scorer, store, split=split)
        z = zero_shot(scorer, eval_dir / zs) if (eval_dir / zs).is_file() else {}
        out[f"{split}_r_mean"] = r.get("r_mean", float("nan"))
        out[f"{split}_zs_shape_top1"] = z.get("zs_shape_top1", float("nan"))
        out[f"{split}_zs_colour_top1"] = z.get("zs_colour_top1", float("nan"))
    return out
