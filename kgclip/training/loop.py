"""``train_loop``: Knowledge-CLIP training as one call (the Trainer with a :class:`KnowledgeTask`)."""

from kgclip.config import check
from kgclip.training.config import RunConfig
from kgclip.training.distributed import init_distributed, together
from kgclip.training.knowledge import KnowledgeTask
from kgclip.training.rundir import check_run_name
from kgclip.training.trainer import Trainer, TrainingError, TrainResult

__all__ = ["TrainResult", "TrainingError", "train_loop"]


def train_loop(config: RunConfig, *, force: bool = False, quiet: bool = False) -> TrainResult:
    """Train Knowledge-CLIP as configured (see :class:`~kgclip.training.config.RunConfig`).

    Checks, in this order and before any run folder is made: the config values, the run name,
    the store (opened once and validated, after the process group started: a rank whose store
    does not open stops every rank with its line, instead of leaving the others waiting at the
    rendezvous). Writes ``<run_dir>/<name>/``: config.yaml (resolved), metrics.csv, train.log,
    TensorBoard events, checkpoints/.

    Args:
        config: the run.
        force: move an existing run of this name aside; on resume, accept a changed store.
        quiet: no progress bar.
    """
    config = check(config)
    check_run_name(config.name)
    env = init_distributed(config.train.device)
    with together(env):
        task = KnowledgeTask(config)
    result = Trainer(task, config, env=env, force=force, quiet=quiet).fit()
    task.report()
    return result
