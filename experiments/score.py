"""`kgclip score vqa --questions Q.json --annotations A.json --predictions P.json`: official benchmark scores."""

import argparse
import json
import sys

from kgclip.evaluation.vqa import score_files
from kgclip.skips import Skips


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="score predictions with a benchmark's official rules")
    benchmarks = p.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    v = benchmarks.add_parser("vqa", help="VQA v2 accuracy (official evaluation rules); prints one JSON object")
    v.add_argument("--questions", required=True, help="VQA v2 questions JSON (v2_OpenEnded_mscoco_*_questions.json)")
    v.add_argument("--annotations", required=True, help="VQA v2 annotations JSON (v2_mscoco_*_annotations.json)")
    v.add_argument("--predictions", required=True, help='results JSON: [{"question_id": int, "answer": str}]')
    v.set_defaults(func=run_vqa)


def run_vqa(args: argparse.Namespace) -> int:
    skips = Skips()
    result = score_files(args.questions, args.annotations, args.predictions, skips)
    if len(skips):
        print(f"kgclip score vqa: {skips.summary()}", file=sys.stderr)
    print(json.dumps(result.as_dict()))
    return 0
