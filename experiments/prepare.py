"""`kgclip prepare SOURCE ... --out STORE`: convert a source's files into a knowledge store.

The sources are the converters of :mod:`data_prep.registry`, each verb's options built from the
arguments its converter declares. Every verb writes one store folder atomically, shows a
progress bar, and ends with a summary of records read, kept and skipped by reason.
"""

import argparse
import dataclasses
import math
from pathlib import Path

from data_prep.base import Converter
from data_prep.registry import CONVERTERS, converter_class
from kgclip.errors import ConfigError, StoreError
from kgclip.store import SplitConfig, merge_stores
from kgclip.store.merge import LINK_MODES


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="store folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store (once the new one is complete)")
    p.add_argument("--split-ratios", default="0.9,0.05,0.05",
                   help="train,valid,test fractions of the groups split by kgclip (entity pairs, images; default 0.9,0.05,0.05)")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="read only the first N records")
    p.add_argument("--max-bad-fraction", type=float, default=0.01, help="stop when more records than this are malformed")


def _split(args: argparse.Namespace) -> SplitConfig:
    try:
        ratios = tuple(float(x) for x in args.split_ratios.split(","))
    except ValueError:
        raise ConfigError(f"--split-ratios: expected three numbers like 0.9,0.05,0.05, got {args.split_ratios!r}") from None
    try:
        return SplitConfig(ratios=ratios, seed=args.split_seed)  # type: ignore[arg-type]
    except ConfigError as exc:
        flag = "--split-seed" if "seed" in str(exc) else "--split-ratios"
        raise ConfigError(f"{flag}: {exc}") from None


def _check_common(args: argparse.Namespace) -> None:
    """The options every converter verb takes: impossible values are one-line errors before anything is read."""
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {args.limit}")
    if not (math.isfinite(args.max_bad_fraction) and 0 <= args.max_bad_fraction <= 1):
        raise ConfigError(f"--max-bad-fraction must be a number from 0 to 1, got {args.max_bad_fraction}")


def add_converter_options(p: argparse.ArgumentParser, cls: type[Converter]) -> None:
    """One command-line option per argument the converter declares (see :func:`data_prep.base.option`)."""
    for f in cls.options():
        meta, kw = f.metadata, dict(f.metadata["argparse"])
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if meta["positional"]:
            p.add_argument(f.name, default=default, help=meta["help"], **kw)
        elif isinstance(default, bool):
            p.add_argument(meta["flag"] or f"--{f.name.replace('_', '-')}", dest=f.name, default=default,
                           action="store_false" if default else "store_true", help=meta["help"])
        else:
            p.add_argument(meta["flag"] or f"--{f.name.replace('_', '-')}", dest=f.name, default=default, help=meta["help"], **kw)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="convert a source into a knowledge store",
                       description=f"sources: {', '.join(CONVERTERS)}; other verbs: demo, merge, cache-images")
    verbs = p.add_subparsers(dest="source", required=True, metavar="SOURCE")
    for name, cls in CONVERTERS.items():
        vp = verbs.add_parser(name, help=cls.description, description=cls.description)
        add_converter_options(vp, cls)
        _common(vp)
        vp.set_defaults(func=run)
    dp = verbs.add_parser("demo", help="render the embedded demo world and convert it through the real converters")
    dp.add_argument("--out", required=True, help="folder for the world (raw files, stores, evaluation items)")
    dp.add_argument("--scenes", type=int, default=600)
    dp.add_argument("--seed", type=int, default=0)
    dp.set_defaults(func=run_demo)
    mp = verbs.add_parser("merge", help="merge several stores into one (their splits kept; --link text joins same-named entities)")
    mp.add_argument("stores", nargs="+", help="store folders, the first one's entity attributes winning")
    mp.add_argument("--out", required=True, help="store folder to write")
    mp.add_argument("--overwrite", action="store_true", help="replace an existing store (once the new one is complete)")
    mp.add_argument("--link", choices=LINK_MODES, default=None,
                    help="'text': join text entities whose normalised text matches, and WordNet synsets with their lemma (off by default)")
    mp.set_defaults(func=run_merge)
    from experiments import cache_images

    cache_images.add_parser(verbs)


def _inputs(args: argparse.Namespace) -> list[str]:
    """The files and folders named by a verb's arguments (``--overwrite`` never replaces one of them)."""
    values = [v for k, v in vars(args).items() if k != "out"]
    flat = [x for v in values for x in (v if isinstance(v, list) else [v])]
    return [str(x) for x in flat if isinstance(x, str | Path) and str(x) and Path(x).exists()]


def run(args: argparse.Namespace) -> int:
    _check_common(args)
    split = _split(args)
    converter = converter_class(args.source).from_values(vars(args))
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("func",) and not callable(v)}
    manifest, conv = converter.write(args.out, split=split, settings=settings, overwrite=args.overwrite, inputs=_inputs(args),
                                     max_bad_fraction=args.max_bad_fraction, limit=args.limit)
    print(conv.summary())
    c = manifest["counts"]
    print(f"wrote {args.out}: {c['entities']} entities, {c['relations']} relations, {c['triplets']} triplets {c['splits']}")
    return 0


def run_merge(args: argparse.Namespace) -> int:
    manifest = merge_stores(args.stores, args.out, link=args.link, overwrite=args.overwrite)
    c = manifest["counts"]
    linked = f"; linked: {manifest['settings']['link_report']}" if args.link else ""
    print(f"wrote {args.out}: {c['entities']} entities, {c['relations']} relations, {c['triplets']} triplets {c['splits']}; "
          f"{manifest['duplicates_removed']} duplicate triplets removed; leakage {manifest['leakage']}{linked}")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from data_prep.demo_world import convert_demo_world, write_demo_world

    out = Path(args.out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "raw").is_dir())):
        raise StoreError(f"{out}: exists and is not a demo world (no raw/ folder); give a new or empty folder")
    files = write_demo_world(args.out, scenes=args.scenes, seed=args.seed)
    stores = convert_demo_world(files, seed=args.seed)
    from kgclip.store import KnowledgeStore

    s = KnowledgeStore(stores["store"])
    c = s.manifest["counts"]
    print(f"demo world in {args.out}: {files.counts['scenes']} scenes ({files.counts['test_scenes']} test), "
          f"store {stores['store']}: {c['entities']} entities, {c['relations']} relations, {c['triplets']} triplets {c['splits']}")
    return 0
