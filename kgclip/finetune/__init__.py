"""Downstream fine-tuning: the paper's benchmark families, read from their published formats.

``run(task, init, out, settings)`` fine-tunes a Knowledge-CLIP or CLIP model on one of ``vqa``,
``snli-ve``, ``retrieval``, ``classification``, ``glue`` with the same Trainer as knowledge
training, evaluates it by the benchmark's rules and writes the run folder (see
:mod:`kgclip.finetune.run`). ``kgclip finetune`` is its command line.
"""

from kgclip.finetune.config import TASK_CONFIGS, load_config
from kgclip.finetune.run import FinetuneResult, run

TASK_NAMES = tuple(TASK_CONFIGS)

__all__ = ["TASK_NAMES", "FinetuneResult", "load_config", "run"]
