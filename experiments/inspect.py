"""`kgclip inspect STORE --entity KEY_OR_TEXT` and `kgclip query CHECKPOINT --head ... --relation ...`."""

import argparse
from pathlib import Path

import pandas as pd

from kgclip.errors import KgclipError
from kgclip.inspect import draw_neighbourhood, neighbourhood
from kgclip.store import open_valid


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="the neighbourhood of an entity, as a table and a drawing")
    p.add_argument("store")
    p.add_argument("--entity", required=True, help="entity key or text")
    p.add_argument("--hops", type=int, default=2)
    p.add_argument("--max-triplets", type=int, default=50)
    p.add_argument("--png", default=None, help="write the drawing here")
    p.set_defaults(func=run_inspect)

    q = sub.add_parser("query", help="ask a trained model: top tails of (head, relation, ?) or relations of (head, ?, tail)")
    q.add_argument("checkpoint", help="checkpoint file or run folder")
    q.add_argument("--store", default=None, help="store (default: the one the checkpoint was trained on)")
    q.add_argument("--head", required=True, help="entity key or text, an image file, or a new text")
    q.add_argument("--relation", default=None, help="relation key or text (asks for tails)")
    q.add_argument("--tail", default=None, help="entity, image file or text (asks for relations)")
    q.add_argument("--modality", choices=["image", "text"], default=None, help="restrict tails to one modality")
    q.add_argument("--top", type=int, default=10)
    q.set_defaults(func=run_query)


def _at_least(value: int, least: int, flag: str) -> None:
    if value < least:
        raise KgclipError(f"{flag} must be at least {least}, got {value}")


def _png_target(value: str) -> Path:
    """``--png``'s file: a name ending in .png in a folder that exists (checked before any work)."""
    p = Path(value)
    if p.suffix.lower() != ".png" or p.is_dir():
        raise KgclipError(f"--png {value}: give a file name ending in .png")
    if not p.parent.is_dir():
        raise KgclipError(f"--png {value}: no folder {p.parent}")
    return p


def run_inspect(args: argparse.Namespace) -> int:
    _at_least(args.hops, 0, "--hops")
    _at_least(args.max_triplets, 1, "--max-triplets")
    png = _png_target(args.png) if args.png else None
    store = open_valid(args.store)
    nb = neighbourhood(store, args.entity, hops=args.hops, max_triplets=args.max_triplets)
    with pd.option_context("display.width", 200, "display.max_rows", 500, "display.max_colwidth", 60):
        print(nb.triplets[["head", "relation", "tail", "head_modality", "tail_modality"]].to_string(index=False))
    if nb.truncated:
        print(f"(cut to {args.max_triplets} of {nb.total} triplets; raise --max-triplets to see more)")
    if png is not None:
        try:
            _, n = draw_neighbourhood(store, nb, png=str(png))
        except OSError as exc:
            raise KgclipError(f"--png {png}: cannot write ({exc.strerror or exc})") from None
        print(f"wrote {png} ({n} nodes)")
    return 0


def run_query(args: argparse.Namespace) -> int:
    from kgclip.query import QueryEngine

    if (args.relation is None) == (args.tail is None):
        raise KgclipError("give --relation (for tails) or --tail (for relations)")
    _at_least(args.top, 1, "--top")
    engine = QueryEngine(args.checkpoint, args.store)
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        if args.relation is not None:
            print(engine.tails(args.head, args.relation, top=args.top, modality=args.modality).to_string(index=False))
        else:
            print(engine.relations(args.head, args.tail, top=args.top).to_string(index=False))
    return 0
