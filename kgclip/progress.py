"""Progress bars: tqdm, off when not a terminal or when disabled (``--quiet``)."""

import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm

_enabled: bool | None = None


def set_enabled(flag: bool | None) -> None:
    """Force bars on or off; None restores the default (on only for a terminal)."""
    global _enabled
    _enabled = flag


def bar(iterable: Iterable | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar that respects :func:`set_enabled` and the terminal test; ``disable=True`` turns it off."""
    off = bool(kwargs.pop("disable", False)) or not (_enabled if _enabled is not None else sys.stderr.isatty())
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, disable=off, **kwargs)
