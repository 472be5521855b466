"""`kgclip info STORE`: what a store holds and whether it is valid."""

import argparse

import pandas as pd

from kgclip.graph import modality_pair_stats, relation_stats, source_stats
from kgclip.store import open_valid
from kgclip.store.connectivity import connectivity
from kgclip.store.validate import content_problems


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="counts and validation of a knowledge store")
    p.add_argument("store", help="store folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    store = open_valid(args.store)  # a broken store is one line and exit 2 before anything is printed
    m = store.manifest
    c = m["counts"]
    print(f"store {store.path}  (format {m['format_version']}, written by kgclip {m.get('kgclip_version')})")
    print(f"entities {c['entities']}  relations {c['relations']}  triplets {c['triplets']}  "
          f"splits {c.get('splits')}  duplicates removed {m.get('duplicates_removed', 0)}  "
          f"self-loops {m.get('self_loops', 0)}")
    print(f"leakage (triplets whose entity pair is also in another split): {m.get('leakage', 'not counted')}")
    print(f"connectivity: {connectivity(store)}  aliases {len(store.aliases)}")
    with pd.option_context("display.width", 160, "display.max_rows", 60, "display.max_columns", 20):
        print("\nper source:")
        print(source_stats(store).to_string(index=False))
        for s, info in m.get("sources", {}).items():
            for what in ("skipped", "noted"):
                if info.get(what):
                    print(f"  {what} in {s}: " + ", ".join(f"{k} {v}" for k, v in info[what].items()))
        print("\nper modality pair (head -> tail):")
        print(modality_pair_stats(store).to_string(index=False))
        print("\nper relation:")
        print(relation_stats(store).to_string(index=False))
    problems = content_problems(store)
    print("\nvalidation: " + ("ok" if not problems else f"{len(problems)} problem(s)"))
    for p in problems:
        print(f"  - {p}")
    return 0 if not problems else 2
