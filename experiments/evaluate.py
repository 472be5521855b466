"""`kgclip eval RUN_OR_CHECKPOINT --store STORE`: the evaluation suite for one trained model."""

import argparse
import json
import os
from pathlib import Path

import numpy as np

from kgclip.errors import KgclipError
from kgclip.evaluation import TASKS, evaluate, flat_metrics, scorer_for
from kgclip.store import open_valid
from kgclip.store.placement import temp_path


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
    if args.max_queries is not None and args.max_queries < 1:
        raise KgclipError(f"--max-queries must be at least 1, got {args.max_queries}")
    out = Path(args.out) if args.out else None
    if out is not None and (out.is_dir() or not out.parent.is_dir()):  # checked before the evaluation, not after it
        raise KgclipError(f"--out {out}: {'is a folder' if out.is_dir() else f'no folder {out.parent}'}")
    store = open_valid(args.store)
    scorer = scorer_for(args.run, store, as_clip=True if args.as_clip else None)
    result = evaluate(scorer, store, args.tasks, args.assets, args.max_queries)
    flat = flat_metrics(result)
    for k, v in flat.items():
        print(f"{k:<28} {v:.4f}" if isinstance(v, float) and not np.isnan(v) else f"{k:<28} {v}")
    if out is not None:
        tmp = temp_path(out)
        try:
            tmp.write_text(json.dumps({"metrics": flat, "detail": result}, indent=1, default=float))
            os.replace(tmp, out)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise KgclipError(f"--out {out}: cannot write ({exc.strerror or exc})") from None
    return 0
