"""The arguments and converter call of each ``kgclip prepare`` verb (one function pair per source)."""

import argparse

from data_prep.common import Conversion
from data_prep.triples import convert_triples
from experiments.prepare import register
from kgclip.store import StoreWriter


def _triples_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="text file of head / relation / tail lines")
    p.add_argument("--delimiter", default="\t", help="field separator (default: tab; 'TAB' also accepted)")


@register("triples", "triples", help="plain head/relation/tail text triples")
def _triples(args: argparse.Namespace, w: StoreWriter, conv: Conversion) -> None:
    delim = "\t" if args.delimiter.upper() == "TAB" else args.delimiter
    convert_triples(args.file, w, conv, delimiter=delim)


ARGUMENTS = {"triples": _triples_args}
