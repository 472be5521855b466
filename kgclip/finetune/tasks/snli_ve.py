"""SNLI-VE fine-tuning: the fusion encoder over image and hypothesis, 3-way cross-entropy."""

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kgclip.finetune.config import SnliVeConfig
from kgclip.finetune.data import Batch
from kgclip.finetune.formats.snli_ve import LABELS, read_snli_ve
from kgclip.finetune.images import index_by_name
from kgclip.finetune.init import Backbone
from kgclip.finetune.metrics import accuracy
from kgclip.finetune.models import FusionClassifier
from kgclip.finetune.tasks.base import Evaluation, FinetuneTask, gather_records, require, unwrap
from kgclip.skips import Skips
from kgclip.training.distributed import DistEnv


class SnliVeTask(FinetuneTask):
    """SNLI-VE (see :mod:`kgclip.finetune.formats.snli_ve`).

    Batches: ``images`` [B, 3, H, W], ``texts`` [B, context] hypothesis tokens, ``labels`` [B].
    """

    name = "snli-ve"
    loss_parts = ("ce",)

    def __init__(self, config: SnliVeConfig, backbone: Backbone, skips: Skips) -> None:
        super().__init__(config, backbone, skips)
        d = config.data
        require(d, ("train", "eval", "images"), self.name)
        images = index_by_name(d.images)
        self.train_examples = read_snli_ve(d.train, images, skips)
        self.eval_examples = read_snli_ve(d.eval, images, skips)

    def make_model(self) -> nn.Module:
        return FusionClassifier(self.backbone.model, len(LABELS), self.config.head_hidden)

    def example_name(self, i: int) -> str:
        return f"{self.config.data.train}:pairID={self.train_examples[i].pair_id}"

    def train_item(self, i: int, seed: int | None) -> Any:
        ex = self.train_examples[i]
        return self.image(ex.image, seed), ex.hypothesis, ex.label

    def collate(self, indices: list[int], items: list[Any]) -> dict[str, Tensor]:
        images, texts, labels = zip(*items, strict=True)
        return {"images": torch.stack(images), "texts": self.tokenizer(list(texts)), "labels": torch.tensor(labels, dtype=torch.long)}

    def loss(self, model: nn.Module, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        self.note_skipped(batch)
        ce = F.cross_entropy(model(batch["images"], batch["texts"]).float(), batch["labels"])
        return ce, {"ce": ce}

    def summary(self) -> dict[str, Any]:
        return {"train pairs": len(self.train_examples), "eval pairs": len(self.eval_examples)}

    def _eval_item(self, i: int, seed: int | None) -> Any:
        ex = self.eval_examples[i]
        return self.image(ex.image, None, train=False), ex.hypothesis, ex.label

    def evaluate(self, model: nn.Module, env: DistEnv) -> Evaluation:
        net = unwrap(model).eval()
        outs = self.eval_loop(range(len(self.eval_examples)), self._eval_item, self.collate,
                              lambda i: f"{self.config.data.eval}:pairID={self.eval_examples[i].pair_id}",
                              lambda b: net(b["images"], b["texts"]).argmax(-1).cpu(), env, "eval snli-ve")
        mine = [(int(i), int(p)) for b, pred in outs for i, p in zip(b.index, pred, strict=True)]
        done = sorted(gather_records(mine, env))
        pred = np.array([p for _, p in done])
        gold = np.array([self.eval_examples[i].label for i, _ in done])
        metrics = {"accuracy": accuracy(pred, gold)}
        for k, lab in enumerate(LABELS):
            metrics[f"accuracy_{lab}"] = accuracy(pred[gold == k], gold[gold == k]) if (gold == k).any() else float("nan")
        predictions = [{"pairID": self.eval_examples[i].pair_id, "prediction": LABELS[p], "gold_label": LABELS[self.eval_examples[i].label]}
                       for i, p in done]
        return Evaluation(metrics, predictions, {"evaluated pairs": len(done), "not evaluated (image failed)": len(self.eval_examples) - len(done)})
