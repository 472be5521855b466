"""The ``kgclip`` console command.

Each verb lives in its own module with ``add_parser(subparsers)``; this file only assembles them,
refuses an ``--out`` (or ``inspect --png``) inside a knowledge store (for every verb: a store folder
holds only its own files, and replacing the store would take them along) and turns user errors
(:class:`kgclip.errors.KgclipError`) into one line and exit code 2.
"""

import argparse
import importlib
import importlib.util
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from kgclip import __version__
from kgclip.errors import KgclipError

VERB_MODULES = ("info", "prepare", "train", "evaluate", "export", "demo", "grid", "inspect", "score", "finetune")


# torch_geometric scripts a few functions at import; torch warns that jit is deprecated.
warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kgclip", description="Knowledge-CLIP: CLIP continued on knowledge graphs.")
    parser.add_argument("--version", action="version", version=f"kgclip {__version__}")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name in VERB_MODULES:
        importlib.import_module(f"experiments.{name}").add_parser(sub)
    return parser


def shadowing_packages() -> list[str]:
    """The project's top-level packages that another folder on ``sys.path`` shadows.

    ``experiments`` and ``data_prep`` keep the folder names the layout asks for and install as
    top-level packages beside ``kgclip``; a user's own ``data_prep`` earlier on the path would
    otherwise be imported silently. All three must come from the same checkout.
    """
    import kgclip

    home = Path(kgclip.__file__).resolve().parent.parent
    out = []
    for name in ("experiments", "data_prep"):
        spec = importlib.util.find_spec(name)
        origin = Path(spec.origin).resolve().parent.parent if spec and spec.origin else None
        if origin != home:
            out.append(f"{name} from {spec.origin if spec else 'nowhere'}")
    return out


def enclosing_store(path: str) -> Path | None:
    """The kgclip store folder that holds ``path`` (a folder above it, links resolved), or None.

    ``path`` itself does not count: ``prepare --overwrite`` may name a store to replace.
    """
    from kgclip.store.placement import store_holding

    return store_holding(path, include_self=False)


# The flags of any verb that name a file or folder the command writes.
OUTPUT_FLAGS = ("out", "png")


def check_out(args: argparse.Namespace) -> None:
    """Refuse an output flag (``--out``, ``--png``) inside a knowledge store (a StoreError naming both)."""
    from kgclip.errors import StoreError

    for flag in OUTPUT_FLAGS:
        out = getattr(args, flag, None)
        store = enclosing_store(out) if isinstance(out, str) and out else None
        if store is not None:
            raise StoreError(f"{out}: inside the kgclip store {store}; a store folder holds only its own files, write elsewhere")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 bad input)."""
    shadowed = shadowing_packages()
    if shadowed:
        print(f"kgclip: error: another package shadows kgclip's own ({'; '.join(shadowed)}); "
              f"rename it or remove its folder from PYTHONPATH / the current directory", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quiet:
        from kgclip import progress

        progress.set_enabled(False)
    try:
        check_out(args)
        return int(args.func(args) or 0)
    except KgclipError as exc:
        print(f"kgclip {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"kgclip {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
