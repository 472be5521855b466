"""Counted skips of bad input records: the first few named ``file:record: reason``, all counted by reason.

Readers of benchmark files (VQA, SNLI-VE, Karpathy, ImageFolder, GLUE) keep going past a bad
record when the rest of the file is usable: they count it here instead of failing or dropping it
silently. Where nothing sensible can go on (a file that is not JSON at all, a header that names the
wrong columns) they raise a :class:`~kgclip.errors.KgclipError` instead.
"""

import logging
import sys
from collections import Counter
from collections.abc import Callable

log = logging.getLogger("kgclip.skips")

MAX_NAMED = 5
"""How many skipped records are named one by one (the rest are only counted)."""


class Skips:
    """Skipped records of one or more input files.

    Args:
        echo: where the first :data:`MAX_NAMED` skips are reported (stderr by default); None: log only.
    """

    def __init__(self, echo: Callable[[str], None] | None = print) -> None:
        self.counts: Counter[str] = Counter()
        self.named: list[str] = []
        self._echo = (lambda msg: print(msg, file=sys.stderr)) if echo is print else echo

    def __len__(self) -> int:
        return sum(self.counts.values())

    def add(self, where: str, reason: str) -> None:
        """Count one skipped record; ``where`` is ``file:record`` (line number, question id, ...)."""
        self.counts[reason] += 1
        msg = f"{where}: {reason}"
        log.info("skipped %s", msg)
        if len(self.named) < MAX_NAMED:
            self.named.append(msg)
            if self._echo is not None:
                self._echo(f"skipped {msg}")

    def merge(self, other: "Skips") -> None:
        """Add another log's counts (and its named records while there is room)."""
        self.counts.update(other.counts)
        for msg in other.named:
            if len(self.named) < MAX_NAMED:
                self.named.append(msg)

    def summary(self) -> str:
        """``N skipped (reason: n, ...)``, or an empty string when nothing was skipped."""
        if not self.counts:
            return ""
        parts = ", ".join(f"{r}: {n}" for r, n in self.counts.most_common())
        return f"{len(self)} skipped ({parts})"

    def as_dict(self) -> dict:
        """``{"total": N, "by_reason": {...}, "first": [...]}`` for metrics files and reports."""
        return {"total": len(self), "by_reason": dict(self.counts.most_common()), "first": list(self.named)}
