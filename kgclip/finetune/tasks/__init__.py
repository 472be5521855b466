"""The fine-tuning tasks, by command-line name."""

from kgclip.finetune.tasks.base import Evaluation, FinetuneTask
from kgclip.finetune.tasks.classification import ClassificationTask
from kgclip.finetune.tasks.glue import GlueTask
from kgclip.finetune.tasks.retrieval import RetrievalTask
from kgclip.finetune.tasks.snli_ve import SnliVeTask
from kgclip.finetune.tasks.vqa import VqaTask

TASKS: dict[str, type[FinetuneTask]] = {"vqa": VqaTask, "snli-ve": SnliVeTask, "retrieval": RetrievalTask,
                                        "classification": ClassificationTask, "glue": GlueTask}

__all__ = ["TASKS", "ClassificationTask", "Evaluation", "FinetuneTask", "GlueTask", "RetrievalTask", "SnliVeTask", "VqaTask"]
