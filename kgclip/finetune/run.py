"""One fine-tuning run: read the benchmark, load INIT, train with the Trainer, evaluate, write the record.

The run folder ``OUT`` gets what ``kgclip train`` writes (``config.yaml``, ``metrics.csv``,
``train.log``, ``checkpoints/``, with the same atomic / resume / lock rules) and, after training,
``metrics.json`` (the task's metrics, flat), ``predictions.json`` (one record per evaluated item;
for VQA the official results format) and ``report.md``.
"""

import json
import math
import os
from dataclasses import asdict, dataclass, is_dataclass, replace
from pathlib import Path
from typing import Any

from kgclip.errors import ConfigError
from kgclip.finetune.config import config_class, load_config
from kgclip.finetune.init import load_backbone
from kgclip.finetune.tasks import TASKS, Evaluation, FinetuneTask
from kgclip.skips import Skips
from kgclip.training.distributed import DistEnv
from kgclip.training.precision import autocast
from kgclip.training.trainer import Trainer, TrainResult


@dataclass
class FinetuneResult:
    """What :func:`run` returns: the run folder, the metrics, the training summary, and the input
    records skipped and the examples whose content failed to load (both also in ``report.md``)."""

    run_dir: Path
    metrics: dict[str, float]
    train: TrainResult
    evaluation: Evaluation
    skipped: Skips
    load_failures: Skips


def _plain(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    return x


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _init_note(task: FinetuneTask) -> str:
    kind = task.backbone.kind
    if task.name not in ("vqa", "snli-ve"):
        return f"{kind}: its towers"
    return f"{kind}: its trained fusion encoder" if kind == "knowledge-clip" else f"{kind}: a fresh fusion encoder"


def report(task: FinetuneTask, init: str, train: TrainResult, ev: Evaluation, skips: Skips) -> str:
    """The run's ``report.md``."""
    c = task.config
    lines = [f"# kgclip finetune {task.name}: {c.name}", "",
             f"- init: `{init}` ({_init_note(task)}; checkpoint or model `{task.backbone.source}`)",
             f"- training: {train.steps} steps of {c.batch_size} per process, lr {c.optim.new_lr:g} (new modules) / {c.optim.tower_lr:g} (towers), "
             f"{train.examples_per_second:.1f} examples/s, data wait {100 * train.data_wait_share:.1f}%",
             f"- last losses: {', '.join(f'{k} {v:.4f}' for k, v in train.metrics.items()) or '(none: nothing left to train)'}", ""]
    lines += ["## Data", "", *[f"- {k}: {_fmt(v)}" for k, v in task.summary().items()]]
    for label, log in (("input records skipped", skips), ("examples whose content failed to load", task.load_failures)):
        if len(log):
            lines += [f"- {label}: {log.summary()}", *[f"  - `{m}`" for m in log.named]]
    lines += ["", "## Metrics", "", "| metric | value |", "|---|---|", *[f"| {k} | {_fmt(v)} |" for k, v in ev.metrics.items()], ""]
    if ev.details:
        lines += ["## Details", ""]
        for k, v in ev.details.items():
            if isinstance(v, dict):
                lines += [f"- {k}:", *[f"  - {kk}: {_fmt(vv)}" for kk, vv in v.items()]]
            else:
                lines.append(f"- {k}: {_fmt(v)}")
        lines.append("")
    lines += ["Files: `metrics.json`, `predictions.json`, `metrics.csv` (losses per step), `config.yaml`, `checkpoints/`.", ""]
    return "\n".join(lines)


def run(task: str, init: str, out: str | os.PathLike, settings: dict[str, Any] | Any = None, overrides: list[str] | None = None, *,
        force: bool = False, quiet: bool = False, env: DistEnv | None = None, skips: Skips | None = None) -> FinetuneResult:
    """Fine-tune ``init`` on ``task`` into the run folder ``out``.

    Args:
        task: ``vqa``, ``snli-ve``, ``retrieval``, ``classification`` or ``glue``.
        init: a kgclip run folder or checkpoint, ``MODEL:TAG``, ``MODEL:FILE`` or ``MODEL``
            (see :mod:`kgclip.finetune.init`).
        out: the run folder (its parent is ``run_dir``, its name the run's ``name``).
        settings: the task's config as a mapping (a YAML file's content, data paths under
            ``data``) or as its config dataclass; None: the defaults.
        overrides: ``key=value`` strings (``steps=100 batch_size=8 lr=1e-4``, ``optim.tower_lr=...``).
        force: move an existing run folder aside; resume despite a different INIT.
        quiet: no progress bars.
        env: the process group (default: from the environment).
        skips: where bad input records are counted (default: the first five printed to stderr).

    Returns:
        The run folder, the metrics and the training summary.

    Raises:
        KgclipError: bad input files, a bad config, an INIT that cannot be loaded (all before the
        run folder is made), or what the Trainer refuses (an existing run folder, a checkpoint that
        does not fit).
    """
    if is_dataclass(settings) and not isinstance(settings, type):
        config = settings if not overrides else load_config(task, asdict(settings), overrides)
    else:
        config = load_config(task, settings, overrides)
    config_class(task)
    out = Path(out)
    if out.name in ("", ".", ".."):
        raise ConfigError(f"{out}: not a run folder name; give the folder to write, e.g. runs/{task}-1 (not '.', '..' or '/')")
    config = replace(config, run_dir=str(out.parent), name=out.name)
    skips = skips if skips is not None else Skips()
    backbone = load_backbone(init, asdict(config.model), config.seed)
    job = TASKS[task](config, backbone, skips)
    trainer = Trainer(job, config, env=env, force=force, quiet=quiet)
    result = trainer.fit()
    with autocast(config.train.precision, trainer.env.device):
        evaluation = job.evaluate(trainer.core, trainer.env)
    run_dir = trainer.run_dir
    if trainer.env.is_main:
        write_atomic(run_dir / "metrics.json", json.dumps(_plain(evaluation.metrics), indent=1) + "\n")
        write_atomic(run_dir / "predictions.json", json.dumps(_plain(evaluation.predictions)) + "\n")
        write_atomic(run_dir / "report.md", report(job, str(init), result, evaluation, skips))
    return FinetuneResult(run_dir, evaluation.metrics, result, evaluation, skips, job.load_failures)
