"""`kgclip eval RUN_OR_CHECKPOINT --store STORE`: the evaluation suite for one trained model."""

import argparse
import json
from pathlib import Path

import numpy as np

from kgclip.errors import KgclipError
from kgclip.evaluation import TASKS, ClipScorer, KnowledgeClipScorer, evaluate, flat_metrics
from kgclip.model.clip import ClipBundle
from kgclip.store import KnowledgeStore
from kgclip.training.restore import load_trained, uses_fusion


def scorer_for(path: str, store: KnowledgeStore, name: str | None = None, as_clip: bool | None = None, device: str = "cpu"):
    """Knowledge-CLIP scoring for a run that trained the fusion encoder, CLIP scoring otherwise."""
    model, config, ckpt = load_trained(path)
    clip = not uses_fusion(config) if as_clip is None else as_clip
    if clip:
        bundle = ClipBundle(model.clip, model.preprocess_train, model.preprocess_val, model.tokenizer, config.model.clip_model)
        return ClipScorer(bundle, store, name or config.name, device=device)
    if list(ckpt.get("relation_keys") or []) != store.relation_keys.tolist():
        raise KgclipError(f"{path}: trained on another relation vocabulary ({ckpt['num_relations']} relations) than the store "
                          f"{store.path} ({store.num_relations}); evaluate on the store it was trained on")
    return KnowledgeClipScorer(model, store, name or config.name, device=device)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a trained run or checkpoint")
    p.add_argument("run", help="run folder (its latest checkpoint) or checkpoint file")
    p.add_argument("--store", required=True, help="knowledge store with the test triplets")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--assets", default=None, help="folder with zero_shot.json / binding.json")
    p.add_argument("--max-queries", type=int, default=None, help="evaluate at most N test triplets (a seeded sample)")
    p.add_argument("--as-clip", action="store_true", help="score with the towers only, as a plain CLIP")
    p.add_argument("--out", default=None, help="write metrics JSON here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    store = KnowledgeStore(args.store)
    scorer = scorer_for(args.run, store, as_clip=True if args.as_clip else None)
    result = evaluate(scorer, store, args.tasks, args.assets, args.max_queries)
    flat = flat_metrics(result)
    for k, v in flat.items():
        print(f"{k:<28} {v:.4f}" if isinstance(v, float) and not np.isnan(v) else f"{k:<28} {v}")
    if args.out:
        Path(args.out).write_text(json.dumps({"metrics": flat, "detail": result}, indent=1, default=float))
    return 0
