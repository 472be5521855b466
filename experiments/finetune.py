"""`kgclip finetune TASK --init INIT --out RUN [key=value ...]`: downstream fine-tuning and evaluation.

The task's settings come from ``experiments/configs/finetune/<task>.yaml`` (or ``--config``),
then the ``key=value`` overrides; the data flags fill its ``data`` section.
"""

import argparse
import sys
from pathlib import Path

from kgclip.config import load_yaml_section
from kgclip.finetune import run

CONFIG_DIR = Path(__file__).resolve().parent / "configs" / "finetune"

DATA_FLAGS: dict[str, list[tuple[str, str]]] = {
    "vqa": [("--train-questions", "VQA v2 training questions JSON"), ("--train-annotations", "VQA v2 training annotations JSON"),
            ("--eval-questions", "VQA v2 evaluation questions JSON"), ("--eval-annotations", "VQA v2 evaluation annotations JSON"),
            ("--images", "folder with the COCO images (COCO_<subtype>_<12-digit id>.jpg or <12-digit id>.jpg, any sub-folder)")],
    "snli-ve": [("--train", "SNLI-VE training jsonl"), ("--eval", "SNLI-VE evaluation jsonl (dev or test)"),
                ("--images", "folder with the Flickr30k images (named by Flikr30kID)")],
    "retrieval": [("--karpathy", "Karpathy split JSON (dataset_coco.json, dataset_flickr30k.json)"),
                  ("--images", "image root (COCO: holding train2014/ and val2014/)")],
    "classification": [("--train", "training ImageFolder (DIR/<class>/<image>)"), ("--eval", "evaluation ImageFolder (same class names)")],
    "glue": [("--task", "cola, sst2, mrpc, stsb, qqp, mnli, qnli or rte"), ("--train", "the task's train.tsv"),
             ("--eval", "the task's dev.tsv (MNLI: dev_matched.tsv)")],
}
HELP = {"vqa": "VQA v2 (official accuracy)", "snli-ve": "SNLI-VE visual entailment", "retrieval": "image-text retrieval (Karpathy splits)",
        "classification": "image classification, linear probe or full (ImageFolder)", "glue": "GLUE on the text tower"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune a Knowledge-CLIP or CLIP model on a downstream benchmark and evaluate it")
    tasks = p.add_subparsers(dest="finetune_task", required=True, metavar="TASK")
    for task, flags in DATA_FLAGS.items():
        t = tasks.add_parser(task, help=HELP[task], description=f"Fine-tune on {HELP[task]}; settings: {CONFIG_DIR / (task + '.yaml')}")
        t.add_argument("--init", required=True, help="kgclip run folder or checkpoint, MODEL:TAG (ViT-B-32:openai), MODEL:FILE.pt, or MODEL (random)")
        t.add_argument("--out", required=True, help="the run folder to write (refused if it exists, unless resume=latest or --force)")
        for flag, text in flags:
            t.add_argument(flag, required=True, help=text)
        t.add_argument("--config", default=None, help=f"settings YAML (default {task}.yaml beside this command), FILE.yaml#section allowed")
        t.add_argument("--force", action="store_true", help="move an existing run folder aside; resume despite another INIT")
        t.add_argument("overrides", nargs="*", help="key=value, e.g. steps=1000 batch_size=32 lr=1e-4 optim.tower_lr=1e-5 resume=latest")
        t.set_defaults(func=run_task)


def run_task(args: argparse.Namespace) -> int:
    task = args.finetune_task
    settings = load_yaml_section(args.config or CONFIG_DIR / f"{task}.yaml")
    data = dict(settings.get("data") or {})
    for flag, _ in DATA_FLAGS[task]:
        key = flag.lstrip("-").replace("-", "_")
        data[key] = getattr(args, key)
    settings = {**settings, "data": data}
    result = run(task, args.init, args.out, settings, args.overrides, force=args.force, quiet=args.quiet)
    shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in result.metrics.items())
    print(f"fine-tuned {task} for {result.train.steps} steps into {result.run_dir}: {shown}")
    for label, log in (("input records skipped", result.skipped), ("examples whose image failed to load", result.load_failures)):
        if len(log):
            print(f"kgclip finetune: {label}: {log.summary()} (first ones named in the report)", file=sys.stderr)
    print(f"report: {result.run_dir / 'report.md'}")
    return 0
