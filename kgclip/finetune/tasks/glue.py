"""GLUE fine-tuning of the text tower (a head on its pooled embedding), scored by each task's metric."""

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kgclip.finetune.config import GlueConfig
from kgclip.finetune.data import Batch
from kgclip.finetune.formats.glue import GlueExample, glue_task, read_glue
from kgclip.finetune.init import Backbone
from kgclip.finetune.metrics import accuracy, f1_binary, matthews_corrcoef, pearson, spearman
from kgclip.finetune.models import TextClassifier
from kgclip.finetune.tasks.base import Evaluation, FinetuneTask, gather_records, require, unwrap
from kgclip.skips import Skips
from kgclip.training.distributed import DistEnv

METRICS = {"accuracy": accuracy, "f1": f1_binary, "mcc": matthews_corrcoef, "pearson": pearson, "spearman": spearman}


class GlueTask(FinetuneTask):
    """One GLUE task (see :mod:`kgclip.finetune.formats.glue`): cross-entropy, or MSE for STS-B.

    A sentence pair is tokenised as one text, ``first + pair_separator + second`` (CLIP's text
    tower has no segment embeddings); texts longer than the context are cut (counted in the report).

    Batches: ``texts`` [B, context], ``labels`` [B] (class ids, or STS-B scores as floats).
    """

    name = "glue"

    def __init__(self, config: GlueConfig, backbone: Backbone, skips: Skips) -> None:
        super().__init__(config, backbone, skips)
        d = config.data
        require(d, ("task", "train", "eval"), self.name)
        self.task = glue_task(d.task)
        self.loss_parts = ("mse",) if self.task.classes is None else ("ce",)
        self.train_examples = read_glue(self.task, d.train, skips)
        self.eval_examples = read_glue(self.task, d.eval, skips)

    def make_model(self) -> nn.Module:
        return TextClassifier(self.backbone.model.clip, self.task.num_outputs, self.config.head_hidden)

    def text(self, ex: GlueExample) -> str:
        return ex.text_a if ex.text_b is None else f"{ex.text_a}{self.config.pair_separator}{ex.text_b}"

    def example_name(self, i: int) -> str:
        return f"{self.config.data.train}:row {self.train_examples[i].index}"

    def train_item(self, i: int, seed: int | None) -> Any:
        ex = self.train_examples[i]
        return self.text(ex), ex.label

    def collate(self, indices: list[int], items: list[Any]) -> dict[str, Tensor]:
        texts, labels = zip(*items, strict=True)
        dtype = torch.float32 if self.task.classes is None else torch.long
        return {"texts": self.tokenizer(list(texts)), "labels": torch.tensor(labels, dtype=dtype)}

    def loss(self, model: nn.Module, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        out = model(batch["texts"]).float()
        if self.task.classes is None:
            loss = F.mse_loss(out.squeeze(-1), batch["labels"])
            return loss, {"mse": loss}
        loss = F.cross_entropy(out, batch["labels"])
        return loss, {"ce": loss}

    def extra(self) -> dict[str, Any]:
        return {"glue_task": self.task.name}

    def _cut(self, examples: list[GlueExample]) -> int:
        """How many texts fill the whole context (their end may have been cut)."""
        toks = self.tokenizer([self.text(e) for e in examples])
        return int((toks[:, -1] != 0).sum())

    def summary(self) -> dict[str, Any]:
        return {"GLUE task": self.task.name, "train rows": len(self.train_examples), "eval rows": len(self.eval_examples),
                "eval texts that fill the whole context (their end may be cut)": self._cut(self.eval_examples)}

    def evaluate(self, model: nn.Module, env: DistEnv) -> Evaluation:
        net = unwrap(model).eval()
        ex = self.eval_examples
        outs = self.eval_loop(range(len(ex)), lambda i, _s: (self.text(ex[i]), ex[i].label), self.collate,
                              lambda i: f"row {ex[i].index}", lambda b: net(b["texts"]).float().cpu(), env, f"eval {self.task.name}")
        mine = [(int(i), o) for b, out in outs for i, o in zip(b.index, out, strict=True)]
        done = sorted(gather_records(mine, env), key=lambda x: x[0])
        out = torch.stack([o for _, o in done]).numpy()
        gold = np.array([ex[i].label for i, _ in done])
        if self.task.classes is None:
            pred = out[:, 0]
            predictions = [{"index": ex[i].index, "prediction": float(p), "label": float(ex[i].label)} for (i, _), p in zip(done, pred, strict=True)]
        else:
            pred = out.argmax(1)
            gold = gold.astype(int)
            predictions = [{"index": ex[i].index, "prediction": self.task.classes[int(p)], "label": self.task.classes[int(ex[i].label)]}
                           for (i, _), p in zip(done, pred, strict=True)]
        metrics = {f"{self.task.name}_{m}": METRICS[m](pred, gold) for m in self.task.metrics}
        return Evaluation(metrics, predictions, {"evaluated rows": len(done)})
