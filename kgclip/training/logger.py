"""What a run records as it trains: ``metrics.csv``, TensorBoard events, ``train.log``, a progress bar.

Only the main rank writes; other ranks get a logger that only counts.
"""

import csv
import json
import logging
import os
from pathlib import Path

from kgclip.progress import bar
from kgclip.store.placement import temp_path

log = logging.getLogger("kgclip.training")

METRICS = "metrics.csv"


def truncate_metrics(path: Path, step: int) -> int:
    """Drop the rows of ``path`` after ``step`` (written after the checkpoint a run resumes from).

    Rewrites the file atomically. Returns:
        The number of rows dropped.
    """
    if not path.is_file():
        return 0
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        rows = list(reader)
    if header is None or "step" not in header:
        return 0
    col = header.index("step")
    keep = [r for r in rows if len(r) > col and r[col].isdigit() and int(r[col]) <= step]
    if len(keep) == len(rows):
        return 0
    tmp = temp_path(path)
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(keep)
    os.replace(tmp, path)
    return len(rows) - len(keep)


class MetricsLogger:
    """Rows of ``metrics.csv`` (and TensorBoard scalars when tensorboard is installed) every
    ``every`` steps, a line in ``train.log``, and a progress bar updated every step.

    Args:
        run_dir: the run folder (None: nothing is written, e.g. on ranks other than 0).
        fields: the CSV columns (``step`` first); a row leaves missing ones empty.
        total, start: the progress bar's last and first step (``start`` > 0 on resume: the CSV
            keeps its rows up to ``start`` and TensorBoard purges events after it).
        every: write every N steps (and at the last step).
        desc: the progress bar's label; quiet: no progress bar.
    """

    def __init__(self, run_dir: Path | None, fields: list[str], *, total: int, start: int = 0, every: int = 1,
                 desc: str = "train", quiet: bool = False) -> None:
        self.fields, self.every, self.total = fields, max(1, every), total
        self.path = run_dir / METRICS if run_dir is not None else None
        self.tb = None
        if self.path is not None:
            if start == 0 or not self.path.is_file():
                with open(self.path, "w", newline="") as f:
                    csv.writer(f).writerow(fields)
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                pass
            else:
                self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start + 1 if start else None)
        self.progress = bar(total=total, initial=start, desc=desc, unit="step", disable=quiet or run_dir is None)

    def update(self, step: int, values: dict[str, float | int | str], postfix: dict[str, str] | None = None) -> bool:
        """Advance the bar to ``step``; write ``values`` if ``step`` is due. Returns whether it wrote."""
        self.progress.update(step - self.progress.n)
        if postfix:
            self.progress.set_postfix(postfix, refresh=False)
        due = step % self.every == 0 or step == self.total
        if not due or self.path is None:
            return due
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([_fmt(values.get(k, "")) for k in self.fields])
        numbers = {k: v for k, v in values.items() if isinstance(v, int | float) and k != "step"}
        if self.tb is not None:
            for k, v in numbers.items():
                self.tb.add_scalar(k if "/" in k else f"train/{k}", v, step)
        log.info("step %d %s", step, json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in numbers.items()}))
        return True

    def close(self) -> None:
        self.progress.close()
        if self.tb is not None:
            self.tb.close()
            self.tb = None


def _fmt(v: float | int | str) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


class _Kept(logging.Handler):
    """Keeps records in memory (until the run folder exists)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class RunLog:
    """The ``kgclip`` loggers during a run: INFO records to ``train.log``, warnings to the console.

    The records logged before the run folder exists (while the model and the data are built, so
    that bad input fails before anything is written) are kept and written first when
    :meth:`to_file` names the file. Use as a context manager; ``enabled=False`` (ranks other than
    0) leaves logging as it is.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._logger = logging.getLogger("kgclip")
        self._kept: _Kept | None = None
        self._handlers: list[logging.Handler] = []
        self._old: tuple[int, bool] | None = None

    def __enter__(self) -> "RunLog":
        if self.enabled:
            console = logging.StreamHandler()
            console.setLevel(logging.WARNING)
            console.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
            self._kept = _Kept()
            self._old = (self._logger.level, self._logger.propagate)
            self._add(console)
            self._add(self._kept)
            self._logger.setLevel(logging.INFO)
            self._logger.propagate = False
        return self

    def _add(self, handler: logging.Handler) -> None:
        self._logger.addHandler(handler)
        self._handlers.append(handler)

    def to_file(self, path: Path) -> None:
        """From now on write INFO records to ``path``, after the ones kept so far."""
        if not self.enabled or self._kept is None:
            return
        fh = logging.FileHandler(path)
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        for record in self._kept.records:
            fh.handle(record)
        self._logger.removeHandler(self._kept)
        self._handlers.remove(self._kept)
        self._kept = None
        self._add(fh)

    def __exit__(self, *exc: object) -> None:
        for h in self._handlers:
            self._logger.removeHandler(h)
            h.close()
        self._handlers = []
        if self._old is not None:
            self._logger.setLevel(self._old[0])
            self._logger.propagate = self._old[1]
            self._old = None
